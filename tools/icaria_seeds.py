"""Does the calibrated ICARIA-MM trial hold up off its own draw?  (issue 20's acceptance run)

Runs the shipped scenario's virtual trial (examples/scenarios/icaria_mm.toml: 2,000 patients
per arm, accrual, cut-off, competing events) with five seeds other than the one the
calibration used, and checks each against ICARIA-MM (Attal et al., Lancet 2019): medians
within 15 %, ORR and >= VGPR within 10 points, hazard ratio within 0.50-0.70.  With
``--endeavor`` it also runs the ENDEAVOR Kd arm (examples/scenarios/endeavor_kd.toml) on the
same seeds (median within 15 %, rates within 10 points).

Run:  python tools/icaria_seeds.py [--endeavor] [--size N]    (about 2 minutes on 2 cores)
Prints one line per seed and arm (with the share of patients whose PFS ended in month 1 and
the Kaplan-Meier PFS at 18 months, the curve's tail) and the spread; exits 1 if any check
fails.
"""

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from mechsim.scenario import read_scenario
from mechsim.trial import DAYS_PER_MONTH, run_trial

ROOT = Path(__file__).resolve().parents[1]
SEEDS = (11, 2024, 31337, 20240611, 987654321)
PUBLISHED = {"isa_pd": (11.53, 0.604, 0.318), "pd": (6.47, 0.353, 0.085),
             "kd": (18.7, 0.769, 0.543)}


def run(path: Path, seed: int, size: int | None):
    trial = read_scenario(path).trial
    if size is not None:
        trial = replace(trial, arms=tuple(replace(a, size=size) for a in trial.arms))
    return run_trial(replace(trial, seed=seed))


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endeavor", action="store_true")
    parser.add_argument("--size", type=int)
    args = parser.parse_args()
    scenarios = [ROOT / "examples" / "scenarios" / "icaria_mm.toml"]
    if args.endeavor:
        scenarios.append(ROOT / "examples" / "scenarios" / "endeavor_kd.toml")
    ok = True
    table: dict[str, list] = {}
    print(f"{'seed':>10s} {'arm':7s} {'median PFS':>10s} {'ORR':>6s} {'>=VGPR':>7s} "
          f"{'HR':>6s} {'month 1':>7s} {'PFS 18 mo':>9s}  events: progression / death / "
          "other progression")
    for seed in SEEDS:
        for path in scenarios:
            result = run(path, seed, args.size)
            for arm in result.trial.arms:
                km = result.kaplan_meier(arm.name)
                orr = result.rate(arm.name)[0]
                vgpr = float(np.mean(result.best_reduction[result.arm == arm.name] >= 0.9))
                hr = (result.hazard_ratio(arm.name).value
                      if arm.name != result.trial.control_arm else None)
                rows = result.arm == arm.name
                first = result.first_event[rows]
                month_1 = float(np.mean(result.progressed[rows] &
                                        (result.pfs_days[rows] < DAYS_PER_MONTH)))
                tail = float(km.survival[np.searchsorted(km.time, 18.0, side="right") - 1])
                counts = " / ".join(str(int(np.sum(first == name))) for name in
                                    ["progression", *(e.name for e in result.trial.competing)])
                median, p_orr, p_vgpr = PUBLISHED[arm.name]
                good = (abs(km.median / median - 1) <= 0.15 and abs(orr - p_orr) <= 0.10
                        and abs(vgpr - p_vgpr) <= 0.10
                        and (hr is None or 0.50 <= hr <= 0.70))
                ok &= good
                table.setdefault(arm.name, []).append((km.median, orr, vgpr, hr))
                print(f"{seed:10d} {arm.name:7s} {km.median:10.2f} {orr:6.1%} {vgpr:7.1%} "
                      f"{'' if hr is None else f'{hr:6.3f}':>6s} {month_1:7.1%} {tail:9.2f}"
                      f"  {counts}"
                      f"{'' if good else '   <- outside the tolerance'}", flush=True)
    print("\nspread over the seeds (min-max):")
    for arm, rows in table.items():
        cols = np.array([[np.nan if v is None else v for v in row] for row in rows])
        median, p_orr, p_vgpr = PUBLISHED[arm]
        line = (f"  {arm:7s} median {cols[:, 0].min():.2f}-{cols[:, 0].max():.2f} ({median}); "
                f"ORR {cols[:, 1].min():.1%}-{cols[:, 1].max():.1%} ({p_orr:.1%}); "
                f">= VGPR {cols[:, 2].min():.1%}-{cols[:, 2].max():.1%} ({p_vgpr:.1%})")
        if not np.all(np.isnan(cols[:, 3])):
            line += f"; HR {np.nanmin(cols[:, 3]):.3f}-{np.nanmax(cols[:, 3]):.3f} (0.596)"
        print(line)
    print("all within tolerance" if ok else "SOME OUTSIDE THE TOLERANCE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

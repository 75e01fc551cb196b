"""Calibrate the virtual relapsed-myeloma population to ICARIA-MM and ENDEAVOR (rerunnable).

What is fitted (written to params/icaria_population.toml by hand from the printout):

Stage 1, on ICARIA-MM (Attal et al., Lancet 2019), six unknowns:
  * the population medians of ``k_pd`` (Pd kill) and ``lambda_pd`` (acquired Pd resistance);
  * one scale of the four isatuximab routes (``k_adcc``, ``k_adcp``, ``k_cdc``, ``k_apo``
    keep the shares 50/25/15/10 % of params/isatuximab.toml);
  * three between-patient spreads: the CV shared by every kill rate (how differently
    patients' myeloma responds to being attacked), the CV of the growth rate ``kg`` and the
    CV shared by the resistance rates ``lambda_pd`` and ``lambda_kd``.
  Seven targets: the median PFS, ORR and >= VGPR of both arms and the PFS hazard ratio.
Stage 2, on ENDEAVOR's Kd arm (Dimopoulos et al., Lancet Oncol 2016), two unknowns: the
  medians of ``k_kd`` and ``lambda_kd``; three targets: median PFS 18.7 months, ORR 76.9 %,
  >= VGPR 54.3 %.  The spreads come from stage 1.

Stage 3, on ICARIA-MM's Isa-Pd arm at population size: the isatuximab scale alone, which
  acts on that arm only, is moved by secant steps until the Kaplan-Meier median of the Isa-Pd
  arms of six draws of 2,000 patients, pooled (seeds STAGE_3_SEEDS, none of them a checking
  seed), is within 1 % of 11.53 months.  The Isa-Pd median is the least well placed target
  (the curve crosses 0.5 slowly), so it gets 12,000 patients of its own.

Until 2026-12 stages 1 and 2 drew 500 patients per arm.  Their fitted medians then depended
on that draw by more than the issue's tolerance allows: stage 3 put the pooled median on
target, yet one of the five checking seeds gave 13.41 months (ceiling 13.26).  With 2,000
per arm, the size of the shipped scenario, every checking seed is inside (docs/trials.md).

Isatuximab's effect comes from one set of parameters: the same routes act with Pd (stage 1)
and with Kd; IKEMA (Isa-Kd vs Kd, examples/scenarios/ikema.toml) is not used, so it is a
held-out check (docs/trials.md).

How: each trial is the shipped scenario's design (accrual, cut-off, competing events) with
CAL_SIZE patients per arm drawn with the scenario's seed: common random numbers, so the
targets are deterministic functions of the unknowns.  Rates enter as quantiles of the best
M-protein fall (ORR = 60 % means the 40th percentile of the fall is 50 %), which move
smoothly with the unknowns.  Each stage starts from the values in the population file, so a
rerun repeats the same evaluations.  The objective is flat at the bottom: at 2,000 patients
per arm, three refits (from other starting points, or after a 2 % change in the marrow PK of
examples/calibrate_cd38.py) ended with the kill CV anywhere from 0.38 to 0.54 and the
growth-rate CV from 0.74 to 0.93, at residuals of 1.9-2.2 tolerance units.  So the values are
one point of a valley of about equally good fits, and a rerun checks the fit, not the
digits: a refit replaces the file's values only if it lowers the stage's residual by more
than IMPROVEMENT (5 %), and stage 3 moves the scale only if the pooled median is outside its
1 % band.  That the result does not depend on the draw is checked on five other seeds at
2,000 patients per arm by tools/icaria_seeds.py (docs/trials.md shows the spread).

Run:  python examples/calibrate_icaria_population.py      (about 11 minutes on 2 cores)
      python examples/calibrate_icaria_population.py --stage-3   (stage 3 alone, from the
      values in the population file; about a minute)
It prints the fitted values next to those in the population file and exits with status 1
if a stage replaced the file's values (then the file needs the new ones).
"""

import math
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

import mechsim
from mechsim.scenario import read_scenario
from mechsim.trial import run_trial

HERE = Path(__file__).resolve().parent
ICARIA = HERE / "scenarios" / "icaria_mm.toml"
ENDEAVOR = HERE / "scenarios" / "endeavor_kd.toml"
CAL_SIZE = 2000
WORKERS = 2
#: published targets: median PFS (months), ORR, >= VGPR; and ICARIA's hazard ratio
TARGETS = {"isa_pd": (11.53, 0.604, 0.318), "pd": (6.47, 0.353, 0.085),
           "kd": (18.7, 0.769, 0.543)}
HAZARD_RATIO = 0.596
ROUTES = {"k_adcc": 0.50, "k_adcp": 0.25, "k_cdc": 0.15, "k_apo": 0.10}
KILL_CV = ("k_pd", "k_kd", *ROUTES)
RESISTANCE_CV = ("lambda_pd", "lambda_kd")
STAGE_1 = ("k_pd", "lambda_pd", "isa", "cv_kill", "cv_kg", "cv_lambda")
STAGE_2 = ("k_kd", "lambda_kd")
#: a refit must lower a stage's |r| by more than this to replace the values in the file
IMPROVEMENT = 0.05


def omega(cv: float) -> float:
    return float(np.sqrt(np.log1p(cv ** 2)))


def with_values(trial, values: dict[str, float]):
    """The trial with fitted medians and spreads put into its population."""
    medians = {k: v for k, v in values.items() if k in ("k_pd", "lambda_pd", "k_kd",
                                                         "lambda_kd")}
    if "isa" in values:
        medians.update({k: share * values["isa"] for k, share in ROUTES.items()})
    spreads = {}
    for key, names in (("cv_kill", KILL_CV), ("cv_kg", ("kg",)),
                       ("cv_lambda", RESISTANCE_CV)):
        if key in values:
            spreads.update(dict.fromkeys(names, omega(values[key])))
    dists = []
    for dist in trial.population.variability:
        changed = dist
        if dist.name in medians:
            changed = replace(changed, center=mechsim.Quantity(medians[dist.name], "1/day"))
        if dist.name in spreads:
            changed = replace(changed, spread=spreads[dist.name])
        dists.append(changed)
    return replace(trial, population=replace(trial.population, variability=tuple(dists)))


def file_values(trial) -> dict[str, float]:
    d = {dist.name: dist for dist in trial.population.variability}
    cv = {name: float(np.sqrt(np.expm1(d[name].spread ** 2))) for name in d}
    day = {name: d[name].center.to("1/day").magnitude
           for name in ("k_pd", "lambda_pd", "k_kd", "lambda_kd", *ROUTES)}
    return {"k_pd": day["k_pd"], "lambda_pd": day["lambda_pd"],
            "isa": sum(day[k] for k in ROUTES), "cv_kill": cv["k_pd"], "cv_kg": cv["kg"],
            "cv_lambda": cv["lambda_pd"], "k_kd": day["k_kd"], "lambda_kd": day["lambda_kd"]}


def sized(trial, size: int, seed: int | None = None):
    return replace(trial, seed=trial.seed if seed is None else seed,
                   arms=tuple(replace(a, size=size) for a in trial.arms))


def outcomes(trial) -> dict:
    """Per arm: (median PFS in months, ORR, >= VGPR, fall at the 1-ORR quantile, fall at
    the 1-VGPR quantile); under "hr" the hazard ratio against the control arm, if any."""
    result = run_trial(trial, workers=WORKERS)
    out = {}
    for arm in trial.arms:
        best = result.best_reduction[result.arm == arm.name]
        median = result.kaplan_meier(arm.name).median
        _, orr, vgpr = TARGETS[arm.name]
        out[arm.name] = (median, result.rate(arm.name)[0], float(np.mean(best >= 0.9)),
                         float(np.quantile(best, 1 - orr)), float(np.quantile(best, 1 - vgpr)))
    if len(trial.arms) > 1:
        out["hr"] = result.hazard_ratio(trial.arms[0].name).value
    return out


def residuals_of(got: dict) -> list[float]:
    res = []
    for arm, (median, _, _, q_orr, q_vgpr) in ((k, v) for k, v in got.items() if k != "hr"):
        target = TARGETS[arm][0]
        capped = median if math.isfinite(median) else 3 * target
        res += [np.log(capped / target) / 0.05, (q_orr - 0.5) / 0.05, (q_vgpr - 0.9) / 0.05]
    if "hr" in got:
        res.append(np.log(got["hr"] / HAZARD_RATIO) / 0.1)
    return res


def fit(trial, names, start, max_nfev):
    """(``start`` with the values ``names`` refitted from ``start``'s, |r| at ``start``,
    |r| at the refit)."""
    scale = np.array([start[k] for k in names])
    norms = []

    # x = 1 + log(value / start): least_squares' relative step is then a relative change
    def values_at(x):
        return {**start, **dict(zip(names, scale * np.exp(np.asarray(x) - 1.0)))}

    def residuals(x):
        values = values_at(x)
        res = residuals_of(outcomes(with_values(trial, values)))
        norms.append(float(np.linalg.norm(res)))
        print("  " + ", ".join(f"{k} {values[k]:.4g}" for k in names) +
              f" -> |r| {norms[-1]:.3g}", flush=True)
        return res

    result = least_squares(residuals, np.ones(len(names)), diff_step=0.03, xtol=3e-3,
                           ftol=1e-3, max_nfev=max_nfev)
    return values_at(result.x), norms[0], float(np.linalg.norm(result.fun))


def refit(trial, names, start) -> tuple[dict, bool]:
    """(values, whether they replace ``start``'s): a refit that does not lower |r| by more
    than IMPROVEMENT leaves the starting values standing."""
    values, before, after = fit(trial, names, start, max_nfev=4)
    if after < (1 - IMPROVEMENT) * before:
        print(f"  the refit lowers |r| from {before:.3g} to {after:.3g}: it replaces the "
              "values in the file")
        return values, True
    print(f"  |r| {before:.3g} at the values in the file, {after:.3g} refitted: within "
          f"{IMPROVEMENT:.0%}, the file's values stand")
    return start, False


def report(trial, values):
    got = outcomes(with_values(trial, values))
    for arm, (median, orr, vgpr, _, _) in ((k, v) for k, v in got.items() if k != "hr"):
        t = TARGETS[arm]
        print(f"  {arm:7s} median PFS {median:6.2f} ({t[0]:5.2f})  ORR {orr:5.1%} "
              f"({t[1]:5.1%})  >= VGPR {vgpr:5.1%} ({t[2]:5.1%})")
    if "hr" in got:
        print(f"  hazard ratio {got['hr']:.3f} ({HAZARD_RATIO})")


STAGE_3_SEEDS = (20190302, 7, 101, 4242, 555, 8080)
STAGE_3_SIZE = 2000


def pooled_isa_median(icaria_full, values: dict[str, float]) -> float:
    """Kaplan-Meier median PFS (months) of the Isa-Pd arms of STAGE_3_SEEDS' trials pooled.
    Isa-Pd is the scenario's first arm, so its patients are those of the full trial."""
    from mechsim.analysis.survival import kaplan_meier
    from mechsim.trial import DAYS_PER_MONTH

    assert icaria_full.arms[0].name == "isa_pd"
    isa_only = replace(icaria_full, arms=icaria_full.arms[:1], control=None)
    times, events = [], []
    for seed in STAGE_3_SEEDS:
        result = run_trial(with_values(sized(isa_only, STAGE_3_SIZE, seed), values),
                           workers=WORKERS)
        times.append(result.pfs_days / DAYS_PER_MONTH)
        events.append(result.progressed)
    return kaplan_meier(np.concatenate(times), np.concatenate(events)).median


def stage_three(icaria_full, values: dict[str, float]) -> float:
    """The isatuximab scale that puts the pooled Isa-Pd median within 1 % of its target:
    secant steps on log(isa) from the stage-1 value (at most 5 evaluations)."""
    target = TARGETS["isa_pd"][0]
    x0 = np.log(values["isa"])
    f0 = np.log(pooled_isa_median(icaria_full, values) / target)
    print(f"  isa {np.exp(x0):.5g} -> pooled Isa-Pd median {target * np.exp(f0):.2f}", flush=True)
    if abs(f0) < 0.01:
        return values["isa"]  # inside the band: the value stands
    x1 = x0 - 0.1 * np.sign(f0)
    for _ in range(4):
        if abs(f0) < 0.01:
            break
        f1 = np.log(pooled_isa_median(icaria_full, {**values, "isa": np.exp(x1)}) / target)
        print(f"  isa {np.exp(x1):.5g} -> pooled Isa-Pd median {target * np.exp(f1):.2f}",
              flush=True)
        if f1 == f0:
            x0, f0 = x1, f1
            break
        x0, x1, f0 = x1, x1 - f1 * (x1 - x0) / (f1 - f0), f1
    return float(np.exp(x0))


def main(argv: list[str]) -> int:
    icaria = sized(read_scenario(ICARIA).trial, CAL_SIZE)
    endeavor = sized(read_scenario(ENDEAVOR).trial, CAL_SIZE)
    shipped = file_values(icaria)
    fitted, replaced = dict(shipped), []
    if "--stage-3" not in argv:
        print(f"stage 1: ICARIA-MM, {CAL_SIZE} patients per arm")
        fitted, moved = refit(icaria, STAGE_1, fitted)
        replaced += ["stage 1"] if moved else []
        print(f"stage 2: ENDEAVOR Kd arm, {CAL_SIZE} patients")
        fitted, moved = refit(endeavor, STAGE_2, fitted)
        replaced += ["stage 2"] if moved else []
    print(f"stage 3: isatuximab scale on {len(STAGE_3_SEEDS)} x {STAGE_3_SIZE} Isa-Pd patients")
    isa = stage_three(read_scenario(ICARIA).trial, fitted)
    replaced += ["stage 3"] if isa != fitted["isa"] else []
    fitted["isa"] = isa
    print("\nat the fitted values:")
    report(icaria, fitted)
    report(endeavor, fitted)
    print(f"\n{'value':10s} {'fitted':>10s} {'in file':>10s}")
    for name, value in fitted.items():
        print(f"{name:10s} {value:10.5g} {shipped[name]:10.5g}"
              f"{'   <- differs' if abs(value / shipped[name] - 1) > 0.01 else ''}")
    if replaced:
        print(f"\n{', '.join(replaced)} replaced the values in the file: update it")
        return 1
    print("\nthe values in the file stand")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Calibrate the virtual ICARIA-MM population to the published trial (rerunnable).

What is fitted (in params/icaria_population.toml): the population medians of k_pd and
lambda_pd (Pd kill and acquired resistance) and of k_isa (isatuximab cytotoxicity), and one
between-patient CV shared by k_pd and k_isa (how differently patients' myeloma responds to
being attacked).  Everything else keeps its sourced or assumed value: the Fau 2020 PK
variability, body weight, IgG share, baseline M-protein, the growth rate's distribution and
the CV of lambda_pd.

Targets (Attal et al., Lancet 2019), four numbers for four unknowns:

* median PFS of each arm: 11.53 months (Isa-Pd) and 6.47 months (Pd);
* overall response rate (>= PR) of each arm: 60 % and 35 %.

Not fitted: the PFS hazard ratio (published 0.596), the >= VGPR rates (31.8 % and 8.5 %), the
shape of the Kaplan-Meier curves and every time course.  The >= VGPR rates and curve shapes
are predictions.  The hazard ratio is not a clean one: two unsourced spreads (the CVs of kg
and lambda_pd) were raised from 50 % and 30 % to 100 % and 120 % by hand after seeing that
with the lower values the virtual patients progressed too uniformly (HR 0.39-0.46 at the
published medians).  Fitting the HR with those CVs as unknowns was tried and failed: in this
model the HR stays near 0.5 once both medians are right (see docs/trials.md).

How: the trial of examples/scenarios/icaria_mm.toml is simulated with CAL_SIZE patients per
arm drawn with the scenario's seed (common random numbers: the same patients at every trial
value, so the targets are smooth functions of the fitted values) and followed for 24 months
without accrual censoring.  The rate conditions are written as quantiles: ORR = 60 % means
the 40th percentile of the best M-protein reduction is exactly 50 % (the PR threshold).
The hazard ratio is the Cox fit on these patients (no accrual censoring).  The full trial
(2,000 patients per arm, accrual censoring) is then `mechsim run` on the scenario;
docs/trials.md shows its table and figure.

Run:  python examples/calibrate_icaria_population.py      (about 28 minutes on 2 cores)
It prints the fitted values next to those in the population file, and exits with status 1
if they differ by more than 1 %.
"""

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy.optimize import least_squares

import mechsim
from mechsim.scenario import read_scenario
from mechsim.trial import DAYS_PER_MONTH, run_trial

HERE = Path(__file__).resolve().parent
SCENARIO = HERE / "scenarios" / "icaria_mm.toml"
CAL_SIZE = 500
MEDIAN_PFS = {"isa_pd": 11.53, "pd": 6.47}   # months
ORR = {"isa_pd": 0.60, "pd": 0.35}
HAZARD_RATIO = 0.596                          # reported, not fitted
FITTED = ("k_pd", "lambda_pd", "k_isa", "cv")  # medians (1/day) and the shared CV
SHARED_CV = ("k_pd", "k_isa")


def with_values(trial, values: dict[str, float]):
    """The trial with the fitted medians and the shared CV put into its population."""
    dists = []
    for dist in trial.population.variability:
        changed = dist
        if dist.name in values:
            changed = replace(changed, center=mechsim.Quantity(values[dist.name], "1/day"))
        if dist.name in SHARED_CV:
            changed = replace(changed, spread=float(np.sqrt(np.log1p(values["cv"] ** 2))))
        dists.append(changed)
    return replace(trial, population=replace(trial.population, variability=tuple(dists)))


def file_values(trial) -> dict[str, float]:
    by_name = {d.name: d for d in trial.population.variability}
    values = {name: by_name[name].center.to("1/day").magnitude for name in FITTED[:3]}
    values["cv"] = float(np.sqrt(np.expm1(by_name["k_pd"].spread ** 2)))
    return values


def outcomes(trial) -> dict[str, tuple[float, float, float]]:
    """Per arm: median PFS (months), the best-reduction quantile at 1 - ORR, and ORR; and
    under "hr" the Cox hazard ratio of Isa-Pd against Pd."""
    result = run_trial(trial)
    out = {}
    for arm in MEDIAN_PFS:
        rows = result.arm == arm
        pfs = np.median(result.pfs_days[rows]) / DAYS_PER_MONTH
        best = result.best_reduction[rows]
        out[arm] = (pfs, float(np.quantile(best, 1 - ORR[arm])), float(np.mean(best >= 0.5)))
    out["hr"] = result.hazard_ratio("isa_pd", "pd").value
    return out


def calibration_trial(trial):
    """The scenario's trial as the calibration runs it: CAL_SIZE patients per arm, all
    followed for 24 months (no accrual censoring)."""
    return replace(trial, accrual=None, follow_up="24 month",
                   arms=tuple(replace(a, size=CAL_SIZE) for a in trial.arms))


#: Where the fit starts (an earlier hand-tuned point).  Fixed here, not read from the
#: population file, so that a rerun repeats the same deterministic evaluations (common random
#: numbers, fixed seeds) and ends at the same values, which is the reproducibility check.
START = {"k_pd": 0.05839, "lambda_pd": 0.038, "k_isa": 0.029, "cv": 0.57}
#: Trials the least-squares fit may use (the Jacobian's are extra).  The objective is
#: piecewise constant at the scale of a few patients, so the fit stalls at |r| ~ 0.1 (the
#: Isa-Pd ORR cannot reach 60 % together with both medians); 8 is where it got to.
MAX_TRIALS = 8


def full_trial_isa_median(full, values: dict[str, float], k_isa: float) -> float:
    """Kaplan-Meier median PFS (months) of the Isa-Pd arm of the scenario's own trial
    (2,000 patients, accrual censoring) at ``values`` with k_isa replaced; k_isa does not
    act in the Pd arm, which is therefore not simulated."""
    # the same patients as in the full run: arm seeds follow the arm's position, and Isa-Pd
    # is the first arm of the scenario
    assert full.arms[0].name == "isa_pd"
    isa_only = replace(full, arms=full.arms[:1], control=None)
    trial = with_values(isa_only, {**values, "k_isa": k_isa})
    return run_trial(trial).kaplan_meier("isa_pd").median


def stage_two(full, values: dict[str, float]) -> float:
    """k_isa such that the full trial's Isa-Pd median PFS is within 1 % of 11.53 months:
    secant steps on log k_isa (deterministic, at most 6 trials of one arm)."""
    target = MEDIAN_PFS["isa_pd"]
    x0, x1 = np.log(values["k_isa"]), np.log(values["k_isa"] * 0.95)
    f0 = np.log(full_trial_isa_median(full, values, np.exp(x0)) / target)
    print(f"  stage 2: k_isa {np.exp(x0):.5g} -> Isa-Pd median {target * np.exp(f0):.2f}",
          flush=True)
    for _ in range(5):
        if abs(f0) < 0.01:
            break
        f1 = np.log(full_trial_isa_median(full, values, np.exp(x1)) / target)
        print(f"  stage 2: k_isa {np.exp(x1):.5g} -> Isa-Pd median {target * np.exp(f1):.2f}",
              flush=True)
        if abs(f1) < 0.01 or f1 == f0:
            x0, f0 = x1, f1
            break
        x0, x1, f0 = x1, x1 - f1 * (x1 - x0) / (f1 - f0), f1
    return float(np.exp(x0))


def main() -> int:
    scenario_trial = read_scenario(SCENARIO).trial
    base = calibration_trial(scenario_trial)
    shipped = file_values(base)
    scale = np.array([START[k] for k in FITTED])

    # x = 1 + log(value / START): every unknown starts at 1, so least_squares' relative
    # difference step is a 1 % change of each value (at x = 0, a value starting at 1 would
    # get a step of ~1e-8 and a zero Jacobian column)
    def values_at(x):
        return dict(zip(FITTED, scale * np.exp(np.asarray(x) - 1.0)))

    def residuals(x):
        values = values_at(x)
        got = outcomes(with_values(base, values))
        res = []
        for arm, target in MEDIAN_PFS.items():
            pfs, q, _ = got[arm]
            res += [np.log(pfs / target), 2 * (q - 0.5)]
        print("  " + ", ".join(f"{k} {v:.5g}" for k, v in values.items()) +
              f" -> |r| {np.linalg.norm(res):.2e}", flush=True)
        return res

    print(f"stage 1: medians and ORR of both arms, {CAL_SIZE} patients per arm")
    fit = least_squares(residuals, np.ones(len(FITTED)), diff_step=0.01, xtol=2e-3,
                        ftol=1e-3, max_nfev=MAX_TRIALS)
    fitted = values_at(fit.x)
    # Stage 2: 500 patients place the Isa-Pd median only to within about 1.5 months (its
    # Kaplan-Meier curve is flat there); k_isa, which acts on that arm alone, is adjusted on
    # the scenario's own 2,000-patient trial.
    print("stage 2: k_isa on the scenario's 2,000-patient Isa-Pd arm")
    fitted["k_isa"] = stage_two(scenario_trial, fitted)
    got = outcomes(with_values(base, fitted))
    print(f"\n{'value':10s} {'fitted':>10s} {'in file':>10s}")
    worst = 0.0
    for name in FITTED:
        rel = abs(fitted[name] / shipped[name] - 1)
        worst = max(worst, rel)
        print(f"{name:10s} {fitted[name]:10.5g} {shipped[name]:10.5g}"
              f"{'   <- differs' if rel > 0.01 else ''}")
    print(f"\n{CAL_SIZE} patients per arm, no accrual:")
    print(f"{'arm':8s} {'median PFS (mo)':>16s} {'target':>7s} {'ORR':>6s} {'target':>7s}")
    for arm, target in MEDIAN_PFS.items():
        pfs, _, orr = got[arm]
        print(f"{arm:8s} {pfs:16.2f} {target:7.2f} {orr:6.3f} {ORR[arm]:7.2f}")
    print(f"hazard ratio {got['hr']:.3f} (not fitted; published {HAZARD_RATIO})")
    print("\nfor params/icaria_population.toml: "
          + ", ".join(f"{k} = {v:.5g}" for k, v in fitted.items()))
    return 1 if worst > 0.01 else 0


if __name__ == "__main__":
    sys.exit(main())

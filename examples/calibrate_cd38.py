"""Calibrate the tumour-kill parameters of cd38_myeloma to ICARIA-MM (rerunnable).

What is fitted: k_pd and lambda_pd (Pd kill and acquired resistance), k_isa (isatuximab
cytotoxicity) and kdeg (CD38 turnover, which sets the capacity kdeg*R0*N of the target sink).
Everything else is fixed at its sourced value in params/.

Targets, for the typical IgG patient of params/isatuximab.toml (a typical patient stands in
for the median of the trial population; the virtual-population calibration of the
between-patient spread belongs to the population tools):

* progression-free survival equal to the median PFS of each arm (11.53 and 6.47 months);
* best M-protein reduction consistent with the response rates: in the Pd arm the median
  patient does not reach PR (ORR 35 %), so the target is 40 % (between MR and PR); in the
  Isa-Pd arm the median patient reaches PR but not VGPR (ORR 60 %, >= VGPR 31.8 %), so the
  target is 75 %.  These two response targets are our reading of the rates (assumption) and
  weigh half as much as the PFS targets;
* the trough before cycle 2 of the 10 mg/kg ICARIA schedule equal to that of the published
  popPK model (Fau et al. 2020, models/isatuximab_poppk.toml, simulated here; ~119 mg/L,
  inside the MODELS.md anchor of ~115-120 mg/L).  The sink capacity at baseline could be
  derived from the popPK Vm (kdeg = 0.092/h), but in the mechanistic model the sink shrinks
  with the tumour during cycle 1 while the popPK Vm is constant, so the cycle-1 exposure is
  the calibration target instead.  The steady-state (Q2W) trough and peak are not used:
  they are predictions (examples/cd38_icaria.py prints them).

Run:  python examples/calibrate_cd38.py        (about a minute)
It prints the fitted values next to those in the parameter files and each target next to
the model's value; it exits with status 1 if the files differ from the fit by more than 1 %.
"""

import sys

import numpy as np
from icaria import ARMS, DAYS_PER_MONTH, ISATUXIMAB, MEDIAN_PFS_MONTHS
from scipy.optimize import least_squares

import mechsim
from mechsim.analysis import best_response, progression_time

FITTED = {"k_pd": "1/day", "lambda_pd": "1/day", "k_isa": "1/day", "kdeg": "1/h"}
REDUCTION_TARGET = {"Isa-Pd": 0.75, "Pd": 0.40}
HORIZON = "1000 day"


def trough_before_cycle_2(res, concentration):
    """Value of ``concentration`` just before the first dose of cycle 2 (day 29)."""
    times, values = res.before_dose(concentration)
    return values[int(np.argmin(abs(times.to("day").magnitude - 28)))]


def poppk_trough():
    """Trough before cycle 2 of the published popPK model, in mg/L."""
    res = mechsim.simulate("isatuximab_poppk", ISATUXIMAB, until="29 day")
    return trough_before_cycle_2(res, "C").to("mg/L").magnitude


def outcomes(model, values):
    """(PFS in months, best M-protein reduction) per arm and the Isa-Pd trough before
    cycle 2 in mg/L, for fitted values ``values``."""
    overrides = {name: mechsim.Quantity(v, FITTED[name]) for name, v in values.items()}
    cycle_1 = mechsim.simulate(model, ARMS["Isa-Pd"], until="29 day", overrides=overrides)
    out = {"trough": trough_before_cycle_2(cycle_1, "C_mass").to("mg/L").magnitude}
    for arm, regimen in ARMS.items():
        res = mechsim.simulate(model, regimen, until=HORIZON, every="1 day",
                               overrides=overrides, rtol=1e-6, atol=1e-9)
        pfs = progression_time(res.time, res["M"]).to("day").magnitude / DAYS_PER_MONTH
        out[arm] = (pfs, best_response(res["M"]))
    return out


def residuals(log_values, model, trough_target):
    values = dict(zip(FITTED, np.exp(log_values)))
    out = outcomes(model, values)
    res = [np.log(out.pop("trough") / trough_target)]
    for arm, (pfs, reduction) in out.items():
        capped = min(pfs, 60.0)  # no progression within the horizon: a large, finite miss
        res.append(np.log(capped / MEDIAN_PFS_MONTHS[arm]))
        res.append(0.5 * (reduction - REDUCTION_TARGET[arm]) / REDUCTION_TARGET[arm])
    return res


def main() -> int:
    model = mechsim.load_model("cd38_myeloma")
    current = {n: model.parameters_by_name[n].value.to(u).magnitude for n, u in FITTED.items()}
    trough_target = poppk_trough()
    fit = least_squares(residuals, np.log(list(current.values())), args=(model, trough_target),
                        x_scale=1.0, diff_step=1e-3, xtol=1e-10, ftol=1e-10)
    fitted = dict(zip(FITTED, np.exp(fit.x)))
    print("parameter      fitted        in params/   unit")
    agree = True
    for name, unit in FITTED.items():
        rel = abs(current[name] / fitted[name] - 1)
        agree &= rel <= 0.01
        print(f"{name:<12} {fitted[name]:10.4g}   {current[name]:10.4g}     {unit}"
              f"{'' if rel <= 0.01 else '   <- update params/'}")
    print("\ntarget                         model (fitted)")
    out = outcomes(model, fitted)
    trough = out.pop("trough")
    print(f"trough before cycle 2 {trough_target:5.1f} mg/L (popPK)   {trough:5.1f} mg/L")
    for arm, (pfs, reduction) in out.items():
        print(f"{arm:<7} median PFS {MEDIAN_PFS_MONTHS[arm]:5.2f} months   {pfs:5.2f} months")
        print(f"{arm:<7} best M-protein fall {REDUCTION_TARGET[arm]:4.0%} (assumed)   "
              f"{reduction:4.0%}")
    print(f"\nfit cost {fit.cost:.3g} after {fit.nfev} evaluations")
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())

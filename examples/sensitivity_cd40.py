"""Which parameters drive IL-6 suppression by iscalimab? (model cd40_apc)

3 mg/kg IV every 4 weeks for 12 weeks in a 70 kg adult.  Two metrics: IL-6 averaged over
the 12 weeks and IL-6 at week 12, the end of the third dosing interval (no fourth dose
yet), both in % of baseline.

1. Local: normalised sensitivity coefficients S = (dM/M)/(dp/p) for the PK, drug and
   ligand binding, CD40 turnover and IL-6 parameters (two runs each).
2. Global: first-order and total Sobol indices over ranges of the six least certain of
   them: the CD40-dependent share of IL-6 production f_IL6 (0.3-0.8, the range given with
   the parameter, uniform) and, from half to twice their values (log-uniform), CD40
   turnover, drug-CD40 internalisation, drug affinity, CD40 amount and linear clearance.

Run:  python examples/sensitivity_cd40.py
      (writes sensitivity_cd40_tornado.png and sensitivity_cd40_sobol.png; under a minute
      with 2 processes)
"""

import matplotlib

matplotlib.use("Agg")
import time

import matplotlib.pyplot as plt

from mechsim.analysis.sensitivity import local_sensitivity, ranges_from_params, sobol_indices
from mechsim.plotting import save_figure

MODEL = "cd40_apc"
REGIMEN = "3 mg/kg iv every 4 weeks"
UNTIL = "12 weeks"
EVERY = "2 h"            # IL-6 half-life is 3 h: resolve the fall after each dose
METRICS = ["mean(IL6_rel, 0 day, 12 weeks)", "value(IL6_rel, 12 weeks)"]
LOCAL = ["f_IL6", "t_half_IL6", "KD_D", "kon_D", "kint_D", "R0", "kdeg_R", "L0", "KD_L",
         "kint_L", "kdeg_L", "CL", "V1", "Q", "WT"]
N_SOBOL = 256
WORKERS = 2


def main():
    start = time.perf_counter()
    print(f"{MODEL}, 70 kg adult, iscalimab {REGIMEN}, {UNTIL}\n")

    local = local_sensitivity(MODEL, REGIMEN, METRICS, LOCAL, until=UNTIL, every=EVERY,
                              workers=WORKERS)
    for result in local:
        print(result, "\n")
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.2))
    for ax, result in zip(axes, local):
        result.plot(ax=ax)
    fig.suptitle("Local sensitivity of IL-6 suppression by iscalimab (cd40_apc): % change of "
                 "IL-6 (% of baseline) per % change of each parameter", fontsize=10)
    fig.tight_layout()
    save_figure(fig, "sensitivity_cd40_tornado.png")
    print("wrote sensitivity_cd40_tornado.png\n")

    ranges = {"f_IL6": (0.3, 0.8),
              **ranges_from_params(MODEL, ["kdeg_R", "kint_D", "KD_D", "R0", "CL"], factor=2)}
    sobol = sobol_indices(MODEL, REGIMEN, METRICS, ranges, until=UNTIL, every=EVERY,
                          n=N_SOBOL, seed=2020, scale={"f_IL6": "linear"}, workers=WORKERS)
    for result in sobol:
        print(result, "\n")
    fig, axes = plt.subplots(1, 2, figsize=(14, 5), sharey=True)
    for ax, result in zip(axes, sobol):
        result.plot(ax=ax)
    axes[1].set_ylabel("")
    fig.suptitle(f"Sobol indices of IL-6 suppression by iscalimab over parameter ranges "
                 f"({sobol[0].runs} runs, n = {N_SOBOL})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, "sensitivity_cd40_sobol.png")
    print("wrote sensitivity_cd40_sobol.png")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":  # worker processes import this file
    main()

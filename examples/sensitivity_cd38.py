"""Which parameters drive the M-protein response to Isa-Pd? (model cd38_myeloma)

Isatuximab + pomalidomide/dexamethasone on the ICARIA-MM schedule in the typical IgG
myeloma patient, 24 weeks.  Two metrics: the M-protein nadir and the M-protein at week 24.

1. Local: normalised sensitivity coefficients S = (dM/M)/(dp/p) at the calibrated values,
   for the PK, CD38-binding, kill, NK, backbone and disease parameters (two runs each).
2. Global: first-order and total Sobol indices over ranges of the five parameters that
   matter most locally and are least certain: the depth of NK fratricide (0.7-0.95,
   uniform) and the isatuximab kill, Pd kill, Pd resistance and tumour growth rates
   (each from half to twice its value, log-uniform).  n = 32: 224 runs, so the
   intervals are wide; raise N_SOBOL for a firmer answer.

Run:  python examples/sensitivity_cd38.py
      (writes sensitivity_cd38_tornado.png and sensitivity_cd38_sobol.png; about 1.5 min
      with 2 processes)
"""

import matplotlib

matplotlib.use("Agg")
import time

import matplotlib.pyplot as plt
from icaria import ARMS

from mechsim.analysis.sensitivity import local_sensitivity, ranges_from_params, sobol_indices
from mechsim.plotting import save_figure

MODEL = "cd38_myeloma"
REGIMEN = ARMS["Isa-Pd"]
UNTIL = "24 weeks"       # the nadir of the typical patient is at week 20
METRICS = ["nadir(M)", "value(M, 24 weeks)"]
LOCAL = ["k_adcc", "k_adcp", "k_cdc", "k_apo", "RO50", "hill", "NK_max_depletion", "kout_NK",
         "pom_NK_number", "pom_NK_activity", "k_pd", "lambda_pd", "ED50_pom", "kg", "kel_M",
         "M0", "CLinf_ref", "Q_bm", "KD", "R0", "kdeg"]
N_SOBOL = 32
WORKERS = 2


def main():
    start = time.perf_counter()
    print(f"{MODEL}, typical IgG myeloma patient, Isa-Pd: {REGIMEN}\n")

    local = local_sensitivity(MODEL, REGIMEN, METRICS, LOCAL, until=UNTIL, every="1 day",
                              workers=WORKERS)
    for result in local:
        print(result, "\n")
    fig, axes = plt.subplots(1, 2, figsize=(13, 6.5))
    for ax, result in zip(axes, local):
        result.plot(ax=ax)
    fig.suptitle("Local sensitivity of the M-protein under Isa-Pd (cd38_myeloma, typical "
                 "patient): % change of the metric per % change of each parameter",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, "sensitivity_cd38_tornado.png")
    print("wrote sensitivity_cd38_tornado.png\n")

    ranges = {"NK_max_depletion": (0.7, 0.95),
              **ranges_from_params(MODEL, ["k_adcp", "k_pd", "lambda_pd", "kg", "Q_bm"],
                                 factor=2)}
    sobol = sobol_indices(MODEL, REGIMEN, METRICS, ranges, until=UNTIL, every="1 day",
                          n=N_SOBOL, seed=2019, scale={"NK_max_depletion": "linear"},
                          workers=WORKERS)
    for result in sobol:
        print(result, "\n")
    fig, axes = plt.subplots(1, 2, figsize=(13, 5), sharey=True)
    for ax, result in zip(axes, sobol):
        result.plot(ax=ax)
    axes[1].set_ylabel("")
    fig.suptitle(f"Sobol indices of the M-protein under Isa-Pd over parameter ranges "
                 f"({sobol[0].runs} runs, n = {N_SOBOL})", fontsize=10)
    fig.tight_layout()
    save_figure(fig, "sensitivity_cd38_sobol.png")
    print("wrote sensitivity_cd38_sobol.png")
    print(f"({time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":  # worker processes import this file
    main()

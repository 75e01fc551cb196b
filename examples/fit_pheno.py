"""Fit the classic neonatal phenobarbital data (pooled, maximum likelihood).

One compartment, IV bolus doses, clearance and volume proportional to body weight
(models/phenobarbital.toml), a proportional residual error; the 59 infants' data are pooled,
so between-infant variability ends up in the residual error.  Prints the
estimates with standard errors and 95 % intervals, a profile-likelihood interval, and writes
the diagnostic figures and the fitted parameter file into pheno_fit/ (replaced if present).

Run:  python examples/fit_pheno.py
"""

import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import mechsim
from mechsim.estimation.figures import write_diagnostics
from mechsim.estimation.vpc import vpc
from mechsim.plotting import save_figure

UNITS = {"TIME": "h", "AMT": "mg", "DV": "mg/L", "WGT": "kg"}
OUT = Path("pheno_fit")

data = mechsim.read_dataset("pheno", units=UNITS, route="iv", observe="C")
print(data)
started = time.perf_counter()
result = mechsim.fit("phenobarbital", data, estimate=["CL_per_kg", "V_per_kg"],
                     error="proportional")
print(result)
print(result.profile("CL_per_kg"))
print(f"correlation of CL_per_kg and V_per_kg: {result.correlation[0, 1]:.3f}")

shutil.rmtree(OUT, ignore_errors=True)
OUT.mkdir()
result.to_csv(OUT / "estimates.csv")
result.to_params(OUT / "fitted_params.toml")
for path in write_diagnostics(result, data, "phenobarbital", OUT):
    print(f"wrote {path}")
check = vpc("phenobarbital", data, params=[OUT / "fitted_params.toml"], n=200, seed=1)
ax = check.plot()
ax.figure.tight_layout()
save_figure(ax.figure, OUT / "vpc.png")
print(f"wrote {OUT / 'vpc.png'} ({int(check.outside().sum())} of {check.outside().size} "
      "observed percentiles outside the simulated 90 % intervals)")
print(f"total {time.perf_counter() - started:.1f} s")

"""Population pharmacokinetics of phenobarbital in neonates: FOCEI on the classic dataset.

The neonatal phenobarbital data (Grasela & Donn 1985; 59 pre-term infants, 155 serum
concentrations; examples/data/README.md) with the classic model of NONMEM's users guide:
one compartment, IV bolus doses; clearance and volume proportional to body weight, the
volume raised by a factor (1 + V_apgar_low) in infants with a 5-minute Apgar score below 5;
log-normal between-infant variability on both; proportional residual error
(models/phenobarbital.toml, starting values in params/phenobarbital_population.toml).

mechsim estimates it by first-order conditional estimation with interaction (FOCEI) and
prints its estimates next to NONMEM's for the same model and data (NONMEM 7, METHOD=1
INTERACTION, the pheno_real run of pharmpy's test data).  It writes the fitted population,
the per-infant empirical Bayes estimates, PRED/IPRED/CWRES and the diagnostic figures
(including a VPC simulated from the fitted population) into pheno_population_fit/.

Run:  python examples/fit_pheno_population.py   (under a minute)
"""

import math
import shutil
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # no screen needed

import mechsim
from mechsim.estimation.population_figures import write_population_diagnostics

started = time.perf_counter()
data = mechsim.read_dataset("pheno", units={"TIME": "h", "AMT": "mg", "DV": "mg/L",
                                            "WGT": "kg"}, route="iv", observe="C")
print(data)
result = mechsim.fit("phenobarbital", data, population="phenobarbital_population")
print(result)

# NONMEM's estimates and standard errors for the same model and data
nonmem = {"CL_per_kg": (0.00469555, 2.10036e-4), "V_per_kg": (0.984258, 2.68952e-2),
          "V_apgar_low": (0.15892, 8.37623e-2), "omega2(CL_per_kg)": (0.0293508, 1.34153e-2),
          "omega2(V_per_kg)": (0.027906, 7.47651e-3)}
b = result.estimates["C.proportional"].magnitude
b_se = result.standard_errors["C.proportional"].magnitude
print("\nmechsim against NONMEM (FOCEI):")
print(f"  {'':<20}{'mechsim':>12}{'NONMEM':>12}{'SE mechsim':>12}{'SE NONMEM':>12}")
for name, (value, se) in nonmem.items():
    print(f"  {name:<20}{result.estimates[name].magnitude:>12.6g}{value:>12.6g}"
          f"{result.standard_errors[name].magnitude:>12.4g}{se:>12.4g}")
print(f"  {'sigma2 (= b^2)':<20}{b * b:>12.6g}{0.013241:>12.6g}{2 * b * b_se:>12.4g}"
      f"{2.2794e-3:>12.4g}")
print(f"  {'OFV':<20}{result.ofv:>12.4f}{586.276056:>12.4f}")

out = Path("pheno_population_fit")
if out.exists():
    shutil.rmtree(out)
out.mkdir()
result.to_population(out / "fitted_population.toml")
for path in result.write_tables(out):
    print(f"wrote {path}")
print(f"wrote {out / 'fitted_population.toml'}")
for path in write_population_diagnostics(result, data, "phenobarbital", out,
                                         out / "fitted_population.toml"):
    print(f"wrote {path}")
cv = {n: math.sqrt(math.expm1(result.estimates[f"omega2({n})"].magnitude))
      for n in result.random}
print(f"between-infant CV: CL {cv['CL_per_kg']:.1%}, V {cv['V_per_kg']:.1%}")
print(f"total {time.perf_counter() - started:.1f} s")

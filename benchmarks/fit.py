"""Fitting 1,000 observations with a two-compartment model: mechsim.fit against the fit a
competent scipy user writes by hand, one thread against one thread.

The problem
    Model isatuximab_poppk (two compartments, time-varying linear plus Michaelis-Menten
    clearance; Fau et al. 2020), 10 mg/kg iv over 1 h weekly x 4.  50 virtual patients with
    log-normal spread (CV 30 % on CLinf_ref, 20 % on V1_ref, seed 7), 20 samples each from
    day 0.5 to day 50, 10 % proportional noise: 1,000 observations, written as a
    NONMEM-style CSV and read back with ``mechsim.read_dataset``.  Estimated: CLinf_ref,
    V1_ref, Q_ref, V2_ref and the proportional error (pooled: the spread between patients
    ends in the residual error), from the same starting values for both.

How each is run
    mechsim.fit   ``mechsim.fit(..., workers=1)``: L-BFGS-B on log parameters with exact
                  gradients from the forward sensitivity equations, compiled NDF engine.
    by hand       the same likelihood, predictions from ``mechsim.simulate_many(...,
                  workers=1)`` at the observation times, minimised by
                  ``scipy.optimize.minimize(method="L-BFGS-B")`` on the same log parameters
                  with scipy's default finite-difference gradient (what one gets without
                  writing sensitivities).  It reuses mechsim's solver, so the ratio is the
                  worth of exact gradients, not of the solver.

What is printed
    Thread CPU time, model solves (a solve is one subject's trajectory; with sensitivities
    it carries 5 extra sets of states), -2 log L at the optimum for both, and the ratio.

Run:  python benchmarks/fit.py
"""

import csv
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

import mechsim

MODEL = "isatuximab_poppk"
REGIMEN = "10 mg/kg iv over 1 h every 7 days x 4"
SUBJECTS, SAMPLES = 50, 20
ESTIMATE = ["CLinf_ref", "V1_ref", "Q_ref", "V2_ref"]
START = {"CLinf_ref": "0.02 L/h", "V1_ref": "3 L", "Q_ref": "0.03 L/h", "V2_ref": "5 L"}
UNITS = {"CLinf_ref": "L/h", "V1_ref": "L", "Q_ref": "L/h", "V2_ref": "L"}


def simulated_dataset(folder: Path) -> Path:
    rng = np.random.default_rng(7)
    times = np.linspace(0.5, 50, SAMPLES)
    cl = 0.00955 * np.exp(0.3 * rng.standard_normal(SUBJECTS))
    v1 = 4.47 * np.exp(0.2 * rng.standard_normal(SUBJECTS))
    batch = mechsim.simulate_many(
        MODEL, REGIMEN, parameters={"CLinf_ref": mechsim.Quantity(cl, "L/h"),
                                    "V1_ref": mechsim.Quantity(v1, "L")},
        until="51 day", times=mechsim.Quantity(times, "day"))
    conc = batch["C"].to("mg/L").magnitude
    path = folder / "two_compartment.csv"
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["ID", "TIME [day]", "AMT [mg/kg]", "DUR [h]", "ADDL", "II [day]",
                      "EVID", "DV [mg/L]"])
        for i in range(SUBJECTS):
            out.writerow([i + 1, 0, 10, 1, 3, 7, 1, "."])
            for t, c in zip(times, conc[i]):
                out.writerow([i + 1, t, ".", ".", ".", ".", 0,
                              c * (1 + 0.1 * rng.standard_normal())])
    return path


class ByHand:
    """-2 log L of a proportional error from simulate_many predictions."""

    def __init__(self, data):
        self.data = data
        self.model = mechsim.load_model(MODEL)
        self.times = np.unique(np.concatenate([s.times.to("day").magnitude
                                               for s in data.subjects]))
        self.y = [s.values for s in data.subjects]
        self.where = [np.searchsorted(self.times, s.times.to("day").magnitude)
                      for s in data.subjects]
        self.regimens = [s.regimen for s in data.subjects]
        self.solves = 0

    def __call__(self, x):
        values = np.exp(x)
        pars = {n: mechsim.Quantity(np.full(len(self.regimens), v), UNITS[n])
                for n, v in zip(ESTIMATE, values[:4])}
        try:
            batch = mechsim.simulate_many(self.model, self.regimens, parameters=pars,
                                          until=f"{self.times.max()} day",
                                          times=mechsim.Quantity(self.times, "day"),
                                          workers=1, progress=False)
        except mechsim.MechsimError:
            return np.inf
        self.solves += len(self.regimens)
        conc = batch["C"].to("mg/L").magnitude
        f = np.concatenate([conc[i, w] for i, w in enumerate(self.where)])
        y = np.concatenate(self.y)
        s2 = (values[4] * f) ** 2 + 1e-300
        return float(np.sum(np.log(2 * np.pi * s2) + (y - f) ** 2 / s2))


def main():
    with tempfile.TemporaryDirectory() as tmp:
        data = mechsim.read_dataset(simulated_dataset(Path(tmp)), route="iv", observe="C")
    print(data)
    mechsim.fit(MODEL, data, estimate=ESTIMATE[:1], start={"CLinf_ref": "0.02 L/h"},
                workers=1)  # compile the sensitivity model outside the timing

    cpu = time.thread_time()
    result = mechsim.fit(MODEL, data, estimate=ESTIMATE, start=START, workers=1)
    fit_cpu = time.thread_time() - cpu
    print(result)

    objective = ByHand(data)
    x0 = np.log([mechsim.Quantity(START[n]).to(UNITS[n]).magnitude for n in ESTIMATE]
                + [0.1])
    objective(x0)  # warm the compiled model
    objective.solves = 0
    cpu = time.thread_time()
    hand = minimize(objective, x0, method="L-BFGS-B")
    hand_cpu = time.thread_time() - cpu

    print()
    print(f"{'':12}{'thread CPU s':>14}{'solves':>10}{'-2 log L':>12}")
    print(f"{'mechsim.fit':12}{fit_cpu:>14.2f}{result.solves:>10}{result.minus2ll:>12.3f}")
    print(f"{'by hand':12}{hand_cpu:>14.2f}{objective.solves:>10}{hand.fun:>12.3f}"
          f"   ({hand.message})")
    print(f"by hand / mechsim.fit: {hand_cpu / fit_cpu:.2f}x CPU")


if __name__ == "__main__":
    main()

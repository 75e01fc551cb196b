"""A population (FOCEI) fit of the neonatal phenobarbital data: its time and model solves,
with the exact outer gradient against differences of the objective, one process each.

The problem
    59 infants, 155 concentrations (examples/data/pheno.csv); the classic model (one
    compartment, IV bolus; CL and V per kg, V raised for Apgar < 5; log-normal variability
    on both; proportional error): 6 estimated values, from params/phenobarbital_population.

How each is run (both on one process, ``workers=1``; same objective, same starting values,
same L-BFGS-B settings)
    exact gradient   ``mechsim.fit(..., population=..., workers=1)``: L-BFGS-B on the
                     gradient of mechsim.estimation.focei_gradient, then the covariance step
                     (central differences of that gradient).
    differences      the same objective (``PopulationProblem.evaluate``) with a gradient by
                     forward differences of it, one evaluation per parameter (NONMEM's way,
                     and mechsim's before), and no covariance step.  Without a gradient its
                     inner problems start from the last etas (not from predicted ones) and
                     from the FOCE Hessian.

Also: the exact-gradient fit on 2 worker processes (wall time).  No other population
estimator runs on this machine (NONMEM and Monolix are closed, nlmixr2 is R, Pumas Julia),
so there is no peer in this run; NONMEM's estimates are compared with in
examples/fit_pheno_population.py.

Run:  python benchmarks/population_fit.py
"""

import math
import time

import numpy as np
from scipy.optimize import minimize

import mechsim
from mechsim.estimation.focei import _Variables
from mechsim.estimation.population_fit import population_problem

UNITS = {"TIME": "h", "AMT": "mg", "DV": "mg/L", "WGT": "kg"}


def exact(data, workers):
    wall, cpu = time.perf_counter(), time.thread_time()
    res = mechsim.fit("phenobarbital", data, population="phenobarbital_population",
                      workers=workers)
    return res, time.perf_counter() - wall, time.thread_time() - cpu


def differences(data):
    wall, cpu = time.perf_counter(), time.thread_time()
    setup = population_problem("phenobarbital", data, "phenobarbital_population", workers=1)
    variables = _Variables(setup.problem, setup.pairs)
    x0 = variables.pack(setup.theta0, setup.omega0, setup.errors0, [])
    evaluations = 0

    def value(x, keep=False):
        nonlocal evaluations
        evaluations += 1
        found = variables.evaluate(x, keep=keep)
        return math.inf if found is None else found.total

    def value_and_gradient(x):
        f0 = value(x, keep=True)
        grad = np.empty_like(x)
        for j in range(x.size):
            h = 1e-5 * max(1.0, abs(x[j]))
            step = x.copy()
            step[j] += h
            grad[j] = (value(step) - f0) / h
        return f0, grad

    value(x0, keep=True)
    result = minimize(value_and_gradient, x0, jac=True, method="L-BFGS-B",
                      options={"maxiter": 200, "ftol": 1e-11, "gtol": 1e-3})
    ofv = result.fun - setup.problem.problem.n_observations * math.log(2 * math.pi)
    return (ofv, setup.problem.solves, evaluations, time.perf_counter() - wall,
            time.thread_time() - cpu, result.message)


def main():
    data = mechsim.read_dataset("pheno", units=UNITS, route="iv", observe="C")
    exact(data, 1)  # compiles and caches the model: neither arm pays for it below
    res1, wall1, cpu1 = exact(data, 1)
    print(res1)
    res2, wall2, _ = exact(data, 2)
    ofv_d, solves_d, evals_d, wall_d, cpu_d, message = differences(data)
    print()
    print(f"{'':<36}{'wall s':>8}{'thread CPU s':>14}{'solves':>9}{'evaluations':>13}"
          f"{'OFV':>11}")
    print(f"{'exact gradient, 1 process':<36}{wall1:>8.2f}{cpu1:>14.2f}{res1.solves:>9,}"
          f"{res1.evaluations:>13}{res1.ofv:>11.4f}")
    print(f"{'exact gradient, 2 worker processes':<36}{wall2:>8.2f}{'':>14}{res2.solves:>9,}"
          f"{res2.evaluations:>13}{res2.ofv:>11.4f}")
    print(f"{'differences, 1 process (no cov.)':<36}{wall_d:>8.2f}{cpu_d:>14.2f}"
          f"{solves_d:>9,}{evals_d:>13}{ofv_d:>11.4f}   ({message})")
    print(f"differences (estimation only) / exact gradient (estimation and covariance): "
          f"{cpu_d / cpu1:.2f}x thread CPU")


if __name__ == "__main__":
    main()

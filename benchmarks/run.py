"""Population workloads W1-W4 (cd38_myeloma, ICARIA-MM isatuximab schedule, 365 days,
daily output, rtol 1e-8, atol 1e-12 on every state) timed side by side in one run:

* mechsim: ``simulate(method="NDF")`` for one run, ``simulate_many`` for many (compiled NDF
  engine, threads over all cores; the single-thread time is reported too);
* naive: the model's equations typed in by hand as a Python function and integrated the way a
  user would write it: scipy ``solve_ivp`` LSODA, piecewise between dose events, patient by
  patient (no Jacobian);
* libRoadRunner (CVODE) on mechsim's SBML export of the same model and regimen, one
  simulation per patient in one process, when it is installed.

Every tool gets the same parameter values, doses, output times and tolerances; each
workload's results are compared across tools in the same run.  The naive baseline is too
slow to run 1,000 patients within a benchmark, so it runs a random subset and its time is
scaled to the full count (marked "scaled" in the table).

Run:  python benchmarks/run.py                (about 8 minutes on 2 cores)
      python benchmarks/run.py --quick        (smaller counts, a smoke test, ~1 minute)
Writes benchmarks/results.json (override with --json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import numpy as np
from scipy.integrate import solve_ivp

import mechsim
from mechsim.compile import compile_model

MODEL = "cd38_myeloma"
ISATUXIMAB = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
              "then on days 1,15 of 28-day cycles")
UNTIL = 365.0
RTOL, ATOL = 1e-8, 1e-12
VARIED = ("CLinf_ref", "V1_ref", "kg", "k_isa")  # log-normal, CV 30 %
SEED = 20190406
GRID = np.arange(0.0, UNTIL + 0.5, 1.0)


# ---- inputs shared by every tool ---------------------------------------------------------------
def typical():
    """Canonical parameter values (day, nmol, L, g) of the typical patient, by name."""
    model = mechsim.load_model(MODEL)
    cm = compile_model(model)
    return dict(zip(cm.parameter_names, cm.parameter_vector(model.parameters_by_name)))


def population(n: int, seed: int = SEED) -> dict[str, np.ndarray]:
    """Canonical per-patient values of the varied parameters: median = typical, CV 30 %."""
    rng = np.random.default_rng(seed)
    sd = math.sqrt(math.log(1 + 0.3 ** 2))
    base = typical()
    return {name: base[name] * np.exp(rng.normal(0.0, sd, n)) for name in VARIED}


def canonical_units() -> dict[str, str]:
    """The unit each canonical value is in, for handing values to mechsim with units."""
    cm = compile_model(mechsim.load_model(MODEL))
    from mechsim.units import canonical_unit
    return {n: str(canonical_unit(mechsim.Quantity(1.0, u)))
            for n, u in zip(cm.parameter_names, cm.parameter_units)}


def dose_regimen(mg_per_kg: float) -> str:
    return ISATUXIMAB.replace("10 mg/kg", f"{mg_per_kg:.6g} mg/kg")


# ---- mechsim ---------------------------------------------------------------------------------
_LOADED = {}


def model():
    """The model, loaded once (as a user would; roadrunner likewise loads its model once)."""
    if "model" not in _LOADED:
        _LOADED["model"] = mechsim.load_model(MODEL)
    return _LOADED["model"]


def mechsim_many(n_patients=None, doses=None, workers=None):
    units = canonical_units()
    if doses is not None:
        return mechsim.simulate_many(model(), [dose_regimen(d) for d in doses], until="365 day",
                                     times=GRID * mechsim.ureg.day, rtol=RTOL, atol=ATOL,
                                     workers=workers)
    pars = {k: mechsim.Quantity(v, units[k]) for k, v in population(n_patients).items()}
    return mechsim.simulate_many(model(), ISATUXIMAB, parameters=pars, until="365 day",
                                 times=GRID * mechsim.ureg.day, rtol=RTOL, atol=ATOL,
                                 workers=workers)


def mechsim_one(method="NDF"):
    return mechsim.simulate(model(), ISATUXIMAB, until="365 day", times=GRID * mechsim.ureg.day,
                            rtol=RTOL, atol=ATOL, method=method)


# ---- the naive baseline: equations typed in by hand --------------------------------------------
STATES = ("C", "Cp", "R", "RC", "N", "NK", "M", "A_pom", "S_pd", "drug_cleared",
          "drug_internalised", "drug_with_dead_cells")


def naive_rhs(t, y, q, infusion):
    """d/dt of the CD38 model in day, nM, nmol, L, g; q: parameter dict; infusion: nmol/day."""
    C, Cp, R, RC, N, NK, M, A_pom, S_pd, _, _, _ = y
    w = q["WT"] / q["WT_ref"]
    V1, V2 = q["V1_ref"] * w ** q["e_V1"], q["V2_ref"] * w ** q["e_V2"]
    Q, CLinf = q["Q_ref"] * w ** q["e_Q"], q["CLinf_ref"] * w ** q["e_CL"]
    CL = CLinf * (1 + (q["r0"] - 1) * M / q["M0"])
    RO = RC / (R + RC)
    E_isa = max(RO, 0.0) ** q["hill"] / (max(RO, 0.0) ** q["hill"] + q["RO50"] ** q["hill"])
    E_pom = A_pom / (A_pom + q["ED50_pom"] / q["MW_pom"])
    kill = q["k_isa"] * E_isa * NK + q["k_pd"] * E_pom * S_pd
    kdep = q["kout_NK"] * q["NK_max_depletion"] / (1 - q["NK_max_depletion"])
    binding = q["kon"] * C * R - q["KD"] * q["kon"] * RC
    distribution = Q * (C - Cp)
    return [
        (infusion - distribution - CL * C) / V1 - binding,
        distribution / V2,
        q["kdeg"] * q["R0"] * N - q["kdeg"] * R - binding - kill * R,
        binding - q["kint"] * RC - kill * RC,
        q["kg"] * N - kill * N,
        q["kout_NK"] - q["kout_NK"] * NK - kdep * C / (C + q["KD"]) * NK,
        q["kel_M"] * q["M0"] * N - q["kel_M"] * M,
        -q["ke_pom"] * A_pom,
        -q["lambda_pd"] * E_pom * S_pd,
        CL * C,
        q["kint"] * RC * V1,
        kill * RC * V1,
    ]


def naive_infusions(q, mg_per_kg=10.0):
    """(start, end, nmol/day) of each 1-hour infusion of the ICARIA schedule before day 365."""
    starts = [0, 7, 14, 21] + [d for c in range(28, 365, 28) for d in (c, c + 14) if d < 365]
    # canonical units: WT in g, MW in g/nmol; mg/kg is 1e-6 g per g of body weight
    amount = mg_per_kg * 1e-6 * q["WT"] / q["MW_isa"]
    return [(s, s + 1 / 24, amount * 24) for s in starts]


def naive_run(q, mg_per_kg=10.0):
    infusions = naive_infusions(q, mg_per_kg)
    edges = sorted({0.0, UNTIL, *[e for s, f, _ in infusions for e in (s, f)]})
    y = [0, 0, q["R0"], 0, 1, 1, q["M0"], 0, 1, 0, 0, 0]
    out = np.empty((len(STATES), GRID.size))
    for a, b in pairwise(edges):
        rate = sum(r for s, f, r in infusions if s <= a < f)
        wanted = (a <= GRID) & (b > GRID)
        sol = solve_ivp(naive_rhs, (a, b), y, method="LSODA",
                        t_eval=np.append(GRID[wanted], b), args=(q, rate), rtol=RTOL,
                        atol=ATOL)
        if not sol.success:
            raise RuntimeError(sol.message)
        out[:, wanted] = sol.y[:, :-1]
        y = sol.y[:, -1]
    out[:, -1] = y
    return out


# ---- libRoadRunner -----------------------------------------------------------------------------
def roadrunner_model(regimen=ISATUXIMAB):
    import roadrunner

    from mechsim.io.sbml import export_sbml
    model = mechsim.load_model(MODEL)
    rr = roadrunner.RoadRunner(export_sbml(model, regimen, until="365 day"))
    rr.integrator.relative_tolerance = RTOL
    rr.integrator.absolute_tolerance = ATOL
    rr.integrator.maximum_num_steps = 1_000_000
    rr.timeCourseSelections = [f"[{n}]" if model.is_concentration(n) or n == "M" else n
                               for n in STATES]
    return rr


def roadrunner_run(rr, values=None):
    rr.resetAll()
    for name, value in (values or {}).items():
        rr[name] = value
    if values:
        # The central volume is an SBML initial assignment (V1 from V1_ref and WT), which
        # roadrunner evaluated at reset, before the new V1_ref.  Setting init(V1_ref) instead
        # re-evaluates it but regenerates the model (0.7 s per patient), so the volume and
        # the one non-zero initial concentration in it (CD38, R0) are set directly.
        rr["central"] = rr["V1"]
        rr["[R]"] = rr["R0"]
    return np.asarray(rr.simulate(0, UNTIL, GRID.size)).T


# ---- measurement helpers ------------------------------------------------------------------------
def timed(fn, repeat=1):
    """(median seconds, last result)."""
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def gap(mine, theirs, floor=1e-9):
    """Largest relative difference where |mine| > floor (the issue's agreement measure).

    It is dominated by values just above the floor, where atol (1e-12) rather than rtol
    bounds the error, e.g. free drug at 6e-7 nM after washout; :func:`peak_gap` is the
    difference relative to each state's largest value.
    """
    big = np.abs(mine) > floor
    return float(np.max(np.abs(mine - theirs)[big] / np.abs(mine)[big])) if big.any() else 0.0


def peak_gap(mine, theirs):
    """Largest difference relative to the state's peak over the run (per state, per run)."""
    peak = np.max(np.abs(mine), axis=-1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.where(peak > 0, np.abs(mine - theirs) / peak, 0.0)
    return float(np.max(rel))


def agree(pairs):
    """(max relative gap above 1e-9, max peak-relative gap) over (mine, theirs) pairs."""
    pairs = list(pairs)
    return [max(gap(a, b) for a, b in pairs), max(peak_gap(a, b) for a, b in pairs)]


def has_roadrunner() -> bool:
    try:
        import roadrunner  # noqa: F401
    except ImportError:
        return False
    return True


def peak_memory_subprocess(n: int, workers: int) -> tuple[float, float]:
    """(seconds, peak resident MB) of simulate_many over n patients in a fresh process."""
    here = str(Path(__file__).parent)
    code = (f"import sys, time, resource; sys.path.insert(0, {here!r}); import run; "
            f"t0 = time.perf_counter(); b = run.mechsim_many({n}, workers={workers}); "
            "t = time.perf_counter() - t0; "
            "print(t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    seconds, mb = done.stdout.split()[-2:]
    return float(seconds), float(mb)


# ---- the workloads ------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    ap.add_argument("--naive-sample", type=int, default=None,
                    help="patients the naive baseline runs in W2/W3 (time scaled to the count)")
    ap.add_argument("--json", default=str(Path(__file__).with_name("results.json")))
    args = ap.parse_args(argv)
    n3, n4 = (100, 400) if args.quick else (1000, 10_000)
    n_doses = 10 if args.quick else 50
    sample = args.naive_sample or (3 if args.quick else 10)
    cores = os.cpu_count() or 1
    rr_ok = has_roadrunner()
    rows, agreement = [], {}
    q0 = typical()

    # warm-up: numba compilation (cached on disk after the first ever run) and model loading
    t_first, _ = timed(mechsim_one)
    print(f"mechsim first call (loads, compiles, runs): {t_first:.2f} s", flush=True)

    # W1
    t_m, one = timed(mechsim_one, repeat=7)
    t_lsoda, _ = timed(lambda: mechsim_one("LSODA"), repeat=3)
    t_n, naive_one = timed(lambda: naive_run(q0), repeat=3)
    agreement["W1 naive"] = agree([(one.states, naive_one)])
    row = {"workload": "W1: 1 simulation", "mechsim": t_m, "mechsim_1_thread": t_m,
           "mechsim_lsoda": t_lsoda, "naive": t_n, "naive_scaled": False}
    if rr_ok:
        rr = roadrunner_model()
        t_r, rr_one = timed(lambda: roadrunner_run(rr), repeat=7)
        row["roadrunner"] = t_r
        agreement["W1 roadrunner"] = agree([(one.states, rr_one)])
    rows.append(row)
    print(row, flush=True)

    # W2: dose sweep
    doses = np.geomspace(0.01, 100, n_doses)
    t_m, sweep = timed(lambda: mechsim_many(doses=doses))
    t_m1, _ = timed(lambda: mechsim_many(doses=doses, workers=1))
    picks = np.linspace(0, n_doses - 1, sample).round().astype(int)
    t_n, naive_sweep = timed(lambda: [naive_run(q0, doses[i]) for i in picks])
    agreement["W2 naive"] = agree((sweep.states[i], s) for i, s in zip(picks, naive_sweep))
    row = {"workload": f"W2: {n_doses} doses 0.01-100 mg/kg", "mechsim": t_m,
           "mechsim_1_thread": t_m1, "naive": t_n * n_doses / sample, "naive_scaled": True}
    if rr_ok:
        def rr_sweep():
            # each dose level is its own SBML model (doses are events): load time included
            return [roadrunner_run(roadrunner_model(dose_regimen(d))) for d in doses]
        t_r, rr_out = timed(rr_sweep)
        row["roadrunner"] = t_r
        agreement["W2 roadrunner"] = agree((sweep.states[i], rr_out[i])
                                           for i in range(n_doses))
    rows.append(row)
    print(row, flush=True)

    # W3: 1,000 virtual patients
    t_m, pop = timed(lambda: mechsim_many(n3))
    t_m1, _ = timed(lambda: mechsim_many(n3, workers=1))
    values = population(n3)
    picks = np.random.default_rng(1).choice(n3, size=sample, replace=False)

    def patient(i):
        return {**q0, **{k: v[i] for k, v in values.items()}}
    t_n, naive_pop = timed(lambda: [naive_run(patient(i)) for i in picks])
    agreement["W3 naive"] = agree((pop.states[i], s) for i, s in zip(picks, naive_pop))
    row = {"workload": f"W3: {n3} patients", "mechsim": t_m, "mechsim_1_thread": t_m1,
           "naive": t_n * n3 / sample, "naive_scaled": True}
    if rr_ok:
        rr = roadrunner_model()
        t_r, rr_pop = timed(lambda: [roadrunner_run(rr, {k: v[i] for k, v in values.items()})
                                     for i in range(n3)])
        row["roadrunner"] = t_r
        agreement["W3 roadrunner"] = agree((pop.states[i], rr_pop[i]) for i in range(n3))
    rows.append(row)
    print(row, flush=True)

    # W4: 10,000 virtual patients, time and peak memory in a fresh process
    t4, mb4 = peak_memory_subprocess(n4, cores)
    t3_fresh, mb3 = peak_memory_subprocess(n3, cores)
    rows.append({"workload": f"W4: {n4} patients", "mechsim": t4, "peak_memory_mb": mb4,
                 "time_per_patient_vs_W3": (t4 / n4) / (t3_fresh / n3),
                 "W3_fresh_process_s": t3_fresh, "W3_peak_memory_mb": mb3})
    print(rows[-1], flush=True)

    machine = {"platform": platform.platform(), "processor": platform.processor(),
               "cpus": cores, "python": platform.python_version(),
               "mechsim": mechsim.__version__, "numpy": np.__version__}
    try:
        import numba
        machine["numba"] = numba.__version__
    except ImportError:
        pass
    if rr_ok:
        import roadrunner
        machine["roadrunner"] = roadrunner.__version__
    report = {"machine": machine, "settings": {"rtol": RTOL, "atol": ATOL, "days": UNTIL,
                                               "outputs": int(GRID.size), "seed": SEED},
              "workloads": rows, "agreement_max_relative": agreement}
    Path(args.json).write_text(json.dumps(report, indent=2))
    print_table(report)
    print(f"wrote {args.json}")
    return 0


def print_table(report) -> None:
    m = report["machine"]
    print(f"\n{m['platform']}, {m['cpus']} CPUs, Python {m['python']}; rtol 1e-8, atol 1e-12, "
          "365 days, daily output")
    head = (f"{'workload':<34}{'mechsim':>10}{'1 thread':>10}{'naive':>11}{'roadrunner':>12}"
            f"{'naive/mechsim':>15}{'mechsim/rr':>12}")
    print(head)
    for r in report["workloads"]:
        if "naive" not in r:
            continue
        naive = f"{r['naive']:.2f}{'*' if r['naive_scaled'] else ''}"
        rr = r.get("roadrunner")
        rr_text = f"{rr:.3f}" if rr else "-"
        ratio = f"{r['mechsim'] / rr:.2f}" if rr else "-"
        print(f"{r['workload']:<34}{r['mechsim']:>10.3f}{r['mechsim_1_thread']:>10.3f}"
              f"{naive:>11}{rr_text:>12}{r['naive'] / r['mechsim']:>15.1f}{ratio:>12}")
    for r in report["workloads"]:
        if "peak_memory_mb" in r:
            print(f"{r['workload']}: {r['mechsim']:.1f} s, peak memory {r['peak_memory_mb']:.0f} "
                  f"MB; time per patient {r['time_per_patient_vs_W3']:.2f}x that of "
                  f"{r['W3_fresh_process_s']:.1f} s for W3 in a fresh process")
    print("times in seconds (median); * naive time measured on a subset and scaled")
    print("agreement with mechsim, max relative difference on values > 1e-9 / max difference "
          "relative to each state's peak:")
    for k, (rel, peak) in report["agreement_max_relative"].items():
        print(f"  {k:<16} {rel:.1e} / {peak:.1e}")


if __name__ == "__main__":
    sys.exit(main())

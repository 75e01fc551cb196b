"""Population workloads W1-W4 on cd38_myeloma, timed side by side, single thread against
single thread, with every tool used the way its own users and documentation use it.

The problem (identical for every tool)
    Model cd38_myeloma as first shipped (benchmarks/models/cd38_myeloma_gen1.toml, frozen so
    that figures stay comparable; 12 states: TMDD isatuximab PK, tumour,
    NK cells, M-protein, a pomalidomide K-PD biophase that is not dosed here, and three
    mass-balance accumulators).  Isatuximab-only ICARIA-MM schedule: 1-h iv infusions on
    days 1, 8, 15, 22 of cycle 1, then days 1 and 15 of every 28-day cycle, up to day 365
    (29 infusions start before day 365; the last on day 364).  Output daily, days 0-365
    (366 times).  rtol 1e-8 and atol 1e-12 on every state in the model's units (nM, g/L,
    nmol, dimensionless).  W3/W4 patients: log-normal CV 30 % on CLinf_ref, V1_ref, kg and
    k_isa (median = shipped value), one seeded draw shared by every tool.

How each tool is configured
    mechsim      ``mechsim.simulate(model, regimen, method="NDF")`` for one run and
                 ``mechsim.simulate_many(..., workers=1)`` for many (the compiled NDF engine,
                 analytic Jacobian).  The model is loaded and the regimen texts parsed once,
                 outside the timing (the counterpart of loading roadrunner's SBML once).
                 ``simulate_many(workers=None)`` (all cores, threads) is timed too, but only
                 as wall time in its own column: it is never divided by a one-thread figure.
    libRoadRunner  mechsim's own SBML export of the same model and regimen
                 (``mechsim.io.sbml.export_sbml``; doses are SBML events), loaded once.  The
                 export writes each infusion rate into its events as a number; for the dose
                 sweep the benchmark rewrites (libsbml) those event assignments to read a
                 new global parameter ``dose_mg_per_kg``, so a dose is set with ``r[...] =``
                 without reloading.  Per run: ``resetAll()`` (time, species, compartments and
                 every global parameter back to the loaded model: nothing leaks from the run
                 before, including the infusion rate the events change), set the run's
                 values, ``reset(TIME|FLOATING|RATE|COMPARTMENT)`` so the initial
                 assignments that read them are re-evaluated (central volume from V1_ref, R
                 = R0 in it; a plain ``reset()`` leaves the compartment at its old volume,
                 and setting ``init(V1_ref)`` instead regenerates the model, ~0.15 s), then
                 ``simulate(times=...)``.  Integrator: CVODE (default), stiff BDF (default),
                 fixed output times (``variable_step_size`` off: it would output every
                 internal step instead of the requested times; events are still located by
                 CVODE's root finding), ``maximum_num_steps`` 100,000 per output interval
                 (a cap, no cost), relative_tolerance 1e-8, and absolute_tolerance as a
                 vector: 1e-12 times the compartment volume for concentration species,
                 1e-12 for amounts.  CVODE's state is amounts, so this is exactly atol 1e-12
                 on each state in the model's units, set per run from the run's own
                 volumes.  (A scalar absolute_tolerance is not that: roadrunner multiplies
                 it by each species' current amount whenever the integrator restarts, at
                 reset and at every dose event, so the tolerance follows the state: 10x
                 looser on R and 18x on M at load, 1e4-1e5x looser on the accumulators and
                 tighter on R and NK late in the year.)  Jacobian: CVODE's internal finite
                 differences (roadrunner's default).
    naive        the model typed in by hand as a Python RHS function, written the way a
                 competent scipy user writes it: every derived constant (volumes, clearance,
                 koff, ksyn, ...) computed once per patient outside the RHS, the state
                 unpacked into Python floats, scalar arithmetic; no Jacobian (LSODA builds
                 one by finite differences, as most scipy users leave it).  Integrated with
                 ``scipy.integrate.solve_ivp(method="LSODA")`` piecewise between the infusion
                 on/off times, patient by patient.  It is checked against the other tools
                 in every workload.  Too slow to run every W2/W3 run, it runs an evenly
                 spread subset; its per-run time is what is compared.

What is measured
    Per-thread CPU time (``time.thread_time``) of the call that does the work, plus process
    CPU and wall time.  Every single-thread tool runs in the main thread, so its thread CPU
    is all its work; a process CPU well above it would mean hidden threads and is flagged.
    The ratios compare per-run single-thread CPU time (median over repeats; the min is
    reported too).  Repeats are interleaved (mechsim rep 1, roadrunner rep 1, naive rep 1,
    mechsim all-cores rep 1, mechsim rep 2, ...), so a noisy stretch on a shared machine
    hits every tool alike.  First-call costs (mechsim: load, sympy compile, numba compile or
    its model cache's load, also timed from import in fresh processes with an empty and a
    filled model cache; roadrunner: export, load, LLVM compile) are excluded from the
    repeats and reported on their own.  W4 runs mechsim alone in a fresh process (all cores) and
    reports its peak resident memory (VmHWM of /proc/self/status, read by the child itself;
    not ``ru_maxrss``, which on Linux starts from the parent's peak; its resident size
    before the call is given for reference).

    Every workload compares the tools' trajectories from the same run, with where each
    maximum occurs: the largest relative difference on values above 1e-9 (model units),
    the same on values above atol/rtol = 1e-4 (where rtol, not atol, bounds the local
    error: below it free drug in a trough, ~1e-8 nM in fast-growing patients, differs by
    1e-5-1e-2 relative between any two tools), and the largest difference relative to
    each state's peak over the run.  mechsim's one-thread and all-core results are checked
    to be identical, and roadrunner's typical patient is rerun after W3 to show no state
    leaks between runs.

Why this is fair
    Same equations (the SBML is mechsim's own export; the naive RHS is checked against
    both), same doses, output times and tolerances on the same states; each tool's setup
    (load, compile, parse) outside the timing and reported; each tool's per-run work
    (mechsim's Result with observables and mass-balance check, roadrunner's resets and
    result matrix, the naive's piecewise solve_ivp calls) inside it; one thread against
    one thread in CPU time, so neither parallelism nor other load on the machine enters
    the ratios; repeats interleaved and reported as min and median.

Run:  python benchmarks/run.py            (about 16 minutes on 2 cores)
      python benchmarks/run.py --quick    (a smoke test, about a minute)
Writes benchmarks/results.json (override with --json).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

import mechsim

# the first-generation model, frozen as this benchmark's fixed workload (see its header)
MODEL = str(Path(__file__).resolve().parent / "models" / "cd38_myeloma_gen1.toml")
REFERENCE_DOSE = 10.0  # mg/kg: the ICARIA-MM dose, and the dose the SBML is exported with
SCHEDULE = ("iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
            "then on days 1,15 of 28-day cycles")
UNTIL = 365.0
RTOL, ATOL = 1e-8, 1e-12
VARIED = ("CLinf_ref", "V1_ref", "kg", "k_isa")  # log-normal, CV 30 %
CV = 0.30
SEED = 20190406
GRID = np.arange(0.0, UNTIL + 0.5, 1.0)  # days 0..365
STATES = ("C", "Cp", "R", "RC", "N", "NK", "M", "A_pom", "S_pd", "drug_cleared",
          "drug_internalised", "drug_with_dead_cells")
FLOOR = 1e-9  # values at or below this (model units) are left out of the relative gap
RTOL_FLOOR = ATOL / RTOL  # above this value rtol, not atol, bounds the solvers' local error

# workload sizes: full run and --quick
SIZES = {
    "full": {"w1_reps": 9, "w2_doses": 50, "w2_naive": 6, "w2_reps": 5,
             "w3_patients": 1000, "w3_naive": 8, "w3_reps": 3,
             "w4_patients": 10_000},
    "quick": {"w1_reps": 3, "w2_doses": 10, "w2_naive": 2, "w2_reps": 2,
              "w3_patients": 40, "w3_naive": 2, "w3_reps": 2,
              "w4_patients": 400},
}


def regimen_text(mg_per_kg: float) -> str:
    return f"{float(mg_per_kg)!r} mg/kg {SCHEDULE}"


# ---- inputs shared by every tool -------------------------------------------------------------
@dataclass
class Inputs:
    """What every tool gets: canonical values (day, nmol, L, g) by name, doses, patients."""

    typical: dict[str, float]
    units: dict[str, str]           # canonical unit of each parameter, for mechsim Quantities
    doses: np.ndarray               # W2, mg/kg
    patients: dict[str, np.ndarray]  # W3, canonical values of the varied parameters

    def patient(self, i: int) -> dict[str, float]:
        return {name: float(v[i]) for name, v in self.patients.items()}


def make_inputs(n_doses: int, n_patients: int) -> Inputs:
    from mechsim.units import canonical_unit

    model = mechsim.load_model(MODEL)
    cm = mechsim.compile_model(model)
    typical = dict(zip(cm.parameter_names, map(float, cm.parameter_vector(
        model.parameters_by_name))))
    units = {n: str(canonical_unit(mechsim.Quantity(1.0, u)))
             for n, u in zip(cm.parameter_names, cm.parameter_units)}
    # 4 significant digits, so the dose every tool reads is the same double
    doses = np.array([float(f"{d:.4g}") for d in np.geomspace(0.01, 100, n_doses)])
    return Inputs(typical, units, doses, population(typical, n_patients))


def population(typical: dict[str, float], n: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(SEED)
    sd = math.sqrt(math.log(1 + CV ** 2))
    return {name: typical[name] * np.exp(rng.normal(0.0, sd, n)) for name in VARIED}


def spread(n_total: int, n_pick: int) -> np.ndarray:
    """Evenly spread indices (the naive baseline's subset): both ends included."""
    return np.unique(np.linspace(0, n_total - 1, min(n_pick, n_total)).round().astype(int))


# ---- mechsim -------------------------------------------------------------------------------------
class Mechsim:
    """The model loaded and the regimens parsed once, as a mechsim user keeps them."""

    def __init__(self, inputs: Inputs):
        self.model = mechsim.load_model(MODEL)
        self.regimen = mechsim.Regimen.parse(regimen_text(REFERENCE_DOSE))
        self.sweep = [mechsim.Regimen.parse(regimen_text(d)) for d in inputs.doses]
        self.patients = {k: mechsim.Quantity(v, inputs.units[k])
                         for k, v in inputs.patients.items()}
        self.times = GRID * mechsim.ureg.day
        cm = mechsim.compile_model(self.model)
        assert tuple(cm.state_names) == STATES, cm.state_names

    def one(self) -> np.ndarray:
        res = mechsim.simulate(self.model, self.regimen, until="365 day", times=self.times,
                               rtol=RTOL, atol=ATOL, method="NDF")
        return res.states  # (states, times)

    def many(self, *, sweep: bool, workers: int | None) -> np.ndarray:
        kwargs = {"regimens": self.sweep} if sweep else \
            {"regimens": self.regimen, "parameters": self.patients}
        batch = mechsim.simulate_many(self.model, until="365 day", times=self.times,
                                      rtol=RTOL, atol=ATOL, method="NDF", workers=workers,
                                      progress=False, **kwargs)
        return batch.states  # (runs, states, times)


# ---- the naive baseline: the equations typed in by hand ------------------------------------------
def naive_rhs_for(q: dict[str, float]):
    """d/dt of cd38_myeloma (day, nM, nmol, L, g) for one patient's values ``q``.

    Everything that does not depend on the state is computed here, once per patient; the
    returned function only does the per-step arithmetic.  Same equations as
    models/cd38_myeloma.toml: concentration rates for C, Cp, R, RC (fluxes in nmol/day
    divided by the volume), amounts for the accumulators, and negative occupancy (solver
    noise) taken as zero in RO**hill, as mechsim does.
    """
    w = q["WT"] / q["WT_ref"]
    V1, V2 = q["V1_ref"] * w ** q["e_V1"], q["V2_ref"] * w ** q["e_V2"]
    Q, CLinf = q["Q_ref"] * w ** q["e_Q"], q["CLinf_ref"] * w ** q["e_CL"]
    clear_slope = CLinf * (q["r0"] - 1) / q["M0"]   # CL = CLinf + clear_slope*M
    kon, KD = q["kon"], q["KD"]
    koff = KD * kon
    kdeg, kint, ksyn = q["kdeg"], q["kint"], q["kdeg"] * q["R0"]
    k_isa, k_pd, kg = q["k_isa"], q["k_pd"], q["kg"]
    hill, RO50_h = q["hill"], q["RO50"] ** q["hill"]
    ED50_pom = q["ED50_pom"] / q["MW_pom"]           # nmol
    kout = q["kout_NK"]
    kdep = kout * q["NK_max_depletion"] / (1 - q["NK_max_depletion"])
    kel_M, M_syn = q["kel_M"], q["kel_M"] * q["M0"]
    ke_pom, lambda_pd = q["ke_pom"], q["lambda_pd"]
    inv_V1, inv_V2 = 1.0 / V1, 1.0 / V2

    def rhs(t, y, infusion):  # infusion: nmol/day into the central compartment
        # Python floats: scalar arithmetic on them is several times faster than on the
        # numpy scalars that unpacking the array would give
        C, Cp, R, RC, N, NK, M, A_pom, S_pd, _, _, _ = y.tolist()
        RO = RC / (R + RC)
        RO_h = max(RO, 0.0) ** hill
        E_isa = RO_h / (RO_h + RO50_h)
        E_pom = A_pom / (A_pom + ED50_pom)
        kill = k_isa * E_isa * NK + k_pd * E_pom * S_pd
        binding = kon * C * R - koff * RC               # nM/day
        distribution = Q * (C - Cp)                      # nmol/day
        clearance = (CLinf + clear_slope * M) * C        # nmol/day
        return [
            (infusion - distribution - clearance) * inv_V1 - binding,
            distribution * inv_V2,
            ksyn * N - kdeg * R - binding - kill * R,
            binding - kint * RC - kill * RC,
            kg * N - kill * N,
            kout - kout * NK - kdep * C / (C + KD) * NK,
            M_syn * N - kel_M * M,
            -ke_pom * A_pom,
            -lambda_pd * E_pom * S_pd,
            clearance,
            kint * RC * V1,
            kill * RC * V1,
        ]

    y0 = np.array([0, 0, q["R0"], 0, 1, 1, q["M0"], 0, 1, 0, 0, 0], dtype=float)
    return rhs, y0


def naive_infusions(q: dict[str, float], mg_per_kg: float) -> list[tuple[float, float, float]]:
    """(start, end, nmol/day) of each 1-h infusion of the ICARIA schedule before day 365."""
    starts = [0, 7, 14, 21] + [d for c in range(28, 365, 28) for d in (c, c + 14) if d < UNTIL]
    # mg/kg in canonical units is 1e-6 g per g of body weight; MW_isa is in g/nmol
    amount = mg_per_kg * 1e-6 * q["WT"] / q["MW_isa"]
    hour = 1.0 / 24.0
    return [(s, s + hour, amount / hour) for s in starts]


def naive_run(q: dict[str, float], mg_per_kg: float = REFERENCE_DOSE) -> np.ndarray:
    """One patient, integrated piecewise between infusion on/off times; (states, times)."""
    # imported here: W4's child process measures mechsim's memory, not scipy.integrate's
    from scipy.integrate import solve_ivp

    rhs, y = naive_rhs_for(q)
    infusions = naive_infusions(q, mg_per_kg)
    edges = sorted({0.0, UNTIL, *(t for s, e, _ in infusions for t in (s, e))})
    times = GRID
    out = np.empty((len(STATES), times.size))
    for a, b in pairwise(edges):
        rate = sum(r for s, e, r in infusions if s <= a < e)
        inside = (times >= a) & (times < b)
        sol = solve_ivp(rhs, (a, b), y, method="LSODA", t_eval=np.append(times[inside], b),
                        args=(rate,), rtol=RTOL, atol=ATOL)
        if not sol.success:
            raise RuntimeError(f"naive LSODA failed on [{a}, {b}]: {sol.message}")
        out[:, inside] = sol.y[:, :-1]
        y = sol.y[:, -1]
    out[:, -1] = y
    return out


# ---- libRoadRunner -----------------------------------------------------------------------------
DOSE_PARAMETER = "dose_mg_per_kg"
INFUSION_RATE = "infusion_rate_C"  # the export's event-switched infusion rate into C


def roadrunner_sbml() -> str:
    """mechsim's SBML export of the model and the 10 mg/kg regimen, with the infusion rate
    the events assign made proportional to a new global parameter ``dose_mg_per_kg``."""
    import libsbml

    from mechsim.io.sbml import export_sbml

    text = export_sbml(mechsim.load_model(MODEL), regimen_text(REFERENCE_DOSE),
                       until="365 day")
    doc = libsbml.readSBMLFromString(text)
    sbml = doc.getModel()
    par = sbml.createParameter()
    par.setId(DOSE_PARAMETER)
    par.setConstant(True)
    par.setValue(REFERENCE_DOSE)
    par.setUnits("dimensionless")
    rewritten = 0
    for event in sbml.getListOfEvents():
        for assignment in event.getListOfEventAssignments():
            math_ = assignment.getMath()
            if assignment.getVariable() != INFUSION_RATE or not math_.isNumber():
                continue
            rate = math_.getValue()  # nmol/day at the reference dose; 0 when an infusion ends
            if rate != 0.0:
                formula = f"{DOSE_PARAMETER} * {rate / REFERENCE_DOSE!r}"
                assignment.setMath(libsbml.parseL3Formula(formula))
                rewritten += 1
    if rewritten == 0:
        raise RuntimeError(f"no event assigns {INFUSION_RATE}: the export changed")
    return libsbml.writeSBMLToString(doc)


class RoadRunner:
    """One RoadRunner instance, loaded once; :meth:`run` resets it for every run."""

    def __init__(self, sbml: str):
        import libsbml
        import roadrunner

        self.S = roadrunner.SelectionRecord
        self.r = r = roadrunner.RoadRunner(sbml)
        r.setIntegrator("cvode")
        it = r.integrator
        it.relative_tolerance = RTOL
        it.stiff = True
        it.variable_step_size = False
        it.maximum_num_steps = 100_000
        # concentrations for species that are concentrations in mechsim, amounts otherwise
        # (the export puts M, in g/L, as a concentration in a 1-L placeholder compartment)
        model = libsbml.readSBMLFromString(sbml).getModel()
        species = {s.getId(): s for s in model.getListOfSpecies()}
        ids = list(r.model.getFloatingSpeciesIds())  # CVODE's state order
        assert set(ids) == set(STATES), ids
        r.timeCourseSelections = [n if species[n].getHasOnlySubstanceUnits() else f"[{n}]"
                                  for n in STATES]
        # atol per CVODE state (amount): 1e-12 x volume for a concentration, 1e-12 otherwise
        self.atol_compartment = [None if species[n].getHasOnlySubstanceUnits()
                                 else species[n].getCompartment() for n in ids]

    def absolute_tolerances(self) -> list[float]:
        return [ATOL * (1.0 if c is None else self.r[c]) for c in self.atol_compartment]

    def run(self, values: dict[str, float] | None = None) -> np.ndarray:
        r, S = self.r, self.S
        r.resetAll()
        for name, value in (values or {}).items():
            r[name] = value
        if values:  # re-evaluate the initial assignments that read the values just set
            r.reset(S.TIME | S.FLOATING | S.RATE | S.COMPARTMENT)
        r.integrator.absolute_tolerance = self.absolute_tolerances()
        return np.asarray(r.simulate(times=GRID)).T  # (states, times)


# ---- measurement ---------------------------------------------------------------------------------
@dataclass
class Timing:
    """Seconds of one timed call: CPU of the calling thread, CPU of the process, wall."""

    thread: float
    process: float
    wall: float


def measure(fn):
    """(Timing, result) of ``fn()``."""
    w0, p0, t0 = time.perf_counter(), time.process_time(), time.thread_time()
    out = fn()
    t1, p1, w1 = time.thread_time(), time.process_time(), time.perf_counter()
    return Timing(t1 - t0, p1 - p0, w1 - w0), out


@dataclass
class Tool:
    """A tool in a workload: what one timed call does and how many runs it covers."""

    name: str
    call: object
    runs: int
    single_thread: bool = True


def interleaved(tools: list[Tool], repeats: int):
    """Time every tool ``repeats`` times in alternation; per tool the list of Timings and
    the result of its last call."""
    timings = {t.name: [] for t in tools}
    results = {}
    for _ in range(repeats):
        for tool in tools:
            timing, results[tool.name] = measure(tool.call)
            timings[tool.name].append(timing)
    return timings, results


def summary(tool: Tool, timings: list[Timing]) -> dict:
    """Per-run figures in ms (median and min over repeats) plus the raw repeats."""
    def per_run(key):
        values = [getattr(t, key) * 1e3 / tool.runs for t in timings]
        return {"median": statistics.median(values), "min": min(values)}

    out = {"runs_per_call": tool.runs, "repeats": len(timings),
           "single_thread": tool.single_thread,
           "thread_cpu_ms_per_run": per_run("thread"),
           "process_cpu_ms_per_run": per_run("process"),
           "wall_ms_per_run": per_run("wall"),
           "raw_seconds": [asdict(t) for t in timings]}
    # a single-thread tool whose process used much more CPU than its thread had helpers
    thread, process = per_run("thread")["median"], per_run("process")["median"]
    out["hidden_threads_suspected"] = bool(tool.single_thread and process > 1.15 * thread)
    return out


# ---- agreement -----------------------------------------------------------------------------------
def compare(mine: np.ndarray, theirs: np.ndarray) -> dict:
    """Largest differences between two sets of trajectories (runs, states, times).

    ``relative``: |a - b| / |a| over values with |a| > FLOOR.  Near the floor atol, not
    rtol, bounds each step's error (free drug at 1e-7 nM after the 0.01 mg/kg dose), so
    ``relative_rtol_controlled`` is the same over values above atol/rtol, where rtol is the
    binding tolerance, and ``peak_relative`` is |a - b| over the state's peak in that run.
    Each comes with the state, run and day where it occurs.
    """
    a, b = (mine[None], theirs[None]) if mine.ndim == 2 else (mine, theirs)
    if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
        return {key: {"value": math.inf}
                for key in ("relative", "relative_rtol_controlled", "peak_relative")}
    diff = np.abs(a - b)
    peak = np.max(np.abs(a), axis=2, keepdims=True)

    def relative_to(scale, keep):
        return np.where(keep, diff / np.where(keep, scale, 1.0), 0.0)

    def worst(x):
        run, state, t = np.unravel_index(int(np.argmax(x)), x.shape)
        return {"value": float(x[run, state, t]), "state": STATES[state], "run": int(run),
                "day": float(GRID[t])}

    return {"relative": worst(relative_to(np.abs(a), np.abs(a) > FLOOR)),
            "relative_rtol_controlled": worst(relative_to(np.abs(a), np.abs(a) > RTOL_FLOOR)),
            "peak_relative": worst(relative_to(peak, peak > 0))}


# ---- workloads -----------------------------------------------------------------------------------
def workload(label: str, tools: list[Tool], repeats: int, checks) -> dict:
    """Run one workload: interleaved timings, then the agreement checks on its results.

    ``checks(results)`` returns {"A vs B": (trajectories of A, of B)} from the last repeat.
    """
    print(f"\n{label}: {repeats} interleaved repeats of "
          + ", ".join(f"{t.name} ({t.runs} run{'s' * (t.runs > 1)})" for t in tools),
          flush=True)
    timings, results = interleaved(tools, repeats)
    tools_out = {t.name: summary(t, timings[t.name]) for t in tools}
    for name, s in tools_out.items():
        key = "thread_cpu_ms_per_run" if s["single_thread"] else "wall_ms_per_run"
        print(f"  {name:<22} {key} median {s[key]['median']:9.2f}  min {s[key]['min']:9.2f}",
              flush=True)
    agreement = {pair: compare(*arrays) for pair, arrays in checks(results).items()}
    return {"workload": label, "tools": tools_out, "agreement": agreement}


def run_w1(ms: Mechsim, rr: RoadRunner | None, inputs: Inputs, reps: int) -> dict:
    tools = [Tool("mechsim", ms.one, 1)]
    if rr:
        tools.append(Tool("roadrunner", rr.run, 1))
    tools.append(Tool("naive", lambda: naive_run(inputs.typical), 1))

    def checks(res):
        out = {"mechsim vs naive": (res["mechsim"], res["naive"])}
        if rr:
            out["mechsim vs roadrunner"] = (res["mechsim"], res["roadrunner"])
            out["roadrunner vs naive"] = (res["roadrunner"], res["naive"])
        return out
    return workload("W1: 1 simulation (typical patient)", tools, reps, checks)


def run_w2(ms: Mechsim, rr: RoadRunner | None, inputs: Inputs, reps: int,
           n_naive: int) -> dict:
    doses = inputs.doses
    picks = spread(len(doses), n_naive)
    tools = [Tool("mechsim", lambda: ms.many(sweep=True, workers=1), len(doses))]
    if rr:
        tools.append(Tool("roadrunner", lambda: np.array(
            [rr.run({DOSE_PARAMETER: float(d)}) for d in doses]), len(doses)))
    tools.append(Tool("naive", lambda: np.array(
        [naive_run(inputs.typical, float(doses[i])) for i in picks]), len(picks)))
    tools.append(Tool("mechsim_all_cores", lambda: ms.many(sweep=True, workers=None),
                      len(doses), single_thread=False))

    def checks(res):
        out = {"mechsim vs naive": (res["mechsim"][picks], res["naive"])}
        if rr:
            out["mechsim vs roadrunner"] = (res["mechsim"], res["roadrunner"])
            out["roadrunner vs naive"] = (res["roadrunner"][picks], res["naive"])
        out["mechsim 1 thread vs all cores"] = (res["mechsim"], res["mechsim_all_cores"])
        return out
    label = f"W2: dose sweep, {len(doses)} doses {doses[0]:g}-{doses[-1]:g} mg/kg"
    return workload(label, tools, reps, checks)


def run_w3(ms: Mechsim, rr: RoadRunner | None, inputs: Inputs, reps: int,
           n_naive: int) -> dict:
    n = len(next(iter(inputs.patients.values())))
    picks = spread(n, n_naive)
    values = [inputs.patient(i) for i in range(n)]
    tools = [Tool("mechsim", lambda: ms.many(sweep=False, workers=1), n)]
    if rr:
        tools.append(Tool("roadrunner", lambda: np.array([rr.run(v) for v in values]), n))
    tools.append(Tool("naive", lambda: np.array(
        [naive_run({**inputs.typical, **values[i]}) for i in picks]), len(picks)))
    tools.append(Tool("mechsim_all_cores", lambda: ms.many(sweep=False, workers=None), n,
                      single_thread=False))
    typical_before = rr.run() if rr else None

    def checks(res):
        out = {"mechsim vs naive": (res["mechsim"][picks], res["naive"])}
        if rr:
            out["mechsim vs roadrunner"] = (res["mechsim"], res["roadrunner"])
            out["roadrunner vs naive"] = (res["roadrunner"][picks], res["naive"])
            # the typical patient again after all the patients: 0 unless state leaked
            out["roadrunner typical, after vs before"] = (typical_before, rr.run())
        out["mechsim 1 thread vs all cores"] = (res["mechsim"], res["mechsim_all_cores"])
        return out
    return workload(f"W3: {n} virtual patients", tools, reps, checks)


def run_w4(n_large: int, n_small: int) -> dict:
    """mechsim alone, all cores, in fresh processes: n_large patients and, for the time
    per patient at a smaller count, n_small (the W3 count)."""
    print(f"\nW4: {n_large} virtual patients, mechsim only, all cores, fresh process",
          flush=True)
    out = {"workload": f"W4: {n_large} virtual patients (mechsim, all cores)"}
    for key, n in (("large", n_large), ("small", n_small)):
        done = subprocess.run([sys.executable, __file__, "--w4-child", str(n)],
                              capture_output=True, text=True, check=True)
        out[key] = json.loads(done.stdout.strip().splitlines()[-1])
        print(f"  {n} patients: {out[key]}", flush=True)
    large, small = out["large"], out["small"]
    out["time_per_patient_ratio_large_vs_small"] = \
        (large["wall_s"] / large["patients"]) / (small["wall_s"] / small["patients"])
    return out


def w4_child(n: int) -> None:
    """In a fresh process: set up, warm up, then simulate_many over n patients; prints JSON
    with wall and process CPU time and resident memory (MB)."""
    inputs = make_inputs(1, n)
    ms = Mechsim(inputs)
    ms.one()  # numba compile / cache load, excluded
    before_peak = _status_mb("VmHWM")
    before_now = _status_mb("VmRSS")
    timing, states = measure(lambda: ms.many(sweep=False, workers=None))
    peak = _status_mb("VmHWM")
    print(json.dumps({
        "patients": n, "workers": os.cpu_count(), "wall_s": timing.wall,
        "process_cpu_s": timing.process, "wall_ms_per_patient": timing.wall * 1e3 / n,
        "process_cpu_ms_per_patient": timing.process * 1e3 / n,
        "peak_rss_mb": peak, "rss_before_call_mb": before_now,
        "peak_rss_before_call_mb": before_peak, "result_array_mb": states.nbytes / 2 ** 20,
        "finite": bool(np.all(np.isfinite(states)))}))


def _status_mb(field: str) -> float:
    """A memory figure of this process from /proc/self/status, MB.  VmHWM is the peak
    resident set of this process's own address space; getrusage's ru_maxrss is not: Linux
    carries the parent's peak across fork and exec into it, so a child of a large parent
    would report the parent's size."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    return math.nan


# ---- first-call costs --------------------------------------------------------------------------
def first_calls(inputs: Inputs, with_roadrunner: bool):
    """Set each tool up and make its first call, timed (wall and thread CPU); returns the
    ready tools and the costs.  mechsim's first call is also timed in fresh processes,
    from import to the first result: with an empty model cache (what the first run of a
    model after installing costs) and again with the cache that run filled."""
    costs = {}

    def mechsim_first():
        ms = Mechsim(inputs)
        ms.one()
        return ms
    # first, so that the fresh processes below find the integrator itself compiled (it is
    # cached beside mechsim's source after its first use) and differ only in the model cache
    t, ms = measure(mechsim_first)
    costs["mechsim in this process: load, compile, first run"] = asdict(t)
    with tempfile.TemporaryDirectory() as cache:
        for label in ("empty model cache", "model cache filled by the run before"):
            costs[f"mechsim in a fresh process, {label}: import, load, compile, first run"] = \
                _first_call_child(cache)
    rr = None
    if with_roadrunner:
        t, sbml = measure(roadrunner_sbml)
        costs["roadrunner: mechsim SBML export + libsbml rewrite"] = asdict(t)

        def rr_first():
            runner = RoadRunner(sbml)
            runner.run()
            return runner
        t, rr = measure(rr_first)
        costs["roadrunner: load (LLVM compile), first run"] = asdict(t)
    t, _ = measure(lambda: naive_run(inputs.typical))
    costs["naive: first run"] = asdict(t)
    for k, v in costs.items():
        print(f"  first call, {k}: {v['wall']:.2f} s wall", flush=True)
    return ms, rr, costs


FIRST_CALL_CHILD = """
import time
t0 = (time.perf_counter(), time.process_time())
import mechsim
res = mechsim.simulate({model!r}, {regimen!r}, until="365 day", rtol={rtol!r},
                       atol={atol!r}, method="NDF")
t1 = (time.perf_counter(), time.process_time())
print(t1[0] - t0[0], t1[1] - t0[1])
"""


def _first_call_child(cache: str) -> dict:
    """Wall and CPU seconds of a fresh process's first simulate, with MECHSIM_CACHE_DIR
    set to ``cache`` (the engine's numba cache of its own integrator is warm, as after any
    first use)."""
    code = FIRST_CALL_CHILD.format(model=MODEL, regimen=regimen_text(REFERENCE_DOSE),
                                   rtol=RTOL, atol=ATOL)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env={**os.environ, "MECHSIM_CACHE_DIR": cache})
    wall, cpu = map(float, out.stdout.split()[-2:])
    return {"thread": cpu, "process": cpu, "wall": wall}


# ---- report --------------------------------------------------------------------------------------
def machine() -> dict:
    import numba
    import scipy

    info = {"cpu": _cpu_model(), "cpus": os.cpu_count(),
            "cpus_usable": len(os.sched_getaffinity(0)), "platform": platform.platform(),
            "python": platform.python_version(), "mechsim": mechsim.__version__,
            "numpy": np.__version__, "scipy": scipy.__version__, "numba": numba.__version__,
            "load_average_start": os.getloadavg()}
    try:
        import libsbml
        import roadrunner
        info["roadrunner"] = roadrunner.__version__
        info["libsbml"] = libsbml.getLibSBMLDottedVersion()
    except ImportError:
        pass
    info["git"] = _git_state()
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_state() -> str:
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=here, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=here, text=True, capture_output=True,
                               check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + (" (work tree modified)" if dirty else "")


def ratios(tools: dict) -> dict:
    """Per-run single-thread CPU ratios, from medians and from minima."""
    def ratio(a, b, stat):
        if a not in tools or b not in tools:
            return None
        return tools[a]["thread_cpu_ms_per_run"][stat] / tools[b]["thread_cpu_ms_per_run"][stat]
    return {f"{a}/{b}": {stat: ratio(a, b, stat) for stat in ("median", "min")}
            for a, b in (("mechsim", "roadrunner"), ("naive", "mechsim"))
            if a in tools and b in tools}


def print_report(report: dict) -> None:
    print_machine(report)
    print_cpu_table(report["workloads"])
    print_all_cores(report["workloads"], report["machine"]["cpus"])
    print_w4(report["workloads"])
    print("\nFirst-call costs (excluded from the repeats), s wall / thread CPU:")
    for k, v in report["first_call"].items():
        print(f"  {k}: {v['wall']:.2f} / {v['thread']:.2f}")
    flagged = [(w["workload"][:2], n) for w in report["workloads"]
               for n, s in w.get("tools", {}).items() if s["hidden_threads_suspected"]]
    if flagged:
        print(f"\nWARNING: process CPU > 1.15 x thread CPU for {flagged}: the thread-CPU "
              "figure may miss work done in other threads")
    print_agreement(report["workloads"])
    print(f"\nreproduce: {report['command']}")


def print_machine(report: dict) -> None:
    m = report["machine"]
    print(f"\n{m['cpu']}, {m['cpus']} CPUs ({m['cpus_usable']} usable), {m['platform']}")
    print(f"Python {m['python']}, numpy {m['numpy']}, scipy {m['scipy']}, numba {m['numba']}, "
          f"roadrunner {m.get('roadrunner', '-')}, libsbml {m.get('libsbml', '-')}, "
          f"mechsim {m['mechsim']} (git {m['git']})")
    start = ", ".join(f"{x:.2f}" for x in m["load_average_start"])
    end = ", ".join(f"{x:.2f}" for x in report["load_average_end"])
    print(f"load average at start {start}; at end {end}")
    print("cd38_myeloma, ICARIA-MM isatuximab schedule (29 1-h infusions), 365 days, daily "
          "output, rtol 1e-8, atol 1e-12 on every state\n")


def _cpu_cell(tools: dict, name: str) -> str:
    if name not in tools:
        return "-"
    s = tools[name]["thread_cpu_ms_per_run"]
    subset = tools[name]["runs_per_call"] != tools["mechsim"]["runs_per_call"]
    return f"{s['median']:.2f} [{s['min']:.2f}]" + \
        (f" n={tools[name]['runs_per_call']}" if subset else "")


def print_cpu_table(workloads: list[dict]) -> None:
    print("Per-run CPU time of one thread, ms: median [min] over interleaved repeats")
    head = (f"{'workload':<42}{'mechsim':>17}{'roadrunner':>17}{'naive':>23}"
            f"{'mechsim/rr':>12}{'naive/mechsim':>15}")
    print(head)
    print("-" * len(head))
    for w in workloads:
        if "tools" not in w:
            continue
        r = w["ratios_single_thread_cpu"]
        ratio = {k: f"{r[k]['median']:.2f}" if k in r else "-"
                 for k in ("mechsim/roadrunner", "naive/mechsim")}
        print(f"{w['workload']:<42}{_cpu_cell(w['tools'], 'mechsim'):>17}"
              f"{_cpu_cell(w['tools'], 'roadrunner'):>17}{_cpu_cell(w['tools'], 'naive'):>23}"
              f"{ratio['mechsim/roadrunner']:>12}{ratio['naive/mechsim']:>15}")
    print("mechsim: simulate (W1), simulate_many workers=1 (W2, W3). Ratios from medians "
          "(from minima: results.json); naive n=: the runs of its subset.")


def print_all_cores(workloads: list[dict], cpus: int) -> None:
    print(f"\nmechsim on all {cpus} cores (simulate_many, workers=None): WALL time per run, "
          "ms, median [min]; not comparable with the one-thread CPU figures above")
    for w in workloads:
        t = w.get("tools", {}).get("mechsim_all_cores")
        if not t:
            continue
        wall, cpu = t["wall_ms_per_run"], t["process_cpu_ms_per_run"]
        one = w["tools"]["mechsim"]["wall_ms_per_run"]["median"]
        # process CPU / wall: how many cores the call kept busy (2 = both, on 2 cores)
        busy = cpu["median"] / wall["median"]
        print(f"  {w['workload']:<42} {wall['median']:.2f} [{wall['min']:.2f}] "
              f"(cores busy {busy:.2f}; 1-thread wall / all-core wall "
              f"{one / wall['median']:.2f}){_busy_warning(busy, cpus)}")


def _busy_warning(busy: float, cpus: int) -> str:
    """A note when the threads could not use the cores: other work had them."""
    return "  <- cores taken by other work: wall time overstated" \
        if busy < 0.75 * cpus else ""


def print_w4(workloads: list[dict]) -> None:
    for w in workloads:
        if "large" not in w:
            continue
        big, small = w["large"], w["small"]
        print(f"\n{w['workload']}: {big['wall_s']:.1f} s wall; per patient "
              f"{big['wall_ms_per_patient']:.2f} ms wall, {big['process_cpu_ms_per_patient']:.2f}"
              f" ms CPU (cores busy {big['process_cpu_s'] / big['wall_s']:.2f}"
              f"{_busy_warning(big['process_cpu_s'] / big['wall_s'], big['workers'])}); "
              f"{small['patients']} patients the same way: "
              f"{small['wall_ms_per_patient']:.2f} ms wall per patient (ratio "
              f"{w['time_per_patient_ratio_large_vs_small']:.2f})")
        print(f"  peak RSS of the child process (its VmHWM) {big['peak_rss_mb']:.0f} MB"
              f" (resident before the call {big['rss_before_call_mb']:.0f} MB; the result "
              f"array {big['result_array_mb']:.0f} MB); {small['patients']} patients: "
              f"{small['peak_rss_mb']:.0f} MB")


def print_agreement(workloads: list[dict]) -> None:
    print(f"\nAgreement in the same run: max relative difference on values > {FLOOR:g} | on "
          f"values > atol/rtol = {RTOL_FLOOR:g} | relative to the state's peak; each at "
          "(state, run, day)")
    for w in workloads:
        for pair, a in w.get("agreement", {}).items():
            cells = []
            for key in ("relative", "relative_rtol_controlled", "peak_relative"):
                x = a[key]
                where = f" ({x['state']}, {x['run']}, {x['day']:g})" if "state" in x else ""
                cells.append(f"{x['value']:.1e}{where}")
            print(f"  {w['workload'][:2]} {pair:<36} " + " | ".join(cells))


# ---- main ----------------------------------------------------------------------------------------
def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small counts: a smoke test")
    ap.add_argument("--no-roadrunner", action="store_true", help="skip libRoadRunner")
    ap.add_argument("--json", default=str(Path(__file__).with_name("results.json")))
    ap.add_argument("--w4-child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.w4_child:
        w4_child(args.w4_child)
        return 0
    size = SIZES["quick" if args.quick else "full"]
    command = shlex.join(["python", "benchmarks/run.py",
                          *(argv if argv is not None else sys.argv[1:])])
    with_rr = not args.no_roadrunner and _has_roadrunner()

    info = machine()
    inputs = make_inputs(size["w2_doses"], size["w3_patients"])
    ms, rr, first = first_calls(inputs, with_rr)
    workloads = [
        run_w1(ms, rr, inputs, size["w1_reps"]),
        run_w2(ms, rr, inputs, size["w2_reps"], size["w2_naive"]),
        run_w3(ms, rr, inputs, size["w3_reps"], size["w3_naive"]),
        run_w4(size["w4_patients"], size["w3_patients"]),
    ]
    for w in workloads:
        if "tools" in w:
            w["ratios_single_thread_cpu"] = ratios(w["tools"])
    report = {
        "command": command, "machine": info, "load_average_end": os.getloadavg(),
        "settings": {"model": MODEL, "regimen": regimen_text(REFERENCE_DOSE), "days": UNTIL,
                     "outputs": int(GRID.size), "rtol": RTOL, "atol": ATOL,
                     "varied": list(VARIED), "cv": CV, "seed": SEED, "floor": FLOOR,
                     "sizes": size},
        "first_call": first, "workloads": workloads,
    }
    Path(args.json).write_text(json.dumps(report, indent=1))
    print_report(report)
    print(f"wrote {args.json}")
    return 0


def _has_roadrunner() -> bool:
    try:
        import libsbml  # noqa: F401
        import roadrunner  # noqa: F401
    except ImportError:
        return False
    return True


if __name__ == "__main__":
    sys.exit(main())

"""Many runs of one model at once: virtual patients, dose sweeps, sets of regimens.

One model is compiled once; each run differs in parameter values and/or regimen.  Unit work
happens once per distinct regimen and once per parameter column, so the per-run cost is the
integration itself.  With numba installed (``mechsim[fast]``) every run is integrated by the
compiled NDF engine (:mod:`mechsim.jit`) in threads that run in parallel; without it, runs use
LSODA, in worker processes when more than one worker is asked for.  A run gives the same
numbers whichever way it is scheduled: runs never share solver state.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from difflib import get_close_matches

import numpy as np
import pint

from .compile import CompiledModel, compile_model
from .dosing import Regimen
from .errors import MechsimError, SolverError, UnitError, ValidationError
from .model import Model
from .optional import require
from .result import Result
from .simulation import (
    METHODS,
    DosePlan,
    _as_regimen,
    as_days,
    assemble_result,
    default_atol,
    dose_events,
    dose_plan,
    output_grid,
    prepare_model,
    solve_with_fallback,
)
from .units import canonical_unit, dimension_text, format_quantity, parse_quantity, ureg

__all__ = ["BatchResult", "simulate_many"]

_OBSERVABLE_CHUNK = 1024  # runs per observables evaluation (bounds the temporary arrays)
# Methods tried, in order, when a run fails: Radau (implicit Runge-Kutta, L-stable, its own
# step control) passes extreme stiffness where the BDF-family methods give up, e.g. a
# receptor pool grown a millionfold binding drug within seconds; LSODA is the last resort.
@dataclass(frozen=True, eq=False)
class BatchResult:
    """States of every run on a common time grid, with units on the way out.

    ``batch["C"]`` is a Quantity of shape (runs, times) for a state or an observable;
    ``batch.result(i)`` is run i as a full :class:`~mechsim.result.Result` (troughs before
    doses, diagnostics, mass balance).
    """

    compiled: CompiledModel = field(repr=False)
    time_days: np.ndarray = field(repr=False)
    states: np.ndarray = field(repr=False)             # (runs, states, times), canonical
    parameter_values: np.ndarray = field(repr=False)   # (runs, parameters), canonical
    plans: tuple[DosePlan, ...] = field(repr=False)
    regimens: tuple[str, ...] = field(repr=False)
    pre_dose: tuple[tuple[np.ndarray, np.ndarray], ...] = field(repr=False)
    counters: np.ndarray = field(repr=False)           # (runs, 3): steps, rhs, jacobian
    method: str = "LSODA"
    rtol: float = 1e-8
    atol: tuple[float, ...] = ()
    fallbacks: tuple[tuple[int, str], ...] = ()  # (run, method) redone after a failure
    failures: tuple[tuple[int, float, str], ...] = ()  # (run, day reached, error): partial=True

    def __len__(self) -> int:
        return self.states.shape[0]

    def __repr__(self) -> str:
        return (f"BatchResult({self.compiled.name}: {len(self)} runs x "
                f"{self.time_days.size} times, method {self.method})")

    @property
    def model(self) -> str:
        return self.compiled.name

    @property
    def time(self) -> pint.Quantity:
        return ureg.Quantity(self.time_days, ureg.day).to(self.compiled.time_unit)

    def __getitem__(self, name: str) -> pint.Quantity:
        cm = self.compiled
        if name in cm.state_names:
            i = cm.state_names.index(name)
            return _in_unit(self.states[:, i, :], cm.state_units[i])
        if name in cm.observable_names:
            i = cm.observable_names.index(name)
            values = np.empty((len(self), self.time_days.size))
            for lo in range(0, len(self), _OBSERVABLE_CHUNK):
                hi = min(lo + _OBSERVABLE_CHUNK, len(self))
                y = np.moveaxis(self.states[lo:hi], 1, 0)          # states, runs, times
                p = self.parameter_values[lo:hi].T[:, :, None]     # parameters, runs, 1
                values[lo:hi] = cm.observables(self.time_days, y, p)[i]
            return _in_unit(values, cm.observable_units[i])
        known = list(cm.state_names) + list(cm.observable_names)
        close = get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"{name!r} is not a state or observable of {cm.name}{hint}")

    def parameter(self, name: str) -> pint.Quantity:
        """Each run's value of a parameter."""
        cm = self.compiled
        if name not in cm.parameter_names:
            raise KeyError(f"{name!r} is not a parameter of {cm.name}")
        i = cm.parameter_names.index(name)
        return _in_unit(self.parameter_values[:, i], cm.parameter_units[i])

    def result(self, i: int) -> Result:
        """Run ``i`` as a :class:`Result`."""
        cm = self.compiled
        p = self.parameter_values[i]
        pre_t, pre_y = self.pre_dose[i]
        return assemble_result(cm, p, self.plans[i], self.time_days, self.states[i],
                               np.asarray(cm.initial_state(p), dtype=float), list(pre_t),
                               list(pre_y), self.counters[i],
                               len(self.plans[i].breakpoints(float(self.time_days[-1]))) - 1,
                               dict(self.fallbacks).get(i, self.method), self.rtol,
                               np.array(self.atol), np.array(self.atol), self.regimens[i])


def _in_unit(canonical: np.ndarray, unit: pint.Unit) -> pint.Quantity:
    q = ureg.Quantity(canonical, canonical_unit(ureg.Quantity(1.0, unit)))
    return q.to(unit)


def simulate_many(model: Model | str, regimens: Regimen | str | Sequence | None = None, *,
                  parameters: Mapping[str, object] | None = None, until, times=None,
                  every=None, params=None, overrides: Mapping | None = None,
                  rtol: float = 1e-8, atol=None, method: str = "auto",
                  workers: int | None = None, executor=None,
                  chunk_size: int | None = None, partial: bool = False,
                  progress: bool | None = None) -> BatchResult:
    """Simulate many runs of one model: one per parameter row and/or regimen.

    Parameters
    ----------
    model, params, overrides, until, times, every, rtol, atol
        As in :func:`mechsim.simulate`; they apply to every run.
    regimens
        One regimen for all runs, or a sequence with one per run.
    parameters
        ``{name: values}`` with one value per run: a Quantity array (``Q_([4, 5], "L")``), a
        sequence of texts or Quantities (``["4 L", "5 L"]``), or plain numbers for
        dimensionless parameters.  Parameters not named keep the model's value.
    method
        ``"auto"`` (the compiled ``"NDF"`` engine when numba is installed, else ``"LSODA"``),
        or any method of :func:`mechsim.simulate`.
    workers
        Runs integrated at the same time (threads for NDF, processes otherwise); default:
        the number of CPUs.  Results do not depend on it.
    executor
        Any object with ``submit(fn, *args)`` returning a future with ``.result()``: a
        ``concurrent.futures`` pool or a Dask ``distributed.Client``.  Chunks of runs are
        submitted to it instead of a pool made here (``workers`` is then ignored).
    chunk_size
        Runs per submitted task; default: about four chunks per worker, at most
        ``MAX_CHUNK`` runs.
    progress
        Show a progress bar (on stderr) as chunks finish; default (None): when there are
        at least ``PROGRESS_FROM`` runs and stderr is a terminal.

    A run that fails is redone with the next method of ``simulation.FALLBACK`` (NDF: Radau, then
    LSODA); ``fallbacks`` lists (run, method used), and ``result(i).diagnostics.method``
    says it too.  The error of the first method is raised only if every method fails.
    With ``partial=True`` a run that no method can finish keeps the values the NDF engine
    computed up to the time it reached (NaN after) and is listed in ``failures`` as (run,
    day reached, error) instead of raising: a virtual trial only needs each patient up to
    progression, and an untreatable tumour can outgrow the solver long after that.
    Results do not depend on ``workers``, ``executor`` or ``chunk_size``.

    Examples
    --------
    >>> batch = simulate_many("one_compartment", "100 mg iv", until="1 day", every="1 day",
    ...                       parameters={"V": ["10 L", "20 L"]})
    >>> batch["C_mass"].to("mg/L").round(2)
    <Quantity([[10.    5.  ]
     [ 5.    3.54]], 'milligram / liter')>
    """
    model = prepare_model(model, params, overrides)
    cm = compile_model(model)
    base = cm.parameter_vector(model.parameters_by_name)
    columns = {name: _column(model, name, values) for name, values in (parameters or {}).items()}
    regimen_list = _regimen_list(regimens)
    n_runs = _count_runs(columns, regimen_list)
    matrix = np.tile(base, (n_runs, 1))
    for name, values in columns.items():
        matrix[:, cm.parameter_names.index(name)] = values
    end = as_days(until, "until")
    if not end > 0:
        raise ValidationError(f"`until` must be after 0, got {until!r}")
    method = _choose_method(method)
    atol_arr = default_atol(cm, atol)
    if not rtol > 0:
        raise ValidationError("`rtol` and `atol` must be positive")

    if n_runs > MAX_RUNS:
        raise ValidationError(f"{n_runs:,} runs in one call, more than {MAX_RUNS:,}; split "
                              "them into several calls")
    n_states = len(cm.state_names)
    # before the per-run work: the output times without doses are a lower bound of the grid
    _check_output_size(n_runs, n_states, output_grid(np.array([0.0, end]), end, times,
                                                     every).size)
    events = {}
    plans = []
    for i in range(n_runs):
        reg = regimen_list[i if len(regimen_list) > 1 else 0]
        if id(reg) not in events:
            events[id(reg)] = dose_events(cm, reg, end)
        try:
            plans.append(dose_plan(cm, events[id(reg)], matrix[i], end))
        except MechsimError as exc:
            raise type(exc)(f"run {i}{_run_text(cm, matrix[i], base)}: {exc}") from None
    breaks = np.unique(np.concatenate([plan.breakpoints(end) for plan in plans]))
    grid = output_grid(breaks, end, times, every)

    _check_output_size(n_runs, n_states, grid.size)
    states = np.empty((n_runs, n_states, grid.size))
    counters = np.zeros((n_runs, 3), dtype=np.int64)
    pre_dose: list = [None] * n_runs
    workers = _positive("workers", workers, os.cpu_count() or 1)
    size = _positive("chunk_size", chunk_size, min(-(-n_runs // (4 * workers)), MAX_CHUNK))
    chunks = [range(lo, min(lo + size, n_runs)) for lo in range(0, n_runs, size)]
    if method == "NDF":
        from . import jit

        jit.compiled_runner(cm)  # compile here, once, before any thread starts
        pool_type = ThreadPoolExecutor  # the compiled runs release the GIL
    else:
        pool_type = ProcessPoolExecutor
    args = [(cm, matrix[c.start:c.stop], plans[c.start:c.stop], grid, rtol, atol_arr, method,
             partial) for c in chunks]
    if progress is None:
        progress = n_runs >= PROGRESS_FROM and sys.stderr.isatty()
    from tqdm import tqdm

    with tqdm(total=n_runs, desc=cm.name, unit="run", disable=not progress,
              leave=False) as bar:
        def counted(results):
            for chunk, outcome in zip(chunks, results):
                bar.update(len(chunk))
                yield outcome

        if executor is not None:
            futures = [executor.submit(_solve_chunk, *a) for a in args]
            outcomes = list(counted(f.result() for f in futures))
        elif workers == 1 or len(chunks) == 1:
            outcomes = list(counted(_solve_chunk(*a) for a in args))
        else:
            extra = {"initializer": ignore_interrupts} \
                if pool_type is ProcessPoolExecutor else {}
            pool = pool_type(max_workers=workers, **extra)
            try:
                outcomes = list(counted(pool.map(_solve_chunk, *zip(*args))))
            finally:  # after Ctrl-C: drop the chunks not started, wait for the running ones
                pool.shutdown(wait=True, cancel_futures=True)
    fallbacks, failures = [], []
    for c, (chunk_states, chunk_pre, chunk_counts, failure, redone, kept) in zip(chunks,
                                                                               outcomes):
        if failure is not None:
            k, exc = failure
            i = c.start + k
            raise SolverError(f"run {i}{_run_text(cm, matrix[i], base)}: {exc}") from None
        states[c.start:c.stop] = chunk_states
        counters[c.start:c.stop] = chunk_counts
        pre_dose[c.start:c.stop] = chunk_pre
        fallbacks.extend((c.start + k, used) for k, used in redone)
        failures.extend((c.start + k, reached, text) for k, reached, text in kept)
    return BatchResult(
        compiled=cm, time_days=grid, states=states, parameter_values=matrix,
        plans=tuple(plans),
        regimens=tuple(str(regimen_list[i if len(regimen_list) > 1 else 0])
                       for i in range(n_runs)),
        pre_dose=tuple(pre_dose), counters=counters, method=method, rtol=float(rtol),
        atol=tuple(float(a) for a in atol_arr), fallbacks=tuple(fallbacks),
        failures=tuple(failures))


#: Most runs one call of simulate_many takes, and most values (runs x states x output
#: times, 8 bytes each: 2 GB) it may return; past either it refuses at once.
MAX_RUNS = 1_000_000
MAX_OUTPUT_VALUES = 250_000_000
#: Largest default chunk (a progress bar moves at least every MAX_CHUNK runs), and the
#: number of runs from which a progress bar is shown by default.
MAX_CHUNK = 1024
PROGRESS_FROM = 10_000


def _check_output_size(n_runs: int, n_states: int, n_times: int) -> None:
    values = n_runs * n_states * n_times
    if values > MAX_OUTPUT_VALUES:
        raise ValidationError(
            f"{n_runs:,} runs x {n_states} states x {n_times:,} output times would be "
            f"{values * 8 / 1e9:.3g} GB of output, more than the "
            f"{MAX_OUTPUT_VALUES * 8 / 1e9:g} GB one call may return; ask for fewer output "
            "times (every=..., times=...) or split the runs into several calls")


def ignore_interrupts() -> None:
    """Initializer of worker processes: Ctrl-C reaches the whole process group, but only
    the parent should handle it (it stops the pool); workers would print tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _positive(name: str, value, default: int) -> int:
    if value is None:
        return max(1, int(default))
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValidationError(f"`{name}` must be a positive integer or None, got {value!r}")
    return int(value)


def _choose_method(method: str) -> str:
    from . import jit

    if method == "auto":
        return "NDF" if jit.available() else "LSODA"
    if method not in METHODS:
        raise ValidationError(f"unknown method {method!r} (choose from auto, "
                              f"{', '.join(METHODS)})")
    if method == "NDF" and not jit.available():
        require("numba", "method 'NDF' (the compiled engine)")
    return method


def _solve_chunk(cm, matrix, plans, grid, rtol, atol_arr, method, partial=False):
    """Runs of one chunk, each exactly as :func:`mechsim.simulate` integrates it (module
    level: it crosses processes).  Returns states, pre-dose values, counters, the first
    failure as (index in chunk, SolverError) or None, (index in chunk, method) of the runs
    finished by a fallback method, and, with ``partial``, (index in chunk, day reached,
    message) of the runs kept unfinished."""
    n = len(cm.state_names)
    states = np.empty((len(plans), n, grid.size))
    pre, counts, redone, kept = [], np.zeros((len(plans), 3), dtype=np.int64), [], []
    for k, (row, plan) in enumerate(zip(matrix, plans)):
        p = np.ascontiguousarray(row)
        y0 = np.asarray(cm.initial_state(p), dtype=float)
        try:
            out, pre_t, pre_y, totals, attempt, _ = solve_with_fallback(
                cm, p, plan, grid, y0, rtol, atol_arr, method)
        except SolverError as exc:
            if not (partial and exc.partial):
                return states, pre, counts, (k, exc), redone, kept
            reached, out, pre_t, pre_y = exc.partial
            totals = (0, 0, 0)
            kept.append((k, reached, str(exc)))
            attempt = method
        if attempt != method:
            redone.append((k, attempt))
        states[k] = out
        pre.append((np.array(pre_t), np.array(pre_y).reshape(len(pre_t), n)))
        counts[k] = totals
    return states, pre, counts, None, redone, kept


def _column(model: Model, name: str, values) -> np.ndarray:
    """One parameter's per-run values in canonical units, dimension-checked."""
    known = model.parameters_by_name
    if name not in known:
        close = get_close_matches(name, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(f"unknown parameter {name!r} for model {model.name}{hint}")
    unit = known[name].value.units
    dims = known[name].value.dimensionality
    if isinstance(values, pint.Quantity):
        q = values
    elif isinstance(values, str):
        raise ValidationError(f"parameter {name}: give one value per run (a list or a "
                              f"Quantity array), got the single text {values!r}")
    else:
        items = list(np.atleast_1d(values)) if np.ndim(values) <= 1 else None
        if items is None:
            raise ValidationError(f"parameter {name}: values must be one-dimensional")
        if all(isinstance(v, (int, float, np.integer, np.floating)) and
               not isinstance(v, bool) for v in items):
            if dims:
                raise UnitError(f"parameter {name}: plain numbers have no unit; give "
                                f"Quantities or texts like '{items[0]} {unit:~}'")
            q = ureg.Quantity(np.asarray(items, dtype=float), unit)
        else:
            quantities = [parse_quantity(v, what=f"parameter {name}") for v in items]
            for v in quantities:
                if v.dimensionality != dims:
                    raise UnitError(f"parameter {name} must have the dimension of "
                                    f"{format_quantity(known[name].value)} "
                                    f"({dimension_text(dims)}), got {format_quantity(v)}")
            q = ureg.Quantity(np.array([v.to(unit).magnitude for v in quantities]), unit)
    if q.dimensionality != dims:
        raise UnitError(f"parameter {name} must have the dimension of "
                        f"{format_quantity(known[name].value)} ({dimension_text(dims)}), got "
                        f"{dimension_text(q.dimensionality)}")
    canonical = np.atleast_1d(np.asarray(q.to(canonical_unit(q)).magnitude, dtype=float))
    if canonical.ndim != 1:
        raise ValidationError(f"parameter {name}: values must be one-dimensional")
    if not np.all(np.isfinite(canonical)):
        bad = int(np.flatnonzero(~np.isfinite(canonical))[0])
        raise ValidationError(f"parameter {name}: run {bad} has a non-finite value")
    if dims and np.any(canonical < 0):
        bad = int(np.flatnonzero(canonical < 0)[0])
        raise ValidationError(f"parameter {name}: run {bad} is negative "
                              f"({format_quantity(q[bad] if q.ndim else q)}); only "
                              "dimensionless parameters may be negative")
    return canonical


def _regimen_list(regimens) -> list[Regimen]:
    if regimens is None or isinstance(regimens, (str, Regimen)):
        return [_as_regimen(regimens)]
    items = [_as_regimen(r) for r in regimens]
    if not items:
        raise ValidationError("`regimens` is an empty sequence")
    return items


def _count_runs(columns: Mapping[str, np.ndarray], regimens: list) -> int:
    lengths = {name: len(v) for name, v in columns.items()}
    if len(regimens) > 1:
        lengths["regimens"] = len(regimens)
    sizes = set(lengths.values())
    if len(sizes) > 1:
        text = ", ".join(f"{k}: {v}" for k, v in lengths.items())
        raise ValidationError(f"every per-run input needs the same number of runs ({text})")
    n = sizes.pop() if sizes else 1
    if n == 0:
        raise ValidationError("no runs: the per-run inputs are empty")
    return n


def _run_text(cm: CompiledModel, p: np.ndarray, base: np.ndarray) -> str:
    """`` (CL = 0.3 L/day, ...)``: the parameters in which a run differs from the model."""
    changed = [f"{name} = {format_quantity(_in_unit(np.array(p[i]), cm.parameter_units[i]))}"
               for i, name in enumerate(cm.parameter_names) if p[i] != base[i]]
    return f" ({', '.join(changed[:6])}{', ...' if len(changed) > 6 else ''})" if changed else ""

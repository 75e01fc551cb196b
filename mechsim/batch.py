"""Many runs of one model at once: virtual patients, dose sweeps, sets of regimens.

One model is compiled once; each run differs in parameter values and/or regimen.  Unit work
happens once per distinct regimen and once per parameter column, so the per-run cost is the
integration itself.  With numba installed (``mechsim[fast]``) every run is integrated by the
compiled NDF engine (:mod:`mechsim.jit`) in threads that run in parallel; without it, runs use
LSODA, in worker processes when more than one worker is asked for.  A run gives the same
numbers whichever way it is scheduled: runs never share solver state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import get_close_matches

import numpy as np
import pint

from . import solvers
from .compile import CompiledModel
from .doseplan import (
    DosePlan,
    as_regimen,
    check_fixed_values,
    dose_breakpoints,
    dose_plans,
    dosing_parameters,
    first_invalid_row,
)
from .dosing import Regimen
from .errors import MechsimError, RegimenError, SolverError, UnitError, ValidationError
from .model import Model
from .result import Result, build_result
from .runner import chunk_ranges, map_chunks, workers_or_cpus
from .runspec import RunSpec, SolverSettings, output_grid
from .solvers import DEFAULT_METHOD, Trajectory
from .units import (
    canonical_unit,
    convertible,
    dimension_text,
    format_quantity,
    format_unit,
    parse_quantity,
    split_output,
    ureg,
)

__all__ = ["BatchResult", "simulate_many"]

_OBSERVABLE_CHUNK = 1024  # runs per observables evaluation (bounds the temporary arrays)


@dataclass(frozen=True, eq=False)
class RunPlans(Sequence):
    """The dose plan of every run, made when asked for: ``plans[i]`` is run i's plan,
    ``plans[a:b]`` the plans of those runs (a RunPlans again), :meth:`made` all of them.

    A population of 10,000 patients whose volumes differ has 10,000 plans; holding them
    all while the runs are integrated would add 17 MB to the peak, so each chunk of runs
    makes its own, and a batch's :meth:`BatchResult.result` makes one again.  A plan made
    for one run is the same, bit for bit, as made with any other runs
    (:func:`~mechsim.doseplan.dose_plans`).
    """

    compiled: CompiledModel
    until: float
    events: tuple                # the converted doses of each distinct regimen
    regimen_of: np.ndarray       # index into ``events`` of each run
    matrix: np.ndarray           # canonical parameters of each run

    def __len__(self) -> int:
        return len(self.regimen_of)

    def __getitem__(self, key):
        if isinstance(key, slice):
            return dataclasses.replace(self, regimen_of=self.regimen_of[key],
                                       matrix=self.matrix[key])
        return self[key:key + 1 if key != -1 else None].made()[0]

    def made(self) -> list[DosePlan]:
        """Every run's plan; runs under one regimen that agree on the parameters dosing
        reads share one plan object (and, in the compiled engine, its segment arrays)."""
        plans: list = [None] * len(self)
        dosing = dosing_parameters(self.compiled)
        for r, events in enumerate(self.events):
            runs = np.flatnonzero(self.regimen_of == r)
            first: dict = {}
            shared = [first.setdefault(self.matrix[i, dosing].tobytes(), i) for i in runs]
            distinct = list(first.values())
            made = dict(zip(distinct, dose_plans(self.compiled, events, self.matrix[distinct],
                                                 self.until)))
            for i, j in zip(runs, shared):
                plans[i] = made[j]
        return plans

    def breakpoints(self) -> np.ndarray:
        """Every breakpoint of every run's plan (doses, infusion ends, 0 and until)."""
        found = [dose_breakpoints(self.compiled, events, self.matrix[self.regimen_of == r],
                                  self.until) for r, events in enumerate(self.events)]
        return np.unique(np.concatenate(found))


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
    plans: Sequence[DosePlan] = field(repr=False)   # RunPlans: made when asked for
    regimens: tuple[str, ...] = field(repr=False)
    #: per run (dose days, states just before each dose), the states None when they are
    #: the outputs at those days (doses on the output grid that do not jump the state)
    pre_dose: tuple[tuple[np.ndarray, np.ndarray | None], ...] = field(repr=False)
    counters: np.ndarray = field(repr=False)           # (runs, 3): steps, rhs, jacobian
    method: str = "LSODA"
    rtol: float = 1e-8
    atol: tuple[float, ...] = ()
    atol_given: float | tuple[float, ...] | None = None
    fallbacks: tuple[tuple[int, str], ...] = ()  # (run, method) redone after a failure
    failures: tuple[tuple[int, float, str], ...] = ()  # (run, day reached, error): partial=True
    #: (run, its executed events as (day, name)) for the runs in which events executed
    event_logs: tuple[tuple[int, tuple], ...] = ()
    #: (run, what the regimen's dosing rules did to its doses) for runs of an adaptive
    #: regimen (mechsim.dose_rules.DoseDecision)
    dose_logs: tuple[tuple[int, tuple], ...] = ()

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
        """An output of every run, shape (runs, times): ``batch["RO"]``, or in a unit of
        your choice, ``batch["C_mass[ug/mL]"]``."""
        cm = self.compiled
        bare, wanted = split_output(name)
        if bare in cm.state_names:
            i = cm.state_names.index(bare)
            return _in_unit(self.states[:, i, :], convertible(bare, cm.state_units[i], wanted))
        if bare in cm.observable_names:
            i = cm.observable_names.index(bare)
            unit = convertible(bare, cm.observable_units[i], wanted)
            values = np.empty((len(self), self.time_days.size))
            for lo in range(0, len(self), _OBSERVABLE_CHUNK):
                hi = min(lo + _OBSERVABLE_CHUNK, len(self))
                y = np.moveaxis(self.states[lo:hi], 1, 0)          # states, runs, times
                p = self.parameter_values[lo:hi].T[:, :, None]     # parameters, runs, 1
                values[lo:hi] = cm.observables(self.time_days, y, p)[i]
            return _in_unit(values, unit)
        known = list(cm.state_names) + list(cm.observable_names)
        close = get_close_matches(bare, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"{bare!r} is not a state or observable of {cm.name}{hint}")

    def _repr_html_(self) -> str:
        from .html import batch_html

        return batch_html(self)

    def parameter(self, name: str) -> pint.Quantity:
        """Each run's value of a parameter."""
        cm = self.compiled
        if name not in cm.parameter_names:
            raise KeyError(f"{name!r} is not a parameter of {cm.name}")
        i = cm.parameter_names.index(name)
        return _in_unit(self.parameter_values[:, i], cm.parameter_units[i])

    def before_doses(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        """(dose days, canonical states just before each dose) of run ``i``."""
        days, states = self.pre_dose[i]
        if states is None:  # the states before the doses are the outputs at the dose days
            states = self.states[i][:, np.searchsorted(self.time_days, days)].T
        return days, states

    def result(self, i: int) -> Result:
        """Run ``i`` as a :class:`Result`."""
        pre_t, pre_y = self.before_doses(i)
        steps, rhs, jac = (int(c) for c in self.counters[i])
        trajectory = Trajectory(states=self.states[i], pre_dose_days=pre_t,
                                pre_dose_states=pre_y, steps=steps, rhs_evaluations=rhs,
                                jacobian_evaluations=jac,
                                method=dict(self.fallbacks).get(i, self.method),
                                reached=float(self.time_days[-1]),
                                events=dict(self.event_logs).get(i, ()),
                                doses=dict(self.dose_logs).get(i, ()))
        return build_result(self.compiled, self.parameter_values[i], self.plans[i],
                            self.time_days, trajectory, rtol=self.rtol,
                            atol=np.array(self.atol), atol_given=self.atol_given,
                            regimen=self.regimens[i])


def _in_unit(canonical: np.ndarray, unit: pint.Unit) -> pint.Quantity:
    q = ureg.Quantity(canonical, canonical_unit(ureg.Quantity(1.0, unit)))
    return q.to(unit)


def simulate_many(model: Model | str, regimens: Regimen | str | Sequence | None = None, *,
                  parameters: Mapping[str, object] | None = None, until, times=None,
                  every=None, params=None, overrides: Mapping | None = None,
                  rtol: float = 1e-8, atol=None, method: str = DEFAULT_METHOD,
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
        ``runner.MAX_CHUNK`` runs.
    progress
        Show a progress bar (on stderr) as chunks finish; default (None): when there are
        at least ``runner.PROGRESS_FROM`` runs and stderr is a terminal.

    A run that fails is redone with the next stiff method of the solver registry
    (:mod:`mechsim.solvers`; NDF: Radau, then LSODA); ``fallbacks`` lists (run, method
    used), and ``result(i).diagnostics.method`` says it too.  The error of the first
    method is raised only if every method fails.  With ``partial=True`` a run that no
    method can finish keeps the values the NDF engine computed up to the time it reached
    (NaN after) and is listed in ``failures`` as (run, day reached, error) instead of
    raising: a virtual trial only needs each patient up to progression, and an
    untreatable tumour can outgrow the solver long after that.
    Results do not depend on ``workers``, ``executor`` or ``chunk_size``.

    Examples
    --------
    >>> batch = simulate_many("one_compartment", "100 mg iv", until="1 day", every="1 day",
    ...                       parameters={"V": ["10 L", "20 L"]})
    >>> batch["C_mass"].to("mg/L").round(2)
    <Quantity([[10.    5.  ]
     [ 5.    3.54]], 'milligram / liter')>
    """
    spec = RunSpec.build(model, until=until, params=params, overrides=overrides, times=times,
                         every=every, rtol=rtol, atol=atol, method=method)
    columns = {name: _column(spec.model, name, values)
               for name, values in (parameters or {}).items()}
    regimen_list = _regimen_list(regimens)
    if regimen_list:  # compiled to watch the dosing rules' conditions, if it has any
        spec = spec.with_regimen(regimen_list[0])
    n_runs = _count_runs(columns, regimen_list)
    _check_run_count(n_runs)
    matrix = np.tile(spec.parameters, (n_runs, 1))
    for name, values in columns.items():
        matrix[:, spec.compiled.parameter_names.index(name)] = values
    return run_many(spec, matrix, regimen_list, workers=workers, executor=executor,
                    chunk_size=chunk_size, partial=partial, progress=progress)


def run_many(spec: RunSpec, matrix: np.ndarray, regimens: Sequence[Regimen] | None = None,
             *, workers: int | None = None, executor=None, chunk_size: int | None = None,
             partial: bool = False, progress: bool | None = None) -> BatchResult:
    """The runs of ``spec``: one per row of ``matrix`` (canonical parameter vectors), each
    under ``regimens[i]`` (one regimen for all, or one per run; default the spec's), on one
    common output grid.  See :func:`simulate_many` for the options; trials and fits call
    this directly."""
    cm = spec.compiled
    matrix, regimens, plans = _plans(spec, matrix, regimens)
    n_runs, n_states = matrix.shape[0], len(cm.state_names)
    breaks = plans.breakpoints()
    grid = spec.grid(breaks)
    _check_output_size(n_runs, n_states, grid.size)
    states = np.empty((n_runs, n_states, grid.size))
    counters = np.zeros((n_runs, 3), dtype=np.int64)
    pre_dose: list = [None] * n_runs
    fallbacks, failures = [], []
    settings = spec.solver_settings()
    chunks = _chunks(n_runs, workers, chunk_size)
    # threads of this process write each chunk into its part of the one output array;
    # chunks that travel to other processes (or an executor) return theirs to be copied
    in_place = spec.method == "NDF" and executor is None
    logs: list = []
    dose_logs: list = []
    for c, (chunk_states, chunk_pre, chunk_counts, redone, kept, logged) in _dispatch(
            spec, _solve_chunk, chunks,
            [(settings, matrix[c.start:c.stop], plans[c.start:c.stop], grid, partial,
              states[c.start:c.stop] if in_place else None) for c in chunks],
            matrix, workers=workers, executor=executor, progress=progress):
        if chunk_states is not None:
            states[c.start:c.stop] = chunk_states
        counters[c.start:c.stop] = chunk_counts
        pre_dose[c.start:c.stop] = chunk_pre
        fallbacks.extend((c.start + k, used) for k, used in redone)
        failures.extend((c.start + k, reached, text) for k, reached, text in kept)
        logs.extend((c.start + k, events) for k, events, _ in logged if events)
        dose_logs.extend((c.start + k, doses) for k, _, doses in logged if doses)
    return BatchResult(
        compiled=cm, time_days=grid, states=states, parameter_values=matrix, plans=plans,
        regimens=_regimen_texts(regimens, n_runs),
        pre_dose=tuple(pre_dose), counters=counters, method=spec.method, rtol=spec.rtol,
        atol=tuple(float(a) for a in spec.atol), atol_given=spec.atol_given,
        fallbacks=tuple(fallbacks), failures=tuple(failures), event_logs=tuple(logs),
        dose_logs=tuple(dose_logs))


def measure_many(spec: RunSpec, matrix: np.ndarray, measure: Callable[[Result], object],
                 regimens: Sequence[Regimen] | None = None, *, workers: int | None = None,
                 executor=None, chunk_size: int | None = None, progress: bool | None = None,
                 labels: Sequence[str] | None = None) -> list:
    """``[measure(result) for each run]``: the runs of :func:`run_many`, each reduced by
    ``measure`` (a picklable callable, e.g. metrics) where it was computed, so only what
    is measured is kept.  Each run is exactly the Result :func:`mechsim.simulate` gives
    (its own output grid).  ``labels`` name the runs in errors (default: the run number
    and the parameters in which it differs)."""
    matrix, regimens, run_plans = _plans(spec, matrix, regimens, labels)
    plans = run_plans.made()
    texts = _regimen_texts(regimens, matrix.shape[0])
    settings = spec.solver_settings()
    chunks = _chunks(matrix.shape[0], workers, chunk_size)
    values = []
    for _, measured in _dispatch(
            spec, _measure_chunk, chunks,
            [(settings, matrix[c.start:c.stop], plans[c.start:c.stop], texts[c.start:c.stop],
              spec.until, spec.times, spec.every, measure) for c in chunks],
            matrix, workers=workers, executor=executor, progress=progress, labels=labels):
        values.extend(measured)
    return values


def _plans(spec: RunSpec, matrix, regimens, labels=None):
    """The parameter matrix, the regimen list and every run's dose plan as a
    :class:`RunPlans`, everything checked before any run starts (volumes, bioavailability,
    lag, body weight; the regimens' units and routes); an error names the run as
    :func:`_dispatch` does."""
    matrix = np.atleast_2d(np.asarray(matrix, dtype=float))
    n_runs = matrix.shape[0]
    regimens = [spec.regimen] if not regimens else list(regimens)
    if len(regimens) not in (1, n_runs):
        raise ValidationError(f"{len(regimens)} regimens for {n_runs} runs: give one, or one "
                              "per run")
    _check_run_count(n_runs)
    # before the per-run work: the output times without doses are a lower bound of the grid
    _check_output_size(n_runs, len(spec.compiled.state_names),
                       spec.grid(np.array([0.0, spec.until])).size)
    cm = spec.compiled
    for i in _first_and_invalid(cm, matrix):
        try:
            check_fixed_values(cm, matrix[i])
        except MechsimError as exc:
            raise type(exc)(_named(spec, matrix, labels, i, str(exc))) from None
    # each distinct regimen's doses converted once, before any run (a unit error or an
    # unknown route stops everything at once); the plans are made chunk by chunk
    index: dict[int, int] = {}   # id of a regimen -> its place in `distinct`
    distinct: list = []
    regimen_of = np.empty(n_runs, dtype=np.int64)
    for i in range(n_runs):
        reg = regimens[i if len(regimens) > 1 else 0]
        if id(reg) not in index:
            index[id(reg)] = len(distinct)
            distinct.append(reg)
        regimen_of[i] = index[id(reg)]
    for reg in distinct:
        if tuple(getattr(as_regimen(reg), "rules", ())) != cm.dose_rules:
            # the rules' conditions are compiled into the model the runs share
            raise RegimenError("the runs of one batch share their dosing rules; run "
                               "regimens with different rules as separate batches")
    events = tuple(spec.events(reg) for reg in distinct)
    return matrix, regimens, RunPlans(cm, spec.until, events, regimen_of, matrix)


def _first_and_invalid(cm: CompiledModel, matrix: np.ndarray) -> list[int]:
    """Rows to check one by one for a message that names the problem: the first (unit
    errors of the model), and the first that the batch check rejects."""
    bad = first_invalid_row(cm, matrix)
    return [0] if bad is None else [0, bad]


def _regimen_texts(regimens: Sequence[Regimen], n_runs: int) -> tuple[str, ...]:
    """Each run's regimen as text, each distinct regimen written once."""
    texts = {}
    for reg in regimens:
        if id(reg) not in texts:
            texts[id(reg)] = str(reg)
    return tuple(texts[id(regimens[i if len(regimens) > 1 else 0])] for i in range(n_runs))


def _named(spec: RunSpec, matrix, labels, i: int, text: str) -> str:
    """``text`` about run ``i``: followed by its label, or preceded by its number and the
    parameters in which it differs from the spec's."""
    if labels is not None:
        return f"{text} ({labels[i]})"
    return f"run {i}{_run_text(spec.compiled, matrix[i], spec.parameters)}: {text}"


def _chunks(n_runs: int, workers: int | None, chunk_size: int | None) -> list[range]:
    return chunk_ranges(n_runs, workers_or_cpus(workers), chunk_size)


def _dispatch(spec: RunSpec, function, chunks: list[range], args: list[tuple], matrix, *,
              workers, executor, progress, labels=None):
    """Run the chunks through the one runner; yield (chunk range, outcome) in order, and
    turn the first failed run into an error that names the run (its label, or its number
    and the parameters in which it differs)."""
    compiled_engine = spec.method == "NDF"
    if compiled_engine:
        from .solvers import ndf_kernel

        ndf_kernel.chunk_runner(spec.compiled)  # compile once, before any thread starts
    outcomes = map_chunks(function, args, sizes=[len(c) for c in chunks],
                          workers=workers_or_cpus(workers), executor=executor,
                          # the compiled runs release the GIL: threads; scipy's hold it
                          processes=not compiled_engine, progress=progress,
                          desc=spec.compiled.name)
    for c, (failure, *outcome) in zip(chunks, outcomes):
        if failure is not None:
            k, exc = failure
            i = c.start + k
            if isinstance(exc, SolverError):
                raise SolverError(_named(spec, matrix, labels, i, exc.detail), hint=exc.hint,
                                  failures=exc.failures) from None
            raise type(exc)(_named(spec, matrix, labels, i, exc.message), exc.where) from None
        yield c, (outcome[0] if len(outcome) == 1 else outcome)


#: Most runs one call of simulate_many takes, and most values (runs x states x output
#: times, 8 bytes each: 2 GB) it may return; past either it refuses at once.
MAX_RUNS = 1_000_000
MAX_OUTPUT_VALUES = 250_000_000


def _check_run_count(n_runs: int) -> None:
    if n_runs > MAX_RUNS:
        raise ValidationError(f"{n_runs:,} runs in one call, more than {MAX_RUNS:,}; split "
                              "them into several calls")


def _check_output_size(n_runs: int, n_states: int, n_times: int) -> None:
    values = n_runs * n_states * n_times
    if values > MAX_OUTPUT_VALUES:
        raise ValidationError(
            f"{n_runs:,} runs x {n_states} states x {n_times:,} output times would be "
            f"{values * 8 / 1e9:.3g} GB of output, more than the "
            f"{MAX_OUTPUT_VALUES * 8 / 1e9:g} GB one call may return; ask for fewer output "
            "times (every=..., times=...) or split the runs into several calls")


def _solve_chunk(settings: SolverSettings, matrix, plans, grid, partial=False, out=None):
    """Runs of one chunk, each exactly as :func:`mechsim.simulate` integrates it (module
    level: it crosses processes).  Returns the first failure as (index in chunk,
    SolverError) or None, then states (None when written into ``out``, the chunk's part
    of the batch's array), pre-dose values, counters, (index in chunk, method) of the runs
    finished by a fallback method, and, with ``partial``, (index in chunk, day reached,
    message) of the runs kept unfinished.

    With the compiled engine the whole chunk is one call into machine code; the runs it
    could not finish are then redone one by one through the solver registry, which repeats
    the same NDF computation and goes on to the fallback methods."""
    n = len(settings.compiled.state_names)
    plans = plans.made() if isinstance(plans, RunPlans) else list(plans)
    states = np.empty((len(plans), n, grid.size)) if out is None else out
    pre: list = [None] * len(plans)
    counts, redone, kept = np.zeros((len(plans), 3), dtype=np.int64), [], []
    logged: list = []
    todo = range(len(plans))
    # the kernel needs a state: a model without one goes run by run (NDF.solve passes it on)
    if settings.method == "NDF" and not settings.compiled.events and \
            settings.compiled.state_names:
        from .solvers.ndf import solve_chunk
        from .solvers.ndf_kernel import OK

        status, pre, counts = solve_chunk(settings.compiled, matrix, plans, grid,
                                          settings.rtol, settings.atol, states)
        todo = np.flatnonzero(status != OK)
    for k in todo:
        row, plan = matrix[k], plans[k]
        try:
            trajectory = solvers.solve(settings.problem(row, plan, grid), settings.method)
        except SolverError as exc:
            if not (partial and exc.partial is not None):
                return (k, exc), states, pre, counts, redone, kept, logged
            trajectory = exc.partial
            kept.append((k, trajectory.reached, str(exc)))
        if trajectory.method != settings.method:
            redone.append((k, trajectory.method))
        states[k] = trajectory.states
        days = np.asarray(trajectory.pre_dose_days, dtype=float)
        pre[k] = (days, np.asarray(trajectory.pre_dose_states, dtype=float).reshape(
            days.size, n))
        counts[k] = trajectory.counters
        if trajectory.events or trajectory.doses:
            logged.append((k, trajectory.events, trajectory.doses))
    return None, None if out is not None else states, pre, counts, redone, kept, logged


def _measure_chunk(settings: SolverSettings, matrix, plans, texts, until, times, every,
                   measure):
    """``measure`` of each run of one chunk (module level: it crosses processes); returns
    the first failure as (index in chunk, error) or None, then the measured values."""
    values = []
    for k, (row, plan, text) in enumerate(zip(matrix, plans, texts)):
        grid = output_grid(plan.breakpoints(until), until, times, every)
        try:
            trajectory = solvers.solve(settings.problem(row, plan, grid), settings.method)
            values.append(measure(build_result(
                settings.compiled, row, plan, grid, trajectory, rtol=settings.rtol,
                atol=settings.atol, atol_given=settings.atol_given, regimen=text)))
        except MechsimError as exc:
            return (k, exc), values
    return None, values


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
                                f"Quantities or texts like '{items[0]} {format_unit(unit)}'")
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
        return [as_regimen(regimens)]
    items = [as_regimen(r) for r in regimens]
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

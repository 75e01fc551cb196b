"""The compiled NDF engine as a registered method (the kernel is in :mod:`.ndf_kernel`)."""

from __future__ import annotations

import numpy as np

from ..errors import SolverError
from . import ndf_kernel
from .base import Problem, Solver, Trajectory, states_involved
from .events import Stop, crossings, solve_with_events

__all__ = ["NDF", "solve_chunk"]


#: Runs per compiled call within a chunk: the segment arrays of a block exist at once
#: (about 25 kB per run for a year of two-weekly infusions), so a block bounds that memory
#: whatever the chunk size; a call costs microseconds, so the number of calls is no cost.
BLOCK = 128


def solve_chunk(cm, parameters: np.ndarray, plans, grid: np.ndarray, rtol: float,
                atol: np.ndarray, out: np.ndarray, until: np.ndarray | None = None):
    """Many runs of one model in compiled calls of :data:`BLOCK` runs, written straight
    into ``out`` (runs, states, times).  ``until``: where each run ends (default: all at
    ``grid[-1]``); a run ends exactly as a run of its own on a grid ending there would (its
    last step lands on its end), and the later columns of its output hold its final state.
    Returns (status per run, (pre-dose days, pre-dose
    states or None when they are the outputs at those days) per run, counters (runs, 3)).
    A run whose status is not ``ndf_kernel.OK`` has unspecified values in ``out``: the
    caller redoes it with
    :func:`mechsim.solvers.solve`, which repeats exactly this computation and then tries
    the fallback methods.

    Runs that share a plan object share its segment arrays (a population under one
    regimen whose dosing does not depend on the varied parameters computes them once).
    """
    n_runs = len(plans)
    status = np.zeros(n_runs, dtype=np.int64)
    counters = np.zeros((n_runs, 3), dtype=np.int64)
    pre_dose: list = []
    params = extended_rows(cm, parameters)
    ends = np.full(n_runs, float(grid[-1])) if until is None else \
        np.asarray(until, dtype=float)
    for lo in range(0, n_runs, BLOCK):
        hi = min(lo + BLOCK, n_runs)
        status[lo:hi], block_pre, counters[lo:hi] = _solve_block(
            cm, params[lo:hi], plans[lo:hi], grid, rtol, atol, out[lo:hi], ends[lo:hi])
        pre_dose.extend(block_pre)
    return status, pre_dose, counters


def _solve_block(cm, params, plans, grid, rtol, atol, out, until):
    n = len(cm.state_names)
    # a plan's segments depend on where the run ends: runs share them when both agree
    keys = [(id(plan), end) for plan, end in zip(plans, until.tolist())]
    segments: dict[tuple, tuple] = {}
    for plan, key in zip(plans, keys):
        if key not in segments:
            segments[key] = plan.segments(key[1], n)
    per_run = [segments[key] for key in keys]
    offsets = segment_offsets([len(seg[0]) for seg in per_run])
    starts, ends, rates, jumps = (np.concatenate([seg[k] for seg in per_run])
                                  for k in range(4))
    status, pre, counters = run_segments(cm, params, offsets, starts, ends, rates, jumps,
                                         grid, rtol, atol, out)
    # runs that share a plan share its array of dose times; where every dose time is an
    # output time and no dose jumps the state (infusions), the state before each dose is
    # the output at that time, bit for bit: None says so, and nothing is stored twice
    # (a year of two-weekly infusions for 10,000 patients would hold 32 MB again)
    dose_times = {key: seg[0][seg[4]] for key, seg in segments.items()}
    on_grid = {key: _grid_columns(grid, times) for key, times in dose_times.items()}
    pre_dose = []
    for i, (key, seg) in enumerate(zip(keys, per_run)):
        states = pre[offsets[i]:offsets[i + 1]][seg[4]]
        columns = on_grid[key]
        same = columns is not None and np.array_equal(states, out[i][:, columns].T)
        pre_dose.append((dose_times[key], None if same else states))
    return status, pre_dose, counters


def extended_rows(cm, parameters) -> np.ndarray:
    """:func:`ndf_kernel.extended_parameters` of each row of ``parameters``."""
    return np.array([ndf_kernel.extended_parameters(cm, row) for row in parameters])


def segment_offsets(sizes) -> np.ndarray:
    """Where each run's segments start in the concatenated segment arrays, and the end."""
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    return offsets


def run_segments(cm, params, offsets, starts, ends, rates, jumps, grid, rtol, atol, out):
    """One compiled call for runs given as concatenated segment arrays (run ``i``'s are rows
    ``offsets[i]:offsets[i + 1]``), ``params`` their extended parameter rows; the outputs
    go into ``out``.  Returns (status per run, the state before each segment's start,
    counters (runs, 3))."""
    n = len(cm.state_names)
    # row by row, as Problem.build does: numpy's batched and scalar math may differ in
    # the last bit, and a run must not depend on the block it is in
    n_base = len(cm.parameter_names)
    y0 = np.array([np.asarray(cm.initial_state(row[:n_base]), dtype=float)
                   for row in params])
    pre = np.full((int(offsets[-1]), n), np.nan)
    stats = np.zeros((len(params), 4))
    status = np.zeros(len(params), dtype=np.int64)
    ndf_kernel.chunk_runner(cm)(params, offsets, starts, ends, rates, jumps, grid,
                                float(rtol), atol.astype(float), y0, out, pre, stats, status)
    return status, pre, stats[:, :3].astype(np.int64)


def _grid_columns(grid: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """The columns of ``grid`` equal to each of ``times``, or None if one is not on it."""
    columns = np.searchsorted(grid, times)
    if np.any(columns >= grid.size) or not np.array_equal(grid[np.minimum(
            columns, grid.size - 1)], times):
        return None
    return columns


class NDF(Solver):
    """mechsim's variable-order NDF integrator, compiled with numba together with the
    model's RHS and Jacobian: a whole run is one call into machine code."""

    name = "NDF"
    requires = "numba"

    def available(self) -> bool:
        return ndf_kernel.available()

    def solve(self, problem: Problem) -> Trajectory:
        if not problem.compiled.state_names:
            # nothing to integrate (rules of time only, an imported SBML model): the scipy
            # layer's constant placeholder state does it; the kernel needs a state
            from .scipy_methods import LSODA
            return LSODA().solve(problem)
        if problem.compiled.events:
            return solve_with_events(problem, _piece(problem), self.name)
        cm, grid = problem.compiled, problem.grid
        n = len(cm.state_names)
        starts, ends, rates, jumps, is_dose = problem.plan.segments(problem.until, n)
        # NaN until written: after a failure, what the engine did not reach stays NaN (never
        # memory left over from another run)
        out = np.full((1, n, len(grid)), np.nan)
        pre = np.full((len(starts), n), np.nan)
        stats = np.zeros((1, 4))
        codes = np.zeros(1, dtype=np.int64)
        ndf_kernel.chunk_runner(cm)(
            ndf_kernel.extended_parameters(cm, problem.parameters)[None, :],
            np.array([0, len(starts)], dtype=np.int64), starts, ends, rates, jumps, grid,
            float(problem.rtol), problem.atol.astype(float),
            problem.initial.astype(float)[None, :], out, pre, stats, codes)
        out, stats, status = out[0], stats[0], int(codes[0])
        if status == ndf_kernel.OK:
            return Trajectory(states=out, pre_dose_days=starts[is_dose],
                              pre_dose_states=pre[is_dose], steps=int(stats[0]),
                              rhs_evaluations=int(stats[1]),
                              jacobian_evaluations=int(stats[2]), method=self.name,
                              reached=problem.until)
        reached = float(stats[3])
        out[:, grid > reached] = np.nan
        seen = np.flatnonzero(grid <= reached)
        y_last = out[:, seen[-1]] if seen.size else problem.initial
        involved = states_involved(problem, np.zeros(n), y_last,
                                   float(grid[seen[-1]]) if seen.size else 0.0)
        # what was integrated before the failure, for callers that can use a partial run
        # (simulate_many(partial=True)); the rest of the grid is NaN
        done = is_dose & (starts <= reached)
        partial = Trajectory(states=out, pre_dose_days=starts[done], pre_dose_states=pre[done],
                             steps=0, rhs_evaluations=0, jacobian_evaluations=0,
                             method=self.name, reached=reached, complete=False)
        states = f"; states involved: {', '.join(involved)}" if involved else ""
        raise SolverError(f"solver NDF failed near t = {reached:g} day: "
                          f"{ndf_kernel.STATUS_TEXT[status]}; model {cm.name}{states}",
                          hint="check parameter values and units, loosen rtol/atol or try "
                               "method='Radau'", partial=partial)


def _piece(problem: Problem):
    """The compiled engine's piece integrator for :func:`.events.solve_with_events`."""
    cm = problem.compiled
    run = ndf_kernel.piece_runner(cm)
    n_roots = len(cm.event_roots)
    rtol, atol = float(problem.rtol), problem.atol.astype(float)

    def piece(a, b, y, u, p, times, out, columns):
        y = np.array(y, dtype=float)
        stats = np.zeros(4)
        roots = np.zeros((3, max(n_roots, 1)))
        local = np.empty((len(y), len(times)))
        status, t = run(n_roots, ndf_kernel.extended_parameters(cm, p), float(a), float(b),
                        np.ascontiguousarray(u, dtype=float), y,
                        np.ascontiguousarray(times, dtype=float), local, rtol, atol, stats,
                        roots)
        if status not in (ndf_kernel.OK, ndf_kernel.ROOT):
            raise SolverError(f"solver NDF failed near t = {t:g} day: "
                              f"{ndf_kernel.STATUS_TEXT[status]}; model {cm.name}",
                              hint="check parameter values and units, loosen rtol/atol or "
                                   "try method='Radau'")
        reached = times <= t if status == ndf_kernel.ROOT else times < b
        out[:, columns[reached]] = local[:, reached]
        crossed = crossings(roots[0, :n_roots], roots[1, :n_roots]) \
            if status == ndf_kernel.ROOT else {}
        return Stop(float(t), y, crossed, (int(stats[0]), int(stats[1]), int(stats[2])))
    return piece

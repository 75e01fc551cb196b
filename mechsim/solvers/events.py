"""Runs of models with events: integration piece by piece, stopping where a trigger's
comparison changes sign, and the events executed there with SBML's semantics.

A method provides one thing, a *piece* integrator (:class:`Piece`): from a state at ``a``,
integrate towards ``b`` with a constant input, fill the output times it passes, and stop
early at the first sign change of any of the model's root functions (``lhs - rhs`` of every
comparison in a trigger, :attr:`~mechsim.compile.CompiledModel.event_roots`), returning the
state and time there.  The compiled engine stops at the right end of the bracket that holds
the crossing (within 100 ulps of the time); scipy's methods at their located root.

:func:`solve_with_events` does everything else, the same for every method:

1. Doses are applied at their times, as without events (the dose plan's segments); the
   value at a dose or event time includes it (right-continuous), and the state just before
   each dose is kept.
2. At every stop (a crossing, a dose, a delayed event falling due, t = 0) the triggers are
   read; a comparison that has just crossed counts with its new sign (``x > K`` is true just
   after ``x`` passes ``K``; ``x == K`` is true at the crossing).  A trigger that turns from
   false to true fires its event: its delay and, with ``from_trigger_time``, its assigned
   values are computed now; it executes now or after the delay.  At t = 0 a trigger's value
   "before" is the event's ``initial_value``.
3. Events due at one time execute one at a time, highest ``priority`` first (computed when
   they are due; equal priorities, and events without one, in the order of the model
   file, then in the order they fired); after each execution the triggers are read again:
   an event whose trigger is no longer true and that is not ``persistent`` is cancelled,
   and newly true triggers fire (cascades).  A cascade that does not end within
   :data:`MAX_CASCADE` executions at one time is an error.
4. An executed event's assignments are applied together (values computed before any is
   applied) to states and parameters; a changed parameter changes the rest of the run.

Results carry the log of executed events: (time, event name).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import sympy

from ..codegen import generate
from ..errors import SolverError
from .base import Problem, Trajectory

__all__ = ["MAX_CASCADE", "Piece", "Stop", "crossings", "solve_with_events"]

#: Most event executions at one time before a run is stopped as a loop of events
MAX_CASCADE = 10_000


@dataclass(frozen=True)
class Stop:
    """Where a piece ended, and ``crossed``: the root functions that changed sign on the
    way (index -> new sign), empty when the piece reached its end."""

    time: float
    state: np.ndarray
    crossed: dict
    counters: tuple[int, int, int]

    @property
    def root(self) -> bool:
        return bool(self.crossed)


#: piece(a, b, y, u, p, times, out, columns) -> Stop: integrate from state y at a towards
#: b with input u and parameters p; write the state at each output time of ``times``
#: (sorted, a < time <= b) that it passes into out[:, columns[k]]; stop early at a root
Piece = Callable[..., Stop]


class _Functions:
    """The scalar functions the driver evaluates at stops: root functions, assigned values,
    delays and priorities of a compiled model's events."""

    def __init__(self, cm):
        self.cm = cm
        symbols = {"y": cm.states, "p": cm.params}
        n_roots = len(cm.event_roots)
        self.roots = generate("roots", ("t", "y", "p"), symbols,
                              [((j,), g) for j, g in enumerate(cm.event_roots)],
                              (n_roots,), "scalar") if n_roots else None
        self.index = {g: j for j, g in enumerate(cm.event_roots)}
        self.values, self.delays, self.priorities = [], [], []
        for event in cm.events:
            exprs = [e for _, _, e in event.assignments]
            self.values.append(generate(f"assign_{len(self.values)}", ("t", "y", "p"),
                                        symbols, [((k,), e) for k, e in enumerate(exprs)],
                                        (len(exprs),), "scalar"))
            self.delays.append(_scalar(event.delay, symbols))
            self.priorities.append(_scalar(event.priority, symbols))

    def root_values(self, t, y, p) -> np.ndarray:
        if self.roots is None:
            return np.empty(0)
        return np.asarray(self.roots(t, y, p), dtype=float)

    def triggers(self, g: np.ndarray, crossed: dict[int, float]) -> list[bool]:
        """Each event's trigger, from the root functions' values ``g`` (``crossed``: the
        roots that just changed sign, with their new sign)."""
        return [bool(_truth(event.trigger, g, crossed, self.index))
                for event in self.cm.events]


def _scalar(expr, symbols):
    if expr is None:
        return None
    return generate("value", ("t", "y", "p"), symbols, [((0,), expr)], (1,), "scalar")


_RELATION = {"<": lambda g: g < 0.0, "<=": lambda g: g <= 0.0, ">": lambda g: g > 0.0,
             ">=": lambda g: g >= 0.0, "==": lambda g: g == 0.0, "!=": lambda g: g != 0.0}


def _truth(expr, g: np.ndarray, crossed: dict[int, float], index) -> bool:
    """A trigger's value: its comparisons read from the root functions' values, those that
    just crossed with their new sign (an equality is true at its crossing)."""
    if expr is sympy.true:
        return True
    if expr is sympy.false:
        return False
    if isinstance(expr, sympy.And):
        return all(_truth(a, g, crossed, index) for a in expr.args)
    if isinstance(expr, sympy.Or):
        return any(_truth(a, g, crossed, index) for a in expr.args)
    if isinstance(expr, sympy.Not):
        return not _truth(expr.args[0], g, crossed, index)
    j = index[expr.lhs - expr.rhs]
    if j in crossed:
        if expr.rel_op in ("==", "!="):
            return expr.rel_op == "=="
        return _RELATION[expr.rel_op](crossed[j])
    return _RELATION[expr.rel_op](g[j])


@dataclass(order=True)
class _Pending:
    time: float
    sequence: int
    event: int = 0
    values: np.ndarray | None = None


def solve_with_events(problem: Problem, piece: Piece, method: str) -> Trajectory:
    """One run of a model with events (see the module docstring); ``piece`` is the method's
    piece integrator."""
    cm, plan, grid = problem.compiled, problem.plan, problem.grid
    fns = _function_cache(cm)
    n = len(cm.state_names)
    until = problem.until
    out = np.full((n, grid.size), np.nan)
    y = np.array(problem.initial, dtype=float)
    p = np.array(problem.parameters, dtype=float)
    starts, ends, rates, jumps, is_dose = plan.segments(until, n)
    dosing = None
    if cm.dose_rules:
        rates, jumps = np.array(rates, dtype=float), np.array(jumps, dtype=float)
        dosing = _AdaptiveDosing(cm, fns, p, plan, until, starts, rates, jumps)
    pre_t, pre_y, log = [], [], []
    totals = np.zeros(3, dtype=np.int64)
    pending: list[_Pending] = []
    sequence = 0
    before = [event.initial_value for event in cm.events]
    resolution = 1000 * np.finfo(float).eps * max(1.0, until)

    def put_outputs(t):
        """Outputs at time t (within rounding) show the state after what happened there."""
        near = np.abs(grid - t) <= resolution
        out[:, near] = y[:, None]

    def handle(t, crossed):
        """Read the triggers at t, schedule what fires, execute what is due (cascades)."""
        nonlocal before, sequence, p
        for _ in range(MAX_CASCADE):
            now = fns.triggers(fns.root_values(t, y, p), crossed)
            crossed = {}  # a crossing counts once: after an execution, plain values
            for k, (was, is_) in enumerate(zip(before, now)):
                if is_ and not was:
                    delay = _value(fns.delays[k], t, y, p, 0.0)
                    if not (delay >= 0.0 and math.isfinite(delay)):
                        raise SolverError(f"event {cm.events[k].name}: its delay is "
                                          f"{delay:g} day at t = {t:g} day; a delay must be "
                                          "a finite time >= 0")
                    values = _values(fns.values[k], t, y, p) \
                        if cm.events[k].from_trigger_time else None
                    heapq.heappush(pending, _Pending(t + delay, sequence, k, values))
                    sequence += 1
            for entry in list(pending):
                if not now[entry.event] and not cm.events[entry.event].persistent:
                    pending.remove(entry)
            heapq.heapify(pending)
            before = now
            due = [entry for entry in pending if entry.time <= t + resolution]
            if not due:
                return
            chosen = max(due, key=lambda e: (_value(fns.priorities[e.event], t, y, p,
                                                    -math.inf), -e.event, -e.sequence))
            pending.remove(chosen)
            heapq.heapify(pending)
            if dosing is not None and chosen.event >= dosing.first:
                dosing.act(chosen.event - dosing.first, t, y, pre_t, pre_y)
                put_outputs(t)
                continue
            values = chosen.values if chosen.values is not None else \
                _values(fns.values[chosen.event], t, y, p)
            event = cm.events[chosen.event]
            for (kind, index, _), value in zip(event.assignments, values):
                if kind == "state":
                    y[index] = value
                else:
                    p[index] = value
            log.append((t, event.name))
            put_outputs(t)
        raise SolverError(f"events keep executing at t = {t:g} day: more than "
                          f"{MAX_CASCADE:,} at one time (triggers that their own assignments "
                          "make true again?)")

    t = 0.0
    for s in range(len(starts)):
        a, b = float(starts[s]), float(ends[s])
        if is_dose[s]:
            pre_t.append(a)
            pre_y.append(y.copy())
            if dosing is not None:
                dosing.decide(s, a, y, fns.root_values(a, y, p))
        y += jumps[s]
        t = a
        put_outputs(a)
        handle(a, {})
        put_outputs(a)
        while t < b:
            target = min([b] + [e.time for e in pending if e.time > t] +
                         (dosing.times_after(t) if dosing is not None else []))
            inside = (grid > t) & (grid <= target)
            u = rates[s] if dosing is None else rates[s] + dosing.extra_rate(t)
            leaving = _leaving_zero(fns, cm, t, y, u, p, b)
            if leaving:
                # a comparison exactly at its threshold where the piece starts changes sign
                # just after (C < K with C = K, falling): a crossing at t, read now, as
                # the pieces do not count a start on zero as one
                handle(t, leaving)
                put_outputs(t)
            stop = piece(t, target, y, u, p, grid[inside], out, np.flatnonzero(inside))
            totals += stop.counters
            y = np.array(stop.state, dtype=float)
            t = stop.time
            given = dosing is not None and dosing.give_due(t, y, pre_t, pre_y)
            if stop.root or t < b or given or \
                    any(e.time <= t + resolution for e in pending):
                handle(t, stop.crossed)
                put_outputs(t)
    put_outputs(until)
    return Trajectory(states=out, pre_dose_days=np.array(pre_t, dtype=float),
                      pre_dose_states=np.array(pre_y, dtype=float).reshape(len(pre_t), n),
                      steps=int(totals[0]), rhs_evaluations=int(totals[1]),
                      jacobian_evaluations=int(totals[2]), method=method, reached=until,
                      events=tuple(log),
                      doses=tuple(dosing.decisions) if dosing is not None else ())


class _AdaptiveDosing:
    """The decisions of a regimen's dosing rules (:mod:`mechsim.dose_rules`) in one run.

    Scheduled doses are the plan's segment starts: at each, the rules' conditions are read
    on the state just before it and the dose's boluses and infusions (``jumps``, ``rates``:
    the driver's copies) are scaled by the fraction given.  Doses given at other times (a
    held dose given late, an added dose) are boluses applied at once and, for a lag or an
    infusion, rows kept here that the driver integrates through (``times_after``,
    ``extra_rate``, ``give_due``).
    """

    def __init__(self, cm, fns, p, plan, until, starts, rates, jumps):
        self.cm, self.fns, self.p, self.until = cm, fns, p, until
        self.rules = cm.dose_rules
        self.first = len(cm.events) - len(self.rules)
        self.starts, self.rates, self.jumps = starts, rates, jumps
        self.infusions = plan.infusion_table
        self.sticky = [False] * len(self.rules)
        #: (rule, day, bolus jumps, infusions as (length, state, rate), its decision's row,
        #: the fraction it is given at)
        self.held = None
        self.later_boluses = []    # [day, state, jump] given later (a rescue dose's lag)
        self.later_infusions = []  # [start, end, state, rate]
        self.decisions = []
        self._rescue = {}

    def holds(self, k: int, g) -> bool:
        truth = _truth(self.cm.events[self.first + k].trigger, g, {}, self.fns.index)
        # a hold's event waits for its condition to end: the trigger is `not condition`
        return not truth if self.rules[k].action == "hold" else truth

    def decide(self, s: int, a: float, y, g) -> None:
        """Read the rules just before the scheduled dose at segment ``s`` (day ``a``)."""
        from ..dose_rules import DoseDecision

        if self.held is not None:  # still held: the scheduled dose replaces it
            row = self.held[4]
            self.decisions[row] = replace(self.decisions[row], action="dropped")
            self.held = None
        reduced, reduced_by, stop, stop_by = 1.0, "", None, None
        for k, rule in enumerate(self.rules):
            if rule.action == "add":
                continue
            now = self.holds(k, g)
            if rule.action == "reduce":
                self.sticky[k] = self.sticky[k] or (now and rule.sticky)
                if (now or self.sticky[k]) and rule.fraction < reduced:
                    reduced, reduced_by = rule.fraction, rule.text
            elif now and stop is None:  # the first skip or hold that applies wins
                stop, stop_by = k, rule.text
        if stop is None:
            fraction, action, by = reduced, "given" if reduced == 1.0 else "reduced", \
                reduced_by
        else:
            fraction, by = 0.0, stop_by
            action = "skipped" if self.rules[stop].action == "skip" else "held"
            if action == "held":  # given later as it would have been now: with its reduction
                self.held = (stop, a, self.jumps[s] * reduced,
                             [(length, state, rate * reduced)
                              for length, state, rate in self.infusions_at(a)[1]],
                             len(self.decisions), reduced)
        self.decisions.append(DoseDecision(a, action, fraction, by))
        if fraction != 1.0:
            self.jumps[s] *= fraction
            rows, _ = self.infusions_at(a)
            for start, end, state, rate in rows:
                covered = (self.starts >= start) & (self.starts < end)
                self.rates[covered, int(state)] -= (1.0 - fraction) * rate

    def infusions_at(self, a: float) -> tuple[np.ndarray, list]:
        """The plan's infusions that start at ``a``: their rows, and (length, state, rate)
        of each."""
        rows = self.infusions[self.infusions[:, 0] == a]
        return rows, [(end - start, int(state), rate) for start, end, state, rate in rows]

    def act(self, k: int, t: float, y, pre_t, pre_y) -> None:
        """Rule ``k``'s event executed at ``t``: an added dose, or a held dose given."""
        from ..dose_rules import DoseDecision

        rule = self.rules[k]
        if rule.action == "add":
            boluses, infusions = self.rescue(k)
        elif rule.action == "hold" and self.held is not None and self.held[0] == k:
            _, _, jump, lengths, _, share = self.held
            boluses = [(0.0, i, jump[i]) for i in np.flatnonzero(jump)]
            infusions = [(0.0, length, state, rate) for length, state, rate in lengths]
            self.held = None
        else:
            return
        pre_t.append(t)
        pre_y.append(y.copy())
        for lag, state, jump in boluses:
            if lag <= 0.0:
                y[int(state)] += jump
            else:
                self.later_boluses.append([t + lag, int(state), jump])
        for start, end, state, rate in infusions:
            self.later_infusions.append([t + start, t + end, int(state), rate])
        self.decisions.append(DoseDecision(t, "added" if rule.action == "add" else
                                           "given late",
                                           1.0 if rule.action == "add" else share, rule.text))

    def rescue(self, k: int):
        """Rule ``k``'s added dose as bolus and infusion rows from the time it is given."""
        if k not in self._rescue:
            from ..doseplan import dose_events, dose_plan
            from ..dosing import Once, Regimen

            events = dose_events(self.cm, Regimen(((Once(self.rules[k].dose),),)), math.inf)
            plan = dose_plan(self.cm, events, self.p, math.inf)
            self._rescue[k] = (plan.boluses, plan.infusions)
        return self._rescue[k]

    def times_after(self, t: float) -> list[float]:
        times = [row[0] for row in self.later_boluses]
        for start, end, _, _ in self.later_infusions:
            times += [start, end]
        return [x for x in times if x > t]

    def extra_rate(self, t: float) -> np.ndarray:
        u = np.zeros(self.rates.shape[1])
        for start, end, state, rate in self.later_infusions:
            if start <= t < end:
                u[state] += rate
        return u

    def give_due(self, t: float, y, pre_t, pre_y) -> bool:
        """Give the later boluses due at ``t``; True when one was."""
        due = [row for row in self.later_boluses if row[0] <= t]
        if not due:
            return False
        pre_t.append(t)
        pre_y.append(y.copy())
        for row in due:
            y[row[1]] += row[2]
            self.later_boluses.remove(row)
        return True


def _leaving_zero(fns, cm, t, y, u, p, b) -> dict:
    """Root functions exactly 0 at ``t`` and the sign each takes just after, read a small
    Euler step ahead (those that stay 0 are left out)."""
    g = fns.root_values(t, y, p)
    if not g.size or not np.any(g == 0.0):
        return {}
    h = 1e-9 * max(1.0, abs(b - t))
    ahead = fns.root_values(t + h, y + h * (np.asarray(cm.rhs()(t, y, p), dtype=float) + u),
                            p)
    return {int(j): float(np.sign(ahead[j])) for j in np.flatnonzero(g == 0.0)
            if ahead[j] != 0.0}


def crossings(before: np.ndarray, after: np.ndarray) -> dict:
    """Root functions whose sign changed from ``before`` to ``after`` (a zero before does
    not count: the function has not left it), with their new sign (+1.0 or -1.0)."""
    return {j: (-1.0 if g0 > 0.0 else 1.0) for j, (g0, g1) in enumerate(zip(before, after))
            if g0 != 0.0 and (g1 == 0.0 or (g1 > 0.0) != (g0 > 0.0))}


def _value(fn, t, y, p, default: float) -> float:
    return default if fn is None else float(fn(t, y, p)[0])


def _values(fn, t, y, p) -> np.ndarray:
    return np.array(fn(t, y, p), dtype=float)


def _function_cache(cm) -> _Functions:
    return cm._fn("event-functions", lambda: _Functions(cm))


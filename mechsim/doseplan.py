"""The dose plan: the one owner of what happens at a dose.

A regimen (:mod:`mechsim.dosing`) says what is given when, in the user's units.  For one
compiled model and one parameter vector, :func:`dose_plan` turns it into solver terms:
bolus jumps and constant-rate infusion intervals of a state, in canonical units, with the
route's bioavailability, lag time and the drug's molecular weight applied and per-body-weight
doses multiplied by the body weight.  Everything downstream (the solvers, the mass balance,
SBML export, the output grid) reads the plan, never the regimen, so a lag or a unit is
applied in one place only.

Unit conversions that do not depend on parameter values happen once per regimen
(:func:`dose_events`), so a population sharing a regimen converts it once.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from .compile import CompiledModel
from .dosing import Regimen
from .errors import RegimenError, UnitError, ValidationError
from .units import format_quantity, to_canonical, ureg

__all__ = ["BODY_WEIGHT", "DoseEvent", "DosePlan", "PlannedDose", "as_regimen",
           "check_fixed_values", "dose_breakpoints", "dose_events", "dose_plan", "dose_plans",
           "dosing_parameters", "first_invalid_row", "invalid_rows",
           "planned_doses"]

BODY_WEIGHT = "WT"  # the parameter that per-body-weight doses (mg/kg) are multiplied by
BODY_SURFACE = "BSA"  # and the one per-body-surface-area doses (mg/m2) are multiplied by


@dataclass(frozen=True, eq=False)
class DosePlan:
    """Doses in solver terms: all times in days, amounts in canonical state units.

    ``bolus_table``: one row per bolus (time, state index, jump in the state);
    ``infusion_table``: one row per infusion (start, end, state index, rate in state units
    per day); ``bolus_amounts`` and ``infusion_amount_rates``: the same doses as amounts
    (after bioavailability) for mass-balance book-keeping.  Arrays, not Python tuples: a
    population keeps one plan per patient (10,000 plans of a year's dosing took 54 MB as
    tuples of floats, 16 MB as arrays).  Build one with :meth:`of`.
    """

    bolus_table: np.ndarray
    infusion_table: np.ndarray
    bolus_amounts: np.ndarray
    infusion_amount_rates: np.ndarray

    @classmethod
    def of(cls, boluses=(), infusions=(), bolus_amounts=(), infusion_amount_rates=()):
        """A plan from rows: boluses as (time, state, jump), infusions as (start, end,
        state, rate)."""
        def table(rows, width):
            out = np.array(rows, dtype=float).reshape(-1, width)
            out.flags.writeable = False
            return out

        def vector(values):
            out = np.array(values, dtype=float).reshape(-1)
            out.flags.writeable = False
            return out

        return cls(table(boluses, 3), table(infusions, 4), vector(bolus_amounts),
                   vector(infusion_amount_rates))

    @property
    def boluses(self) -> tuple[tuple[float, int, float], ...]:
        """(time, state index, jump) per bolus."""
        return tuple((t, int(i), jump) for t, i, jump in self.bolus_table.tolist())

    @property
    def infusions(self) -> tuple[tuple[float, float, int, float], ...]:
        """(start, end, state index, rate) per infusion."""
        return tuple((a, b, int(i), rate) for a, b, i, rate in self.infusion_table.tolist())

    def breakpoints(self, until: float) -> np.ndarray:
        times = np.unique(np.concatenate(([0.0, until], self.bolus_table[:, 0],
                                          self.infusion_table[:, :2].ravel())))
        return times[(times >= 0.0) & (times <= until)]

    def dose_times(self) -> frozenset[float]:
        """Times at which a bolus is given or an infusion starts."""
        return frozenset(self._dose_times().tolist())

    def _dose_times(self) -> np.ndarray:
        return np.concatenate((self.bolus_table[:, 0], self.infusion_table[:, 0]))

    def input_rate(self, a: float, n_states: int) -> np.ndarray:
        """Total infusion rate into each state on the segment starting at ``a``."""
        u = np.zeros(n_states)
        for start, end, i, rate in self.infusions:
            if start <= a < end:
                u[i] += rate
        return u

    def dosed_amounts(self, t: np.ndarray, n_states: int) -> np.ndarray:
        """Cumulative amount entered into each state by time ``t`` (n_states, n_times)."""
        out = np.zeros((n_states, len(t)))
        for (tb, i, _), amount in zip(self.boluses, self.bolus_amounts.tolist()):
            out[i] += np.where(t >= tb, amount, 0.0)
        for (start, end, i, _), rate in zip(self.infusions, self.infusion_amount_rates.tolist()):
            out[i] += rate * np.clip(t - start, 0.0, end - start)
        return out

    def segments(self, until: float, n_states: int):
        """The plan as arrays for a solver: segment starts and ends, the infusion input on
        each segment, the bolus jump at each start, and which starts are doses."""
        starts, ends, is_dose, inputs, bolus_jumps = self.segment_layout(until)
        rates = np.zeros((len(starts), n_states))
        # added in the order of the plan, so the sums do not depend on how they are computed
        np.add.at(rates, inputs[:2], self.infusion_table[inputs[2], 3])
        jumps = np.zeros((len(starts), n_states))
        np.add.at(jumps, bolus_jumps[:2], self.bolus_table[bolus_jumps[2], 2])
        return starts, ends, rates, jumps, is_dose

    def segment_layout(self, until: float):
        """Where the plan's doses land in :meth:`segments`' arrays, without their values:
        (starts, ends, is_dose, inputs, jumps), ``inputs`` the (segment, state, infusion
        row) of each term of the rates and ``jumps`` the (segment, state, bolus row) of
        each jump, in the order :meth:`segments` adds them.  It depends on the dose times
        and states only, so a fit whose doses do not move can keep it (see
        :mod:`mechsim.estimation.dose_template`)."""
        breaks = self.breakpoints(until)
        starts, ends = breaks[:-1], breaks[1:]
        infusions = self.infusion_table
        # the segments an infusion covers are a run of starts: [start, end)
        on, off = (np.searchsorted(starts, infusions[:, k]) for k in (0, 1))
        covered = off - on
        rows = np.repeat(on - np.cumsum(covered) + covered, covered) + \
            np.arange(int(covered.sum()))
        inputs = (rows, np.repeat(infusions[:, 2].astype(np.int64), covered),
                  np.repeat(np.arange(len(infusions)), covered))
        boluses = self.bolus_table
        at = np.searchsorted(starts, boluses[:, 0])
        inside = (at < len(starts)) & (starts[np.minimum(at, len(starts) - 1)] ==
                                       boluses[:, 0]) if len(starts) else at < 0
        jumps = (at[inside], boluses[inside, 1].astype(np.int64), np.flatnonzero(inside))
        is_dose = np.isin(starts, self._dose_times())
        return starts, ends, is_dose, inputs, jumps


def check_fixed_values(cm: CompiledModel, p: np.ndarray) -> None:
    """Reject impossible volumes, bioavailabilities, lags and weights for this parameter set."""
    volumes = np.asarray(cm.volumes(p), dtype=float)
    bad = [n for n, v in zip(cm.state_names, volumes) if not (np.isfinite(v) and v > 0)]
    if bad:
        raise ValidationError(f"model {cm.name}: the compartment volume of {bad[0]} is "
                              f"{volumes[cm.index(bad[0])]:g} L with these parameters; "
                              "volumes must be positive")
    for name in cm.routes:
        f, lag, mw = cm.route_factors(name, p)
        if not 0 <= f <= 1:
            raise ValidationError(f"route {name}: bioavailability is {f:g} with these "
                                  "parameters; it must lie in [0, 1]")
        if not lag >= 0:
            raise ValidationError(f"route {name}: lag time is {lag:g} day with these "
                                  "parameters; it must not be negative")
        if not (np.isnan(mw) or mw > 0):
            raise ValidationError(f"route {name}: molecular weight must be positive")
    for name, what, kind, example, dims in _SCALES:
        if name in cm.parameter_names:
            i = cm.parameter_names.index(name)
            unit = cm.parameter_units[i]
            if (1 * unit).dimensionality != dims:
                raise UnitError(f"parameter {name} is the {what} and must be {kind} "
                                f"(e.g. '{example}'), got unit {unit!s}")
            if not p[i] > 0:
                raise ValidationError(f"parameter {name} ({what}) must be positive")


#: The parameters that per-size doses are multiplied by: name, what it is, its kind of
#: quantity, an example, its dimension.
_SCALES = ((BODY_WEIGHT, "body weight", "a mass", "70 kg", ureg.kg.dimensionality),
           (BODY_SURFACE, "body surface area", "an area", "1.9 m2",
            (ureg.m ** 2).dimensionality))


@dataclass(frozen=True)
class DoseEvent:
    """One administration reduced to numbers.

    ``time`` in days before any lag; ``route`` the model's name of the route (resolved by
    :meth:`CompiledModel.route`, so a dose written ``po`` has ``oral``); ``amount``
    canonical (nmol or g, per kg when ``per_body_weight``, per dm2 when
    ``per_body_surface``), converted to what the route's
    state holds by multiplying with the molecular weight to the power ``mw_power`` (-1: mass
    into moles, +1: moles into mass, 0: no conversion); ``duration`` of an infusion in days,
    None for a bolus.
    """

    time: float
    route: str
    amount: float
    mw_power: int
    per_body_weight: bool
    duration: float | None
    per_body_surface: bool = False


def dose_events(cm: CompiledModel, regimen: Regimen, until: float) -> tuple[DoseEvent, ...]:
    """A regimen's doses up to ``until`` as numbers.  Does every unit conversion, so runs
    that share a regimen (a population) convert it once."""
    events = []
    converted: dict[int, DoseEvent] = {}  # a block repeats one Dose object: convert it once
    for admin in regimen.administrations(until):
        dose = admin.dose
        if id(dose) in converted:
            events.append(replace(converted[id(dose)], time=admin.time))
            continue
        route = cm.route(dose.route)
        amount = to_canonical(dose.amount)
        dims = dose.amount.dimensionality
        if dose.per_body_weight:
            if BODY_WEIGHT not in cm.parameter_names:
                raise RegimenError(f"dose '{format_quantity(dose.amount)}' is per body weight, "
                                   "but model "
                                   f"{cm.name} has no parameter {BODY_WEIGHT} (body weight)")
            dims = dims * ureg.kg.dimensionality
        if dose.per_body_surface:
            if BODY_SURFACE not in cm.parameter_names:
                raise RegimenError(f"dose '{format_quantity(dose.amount)}' is per body surface "
                                   f"area, but model {cm.name} has no parameter "
                                   f"{BODY_SURFACE} (body surface area)")
            dims = dims * (ureg.m ** 2).dimensionality
        kind = "mass" if dims == ureg.g.dimensionality else "substance"
        if kind != route.amount_kind and route.molecular_weight is None:
            raise RegimenError(f"route {route.name}: a dose in "
                               f"{'mass' if kind == 'mass' else 'moles'} needs the drug's "
                               f"molecular_weight, and model {cm.name} names no drug for "
                               "this route")
        mw_power = 0 if kind == route.amount_kind else (-1 if kind == "mass" else 1)
        # the model's name of the route ('oral' for a dose written 'po'): what follows
        # looks routes up by it
        event = converted[id(dose)] = DoseEvent(admin.time, route.name, amount, mw_power,
                                                 dose.per_body_weight,
                                                 dose.infusion_duration_days(),
                                                 dose.per_body_surface)
        events.append(event)
    return tuple(events)


@dataclass(frozen=True)
class PlannedDose:
    """One dose as it enters its state, for one parameter vector: when (lag applied), into
    which state, the amount after bioavailability (canonical units of the state's amount),
    the state's volume, and the event it came from."""

    event: DoseEvent
    time: float
    state: int
    amount: float
    volume: float


def planned_doses(cm: CompiledModel, events: tuple[DoseEvent, ...], p: np.ndarray,
                  until: float) -> list[PlannedDose]:
    """The events that fall before ``until`` once their route's lag is applied, with every
    factor of the parameter vector applied (molecular weight, body weight or surface area,
    bioavailability);
    the one place where a dose meets parameter values."""
    check_fixed_values(cm, p)
    volumes = cm.volumes(p)
    weight, surface = (p[cm.parameter_names.index(name)] if name in cm.parameter_names
                       else np.nan for name in (BODY_WEIGHT, BODY_SURFACE))
    factors = {}
    out = []
    for event in events:
        if event.route not in factors:
            factors[event.route] = cm.route_factors(event.route, p)
        bioavailability, lag, mw = factors[event.route]
        time = event.time + lag
        if time >= until:  # the run covers [0, until]; a dose at `until` would change nothing
            continue
        amount = float(_converted(np.array(event.amount), mw, event.mw_power))
        if event.per_body_weight:
            amount *= weight
        if event.per_body_surface:
            amount *= surface
        amount *= bioavailability
        state = cm.routes[event.route].state
        out.append(PlannedDose(event, time, state, amount, float(volumes[state])))
    return out


def dosing_parameters(cm: CompiledModel) -> np.ndarray:
    """Indices of the parameters a dose plan depends on (every compartment volume, the
    routes' bioavailability, lag and molecular weight, body weight and surface area): runs
    under one regimen that agree on these have the same plan."""
    def build():
        exprs = [*cm.volume_exprs]
        for info in cm.routes.values():
            exprs += [info.bioavailability, info.lag]
            if info.molecular_weight is not None:
                exprs.append(info.molecular_weight)
        names = {s.name for e in exprs for s in e.free_symbols} | {BODY_WEIGHT, BODY_SURFACE}
        return np.array([i for i, name in enumerate(cm.parameter_names) if name in names],
                        dtype=np.int64)
    return cm._fn("dosing-parameters", build)


def dose_plan(cm: CompiledModel, regimen: Regimen | tuple[DoseEvent, ...], p: np.ndarray,
              until: float) -> DosePlan:
    """Convert a regimen's doses for one parameter vector (body weight, MW, F, lag)."""
    events = dose_events(cm, regimen, until) if isinstance(regimen, Regimen) else regimen
    check_fixed_values(cm, p)
    return dose_plans(cm, events, np.asarray(p, dtype=float)[None, :], until)[0]


def dose_plans(cm: CompiledModel, events: tuple[DoseEvent, ...], matrix: np.ndarray,
               until: float) -> list[DosePlan]:
    """:func:`dose_plan` for every row of ``matrix`` (canonical parameter vectors whose
    volumes, weights and route factors :func:`first_invalid_row` accepts), computed for all
    rows at once: a population of 10,000 patients pays numpy's per-call cost once, not
    10,000 times.  Each value is the same IEEE operations as for one row alone, so a run's
    plan does not depend on the rows it was computed with."""
    matrix = np.asarray(matrix, dtype=float)
    n_rows = matrix.shape[0]
    if not events:
        return [DosePlan.of() for _ in range(n_rows)]
    time, amount, volume = _planned(cm, events, matrix)
    states = np.array([cm.routes[e.route].state for e in events], dtype=float)
    duration = np.array([np.nan if e.duration is None else e.duration for e in events])
    infused = ~np.isnan(duration)
    rate = amount / np.where(infused, duration, 1.0)[:, None]
    # rows whose doses fall before `until` alike (all of them unless a lag varies) share
    # the index arithmetic; each plan's tables are read-only views of its group's arrays
    kept = time < until  # the run covers [0, until]; a dose at `until` would change nothing
    plans: list = [None] * n_rows
    patterns, group_of = np.unique(kept.T, axis=0, return_inverse=True)
    for g, pattern in enumerate(patterns):
        rows = np.flatnonzero(group_of.ravel() == g)
        inf, bol = np.flatnonzero(pattern & infused), np.flatnonzero(pattern & ~infused)
        t_inf, r_inf = time[inf][:, rows].T, rate[inf][:, rows].T          # (rows, doses)
        infusions = np.stack(np.broadcast_arrays(
            t_inf, t_inf + duration[inf], states[inf], r_inf / volume[inf][:, rows].T), axis=2)
        a_bol = amount[bol][:, rows].T
        boluses = np.stack(np.broadcast_arrays(
            time[bol][:, rows].T, states[bol], a_bol / volume[bol][:, rows].T), axis=2)
        for table in (infusions, boluses, a_bol, r_inf):
            table.flags.writeable = False
        for k, r in enumerate(rows):
            plans[r] = DosePlan(boluses[k], infusions[k], a_bol[k], r_inf[k])
    return plans


def _planned(cm: CompiledModel, events: tuple[DoseEvent, ...], matrix: np.ndarray):
    """(time, amount, volume), each (events, rows): when each dose enters (lag applied),
    how much (canonical amount of its state, after bioavailability) and into what volume;
    the arithmetic of :func:`planned_doses`, for every row at once."""
    n_rows = matrix.shape[0]
    columns = np.ascontiguousarray(matrix.T)               # (parameters, rows)
    volumes = per_row(cm.volumes(columns), len(cm.state_names), n_rows)
    routes = sorted({e.route for e in events})
    factors = {r: per_row(cm.route_values(r, columns), 3, n_rows) for r in routes}
    ones = np.ones(n_rows)
    weight, surface = (matrix[:, cm.parameter_names.index(name)]
                       if name in cm.parameter_names else ones
                       for name in (BODY_WEIGHT, BODY_SURFACE))
    time = np.empty((len(events), n_rows))
    amount = np.empty((len(events), n_rows))
    volume = np.empty((len(events), n_rows))
    for k, event in enumerate(events):
        bioavailability, lag, mw = factors[event.route]
        state = cm.routes[event.route].state
        time[k] = event.time + lag
        a = _converted(np.full(n_rows, event.amount), mw, event.mw_power)
        if event.per_body_weight:
            a = a * weight
        if event.per_body_surface:
            a = a * surface
        amount[k] = a * bioavailability
        volume[k] = volumes[state]
    return time, amount, volume


def dose_breakpoints(cm: CompiledModel, events: tuple[DoseEvent, ...], matrix: np.ndarray,
                     until: float) -> np.ndarray:
    """Every time at which some row's plan has a breakpoint (0, ``until``, doses, infusion
    ends), sorted: the union of :meth:`DosePlan.breakpoints` over the rows, without
    building the plans."""
    matrix = np.asarray(matrix, dtype=float)
    times = [np.array([0.0, until])]
    if events:
        time = _planned(cm, events, matrix)[0]
        duration = np.array([np.nan if e.duration is None else e.duration for e in events])
        kept = time < until
        infused = kept & ~np.isnan(duration)[:, None]
        times += [time[kept], (time + np.nan_to_num(duration)[:, None])[infused]]
    found = np.unique(np.concatenate(times))
    return found[(found >= 0.0) & (found <= until)]


def per_row(values, n: int, n_rows: int) -> np.ndarray:
    """Generated parameter functions return a constant output unbroadcast: (n, rows)."""
    out = np.empty((n, n_rows))
    for i, v in enumerate(values):
        out[i] = v
    return out


def _converted(amount: np.ndarray, mw: np.ndarray, mw_power: int) -> np.ndarray:
    """A dose amount converted with the molecular weight (see :class:`DoseEvent`)."""
    if mw_power == -1:
        return amount / mw
    if mw_power == 1:
        return amount * mw
    return amount


def first_invalid_row(cm: CompiledModel, matrix: np.ndarray) -> int | None:
    """The first row of ``matrix`` that :func:`check_fixed_values` would reject (impossible
    volumes, bioavailabilities, lags, molecular weights, weights or surface areas), or None;
    checked for all rows at once."""
    rows = np.flatnonzero(invalid_rows(cm, matrix))
    return int(rows[0]) if rows.size else None


def invalid_rows(cm: CompiledModel, matrix: np.ndarray) -> np.ndarray:
    """Which rows of ``matrix`` :func:`check_fixed_values` would reject, as a mask."""
    matrix = np.asarray(matrix, dtype=float)
    n_rows = matrix.shape[0]
    columns = np.ascontiguousarray(matrix.T)
    bad = np.zeros(n_rows, dtype=bool)
    with np.errstate(invalid="ignore"):
        volumes = per_row(cm.volumes(columns), len(cm.state_names), n_rows)
        bad |= ~np.all(np.isfinite(volumes) & (volumes > 0), axis=0)
        for name in cm.routes:
            f, lag, mw = per_row(cm.route_values(name, columns), 3, n_rows)
            bad |= ~((f >= 0) & (f <= 1)) | ~(lag >= 0) | ~(np.isnan(mw) | (mw > 0))
        for name, *_ in _SCALES:
            if name in cm.parameter_names:
                bad |= ~(matrix[:, cm.parameter_names.index(name)] > 0)
    return bad


def as_regimen(regimen) -> Regimen:
    """A Regimen from a Regimen, its text, or None (no doses)."""
    if regimen is None:
        return Regimen.none()
    if isinstance(regimen, Regimen):
        return regimen
    if isinstance(regimen, str):
        return Regimen.parse(regimen)
    raise RegimenError(f"regimen must be a Regimen or text, got {type(regimen).__name__}")

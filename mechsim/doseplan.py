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
           "check_fixed_values", "dose_events", "dose_plan", "dosing_parameters",
           "planned_doses"]

BODY_WEIGHT = "WT"  # the parameter that per-body-weight doses (mg/kg) are multiplied by
BODY_SURFACE = "BSA"  # and the one per-body-surface-area doses (mg/m2) are multiplied by


@dataclass(frozen=True)
class DosePlan:
    """Doses in solver terms: all times in days, amounts in canonical state units.

    ``boluses``: (time, state index, jump in the state); ``infusions``: (start, end, state
    index, rate in state units per day); ``inputs``: the same events as amounts (after
    bioavailability) for mass-balance book-keeping.
    """

    boluses: tuple[tuple[float, int, float], ...]
    infusions: tuple[tuple[float, float, int, float], ...]
    bolus_amounts: tuple[float, ...]
    infusion_amount_rates: tuple[float, ...]

    def breakpoints(self, until: float) -> np.ndarray:
        times = {0.0, until}
        times.update(t for t, _, _ in self.boluses)
        for start, end, _, _ in self.infusions:
            times.update((start, end))
        return np.array(sorted(t for t in times if 0.0 <= t <= until))

    def dose_times(self) -> frozenset[float]:
        """Times at which a bolus is given or an infusion starts."""
        return frozenset(t for t, _, _ in self.boluses) | \
            frozenset(start for start, _, _, _ in self.infusions)

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
        for (tb, i, _), amount in zip(self.boluses, self.bolus_amounts):
            out[i] += np.where(t >= tb, amount, 0.0)
        for (start, end, i, _), rate in zip(self.infusions, self.infusion_amount_rates):
            out[i] += rate * np.clip(t - start, 0.0, end - start)
        return out

    def segments(self, until: float, n_states: int):
        """The plan as arrays for a solver: segment starts and ends, the infusion input on
        each segment, the bolus jump at each start, and which starts are doses."""
        breaks = self.breakpoints(until)
        starts, ends = breaks[:-1], breaks[1:]
        index = {t: k for k, t in enumerate(starts)}
        rates = np.zeros((len(starts), n_states))
        if self.infusions:
            # the segments an infusion covers are a run of starts: [start, end)
            on, off = (np.searchsorted(starts, [inf[k] for inf in self.infusions])
                       for k in (0, 1))
            for (_, _, i, rate), lo, hi in zip(self.infusions, on.tolist(), off.tolist()):
                rates[lo:hi, i] += rate
        jumps = np.zeros((len(starts), n_states))
        for t, i, jump in self.boluses:
            if t in index:
                jumps[index[t], i] += jump
        doses = self.dose_times()
        is_dose = np.array([t in doses for t in starts], dtype=bool)
        return starts, ends, rates, jumps, is_dose


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

    ``time`` in days before any lag; ``amount`` canonical (nmol or g, per kg when
    ``per_body_weight``, per dm2 when ``per_body_surface``), converted to what the route's
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
        event = converted[id(dose)] = DoseEvent(admin.time, dose.route, amount, mw_power,
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
        amount = event.amount * mw ** event.mw_power if event.mw_power else event.amount
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
    boluses, infusions, bolus_amounts, inf_rates = [], [], [], []
    for dose in planned_doses(cm, events, p, until):
        if dose.event.duration is not None:
            rate = dose.amount / dose.event.duration
            infusions.append((dose.time, dose.time + dose.event.duration, dose.state,
                              rate / dose.volume))
            inf_rates.append(rate)
        else:
            boluses.append((dose.time, dose.state, dose.amount / dose.volume))
            bolus_amounts.append(dose.amount)
    return DosePlan(tuple(boluses), tuple(infusions), tuple(bolus_amounts), tuple(inf_rates))


def as_regimen(regimen) -> Regimen:
    """A Regimen from a Regimen, its text, or None (no doses)."""
    if regimen is None:
        return Regimen.none()
    if isinstance(regimen, Regimen):
        return regimen
    if isinstance(regimen, str):
        return Regimen.parse(regimen)
    raise RegimenError(f"regimen must be a Regimen or text, got {type(regimen).__name__}")

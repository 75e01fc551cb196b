"""Integrate a compiled model between discontinuities and return a :class:`Result`.

Doses are turned into a :class:`DosePlan` (bolus jumps and constant-rate infusion intervals,
in canonical state units) once, up front.  Integration then runs segment by segment between
consecutive discontinuities, so the solver never steps across a dose or an infusion edge.
A bolus is an exact jump in the state; values are right-continuous (the value at a dose time
includes the dose), and the value just before each dose is kept as well.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from itertools import pairwise

import numpy as np
import pint
from scipy.integrate import odeint, solve_ivp

from .compile import CompiledModel, compile_model
from .dosing import Regimen
from .errors import NumericalWarning, RegimenError, SolverError, UnitError, ValidationError
from .io import ParameterSet, load_model, load_params
from .model import Model
from .optional import require
from .result import Diagnostics, Result
from .units import dimension_text, parse_quantity, to_canonical, ureg

__all__ = ["DosePlan", "as_days", "dose_plan", "integrate", "prepare_model", "simulate"]

METHODS = ("LSODA", "BDF", "Radau", "NDF")
BODY_WEIGHT = "WT"  # the parameter that per-body-weight doses (mg/kg) are multiplied by


def as_days(value, what: str) -> float:
    """A time given as a Quantity or text (``"52 weeks"``) in days; bare numbers rejected."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UnitError(f"`{what}` must be a time with a unit (e.g. '{value} day'), "
                        f"got {value!r}")
    q = parse_quantity(value, what=f"`{what}`")
    if q.dimensionality != ureg.day.dimensionality:
        raise UnitError(f"`{what}` must be a time, got {value!r} "
                        f"({dimension_text(q.dimensionality)})")
    days = to_canonical(q)
    if not np.isfinite(days):
        raise ValidationError(f"`{what}` must be a finite time, got {value!r}")
    return days


def _times_days(values, what: str) -> np.ndarray:
    if isinstance(values, pint.Quantity):
        if values.dimensionality != ureg.day.dimensionality:
            raise UnitError(f"`{what}` must be times, got {dimension_text(values.dimensionality)}")
        days = np.atleast_1d(values.to(ureg.day).magnitude).astype(float)
    elif isinstance(values, str):
        days = np.array([as_days(values, what)])
    else:
        days = np.array([as_days(v, what) for v in values], dtype=float)
    if not np.all(np.isfinite(days)):
        raise ValidationError(f"`{what}` must be finite times")
    if days.size > MAX_OUTPUT_POINTS:
        raise ValidationError(f"`{what}` has {days.size:,} output times (at most "
                              f"{MAX_OUTPUT_POINTS:,})")
    return days


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
    if BODY_WEIGHT in cm.parameter_names:
        i = cm.parameter_names.index(BODY_WEIGHT)
        unit = cm.parameter_units[i]
        if (1 * unit).dimensionality != ureg.kg.dimensionality:
            raise UnitError(f"parameter {BODY_WEIGHT} is the body weight and must be a mass "
                            f"(e.g. '70 kg'), got unit {unit!s}")
        if not p[i] > 0:
            raise ValidationError(f"parameter {BODY_WEIGHT} (body weight) must be positive")


@dataclass(frozen=True)
class DoseEvent:
    """One administration reduced to numbers.

    ``time`` in days before any lag; ``amount`` canonical (nmol or g, per kg when
    ``per_body_weight``), converted to what the route's state holds by multiplying with the
    molecular weight to the power ``mw_power`` (-1: mass into moles, +1: moles into mass, 0:
    no conversion); ``duration`` of an infusion in days, None for a bolus.
    """

    time: float
    route: str
    amount: float
    mw_power: int
    per_body_weight: bool
    duration: float | None


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
                raise RegimenError(f"dose '{dose.amount:~}' is per body weight, but model "
                                   f"{cm.name} has no parameter {BODY_WEIGHT} (body weight)")
            dims = dims * ureg.kg.dimensionality
        kind = "mass" if dims == ureg.g.dimensionality else "substance"
        if kind != route.amount_kind and route.molecular_weight is None:
            raise RegimenError(f"route {route.name}: a dose in "
                               f"{'mass' if kind == 'mass' else 'moles'} needs the drug's "
                               f"molecular_weight, and model {cm.name} names no drug for "
                               "this route")
        mw_power = 0 if kind == route.amount_kind else (-1 if kind == "mass" else 1)
        event = converted[id(dose)] = DoseEvent(admin.time, dose.route, amount, mw_power,
                                                 dose.per_body_weight,
                                                 dose.infusion_duration_days())
        events.append(event)
    return tuple(events)


def dose_plan(cm: CompiledModel, regimen: Regimen | tuple[DoseEvent, ...], p: np.ndarray,
              until: float) -> DosePlan:
    """Convert a regimen's doses for one parameter vector (body weight, MW, F, lag)."""
    events = dose_events(cm, regimen, until) if isinstance(regimen, Regimen) else regimen
    check_fixed_values(cm, p)
    volumes = cm.volumes(p)
    weight = p[cm.parameter_names.index(BODY_WEIGHT)] \
        if BODY_WEIGHT in cm.parameter_names else np.nan
    factors = {}
    boluses, infusions, bolus_amounts, inf_rates = [], [], [], []
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
        amount *= bioavailability
        state = cm.routes[event.route].state
        vol = float(volumes[state])
        if event.duration is not None:
            rate = amount / event.duration
            infusions.append((time, time + event.duration, state, rate / vol))
            inf_rates.append(rate)
        else:
            boluses.append((time, state, amount / vol))
            bolus_amounts.append(amount)
    return DosePlan(tuple(boluses), tuple(infusions), tuple(bolus_amounts), tuple(inf_rates))


def _as_regimen(regimen) -> Regimen:
    if regimen is None:
        return Regimen.none()
    if isinstance(regimen, Regimen):
        return regimen
    if isinstance(regimen, str):
        return Regimen.parse(regimen)
    raise RegimenError(f"regimen must be a Regimen or text, got {type(regimen).__name__}")


def prepare_model(model: Model | str, params=None, overrides: Mapping | None = None) -> Model:
    """Load a model by name/path if needed and layer parameter files and overrides on it."""
    if not isinstance(model, Model):
        model = load_model(model)
    layers: Iterable = () if params is None else \
        [params] if isinstance(params, (str, ParameterSet)) or hasattr(params, "__fspath__") \
        else params
    for layer in layers:
        ps = layer if isinstance(layer, ParameterSet) else load_params(layer)
        ps.check_model(model.name)
        model = model.with_parameters(ps.values)
    if overrides:
        model = model.with_parameters(dict(overrides), where="override")
    return model


def simulate(model: Model | str, regimen: Regimen | str | None = None, *, until,
             params=None, overrides: Mapping | None = None, times=None, every=None,
             rtol: float = 1e-8, atol: float | Sequence[float] | None = None,
             method: str = "LSODA") -> Result:
    """Simulate a model under a dosing regimen.

    Parameters
    ----------
    model
        A :class:`~mechsim.model.Model`, a built-in model name or a model file path.
    regimen
        A :class:`~mechsim.dosing.Regimen` or its text (``"100 mg iv every 7 days x 4"``);
        None for no doses.
    until
        End time with a unit (``"12 weeks"`` or a Quantity).
    params
        Parameter file(s) (names, paths or :class:`ParameterSet`), applied in order over the
        model's defaults.
    overrides
        ``{name: value}`` applied last, e.g. ``{"CL": "0.3 L/day"}``.
    times, every
        Output times (Quantities or text), or an output spacing.  Default: 1001 evenly spaced
        times plus every discontinuity.  Results do not depend on this choice.
    rtol, atol
        Solver tolerances.  Default ``atol``: 1e-12 of each state's own unit (1e-12 nM for a
        state in nM, 1e-12 pg/mL for one in pg/mL).  A number or a sequence with one value per
        state is taken in the solver's canonical units (
        units: nmol, nM, L, g, day).
    method
        ``"LSODA"`` (default; switches between stiff and non-stiff), ``"BDF"`` or ``"Radau"``;
        all use the analytic Jacobian.

    Returns
    -------
    Result

    Examples
    --------
    >>> res = simulate("one_compartment", "100 mg iv", until="2 day", every="1 day")
    >>> res["C_mass"].to("mg/L").round(3)
    <Quantity([10.   5.   2.5], 'milligram / liter')>
    """
    model = prepare_model(model, params, overrides)
    cm = compile_model(model)
    p = cm.parameter_vector(model.parameters_by_name)
    end = as_days(until, "until")
    if not end > 0:
        raise ValidationError(f"`until` must be after 0, got {until!r}")
    reg = _as_regimen(regimen)
    plan = dose_plan(cm, reg, p, end)
    grid = output_grid(plan.breakpoints(end), end, times, every)
    return integrate(cm, p, plan, grid, rtol=rtol, atol=atol, method=method,
                     regimen_text=str(reg))


#: Output times per run: a million points of a 20-state model is 160 MB already; more is
#: a typo in `every` (seconds for days), not a request.
MAX_OUTPUT_POINTS = 1_000_000


def output_grid(breaks: np.ndarray, until: float, times=None, every=None) -> np.ndarray:
    """Output times in days: ``times``, a spacing ``every``, or by default 1001 even times
    plus every discontinuity in ``breaks`` (sorted dose and infusion edges, 0 and until)."""
    if times is not None and every is not None:
        raise ValidationError("give either `times` or `every`, not both")
    if times is not None:
        grid = _times_days(times, "times")
    elif every is not None:
        step = as_days(every, "every")
        if not step > 0:
            raise ValidationError(f"`every` must be positive, got {every!r}")
        if until / step > MAX_OUTPUT_POINTS:
            raise ValidationError(f"`every` = {every!r} over {until:g} days asks for "
                                  f"{until / step:.3g} output points (at most "
                                  f"{MAX_OUTPUT_POINTS:,}); choose a coarser spacing")
        grid = np.append(np.arange(0.0, until, step), until)
    else:
        grid = np.union1d(np.linspace(0.0, until, 1001), breaks)
    # Snap output times that are a rounding error away from a dose or infusion edge onto it
    # (linspace gives 63.00000000000001 for a dose at 63): LSODA rejects such tiny steps.
    if breaks.size:
        nearest = breaks[np.clip(np.searchsorted(breaks, grid), 1, breaks.size) - 1]
        after = breaks[np.clip(np.searchsorted(breaks, grid), 0, breaks.size - 1)]
        for edge in (nearest, after):
            close = np.abs(grid - edge) <= 1e-9 * max(until, 1.0)
            grid = np.where(close, edge, grid)
    grid = np.unique(grid)
    if grid.size == 0 or grid[0] < 0 or grid[-1] > until * (1 + 1e-12):
        raise ValidationError(f"output times must lie in [0, {until:g}] day")
    return grid


#: Stiff methods tried, in order, when the one asked for fails on a run.  All are stiff,
#: error-controlled and use the same tolerances, so the answer is as accurate either way.
FALLBACK = {"NDF": ("Radau", "LSODA"), "LSODA": ("Radau",), "BDF": ("Radau", "LSODA"),
            "Radau": ("LSODA",)}


def integrate(cm: CompiledModel, p: np.ndarray, plan: DosePlan, grid: np.ndarray, *,
              rtol: float = 1e-8, atol=None, method: str = "LSODA",
              regimen_text: str = "") -> Result:
    """Integrate one parameter vector over ``[0, grid[-1]]`` and build the Result."""
    if method not in METHODS:
        raise ValidationError(f"unknown method {method!r} (choose from {', '.join(METHODS)})")
    atol_arr = default_atol(cm, atol)
    if not rtol > 0:
        raise ValidationError("`rtol` and `atol` must be positive")
    until = float(grid[-1])
    y_initial = np.asarray(cm.initial_state(p), dtype=float)
    breaks = plan.breakpoints(until)
    out, pre_t, pre_y, totals, attempt, failed = solve_with_fallback(
        cm, p, plan, grid, y_initial, rtol, atol_arr, method)
    if failed:
        warnings.warn(f"{cm.name}: solver {method} failed ({failed[0][1].split(';')[0]}); "
                      f"the result comes from {attempt}, with the same tolerances",
                      NumericalWarning, stacklevel=3)
    return assemble_result(cm, p, plan, grid, out, y_initial, pre_t, pre_y, totals,
                           len(breaks) - 1, attempt, rtol, atol, atol_arr, regimen_text,
                           tuple(failed))


def solve_with_fallback(cm, p, plan, grid, y_initial, rtol, atol_arr, method):
    """Integrate one run with ``method``, then its FALLBACK methods until one finishes.

    Returns (states, pre-dose times, pre-dose states, counters, method used, [(method,
    error)] of those that failed).  If all fail, raises :func:`every_method_failed`'s error;
    it carries the first method's ``partial`` run (compiled engine) when there is one.
    """
    failed: list[tuple[str, str]] = []
    partial = None
    for attempt in (method, *FALLBACK[method]):
        solve = _solve_compiled if attempt == "NDF" else _solve_scipy
        try:
            out, pre_t, pre_y, totals = solve(cm, p, plan, grid, y_initial, rtol, atol_arr,
                                              attempt)
            return out, pre_t, pre_y, totals, attempt, failed
        except SolverError as exc:
            failed.append((attempt, exc.message))
            if len(failed) == 1:
                partial = getattr(exc, "partial", None)
    error = every_method_failed(failed)
    error.partial = partial
    raise error


def every_method_failed(failed: list[tuple[str, str]]) -> SolverError:
    """One error for a run that the method asked for and all its fallbacks failed: the first
    failure (time, states), the others named, and a hint that fits that situation."""
    first = failed[0][1].split("; hint:")[0]
    if len(failed) == 1:
        return SolverError(failed[0][1])
    others = " and ".join(m for m, _ in failed[1:])
    return SolverError(f"{first}; {others} failed too; hint: every stiff method fails here, "
                       "so look at the model and its values: a state growing without bound, "
                       "a parameter far out of range or in the wrong unit")


def default_atol(cm: CompiledModel, atol) -> np.ndarray:
    """Absolute tolerance per state in canonical units; None gives 1e-12 of each state's own
    unit (pg/mL is 1e-9 of the canonical g/L, so its atol is 1e-21 g/L)."""
    n = len(cm.state_names)
    if atol is None:
        atol = 1e-12 * np.array([to_canonical(ureg.Quantity(1.0, u)) for u in cm.state_units])
    if np.ndim(atol) == 0:
        atol_arr = np.full(n, float(atol))
    elif len(atol) == n:
        atol_arr = np.array(atol, dtype=float)
    else:
        raise ValidationError(f"`atol` needs one value or {n} (one per state), got {len(atol)}")
    if not np.all(atol_arr > 0):
        raise ValidationError("`rtol` and `atol` must be positive")
    return atol_arr


def assemble_result(cm, p, plan, grid, out, y_initial, pre_t, pre_y, totals, segments, method,
                    rtol, atol, atol_arr, regimen_text, failed=()) -> Result:
    """A :class:`Result` from integrated states: observables, diagnostics, mass balance."""
    n = len(cm.state_names)
    residuals = _conservation_residuals(cm, p, plan, grid, out, y_initial, atol_arr)
    _warn_if_inaccurate(cm, out, residuals, rtol, atol_arr)
    pre_states = np.array(pre_y).reshape(len(pre_t), n)
    pre_obs = cm.observables(np.array(pre_t), pre_states.T, p).T \
        if cm.observable_names and pre_t else np.empty((len(pre_t), 0))
    diagnostics = Diagnostics(method=method, rtol=rtol,
                              atol=float(atol_arr[0]) if atol is not None and np.ndim(atol) == 0
                              else tuple(float(x) for x in atol_arr),
                              steps=int(totals[0]), rhs_evaluations=int(totals[1]),
                              jacobian_evaluations=int(totals[2]), segments=segments,
                              conservation_residuals=residuals, failed_methods=failed)
    return Result(
        model=cm.name, time_days=grid, time_unit=cm.time_unit,
        state_names=cm.state_names, state_units=cm.state_units, states=out,
        observable_names=cm.observable_names, observable_units=cm.observable_units,
        observables=cm.observables(grid, out, p) if cm.observable_names else
        np.empty((0, len(grid))),
        diagnostics=diagnostics,
        pre_dose_days=np.array(pre_t), pre_dose_states=pre_states,
        pre_dose_observables=pre_obs,
        regimen=regimen_text,
    )


#: A conservation law may drift by this many times rtol before it is reported: each step
#: adds an error of up to rtol, and a run takes thousands of steps.
RESIDUAL_FACTOR = 1000.0


def _warn_if_inaccurate(cm, out, residuals, rtol, atol_arr) -> None:
    """Warn (NumericalWarning) about states that went negative beyond the tolerance and
    conservation laws that drifted: the numbers are returned, with the reason to doubt them."""
    peak = np.max(np.abs(out), axis=1)
    lowest = np.min(out, axis=1)
    # Every method accepts a step when the weighted RMS norm over the n states of
    # error / (atol + rtol*|y|) is at most 1, so one state may carry up to sqrt(n) times its
    # own tolerance: a state that is truly 0 (a drug never given) can show noise that large.
    allowed = np.sqrt(len(atol_arr)) * (atol_arr + rtol * peak)
    # amounts and concentrations cannot be negative; a dimensionless state may be a signed
    # quantity (an effect, a deviation), so only states with a unit are checked
    physical = np.array([not ureg.Quantity(1.0, u).dimensionless for u in cm.state_units])
    for i in np.flatnonzero(physical & (lowest < -allowed)):
        warnings.warn(f"{cm.name}: state {cm.state_names[i]} went negative, down to "
                      f"{lowest[i]:.3g} (canonical units; tolerance {allowed[i]:.2g}); tighten "
                      "rtol/atol or check the rate laws", NumericalWarning, stacklevel=4)
    limit = max(RESIDUAL_FACTOR * rtol, 1e-9)
    for law, value in residuals.items():
        if value > limit:
            warnings.warn(f"{cm.name}: conservation law {law} drifted by {value:.2g} "
                          f"(relative; more than {limit:.2g}); tighten rtol/atol",
                          NumericalWarning, stacklevel=4)


def _solve_scipy(cm, p, plan, grid, y_initial, rtol, atol_arr, method):
    """Integrate segment by segment with odeint (LSODA) or solve_ivp (BDF, Radau)."""
    n = len(cm.state_names)
    until = float(grid[-1])
    y = y_initial
    rhs, jac = cm.rhs("scalar"), cm.jacobian("scalar")
    out = np.empty((n, len(grid)))
    bolus_at: dict[float, list[tuple[int, float]]] = {}
    for t, i, jump in plan.boluses:
        bolus_at.setdefault(t, []).append((i, jump))
    dose_times = plan.dose_times()
    pre_t, pre_y = [], []
    totals = np.zeros(3, dtype=int)
    for a, b in pairwise(plan.breakpoints(until)):
        if a in dose_times:  # keep the value just before each dose (troughs)
            pre_t.append(a)
            pre_y.append(y.copy())
        y = _apply_boluses(y, bolus_at.get(a, ()))
        u = plan.input_rate(a, n)
        mask = (grid >= a) & (grid < b)
        out[:, mask & (grid == a)] = y[:, None]
        inner = grid[mask & (grid > a)]
        values, counts = _segment(rhs, jac, p, u, y, a, b, inner, rtol, atol_arr, method, cm)
        out[:, mask & (grid > a)] = values[:, :-1]
        y = values[:, -1]
        totals += counts
    out[:, grid == until] = y[:, None]
    return out, pre_t, pre_y, totals


def segment_arrays(plan: DosePlan, until: float, n: int):
    """The plan as arrays for the compiled engine: segment starts and ends, the infusion
    input on each segment, the bolus jump at each start, and which starts are doses."""
    breaks = plan.breakpoints(until)
    starts, ends = breaks[:-1], breaks[1:]
    index = {t: k for k, t in enumerate(starts)}
    rates = np.zeros((len(starts), n))
    for start, end, i, rate in plan.infusions:
        rates[(starts >= start) & (starts < end), i] += rate
    jumps = np.zeros((len(starts), n))
    for t, i, jump in plan.boluses:
        if t in index:
            jumps[index[t], i] += jump
    doses = plan.dose_times()
    is_dose = np.array([t in doses for t in starts], dtype=bool)
    return starts, ends, rates, jumps, is_dose


def _solve_compiled(cm, p, plan, grid, y_initial, rtol, atol_arr, method):
    """Integrate with the numba-compiled NDF engine (:mod:`mechsim.jit`)."""
    from . import jit

    if not jit.available():
        require("numba", "method 'NDF' (the compiled engine)")
    n = len(cm.state_names)
    starts, ends, rates, jumps, is_dose = segment_arrays(plan, float(grid[-1]), n)
    # NaN until written: after a failure, what the engine did not reach stays NaN (never
    # memory left over from another run)
    out = np.full((n, len(grid)), np.nan)
    pre = np.full((len(starts), n), np.nan)
    stats = np.zeros(4)
    status = jit.compiled_runner(cm)(p, starts, ends, rates, jumps, grid, float(rtol),
                                     atol_arr.astype(float), y_initial.astype(float), out, pre,
                                     stats)
    if status != jit.OK:
        reached = float(stats[3])
        out[:, grid > reached] = np.nan
        seen = np.flatnonzero(grid <= reached)
        y_last = out[:, seen[-1]] if seen.size else y_initial
        involved = _states_involved(cm, cm.rhs("scalar"), p, np.zeros(n), y_last,
                                    float(grid[seen[-1]]) if seen.size else 0.0)
        error = compiled_solver_error(cm, status, stats, involved)
        # what was integrated before the failure, for callers that can use a partial run
        # (simulate_many(partial=True)); the rest of the grid is NaN
        done = is_dose & (starts <= reached)
        error.partial = (reached, out, list(starts[done]), list(pre[done]))
        raise error
    return out, list(starts[is_dose]), list(pre[is_dose]), stats[:3].astype(int)


def compiled_solver_error(cm, status, stats, involved=()) -> SolverError:
    from .jit import STATUS_TEXT

    states = f"states involved: {', '.join(involved)}; " if involved else ""
    return SolverError(f"solver NDF failed near t = {stats[3]:g} day: {STATUS_TEXT[status]}; "
                       f"model {cm.name}; {states}hint: check parameter values and units, "
                       "loosen rtol/atol or try method='Radau'")


def _states_involved(cm, rhs, p, u, y, t) -> list[str]:
    """States that are not finite, else the three changing fastest relative to their size:
    where a failing solver was struggling."""
    with np.errstate(all="ignore"):
        dy = np.asarray(rhs(t, y, p), dtype=float) + u
    bad = [cm.state_names[i] for i in np.flatnonzero(~np.isfinite(dy) | ~np.isfinite(y))]
    if not bad:
        scale = np.abs(dy) / np.maximum(np.abs(y), 1e-12)
        bad = [cm.state_names[i] for i in np.argsort(scale)[::-1][:3]]
    return bad


def _apply_boluses(y, jumps):
    if not jumps:
        return y
    y = y.copy()
    for i, jump in jumps:
        y[i] += jump
    return y


def _segment(rhs, jac, p, u, y0, a, b, inner, rtol, atol, method, cm):
    """Integrate one smooth interval; returns states at ``inner`` and ``b`` and counters."""
    tout = np.concatenate([inner, [b]])
    has_input = bool(np.any(u))

    def f(t, y):
        dy = rhs(t, y, p)
        return dy + u if has_input else dy

    def j(t, y):
        return jac(t, y, p)

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if method == "LSODA":
                sol, info = odeint(f, y0, np.concatenate([[a], tout]), Dfun=j, tfirst=True,
                                   rtol=rtol, atol=atol, tcrit=[b], mxstep=100_000,
                                   full_output=True)
                ok = info["message"] == "Integration successful."
                values = sol[1:].T
                if not ok:
                    # rows past the failure are garbage: keep those the solver got beyond
                    reached = np.asarray(info["tcur"], dtype=float)
                    good = np.cumprod(np.isfinite(reached) & (reached >= tout)).astype(bool)
                    values = np.where(good[None, :], values, np.nan)
                counts = (info["nst"][-1], info["nfe"][-1], info["nje"][-1])
                message = info["message"]
            else:
                sol = solve_ivp(f, (a, b), y0, method=method, t_eval=tout, jac=j, rtol=rtol,
                                atol=atol)
                # a failed solve_ivp may return fewer columns than asked, or none at all
                values = np.asarray(sol.y, dtype=float).reshape(len(y0), -1)
                ok = sol.status == 0 and values.shape[1] == len(tout)
                counts = (len(sol.t), sol.nfev, sol.njev)
                message = sol.message
    except (ZeroDivisionError, OverflowError, ValueError, FloatingPointError) as exc:
        raise SolverError(f"the model could not be evaluated between t = {a:g} and {b:g} day "
                          f"({type(exc).__name__}: {exc}); a state or parameter probably "
                          "reached zero or a negative value; check parameter values") from None
    if not ok or not np.all(np.isfinite(values)):
        raise _solver_error(cm, rhs, p, u, y0, values, tout, a, b, message, method)
    return values, np.array(counts, dtype=int)


def _solver_error(cm, rhs, p, u, y0, values, tout, a, b, message, method) -> SolverError:
    finite = np.all(np.isfinite(values), axis=0)
    last = int(np.argmin(finite)) - 1 if not finite.all() else values.shape[1] - 1
    y = values[:, last] if last >= 0 else y0
    t = tout[last] if last >= 0 else a
    bad = _states_involved(cm, rhs, p, u, y, t)
    if message.strip() in ("Integration successful.", "The solver successfully reached the end "
                           "of the integration interval."):
        message = "the solution became NaN or infinite"
    return SolverError(
        f"solver failed near t = {t:g} day (segment {a:g}..{b:g} day): {message.strip()}; "
        f"states involved: {', '.join(bad)}; hint: check parameter values and units, "
        f"loosen rtol/atol or try method='{'Radau' if method != 'Radau' else 'LSODA'}'")


def _conservation_residuals(cm, p, plan, grid, states, y_initial, atol) -> dict[str, float]:
    if not cm.conservation_laws:
        return {}
    volumes = np.asarray(cm.volumes(p), dtype=float)
    amounts = states * volumes[:, None]
    dosed = plan.dosed_amounts(grid, len(cm.state_names))
    out = {}
    for law in cm.conservation_laws:
        c = np.array(law.coefficients)
        total = c @ amounts
        start = c @ (y_initial * volumes)  # before any dose at t = 0
        inputs = c @ dosed
        # floor: what the tolerances allow the law to drift by, so rounding noise in a law
        # that holds nothing (no drug given) does not read as a 100 % error
        floor = float(np.abs(c * volumes) @ atol) * 1e3
        scale = max(np.max(np.abs(total)), np.max(np.abs(inputs)), floor, 1e-300)
        out[law.text] = float(np.max(np.abs(total - start - inputs)) / scale)
    return out

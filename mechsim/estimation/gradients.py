"""Exact derivatives of model predictions: forward sensitivity equations.

For the parameters being estimated, ``p_j``, the sensitivities ``S_j = m_j dy/dp_j`` obey

    dS_j/dt = J(t, y, p) S_j + m_j df/dp_j,      S_j(0) = m_j dy0/dp_j,

with ``J`` the model's Jacobian and ``m_j`` a scale (the parameter's size, so that ``S_j``
has the unit of ``y`` and shares its tolerances).  The equations are generated from the
same sympy expressions as the right-hand side and the Jacobian and appended to the states:
:func:`sensitivity_model` builds an ordinary :class:`~mechsim.compile.CompiledModel` of the
augmented system, so every registered solver (the compiled NDF engine included) integrates
it between doses like any model; its Jacobian is the block-diagonal approximation that
CVODES's simultaneous corrector uses (``jacobian_blocks``: the compiled engine factors the
model's own Jacobian once for all blocks), and the error control covers the sensitivities
too.

A dose is handled as exactly for the sensitivities as for the states.  A bolus jump
``D = amount * F / V`` (with molecular weight and body weight when they apply) changes
``S_j`` by ``m_j dD/dp_j``; an infusion's input ``u`` adds ``m_j du/dp_j`` while it runs.
Parameters that move a dose in time (a route's lag) are refused for estimation.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np
import sympy

from ..codegen import generate
from ..compile import CompiledModel, PicklesWithoutFunctions
from ..doseplan import BODY_SURFACE, BODY_WEIGHT, DosePlan, planned_doses
from ..errors import ValidationError

__all__ = ["Sensitivities", "sensitivity_model"]

_CACHE: OrderedDict = OrderedDict()
_CACHE_SIZE = 16


@dataclass(frozen=True, eq=False)
class Sensitivities(PicklesWithoutFunctions):
    """A compiled model with the sensitivity equations of some of its parameters."""

    compiled: CompiledModel          # the model itself
    augmented: CompiledModel         # states y, then S_1 ... S_k (each n states)
    estimated: tuple[str, ...]       # the parameters p_j
    columns: tuple[int, ...]         # their positions in the parameter vector
    _functions: dict = field(default_factory=dict, repr=False, compare=False)

    @property
    def n(self) -> int:
        return len(self.compiled.state_names)

    @property
    def k(self) -> int:
        return len(self.estimated)

    def parameters(self, p: np.ndarray, scales: np.ndarray) -> np.ndarray:
        """The augmented parameter vector: the model's, then the scales ``m_j``."""
        return np.concatenate([np.asarray(p, dtype=float), np.asarray(scales, dtype=float)])

    def plan(self, events, p: np.ndarray, scales: np.ndarray, until: float) -> DosePlan:
        """The dose plan of the augmented system: each dose's jump or input on its state,
        and ``m_j`` times its derivative on the state's sensitivities."""
        cm = self.compiled
        boluses, infusions, bolus_amounts, inf_rates = [], [], [], []
        log_volume = self._log_volume_gradient(p)           # (n, k): d ln V_state / dp_j
        gradients = {}  # doses of one route and kind share their gradient: computed once
        for dose in planned_doses(cm, events, p, until):
            route = dose.event.route
            kind = (route, dose.event.mw_power, dose.event.per_body_weight,
                    dose.event.per_body_surface)
            if kind not in gradients:
                gradients[kind] = self._route_gradient(route, dose.event, p)
            d_lag, d_log_amount = gradients[kind]
            if np.any(d_lag != 0):
                moved = [self.estimated[j] for j in np.flatnonzero(d_lag)]
                raise ValidationError(f"{', '.join(moved)} set the lag time of route {route}; "
                                      "a parameter that moves a dose in time cannot be "
                                      "estimated")
            # d ln(amount / V) / dp_j, times m_j: the sensitivity of the jump or the input
            scaled = (d_log_amount - log_volume[dose.state]) * scales
            if dose.event.duration is not None:
                rate = dose.amount / dose.event.duration
                value = rate / dose.volume
                start, end = dose.time, dose.time + dose.event.duration
                infusions.extend((start, end, column, v)
                                 for column, v in self.dose_rows(dose.state, value, scaled))
                inf_rates.append(rate)
            else:
                value = dose.amount / dose.volume
                boluses.extend((dose.time, column, v)
                               for column, v in self.dose_rows(dose.state, value, scaled))
                bolus_amounts.append(dose.amount)
        return DosePlan.of(boluses, infusions, bolus_amounts,
                        tuple(inf_rates))

    def dose_rows(self, state: int, value, scaled):
        """The plan rows (augmented state, value) of one dose's jump or input ``value`` on
        ``state``: the state's, then ``m_j`` times its derivative (``value * scaled[j]``)
        on the state's sensitivities, for the j where that is not zero."""
        yield state, value
        for j in range(self.k):
            if scaled[j] != 0:
                yield self.n * (j + 1) + state, value * scaled[j]

    def _route_gradient(self, route: str, event, p: np.ndarray):
        """(d lag / dp_j, d ln(dose amount entering the state) / dp_j) for one route."""
        with np.errstate(all="ignore"):
            values = np.asarray(self.route_gradient_function(route)(p), dtype=float)
        k = self.k
        d_lag, d_log_f, d_log_mw = values[:k], values[k:2 * k], values[2 * k:]
        d_log_amount = d_log_f + event.mw_power * d_log_mw
        for scaled, name in ((event.per_body_weight, BODY_WEIGHT),
                             (event.per_body_surface, BODY_SURFACE)):
            if scaled and name in self.estimated:  # the amount is proportional to it
                d_log_amount = d_log_amount.copy()
                j = self.estimated.index(name)
                d_log_amount[j] += 1.0 / p[self.columns[j]]
        return d_lag, d_log_amount

    def route_gradient_function(self, route: str):
        """The generated function of ``p`` (a vector or columns) giving d lag / dp_j, then
        d ln F / dp_j, then d ln MW / dp_j of a route (3 k values)."""
        fn = self._functions.get(("route", route))
        if fn is None:
            info = self.compiled.routes[route]
            symbols = [self.compiled.params[c] for c in self.columns]
            f = info.bioavailability
            mw = info.molecular_weight if info.molecular_weight is not None else \
                sympy.Integer(1)
            exprs = [sympy.diff(info.lag, s) for s in symbols] + \
                [sympy.diff(sympy.log(f), s) for s in symbols] + \
                [sympy.diff(sympy.log(mw), s) for s in symbols]
            fn = self._functions[("route", route)] = _parameter_function(
                "route_gradient", self.compiled, exprs)
        return fn

    def _log_volume_gradient(self, p: np.ndarray) -> np.ndarray:
        with np.errstate(all="ignore"):
            return np.asarray(self.volume_gradient_function()(p),
                              dtype=float).reshape(self.n, self.k)

    def volume_gradient_function(self):
        """The generated function of ``p`` (a vector or columns) giving d ln V_i / dp_j
        (n k values, state-major)."""
        fn = self._functions.get("volume")
        if fn is None:
            symbols = [self.compiled.params[c] for c in self.columns]
            exprs = [sympy.diff(sympy.log(v), s) for v in self.compiled.volume_exprs
                     for s in symbols]
            fn = self._functions["volume"] = _parameter_function("volume_gradient",
                                                                 self.compiled, exprs)
        return fn

    def output_gradient(self, output: str):
        """``(g, dg/dy, dg/dp)`` of a state or observable: functions of (t, y, p) over a
        time grid, giving shapes (times,), (n, times) and (k, times)."""
        key = ("output", output)
        if key in self._functions:
            return self._functions[key]
        cm = self.compiled
        if output in cm.state_names:
            expr = cm.states[cm.state_names.index(output)]
        elif output in cm.observable_names:
            expr = cm.observable_exprs[cm.observable_names.index(output)]
        else:
            raise ValidationError(f"no output named {output!r} in model {cm.name} (outputs: "
                                  f"{', '.join(cm.state_names + cm.observable_names)})")
        symbols = [cm.params[c] for c in self.columns]
        parts = [expr] + [sympy.diff(expr, y) for y in cm.states] + \
            [sympy.diff(expr, s) for s in symbols]
        fn = generate("output_gradient", ("t", "y", "p"), {"y": cm.states, "p": cm.params},
                      [((i,), e) for i, e in enumerate(parts)], (len(parts),), "vector",
                      batch_from="y")
        self._functions[key] = fn
        return fn


def _parameter_function(name: str, cm: CompiledModel, exprs):
    return generate(name, ("p",), {"p": cm.params}, [((i,), e) for i, e in enumerate(exprs)],
                    (len(exprs),), "vector", batch_from="p")


def sensitivity_model(cm: CompiledModel, estimated) -> Sensitivities:
    """The sensitivity system of ``cm`` for the parameters ``estimated`` (cached)."""
    estimated = tuple(estimated)
    unknown = [name for name in estimated if name not in cm.parameter_names]
    if unknown:
        raise ValidationError(f"cannot estimate {unknown[0]!r}: not a parameter of model "
                              f"{cm.name}")
    key = (id(cm), estimated)
    cached = _CACHE.get(key)
    if cached is not None and cached.compiled is cm:
        _CACHE.move_to_end(key)
        return cached
    columns = tuple(cm.parameter_names.index(name) for name in estimated)
    sens = Sensitivities(cm, _augment(cm, columns), estimated, columns)
    _CACHE[key] = sens
    while len(_CACHE) > _CACHE_SIZE:
        _CACHE.popitem(last=False)
    return sens


def _augment(cm: CompiledModel, columns: tuple[int, ...]) -> CompiledModel:
    n, k = len(cm.states), len(columns)
    p_syms = [cm.params[c] for c in columns]
    scales = tuple(sympy.Symbol(f"_m{j}", real=True) for j in range(k))
    sens = [[sympy.Symbol(f"_S{j}_{i}", real=True) for i in range(n)] for j in range(k)]
    rows: dict[int, list[tuple[int, sympy.Expr]]] = {}
    for i, col, value in cm.jac_entries:
        rows.setdefault(i, []).append((col, value))
    rhs = list(cm.rhs_exprs)
    for j in range(k):
        for i in range(n):
            coupling = sum((value * sens[j][col] for col, value in rows.get(i, ())),
                           sympy.Integer(0))
            rhs.append(coupling + scales[j] * sympy.diff(cm.rhs_exprs[i], p_syms[j]))
    # the Newton matrix of the augmented system, block diagonal: J once, for every block
    jac = cm.jac_entries
    init = list(cm.init_exprs) + [scales[j] * sympy.diff(cm.init_exprs[i], p_syms[j])
                                  for j in range(k) for i in range(n)]
    names = list(cm.state_names) + [f"d{cm.state_names[i]}/d{cm.parameter_names[c]}"
                                    for c in columns for i in range(n)]
    return CompiledModel(
        name=f"{cm.name}+sensitivities", state_names=tuple(names),
        state_units=tuple(cm.state_units) * (k + 1),
        parameter_names=tuple(cm.parameter_names) + tuple(str(m) for m in scales),
        parameter_units=tuple(cm.parameter_units) + (cm.parameter_units[0],) * k,
        observable_names=(), observable_units=(), time_unit=cm.time_unit,
        states=tuple(cm.states) + tuple(s for row in sens for s in row),
        params=tuple(cm.params) + scales, rhs_exprs=tuple(rhs), jac_entries=tuple(jac),
        init_exprs=tuple(init), volume_exprs=tuple(cm.volume_exprs) * (k + 1),
        observable_exprs=(), routes={}, conservation_laws=(), jacobian_blocks=k + 1)

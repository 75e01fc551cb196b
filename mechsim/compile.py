"""Model -> CompiledModel: index maps, generated RHS and analytic Jacobian, conservation laws.

Everything here works on plain floats in canonical units (see :mod:`mechsim.units`).  A
compiled model depends only on the model's *structure*: parameter values are passed in as a
vector, so one compiled model serves every parameter set, and the ``vector`` functions accept
trailing batch axes (states x patients) for population runs.  It pickles: the sympy
expressions travel, generated functions are rebuilt on first use after unpickling.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import reduce

import numpy as np
import pint
import sympy

from .codegen import generate, protect_powers
from .dosing import route_synonyms
from .errors import RegimenError, ValidationError
from .expr import TIME, Expr
from .model import Model, Parameter
from .units import is_undeclared, to_canonical, ureg

__all__ = ["CompiledEvent", "CompiledModel", "ConservationLaw", "RouteInfo", "compile_for",
           "compile_model"]

_T = sympy.Symbol(TIME, real=True)


@dataclass(frozen=True)
class ConservationLaw:
    """``sum(coefficients[i] * amount[i])`` is constant under the reactions (no doses).

    ``amount[i]`` is state i times its compartment volume for concentrations.
    """

    coefficients: tuple[float, ...]
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class RouteInfo:
    """What the simulator needs to apply a dose given by one route."""

    name: str
    state: int
    amount_kind: str            # "substance" or "mass": what the target state holds
    molecular_weight: sympy.Expr | None  # canonical g/nmol, in parameter symbols
    bioavailability: sympy.Expr  # in parameter symbols
    lag: sympy.Expr


@dataclass(frozen=True)
class CompiledEvent:
    """An event in solver terms (see :class:`mechsim.model.Event` for the semantics).

    ``trigger`` is a sympy condition whose comparisons are among the compiled model's
    ``event_roots`` (``lhs - rhs``, canonical): the solvers stop where one of those changes
    sign, and the trigger is evaluated there.  ``assignments`` are (``"state"`` or
    ``"parameter"``, index, value in canonical units).
    """

    name: str
    trigger: sympy.Basic
    assignments: tuple[tuple[str, int, sympy.Expr], ...]
    delay: sympy.Expr | None
    priority: sympy.Expr | None
    persistent: bool
    initial_value: bool
    from_trigger_time: bool


class PicklesWithoutFunctions:
    """A frozen dataclass that keeps generated functions in ``_functions``: they do not
    pickle (made by exec, module ``__main__`` or none), so they stay behind when the
    object travels to another process, and are generated again there on first use."""

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_functions"] = {}
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)


@dataclass(frozen=True, eq=False)
class CompiledModel(PicklesWithoutFunctions):
    """Numeric form of a model's structure.  Build with :func:`compile_model`."""

    name: str
    state_names: tuple[str, ...]
    state_units: tuple[pint.Unit, ...]          # as declared, for reporting
    parameter_names: tuple[str, ...]
    parameter_units: tuple[pint.Unit, ...]      # as declared in the model
    observable_names: tuple[str, ...]
    observable_units: tuple[pint.Unit, ...]
    time_unit: pint.Unit
    states: tuple[sympy.Symbol, ...]
    params: tuple[sympy.Symbol, ...]
    rhs_exprs: tuple[sympy.Expr, ...]           # d(state)/dt, canonical
    jac_entries: tuple[tuple[int, int, sympy.Expr], ...]
    init_exprs: tuple[sympy.Expr, ...]
    volume_exprs: tuple[sympy.Expr, ...]        # per state; 1 for amounts
    observable_exprs: tuple[sympy.Expr, ...]
    routes: Mapping[str, RouteInfo]
    conservation_laws: tuple[ConservationLaw, ...]
    #: the Jacobian is block diagonal with this many copies of the block that jac_entries
    #: describe (sensitivity systems, mechsim.estimation.gradients); 1 for a model
    jacobian_blocks: int = 1
    #: what results show by default (:attr:`mechsim.model.Model.default_outputs`) and the
    #: labels of states and rules, for tables and figures
    default_outputs: tuple[str, ...] = ()
    labels: tuple[tuple[str, str], ...] = ()
    #: events, and the functions whose sign changes they wait for (lhs - rhs of every
    #: comparison in their triggers)
    events: tuple[CompiledEvent, ...] = ()
    event_roots: tuple[sympy.Expr, ...] = ()
    #: the regimen's dosing rules (:mod:`mechsim.dose_rules`) this model was compiled to
    #: watch: rule k acts on event ``len(events) - len(dose_rules) + k``
    dose_rules: tuple = ()
    _functions: dict = field(default_factory=dict, repr=False, compare=False)

    def _fn(self, key: str, build):
        fn = self._functions.get(key)
        if fn is None:
            fn = self._functions[key] = build()
        return fn

    # ---- generated functions ---------------------------------------------------------------
    def rhs(self, mode: str = "scalar"):
        """``f(t, y, p) -> dy/dt`` (canonical units)."""
        return self._fn(f"rhs-{mode}", lambda: generate(
            "rhs", ("t", "y", "p"), {"y": self.states, "p": self.params},
            [((i,), e) for i, e in enumerate(self.rhs_exprs)], (len(self.states),), mode,
            batch_from="y"))

    def jacobian(self, mode: str = "scalar"):
        """``J(t, y, p)[i, j] = d f_i / d y_j`` from symbolic differentiation."""
        blocks = self.jacobian_blocks
        size = len(self.states) // blocks
        block = self._fn(f"jac-{mode}", lambda: generate(
            "jac", ("t", "y", "p"), {"y": self.states, "p": self.params},
            [((i, j), e) for i, j, e in self.jac_entries], (size, size), mode,
            batch_from="y"))
        if blocks == 1:
            return block
        eye = np.eye(blocks)
        return self._fn(f"jac-{mode}-blocks", lambda: lambda t, y, p: np.kron(eye,
                                                                           block(t, y, p)))

    def initial_state(self, p: np.ndarray) -> np.ndarray:
        """Initial state vector for parameter vector(s) ``p``."""
        fn = self._fn("init", lambda: self._param_function("init", self.init_exprs))
        return fn(p)

    def volumes(self, p: np.ndarray) -> np.ndarray:
        """Per-state volume (L) for concentrations, 1 for amounts."""
        fn = self._fn("volumes", lambda: self._param_function("volumes", self.volume_exprs))
        return fn(p)

    def route_factors(self, route: str, p: np.ndarray) -> tuple[float, float, float]:
        """(bioavailability, lag in days, molecular weight in g/nmol or nan) of a route."""
        f, lag, weight = self.route_values(route, p)
        return float(f), float(lag), float(weight)

    def route_values(self, route: str, p: np.ndarray):
        """:meth:`route_factors` for a parameter vector or columns (parameters, runs); an
        entry that does not depend on the parameters is a scalar."""
        info = self.routes[route]
        mw = info.molecular_weight if info.molecular_weight is not None else sympy.nan
        fn = self._fn(f"route-{route}", lambda: self._param_function(
            "route", (info.bioavailability, info.lag, mw)))
        return fn(p)

    def observables(self, t: np.ndarray, y: np.ndarray, p: np.ndarray) -> np.ndarray:
        """Rules evaluated over a time course: ``(n_observables, n_times)``."""
        fn = self._fn("obs", lambda: generate(
            "observables", ("t", "y", "p"), {"y": self.states, "p": self.params},
            [((i,), e) for i, e in enumerate(self.observable_exprs)],
            (len(self.observable_exprs),), "vector", batch_from="y"))
        with np.errstate(all="ignore"):
            return fn(t, y, p[:, None] if p.ndim == 1 else p)

    def _param_function(self, name: str, exprs):
        return generate(name, ("p",), {"p": self.params},
                        [((i,), e) for i, e in enumerate(exprs)], (len(exprs),), "vector",
                        batch_from="p")

    # ---- parameters ----------------------------------------------------------------------
    def parameter_vector(self, values: Mapping[str, Parameter | pint.Quantity]) -> np.ndarray:
        """Canonical parameter vector from a complete name -> value mapping."""
        out = np.empty(len(self.parameter_names))
        for i, name in enumerate(self.parameter_names):
            try:
                v = values[name]
            except KeyError:
                raise ValidationError(f"no value for parameter {name!r}") from None
            out[i] = to_canonical(v.value if isinstance(v, Parameter) else v)
        unset = [n for n, x in zip(self.parameter_names, out) if np.isnan(x)]
        if unset:
            raise ValidationError(f"model {self.name}: no value for parameter(s) "
                                  f"{', '.join(unset)} (the model declares only their unit); "
                                  "give a parameter file (params=...) or overrides")
        return out

    def index(self, name: str) -> int:
        """Position of a state."""
        try:
            return self.state_names.index(name)
        except ValueError:
            raise ValidationError(f"unknown state {name!r} (states: "
                                  f"{', '.join(self.state_names)})") from None

    def route(self, name: str) -> RouteInfo:
        """The route a dose written with ``name`` enters by: the model's route of that name,
        else the one model route that is a synonym of it (``po`` for ``oral``, see
        :data:`mechsim.dosing.ROUTE_SYNONYMS`).  The one place a written route is resolved."""
        if name in self.routes:
            return self.routes[name]
        synonyms = route_synonyms(name)
        found = [s for s in synonyms if s in self.routes]
        if len(found) == 1:
            return self.routes[found[0]]
        known = ", ".join(sorted(self.routes)) or "none"
        if found:
            raise RegimenError(f"route {name!r} of a dose could be any of the routes "
                               f"{', '.join(found)} of model {self.name}: write one of them")
        tried = (f"nor its synonym{'s' if len(synonyms) > 1 else ''} {', '.join(synonyms)}; "
                 if synonyms else "")
        raise RegimenError(f"model {self.name} has no dosing route {name!r} "
                           f"({tried}routes: {known})")


# ---- building -------------------------------------------------------------------------------
#: Compiled models by structure, most recently used last; a long session that builds many
#: distinct models (a fit, a mutation check) keeps only the last CACHE_SIZE.
CACHE_SIZE = 64
_CACHE: OrderedDict = OrderedDict()


def _structure_key(model: Model):
    params = tuple((p.name, p.value.units) for p in model.parameters)
    return (model.name, model.species, model.reactions, model.rules, model.compartments,
            model.routes, model.drugs, model.time_unit, params, model.default_outputs,
            tuple(model.labels.items()), model.events)


def compile_model(model: Model) -> CompiledModel:
    """Compile a model's structure (cached: models differing only in values share one)."""
    key = _structure_key(model)
    try:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    except KeyError:
        pass
    except TypeError:  # unhashable part; compile without caching
        return _Compiler(model).build()
    compiled = _CACHE[key] = _Compiler(model).build()
    while len(_CACHE) > CACHE_SIZE:
        _CACHE.popitem(last=False)
    return compiled


def compile_for(model: Model, regimen=None) -> CompiledModel:
    """The compiled model that runs ``regimen`` on ``model``: with the regimen's dosing
    rules (:mod:`mechsim.dose_rules`), each rule's condition is watched as an event."""
    rules = tuple(getattr(regimen, "rules", ()))
    if not rules:
        return compile_model(model)
    from .dose_rules import with_rule_events

    compiled = compile_model(with_rule_events(model, rules))
    return dataclasses.replace(compiled, dose_rules=rules)


def _defined(value: sympy.Expr, source: Expr) -> sympy.Expr:
    """``value``, unless it is undefined whatever the values (``1/(k - k)``: sympy cancels
    the difference and the quotient is complex infinity), which no solver could use."""
    if value.has(sympy.zoo, sympy.nan):
        raise ValidationError(f"expression {source.text!r} divides by zero whatever the "
                              "values of its names", source.where)
    return value


class _Compiler:
    def __init__(self, model: Model):
        self.m = model
        self.state_syms = {s.name: sympy.Symbol(s.name, real=True) for s in model.species}
        self.param_syms = {p.name: sympy.Symbol(p.name, real=True) for p in model.parameters}
        self.symbols = {**self.state_syms, **self.param_syms, TIME: _T}
        self.rule_values = self._rules()

    def value(self, v) -> sympy.Expr:
        """A field (Expr or literal Quantity) as a sympy expression in canonical units."""
        if isinstance(v, Expr):
            return _defined(v.sympy(self.symbols).xreplace(self.rule_values), v)
        return sympy.Float(to_canonical(v))

    def _rules(self) -> dict[sympy.Symbol, sympy.Expr]:
        """Each rule's expression in states/parameters only (rules substituted, in order)."""
        values: dict[sympy.Symbol, sympy.Expr] = {}
        pending = list(self.m.rules)
        syms = dict(self.symbols)
        for r in pending:
            syms[r.name] = sympy.Symbol(r.name, real=True)
        self.symbols = syms
        while pending:  # the Model already rejected cycles
            for r in list(pending):
                deps = {syms[n] for n in r.expr.names} & {syms[q.name] for q in pending}
                if not deps:
                    values[syms[r.name]] = _defined(r.expr.sympy(syms).xreplace(values),
                                                    r.expr)
                    pending.remove(r)
        return values

    def volume_of(self, compartment: str) -> sympy.Expr:
        return self.value(self.m.compartments_by_name[compartment].volume)

    def build(self) -> CompiledModel:
        m = self.m
        names = [s.name for s in m.species]
        n = len(names)
        volumes = [self.volume_of(s.compartment) if m.is_concentration(s.name) else
                   sympy.Integer(1) for s in m.species]
        rates: list[sympy.Expr] = [sympy.Integer(0)] * n
        stoich = sympy.zeros(n, len(m.reactions))
        for j, r in enumerate(m.reactions):
            flux = self.value(r.rate)
            if self._is_per_volume(r):
                comp = r.compartment or next(m.species_by_name[s].compartment
                                             for s in r.species if m.is_concentration(s))
                flux = flux * self.volume_of(comp)
            for s, coeff in r.stoichiometry().items():
                i = names.index(s)
                c = sympy.nsimplify(coeff)
                stoich[i, j] = c
                rates[i] = rates[i] + c * flux / volumes[i]
        states = tuple(self.state_syms[s] for s in names)
        rhs = tuple(protect_powers(sympy.expand(r) if r.is_Add else r) for r in rates)
        jac = tuple((i, j, d) for i, f in enumerate(rhs) for j, y in enumerate(states)
                    if (d := sympy.diff(f, y)) != 0)
        obs_units = m.rule_units
        observables = tuple(self.rule_values[self.symbols[r.name]] for r in m.rules)
        return CompiledModel(
            name=m.name,
            state_names=tuple(names),
            state_units=tuple(s.unit for s in m.species),
            parameter_names=tuple(p.name for p in m.parameters),
            parameter_units=tuple(p.value.units for p in m.parameters),
            observable_names=tuple(r.name for r in m.rules),
            observable_units=tuple(obs_units[r.name] for r in m.rules),
            time_unit=m.time_unit,
            states=states,
            params=tuple(self.param_syms[p.name] for p in m.parameters),
            rhs_exprs=rhs,
            jac_entries=jac,
            init_exprs=tuple(self.value(s.initial) for s in m.species),
            volume_exprs=tuple(volumes),
            observable_exprs=observables,
            routes={r.name: self._route(r, names) for r in m.routes},
            conservation_laws=self._conservation(stoich, names, self._volume_labels()),
            default_outputs=m.default_outputs,
            labels=tuple(m.labels.items()),
            **self._events(names),
        )

    def _events(self, names: list[str]) -> dict:
        """The model's events in canonical sympy form, and their comparisons' root
        functions (each comparison once, however many triggers share it)."""
        m = self.m
        roots: dict[sympy.Expr, int] = {}
        events = []
        params = [p.name for p in m.parameters]
        for event in m.events:
            trigger = self.value(event.trigger)
            for relation in trigger.atoms(sympy.core.relational.Relational):
                roots.setdefault(relation.lhs - relation.rhs, len(roots))
            assignments = []
            for target, value in event.assignments:
                kind, index = ("state", names.index(target)) if target in names else \
                    ("parameter", params.index(target))
                assignments.append((kind, index, self.value(value)))
            events.append(CompiledEvent(
                name=event.name, trigger=trigger, assignments=tuple(assignments),
                delay=self.value(event.delay) if event.delay is not None else None,
                priority=self.value(event.priority) if event.priority is not None else None,
                persistent=event.persistent, initial_value=event.initial_value,
                from_trigger_time=event.from_trigger_time))
        return {"events": tuple(events), "event_roots": tuple(roots)}

    def _volume_labels(self) -> list[str]:
        """Each species' volume as written in the model ("V1"), "1" for amounts."""
        labels = []
        for s in self.m.species:
            if not self.m.is_concentration(s.name):
                labels.append("1")
                continue
            volume = self.m.compartments_by_name[s.compartment].volume
            labels.append(volume.text if isinstance(volume, Expr) else f"({volume:~})")
        return labels

    def _is_per_volume(self, r) -> bool:
        amount = (1 * self.m.amount_unit(r.species[0])).dimensionality
        units = {p.name: p.value.units for p in self.m.parameters}
        units.update({s.name: s.unit for s in self.m.species})
        units.update(self.m.rule_units)
        units[TIME] = ureg.day
        found = r.rate.dimension(units)
        if is_undeclared(found) or is_undeclared(amount):  # a rate or species of undeclared
            return r.compartment is not None  # unit: per volume only if the reaction says so
        return found.dimensionality != amount / ureg.day.dimensionality

    def _route(self, route, names) -> RouteInfo:
        m = self.m
        amount = (1 * m.amount_unit(route.target)).dimensionality
        drug = route.drug or (m.drugs[0].name if len(m.drugs) == 1 else None)
        mw = None if drug is None else self.value(m.drugs_by_name[drug].molecular_weight)
        one = sympy.Integer(1)
        return RouteInfo(
            name=route.name,
            state=names.index(route.target),
            amount_kind="substance" if amount == ureg.mol.dimensionality else "mass",
            molecular_weight=mw,
            bioavailability=self.value(route.bioavailability) if route.bioavailability
            is not None else one,
            lag=self.value(route.lag) if route.lag is not None else sympy.Integer(0),
        )

    def _conservation(self, stoich: sympy.Matrix, names, volumes) -> tuple[ConservationLaw, ...]:
        """Left null space of the stoichiometry (in amounts), as readable integer laws."""
        if stoich.shape[1] == 0:
            basis = [sympy.eye(len(names))[:, i] for i in range(len(names))]
        else:
            basis = stoich.T.nullspace()
        if basis:
            # Reduced row echelon form, pivoting in file order, makes the laws sparse and,
            # for the usual "free species first, complexes later" order, non-negative
            # ("C + RC", "R + RC" rather than "R - C").
            rref = sympy.Matrix.hstack(*basis).T.rref()[0]
            basis = [rref.row(i) for i in range(rref.rows) if any(rref.row(i))]
        laws = []
        for raw in basis:
            vec = _integer_vector(raw)
            if all(v <= 0 for v in vec):
                vec = [-v for v in vec]
            laws.append(ConservationLaw(tuple(float(v) for v in vec),
                                        _law_text(vec, names, volumes)))
        return tuple(laws)


def _integer_vector(vec) -> list[sympy.Rational]:
    entries = [sympy.nsimplify(v) for v in vec]
    denominators = [sympy.fraction(v)[1] for v in entries]
    scale = reduce(sympy.ilcm, denominators, 1)
    ints = [v * scale for v in entries]
    g = reduce(sympy.igcd, [int(v) for v in ints if v != 0], 0) or 1
    return [sympy.Integer(int(v) // g) for v in ints]


def _law_text(vec, names, volumes: list[str]) -> str:
    used = [(c, name, vol) for c, name, vol in zip(vec, names, volumes) if c != 0]
    common = len({vol for _, _, vol in used}) == 1  # one compartment: volumes cancel
    parts = []
    for c, name, vol in used:
        label = vol if vol.isidentifier() or vol.startswith("(") else f"({vol})"
        term = name if common or vol == "1" else f"{label}*{name}"
        coeff = "" if abs(c) == 1 else f"{abs(c)} "
        sign = "-" if c < 0 else "+"
        parts.append((sign, f"{coeff}{term}"))
    text = " ".join(f"{s} {t}" for s, t in parts)
    return text[2:] if text.startswith("+ ") else "-" + text[2:]

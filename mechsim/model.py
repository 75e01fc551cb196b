"""Frozen model definitions, validated once at creation.

A :class:`Model` holds compartments, species, parameters, reactions, rules (observables),
dosing routes and drugs.  ``Model(...)`` checks every reference and every dimension; a changed
model is a new object (:meth:`Model.replace`, :meth:`Model.with_parameters`).

Species are *amounts* unless they live in a compartment and their unit is per volume, in which
case they are *concentrations* and their amount is ``value * volume``.  Each reaction's rate is
a flux: amount per time of its species, or amount per volume per time in the reaction's
compartment (given, or implied when all its concentration species share one).
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property

import pint

from .dosing import reserved_word
from .errors import UnitError, UnitWarning, ValidationError
from .expr import FUNCTIONS, TIME, Expr
from .units import (
    dimension_text,
    format_quantity,
    format_unit,
    is_undeclared,
    parse_quantity,
    readable_unit,
    ureg,
)

__all__ = ["Compartment", "Drug", "Event", "Model", "Parameter", "Reaction", "Route", "Rule",
           "Species"]

Value = Expr | pint.Quantity  # a field given as an expression or a literal quantity

_VOLUME = ureg.L.dimensionality
_TIME = ureg.day.dimensionality
_MOLAR_MASS = ureg("g/mol").dimensionality
_RESERVED = {TIME, *FUNCTIONS}


def _is_identifier(name: str) -> bool:
    return isinstance(name, str) and name.isidentifier() and name.isascii()


@dataclass(frozen=True)
class Parameter:
    """A named quantity with provenance.  ``source`` cites where the value comes from;
    ``note`` says anything else (e.g. "assumption: typical mAb")."""

    name: str
    value: pint.Quantity
    source: str | None = None
    note: str | None = None
    where: str | None = field(default=None, compare=False)

    def __post_init__(self):
        if not _is_identifier(self.name):
            raise ValidationError(f"parameter name {self.name!r} is not an identifier",
                                  self.where)
        value = parse_quantity(self.value, what=f"parameter {self.name}", where=self.where)
        object.__setattr__(self, "value", value)
        magnitude = float(value.magnitude)
        if math.isinf(magnitude):
            raise ValidationError(f"parameter {self.name} must be finite, got {value}",
                                  self.where)
        if magnitude < 0 and not value.dimensionless and not is_undeclared(value):
            # volumes, clearances, rate constants, concentrations, masses, times: a negative
            # value is a sign typo, and it makes the ODEs blow up instead of failing here
            raise ValidationError(f"parameter {self.name} is negative ({value}); only "
                                  "dimensionless parameters may be negative", self.where)

    @property
    def is_set(self) -> bool:
        """False for a parameter a model declares by unit only (its value is NaN)."""
        return not math.isnan(float(self.value.magnitude))

    def __str__(self) -> str:
        return f"{self.name} = {format_quantity(self.value)}"


@dataclass(frozen=True)
class Compartment:
    """A well-mixed volume; ``volume`` is a parameter expression or a literal quantity."""

    name: str
    volume: Value
    where: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Species:
    """A state variable: ``unit`` is its unit as written, ``initial`` its value at t = 0."""

    name: str
    unit: pint.Unit
    initial: Value
    compartment: str | None = None
    where: str | None = field(default=None, compare=False)
    #: what it is, in words, for tables and axis labels ("free isatuximab in plasma")
    label: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Reaction:
    """``reactants -> products`` at ``rate`` (a flux); stoichiometries are numbers."""

    name: str
    reactants: tuple[tuple[str, float], ...]
    products: tuple[tuple[str, float], ...]
    rate: Expr
    compartment: str | None = None
    where: str | None = field(default=None, compare=False)

    @property
    def species(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s for s, _ in self.reactants + self.products))

    def stoichiometry(self) -> dict[str, float]:
        """Net change of each species per unit of flux."""
        net: dict[str, float] = {}
        for s, n in self.reactants:
            net[s] = net.get(s, 0.0) - n
        for s, n in self.products:
            net[s] = net.get(s, 0.0) + n
        return net

    @property
    def equation(self) -> str:
        def side(terms):
            return " + ".join(s if n == 1 else f"{n:g} {s}" for s, n in terms)
        return f"{side(self.reactants)} -> {side(self.products)}".strip()


@dataclass(frozen=True)
class Rule:
    """An assignment rule / observable ``name = expr``; ``unit`` is the unit results are
    reported in (checked against the expression's dimension; default: inferred)."""

    name: str
    expr: Expr
    unit: pint.Unit | None = None
    where: str | None = field(default=None, compare=False)
    #: what it is, in words, for tables and axis labels ("CD38 occupancy in marrow")
    label: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Route:
    """A way in: doses given by this route enter ``target``.  ``bioavailability`` (fraction)
    and ``lag`` (time) are parameter expressions or literal quantities."""

    name: str
    target: str
    drug: str | None = None
    bioavailability: Value | None = None
    lag: Value | None = None
    where: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Drug:
    """A dosed compound; ``molecular_weight`` converts mass doses to amounts.

    It is a literal (``"148 kDa"`` or ``"148 kg/mol"``) or the name of a parameter with a
    mass-per-amount unit (``kg/mol``), which rules can then use too.
    """

    name: str
    molecular_weight: Value
    where: str | None = field(default=None, compare=False)

    def __post_init__(self):
        mw = self.molecular_weight
        if isinstance(mw, Expr):
            return  # checked against the parameters by the Model
        mw = parse_quantity(mw, what=f"drug {self.name} molecular_weight", where=self.where)
        if mw.dimensionality == ureg.Da.dimensionality:  # a molecule's mass: per mole
            mw = (mw * ureg.avogadro_constant).to("kg/mol")
        if mw.dimensionality != _MOLAR_MASS or not mw.magnitude > 0:
            raise UnitError(f"drug {self.name}: molecular_weight must be a positive mass per "
                            f"amount (e.g. '148 kDa' or '148 kg/mol'), got {mw}", self.where)
        object.__setattr__(self, "molecular_weight", mw)


@dataclass(frozen=True)
class Event:
    """A discontinuity triggered by the state: when ``trigger`` (a condition) turns from
    false to true, after ``delay``, the ``assignments`` (target name -> new value) are made.

    Semantics are SBML's: ``persistent`` (the trigger must stay true until a delayed event
    executes, else it is cancelled), ``initial_value`` (the trigger's value just before the
    run starts: with False, an event whose trigger holds at t = 0 fires at t = 0),
    ``from_trigger_time`` (the assigned values are computed when the trigger fires, not when
    the event executes), ``priority`` (events due at the same time execute highest first;
    equal priorities in the order of the model file).  Targets are species and parameters.
    """

    name: str
    trigger: Expr
    assignments: tuple[tuple[str, Value], ...]
    delay: Value | None = None
    priority: Value | None = None
    persistent: bool = True
    initial_value: bool = True
    from_trigger_time: bool = True
    where: str | None = field(default=None, compare=False)

    def __post_init__(self):
        if not self.trigger.condition:
            raise ValidationError(f"event {self.name}: the trigger must be a condition",
                                  self.where)
        object.__setattr__(self, "assignments", tuple(self.assignments))


def _by_name(items: Iterable, kind: str) -> dict:
    out = {}
    for item in items:
        if item.name in out:
            raise ValidationError(f"{kind} {item.name!r} is defined twice", item.where)
        out[item.name] = item
    return out


@dataclass(frozen=True)
class Model:
    """A complete mechanism, validated at creation.

    Attributes are tuples of parts in file order.  Lookups by name: :attr:`species_by_name`,
    :attr:`parameters_by_name`, ...  Dimensions of all expressions are checked with pint.
    """

    name: str
    species: tuple[Species, ...]
    parameters: tuple[Parameter, ...] = ()
    compartments: tuple[Compartment, ...] = ()
    reactions: tuple[Reaction, ...] = ()
    rules: tuple[Rule, ...] = ()
    routes: tuple[Route, ...] = ()
    drugs: tuple[Drug, ...] = ()
    description: str = ""
    time_unit: pint.Unit = ureg.day
    source: str | None = field(default=None, compare=False)
    parameter_sets: tuple[str, ...] = field(default=(), compare=False)
    #: declared behaviour (``[[expect]]``), checked by ``mechsim check``; not part of the
    #: mechanism, so two models that differ only here are equal
    expectations: tuple = field(default=(), compare=False)
    #: the states and rules shown by default (``[model] outputs``); empty: see
    #: :attr:`default_outputs`
    outputs: tuple[str, ...] = field(default=(), compare=False)
    #: discontinuities triggered by the state (``[[event]]``): :class:`Event`
    events: tuple[Event, ...] = ()

    def __post_init__(self):
        for attr in ("species", "parameters", "compartments", "reactions", "rules", "routes",
                     "drugs", "outputs", "events"):
            object.__setattr__(self, attr, tuple(getattr(self, attr)))
        _Validator(self).run()

    # ---- lookups -------------------------------------------------------------------------
    @cached_property
    def species_by_name(self) -> dict[str, Species]:
        return {s.name: s for s in self.species}

    @cached_property
    def parameters_by_name(self) -> dict[str, Parameter]:
        return {p.name: p for p in self.parameters}

    @cached_property
    def compartments_by_name(self) -> dict[str, Compartment]:
        return {c.name: c for c in self.compartments}

    @cached_property
    def rules_by_name(self) -> dict[str, Rule]:
        return {r.name: r for r in self.rules}

    @cached_property
    def routes_by_name(self) -> dict[str, Route]:
        return {r.name: r for r in self.routes}

    @cached_property
    def drugs_by_name(self) -> dict[str, Drug]:
        return {d.name: d for d in self.drugs}

    @cached_property
    def rule_units(self) -> dict[str, pint.Unit]:
        """Unit each rule is reported in (declared, else inferred)."""
        return _Validator(self).rule_units(warn=False)  # run() warned, once, at creation

    @cached_property
    def default_outputs(self) -> tuple[str, ...]:
        """What tables and figures show unless told otherwise: the declared ``outputs``, or
        every state and every rule that changes during a run (rules of parameters only,
        such as a rate constant derived from a half-life, are left out)."""
        if self.outputs:
            return self.outputs
        fixed = _Validator(self).parameter_only_rules()
        return tuple(s.name for s in self.species) + \
            tuple(r.name for r in self.rules if r.name not in fixed)

    @cached_property
    def labels(self) -> dict[str, str]:
        """Name -> label of the states and rules that have one."""
        return {item.name: item.label for item in (*self.species, *self.rules) if item.label}

    def unit_of(self, name: str) -> pint.Unit:
        """The unit of a species, rule, parameter or of ``t`` (the model's time unit)."""
        if name == TIME:
            return self.time_unit
        if name in self.species_by_name:
            return self.species_by_name[name].unit
        if name in self.rules_by_name:
            return self.rule_units[name]
        if name in self.parameters_by_name:
            return self.parameters_by_name[name].value.units
        raise ValidationError(f"model {self.name} has no species, rule or parameter {name!r}")

    def is_concentration(self, species: str) -> bool:
        """True if the species is a concentration in its compartment (amount = value*V)."""
        sp = self.species_by_name[species]
        return sp.compartment is not None and \
            dict((1 * sp.unit).dimensionality).get("[length]", 0) <= -3

    def amount_unit(self, species: str) -> pint.Unit:
        """Unit of the amount a species holds (its unit, times volume for concentrations)."""
        unit = self.species_by_name[species].unit
        return (1 * unit * ureg.L).units if self.is_concentration(species) else unit

    def _repr_html_(self) -> str:
        from .html import model_html

        return model_html(self)

    def parameters_table(self):
        """The parameters as a table: name, value, unit, source and note, one row each; a
        pandas DataFrame when pandas is installed, else a list of dicts (the same rows).

        Examples
        --------
        >>> import mechsim
        >>> table = mechsim.load_model("one_compartment").parameters_table()
        >>> table[["name", "value", "unit"]].head(3).round(3)
          name    value    unit
        0   MW  150.000  kg/mol
        1    V   10.000       L
        2   CL    6.931     L/d
        """
        rows = [{"name": p.name, "value": float(p.value.magnitude),
                 "unit": format_unit(p.value.units) or "1", "source": p.source or "",
                 "note": p.note or ""} for p in self.parameters]
        try:
            import pandas as pd
        except ImportError:
            return rows
        return pd.DataFrame(rows, columns=["name", "value", "unit", "source", "note"])

    # ---- changing ------------------------------------------------------------------------
    def replace(self, **changes) -> Model:
        """A new, re-validated model with some fields changed."""
        return dataclasses.replace(self, **changes)

    def with_parameters(self, values: Mapping[str, object], *, where: str | None = None
                        ) -> Model:
        """A new model whose parameter values are replaced.

        ``values`` maps names to :class:`Parameter`, Quantities or text such as ``"1.2 nM"``.
        Unknown names and changed dimensions are errors.
        """
        known = self.parameters_by_name
        new = dict(known)
        for name, value in values.items():
            src = value.where if isinstance(value, Parameter) else where
            if name not in known:
                raise ValidationError(f"unknown parameter {name!r} for model {self.name} "
                                      f"(known: {', '.join(sorted(known)) or 'none'})", src)
            old = known[name]
            if isinstance(value, Parameter):
                param = value
            else:
                q = parse_quantity(value, what=f"parameter {name}", where=src)
                if math.isnan(float(q.magnitude)):  # NaN means "no value" inside a model
                    raise ValidationError(f"parameter {name} must be a number, got {value!r}",
                                          src)
                param = Parameter(name, q, where=src)
            if param.value.dimensionality != old.value.dimensionality:
                raise UnitError(f"parameter {name} must have the dimension of "
                                f"{format_quantity(old.value)} "
                                f"({dimension_text(old.value.dimensionality)}), got "
                                f"{format_quantity(param.value)} "
                                f"({dimension_text(param.value.dimensionality)})", src)
            new[name] = param
        return self.replace(parameters=tuple(new.values()))


def _dosing_names(model: Model) -> set[str]:
    """Parameters (and rules of parameters) that volumes, routes and drugs read."""
    names: set[str] = {"WT", "BSA"}
    values = [c.volume for c in model.compartments]
    for r in model.routes:
        values += [r.bioavailability, r.lag]
    values += [d.molecular_weight for d in model.drugs]
    rules = model.rules_by_name
    pending = [v.names for v in values if isinstance(v, Expr)]
    while pending:
        for name in pending.pop():
            if name not in names:
                names.add(name)
                if name in rules:
                    pending.append(rules[name].expr.names)
    return names


class _Validator:
    """Checks names, references and dimensions of a Model (run once, at creation)."""

    def __init__(self, model: Model):
        self.m = model
        # Unit of every name an expression may use; rules are added as they are checked.
        self.units: dict[str, pint.Unit] = {p.name: p.value.units for p in model.parameters}
        self.units.update({s.name: s.unit for s in model.species})
        self.units[TIME] = ureg.day

    def run(self) -> None:
        m = self.m
        if not _is_identifier(m.name):
            raise ValidationError(f"model name {m.name!r} must be an identifier", m.source)
        groups = {
            "species": _by_name(m.species, "species"),
            "parameter": _by_name(m.parameters, "parameter"),
            "compartment": _by_name(m.compartments, "compartment"),
            "rule": _by_name(m.rules, "rule"),
            "reaction": _by_name(m.reactions, "reaction"),
            "route": _by_name(m.routes, "route"),
            "drug": _by_name(m.drugs, "drug"),
        }
        seen: dict[str, str] = {}
        for kind in ("species", "parameter", "rule"):
            for name, item in groups[kind].items():
                if not _is_identifier(name) or name in _RESERVED:
                    raise ValidationError(f"{kind} name {name!r} is not allowed (reserved or "
                                          "not an identifier)", item.where)
                if name in seen:
                    raise ValidationError(f"{kind} {name!r} has the same name as a "
                                          f"{seen[name]}", item.where)
                seen[name] = kind
        self.rule_units()
        for name in m.outputs:
            if name not in groups["species"] and name not in groups["rule"]:
                raise ValidationError(f"model.outputs: {name!r} is not a species or rule of "
                                      f"model {m.name}", m.source)
        # Volumes, initial values, bioavailability, lag and molecular weight are fixed for a
        # run: they may use parameters and rules built from parameters only.
        params = set(groups["parameter"]) | self.parameter_only_rules()
        for c in m.compartments:
            self.check_value(c.volume, _VOLUME, f"compartment {c.name} volume", params, c.where)
        for s in m.species:
            if s.compartment is not None and s.compartment not in groups["compartment"]:
                raise ValidationError(f"species {s.name}: unknown compartment "
                                      f"{s.compartment!r}", s.where)
            self.check_value(s.initial, (1 * s.unit).dimensionality,
                             f"species {s.name} initial value", params, s.where, zero_ok=True)
        for r in m.reactions:
            self.check_reaction(r, groups)
        for route in m.routes:
            self.check_route(route, groups, params)
        for drug in m.drugs:
            if isinstance(drug.molecular_weight, Expr):
                self.check_value(drug.molecular_weight, _MOLAR_MASS,
                                 f"drug {drug.name} molecular_weight", params, drug.where)
        _by_name(m.events, "event")
        for event in m.events:
            self.check_event(event, groups, params)

    def check_value(self, value: Value, dims, what: str, allowed: set[str], where,
                    zero_ok: bool = False) -> None:
        if isinstance(value, pint.Quantity):
            got = value
            if zero_ok and value.magnitude == 0:
                return
            if (value.magnitude < 0 and not is_undeclared(value)) or \
                    not math.isfinite(value.magnitude):
                raise ValidationError(f"{what} must be finite and >= 0, got {value}", where)
        else:
            self.check_names(value, allowed, what, where)
            if zero_ok and value.constant_value() == 0:
                return
            got = value.dimension(self.units)
        if got.dimensionality != dims and not is_undeclared(got) and not is_undeclared(dims):
            raise UnitError(f"{what}: expected {dimension_text(dims)}, got "
                            f"{dimension_text(got.dimensionality)}", where)

    def check_names(self, expr: Expr, allowed: Iterable[str], what: str, where) -> None:
        allowed = set(allowed)
        unknown = sorted(expr.names - allowed)
        varying = [n for n in unknown if n in self.units]
        if varying:  # a known name that may not be used here
            raise ValidationError(f"{what}: {varying[0]!r} changes during a run (a state, time "
                                  "or a rule of them) but this value must be fixed: use "
                                  f"parameters and rules of parameters only (in {expr.text!r})",
                                  expr.where or where)
        if unknown:
            raise ValidationError(f"{what}: unknown name {unknown[0]!r} in {expr.text!r}"
                                  f" (known here: {', '.join(sorted(allowed)) or 'none'})",
                                  expr.where or where)

    def rule_units(self, warn: bool = True) -> dict[str, pint.Unit]:
        m = self.m
        known = set(self.units)
        pending = {r.name: r for r in m.rules}
        out: dict[str, pint.Unit] = {}
        # Rules may use each other in any order, but not in a cycle.
        while pending:
            ready = [r for r in pending.values() if not (r.expr.names & set(pending))]
            if not ready:
                names = ", ".join(sorted(pending))
                first = next(iter(pending.values()))
                for r in pending.values():
                    self.check_names(r.expr, known | set(pending), f"rule {r.name}", r.where)
                raise ValidationError(f"rules depend on each other in a cycle: {names}",
                                      first.where)
            for r in ready:
                self.check_names(r.expr, known | set(out), f"rule {r.name}", r.where)
                dim = r.expr.dimension(self.units)
                if r.unit is not None:
                    if (1 * r.unit).dimensionality != dim.dimensionality and \
                            not is_undeclared(dim) and not is_undeclared(r.unit):
                        raise UnitError(f"rule {r.name}: declared unit {r.unit} "
                                        f"({dimension_text((1 * r.unit).dimensionality)}) but "
                                        f"the expression has {dimension_text(dim.dimensionality)}",
                                        r.where)
                    unit = r.unit
                elif is_undeclared(dim):
                    unit = ureg.undeclared
                elif dim.dimensionless:
                    unit = dim.to_reduced_units().units
                else:
                    unit, simple = readable_unit(dim.units, [self.units[n] for n in
                                                             r.expr.names if n in self.units])
                    if not simple and warn:
                        warnings.warn(f"{r.where or self.m.source or self.m.name}: rule "
                                      f"{r.name}: its unit {format_unit(unit)} could not be "
                                      "simplified; declare the unit to report it in (unit = "
                                      '"...")', UnitWarning, stacklevel=2)
                self.units[r.name] = unit
                out[r.name] = unit
                known.add(r.name)
                del pending[r.name]
        return out

    def parameter_only_rules(self) -> set[str]:
        """Rules that depend (through other rules) on parameters only."""
        fixed = {p.name for p in self.m.parameters}
        rules = {r.name: r.expr.names for r in self.m.rules}
        found: set[str] = set()
        changed = True
        while changed:
            changed = False
            for name, names in rules.items():
                if name not in found and names <= fixed | found:
                    found.add(name)
                    changed = True
        return found

    def check_reaction(self, r: Reaction, groups) -> None:
        m = self.m
        if not (r.reactants or r.products):
            raise ValidationError(f"reaction {r.name} has no species", r.where)
        for s, n in r.reactants + r.products:
            if s not in groups["species"]:
                raise ValidationError(f"reaction {r.name}: unknown species {s!r}", r.where)
            if not (n > 0 and math.isfinite(n)):
                raise ValidationError(f"reaction {r.name}: stoichiometry of {s} must be > 0, "
                                      f"got {n}", r.where)
        self.check_names(r.rate, set(self.units), f"reaction {r.name} rate", r.where)
        amount_dims = {(1 * m.amount_unit(s)).dimensionality for s in r.species}
        amount_dims = {d for d in amount_dims if not is_undeclared(d)} or amount_dims
        if len(amount_dims) > 1:
            raise UnitError(f"reaction {r.name}: its species hold different kinds of amount "
                            f"({', '.join(sorted(map(dimension_text, amount_dims)))})", r.where)
        amount = amount_dims.pop()
        per_time = amount / _TIME
        found = r.rate.dimension(self.units).dimensionality
        if found == per_time or is_undeclared(found) or is_undeclared(amount):
            return
        comp = self.reaction_compartment(r, groups)
        per_volume = per_time / _VOLUME
        if found == per_volume and comp is not None:
            return
        expected = dimension_text(per_time)
        if comp is not None:
            expected += f" or {dimension_text(per_volume)} (per volume of {comp})"
        raise UnitError(f"reaction {r.name}: rate {r.rate.text!r} has dimension "
                        f"{dimension_text(found)}, expected {expected}", r.rate.where or r.where)

    def reaction_compartment(self, r: Reaction, groups) -> str | None:
        if r.compartment is not None:
            if r.compartment not in groups["compartment"]:
                raise ValidationError(f"reaction {r.name}: unknown compartment "
                                      f"{r.compartment!r}", r.where)
            return r.compartment
        comps = {self.m.species_by_name[s].compartment for s in r.species
                 if self.m.is_concentration(s)}
        return comps.pop() if len(comps) == 1 else None

    def check_event(self, event: Event, groups, params: set[str]) -> None:
        """Names and dimensions of an event: a trigger of known names whose comparisons
        compare like with like; assignments to species and parameters, each of its target's
        dimension; a delay that is a time and a dimensionless priority.  A parameter that a
        dose's conversion or a volume reads may not be assigned: doses are converted once,
        when the run starts."""
        where = event.where
        what = f"event {event.name}"
        self.check_names(event.trigger, set(self.units), f"{what} trigger", where)
        event.trigger.dimension(self.units)
        fixed = _dosing_names(self.m)
        for target, value in event.assignments:
            if target in groups["rule"]:
                raise ValidationError(f"{what}: {target} is a rule (computed from other "
                                      "values); assign a species or a parameter", where)
            if target not in groups["species"] and target not in groups["parameter"]:
                raise ValidationError(f"{what}: unknown target {target!r} (a species or a "
                                      "parameter)", where)
            if target in fixed:
                raise ValidationError(f"{what}: {target} sets a volume or a dose's conversion, "
                                      "which are fixed for a run; it cannot be assigned by an "
                                      "event", where)
            if isinstance(value, Expr):
                self.check_names(value, set(self.units), f"{what} assignment to {target}",
                                 where)
                got = value.dimension(self.units).dimensionality
                zero = value.constant_value() == 0
            else:
                got, zero = value.dimensionality, value.magnitude == 0
            need = (1 * self.units[target]).dimensionality
            if got != need and not zero and not is_undeclared(got) and \
                    not is_undeclared(need):
                raise UnitError(f"{what}: the value assigned to {target} has dimension "
                                f"{dimension_text(got)}, {target} has {dimension_text(need)}",
                                where)
        for value, kind, dims in ((event.delay, "delay", _TIME),
                                  (event.priority, "priority", ureg.dimensionless.dimensionality)):
            if value is None:
                continue
            if isinstance(value, Expr):
                self.check_names(value, set(self.units), f"{what} {kind}", where)
                got = value.dimension(self.units).dimensionality
            else:
                got = value.dimensionality
            if got != dims and not is_undeclared(got):
                raise UnitError(f"{what}: the {kind} must be "
                                f"{'a time' if kind == 'delay' else 'dimensionless'}, got "
                                f"{dimension_text(got)}", where)

    def check_route(self, route: Route, groups, params: set[str]) -> None:
        if not (route.name.isidentifier() and route.name == route.name.lower()):
            raise ValidationError(f"route name {route.name!r} must be a lower-case identifier "
                                  "(regimen text is read case-insensitively)", route.where)
        if reserved_word(route.name):  # '100 mg bid' reads 'bid' as a frequency, never a route
            raise ValidationError(f"route name {route.name!r} is a word of the regimen grammar "
                                  "(a keyword or frequency), so no regimen could name it",
                                  route.where)
        if route.target not in groups["species"]:
            raise ValidationError(f"route {route.name}: unknown target species "
                                  f"{route.target!r}", route.where)
        amount = (1 * self.m.amount_unit(route.target)).dimensionality
        if amount not in (ureg.mol.dimensionality, ureg.g.dimensionality):
            raise UnitError(f"route {route.name}: target {route.target} must hold an amount "
                            f"of substance or mass, it holds {dimension_text(amount)}",
                            route.where)
        if route.drug is not None and route.drug not in groups["drug"]:
            raise ValidationError(f"route {route.name}: unknown drug {route.drug!r}",
                                  route.where)
        if route.bioavailability is not None:
            self.check_value(route.bioavailability, ureg.dimensionless.dimensionality,
                             f"route {route.name} bioavailability", params, route.where)
        if route.lag is not None:
            self.check_value(route.lag, _TIME, f"route {route.name} lag", params, route.where,
                             zero_ok=True)

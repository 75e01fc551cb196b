"""SBML Level 3 Version 2 export of a :class:`~mechsim.model.Model`, optionally with a
regimen's doses as events, and libsbml's consistency check of the result.

Everything is written in mechsim's canonical units (day, nmol, L, g): numbers are converted,
and every unit used is declared as an SBML ``unitDefinition``.  Concentration species keep
``hasOnlySubstanceUnits="false"`` in their compartment; amount species are
``hasOnlySubstanceUnits="true"`` (species without a compartment sit in a placeholder
compartment ``amounts`` of 1 L, whose size never enters the mathematics).  Rules become
assignment rules on non-constant parameters; each reaction's kinetic law is its flux in
amount per time (a per-volume rate times the compartment).  Doses of a regimen, expanded by
the dose plan for one parameter set up to ``until``, become events.  What SBML cannot hold
(routes, drugs, reporting units, parameter sources) travels in a mechsim annotation, which
the importer uses when present.  Needs ``python-libsbml`` (``pip install 'mechsim[sbml]'``).
"""

from __future__ import annotations

import ast
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar
from xml.sax.saxutils import escape, quoteattr

import pint

from ..errors import ValidationError
from ..expr import TIME, Expr, Fold
from ..model import Model, Reaction
from ..units import format_quantity, format_unit, to_canonical, ureg
from .atomic import write_text_atomically
from .sbml_common import (
    BASE,
    DAY,
    NAMESPACE,
    ORDER,
    PREFIX,
    XHTML,
    libsbml,
    nice_unit,
    one_line,
)

__all__ = ["export_sbml", "sbml_warnings", "validate_sbml", "write_sbml"]


# =========================================================================== export
def export_sbml(model: Model | str, regimen=None, *, until=None, params=None,
                overrides: Mapping | None = None) -> str:
    """The model as SBML Level 3 Version 2 text, in canonical units (day, nmol, L, g).

    Parameters
    ----------
    model
        A :class:`~mechsim.model.Model`, a built-in model name or a model file path.
    regimen
        A :class:`~mechsim.dosing.Regimen` or its text; its doses become SBML events (boluses)
        and infusion parameters switched by events.  Doses are expanded for the parameter
        values being exported (body weight, molecular weight, bioavailability, lag) and up to
        ``until``, which is then required.
    until
        End of the dosing period (``"12 weeks"``); doses at or after it are left out.
    params, overrides
        Parameter files and overrides applied before export, as in :func:`mechsim.simulate`.
    """
    if regimen is None:
        from .prepare import prepare_model

        return _Exporter(prepare_model(model, params, overrides), None, None, None).text()
    if until is None:
        raise ValidationError("export_sbml: a regimen needs `until` (the doses are written "
                              "out one by one up to that time)")
    from ..doseplan import as_regimen
    from ..runspec import RunSpec

    if as_regimen(regimen).rules:
        raise ValidationError("export_sbml: a regimen's dosing rules (skip/hold/reduce/add) "
                              "cannot be written as SBML doses; export the schedule without "
                              "them")
    spec = RunSpec.build(model, regimen, until=until, params=params, overrides=overrides)
    return _Exporter(spec.model, spec.regimen, spec.until, spec.plan()).text()


def write_sbml(model: Model | str, path: str | Path, regimen=None, *, until=None, params=None,
               overrides: Mapping | None = None) -> Path:
    """Write :func:`export_sbml` output to ``path``; returns the path."""
    text = export_sbml(model, regimen, until=until, params=params, overrides=overrides)
    return write_text_atomically(path, text)


def _unit_text(u: pint.Unit) -> str:
    return format_unit(u) or "1"


def _number(v: float | int) -> str:
    if isinstance(v, int):
        return str(v)
    return repr(float(v))


class _L3Formula(Fold):
    """An expression as fully parenthesised SBML L3 formula text, names mapped by
    ``name``."""

    _FUNCTIONS: ClassVar = {"exp": "exp", "log": "ln", "ln": "ln", "log10": "log10",
                            "sqrt": "sqrt"}

    def __init__(self, name, unit=None):
        self.map_name = name
        self.unit_id = unit  # the unitDefinition id of a quoted quantity's dimension

    def number(self, value, node):
        return _number(value)

    def name(self, name, node):
        return self.map_name(name)

    def negate(self, value, node):
        return f"-({value})"

    def binary(self, op, a, b, node):
        return f"({a}) {'^' if op == '**' else op} ({b})"

    def call(self, function, argument, node):
        return f"{self._FUNCTIONS[function]}({argument})"

    def quantity(self, value, node):
        # the exported model is in canonical units; the number keeps the quantity's unit,
        # so a reader can check the formula's dimensions (C < "3 mg/L": 0.003 g/L)
        number = _number(to_canonical(value))
        return f"{number} {self.unit_id(value)}" if self.unit_id is not None else number

    def truth(self, value, node):
        return "true" if value else "false"

    def compare(self, op, a, b, node):
        return f"({a}) {op} ({b})"

    def logical(self, op, values, node):
        return f" {'&&' if op == 'and' else '||'} ".join(f"({v})" for v in values)

    def negation(self, value, node):
        return f"!({value})"

    def piecewise(self, pieces, otherwise, node):
        parts = [f"{v}, {c}" for v, c in pieces] + ([otherwise] if otherwise is not None
                                                      else [])
        return f"piecewise({', '.join(parts)})"


def _has_minus(expr: Expr) -> bool:
    """A minus sign: the rate may be a net (negative) flux, so call the reaction reversible."""
    return any(isinstance(n, (ast.Sub, ast.USub)) for n in ast.walk(expr.tree))


class _Exporter:
    def __init__(self, model: Model, regimen, until: float | None, plan):
        self.L = L = libsbml()
        self.m = model
        self.regimen = regimen
        self.until = until
        self.plan = plan
        self.doc = L.SBMLDocument(3, 2)
        self.sm = self.doc.createModel()
        self.unit_ids: dict[tuple, str] = {}
        # SBML ids share one namespace; mechsim's species/parameters/rules share theirs.
        self.used = {s.name for s in model.species} | {p.name for p in model.parameters} | \
            {r.name for r in model.rules}
        self.rule_units = model.rule_units
        self.units: dict[str, pint.Unit] = {p.name: p.value.units for p in model.parameters}
        self.units.update({s.name: s.unit for s in model.species})
        self.units.update(self.rule_units)
        self.units[TIME] = ureg.day
        self.env = self._values()

    # ---- ids and units --------------------------------------------------------------------
    def fresh(self, base: str) -> str:
        name = base
        k = 1
        while name in self.used:
            k += 1
            name = f"{base}_{k}"
        self.used.add(name)
        return name

    def unit(self, q: pint.Quantity | pint.Unit) -> str:
        """Id of the unitDefinition for the canonical unit with the dimension of ``q``."""
        dims = dict((1 * q).dimensionality)
        dims = {k: v for k, v in dims.items() if v != 0}
        if not dims:
            return "dimensionless"
        key = tuple(sorted(dims.items()))
        if key in self.unit_ids:
            return self.unit_ids[key]
        unknown = sorted(set(dims) - set(BASE))
        if unknown:
            raise ValidationError(f"cannot write unit dimension {unknown[0]} to SBML")
        pos, neg = [], []
        for d in ORDER:
            if d not in dims:
                continue
            e = dims[d]
            sym = BASE[d][3]
            mag = abs(e)
            if d == "[length]" and float(mag / 3).is_integer():
                sym, mag = "L", mag / 3
            text = sym if mag == 1 else f"{sym}{mag:g}".replace(".", "_")
            (pos if e > 0 else neg).append(text)
        uid = "_per_".join(["_".join(pos)] * bool(pos) + neg)
        if not pos:
            uid = "per_" + uid
        uid = re.sub(r"\W", "_", uid)
        taken = set(self.unit_ids.values())
        base, k = uid, 1
        while uid in taken:
            k += 1
            uid = f"{base}_{k}"
        ud = self.sm.createUnitDefinition()
        ud.setId(uid)
        ud.setName(_unit_text(nice_unit(q)))
        for d in ORDER:
            if d not in dims:
                continue
            kind, scale, mult, _ = BASE[d]
            u = ud.createUnit()
            u.setKind(self.L.UnitKind_forName(kind))
            u.setExponent(float(dims[d]))
            u.setScale(scale)
            u.setMultiplier(mult)
        self.unit_ids[key] = uid
        return uid

    # ---- mathematics ------------------------------------------------------------------------
    def math(self, l3: str, names: Mapping[str, str], what: str, number_units: str | None =
             "dimensionless"):
        """Parse L3 text written with placeholder names and put the real ids back.

        Placeholders keep model names from being read as built-ins (``pi``, ``time``, ``e``);
        ``t`` becomes the csymbol time.  Numbers get ``number_units``.
        """
        L = self.L
        node = L.parseL3Formula(l3)
        if node is None:
            raise ValidationError(f"{what}: cannot write formula {l3!r} to SBML "
                                  f"({one_line(L.getLastParseL3Error())})")

        def fix(n):
            if n.getType() == L.AST_NAME:
                real = names[n.getName()]
                if real == TIME:
                    n.setType(L.AST_NAME_TIME)
                    n.setName("time")
                    n.setDefinitionURL("http://www.sbml.org/sbml/symbols/time")
                else:
                    n.setName(real)
            elif n.isNumber() and number_units and not n.isSetUnits():
                n.setUnits(number_units)
            for i in range(n.getNumChildren()):
                fix(n.getChild(i))

        fix(node)
        return node

    def expr_math(self, expr: Expr, what: str, times: str | None = None):
        names: dict[str, str] = {}
        back: dict[str, str] = {}

        def ph(real: str) -> str:
            if real not in back:
                back[real] = f"_n{len(back)}"
                names[back[real]] = real
            return back[real]

        text = expr.fold(_L3Formula(ph, self.unit))
        if times is not None:
            text = f"({text}) * ({ph(times)})"
        return self.math(text, names, what)

    # ---- numbers ------------------------------------------------------------------------------
    def _values(self) -> dict[str, float]:
        """Canonical values of parameters and of rules that use parameters only."""
        env = {p.name: to_canonical(p.value) for p in self.m.parameters}
        pending = {r.name: r for r in self.m.rules}
        progress = True
        while progress:
            progress = False
            for name, r in list(pending.items()):
                if r.expr.names <= set(env):
                    try:
                        x = r.expr.evaluate(env)
                    except (ArithmeticError, ValueError):
                        x = math.nan
                    env[name] = x if isinstance(x, float) else math.nan
                    del pending[name]
                    progress = True
        return env

    def value(self, v) -> float:
        """Canonical value of a literal or parameter expression (nan if not computable)."""
        if isinstance(v, Expr):
            try:
                x = v.evaluate(self.env)
            except (KeyError, ArithmeticError, ValueError):
                return math.nan
            return x if isinstance(x, float) else math.nan  # e.g. complex from (-1)**0.5
        return to_canonical(v)

    # ---- annotation ---------------------------------------------------------------------------
    def annotate(self, element, tag: str, **attrs) -> None:
        attrs = {k: v for k, v in attrs.items() if v is not None}
        if not attrs:
            return
        body = " ".join(f"{k}={quoteattr(str(v))}" for k, v in attrs.items())
        xml = f'<{PREFIX}:{tag} xmlns:{PREFIX}="{NAMESPACE}" {body}/>'
        if element.appendAnnotation(xml) != self.L.LIBSBML_OPERATION_SUCCESS:
            raise ValidationError(f"could not annotate {tag} {attrs}")

    def notes(self, element, lines: list[str]) -> None:
        if not lines:
            return
        paras = "".join(f"<p>{escape(line)}</p>" for line in lines)
        element.setNotes(f'<body xmlns="{XHTML}">{paras}</body>')

    # ---- the document ---------------------------------------------------------------------------
    def text(self) -> str:
        m, sm = self.m, self.sm
        sm.setId(m.name)
        sm.setName(m.name)
        sm.setTimeUnits(self.unit(ureg.day))
        self.compartments()
        self.parameters()
        self.rules()
        self.species()
        self.reactions()
        self.events()
        if self.regimen is not None:
            self.doses()
        # One kind of amount in every reaction (all nmol, or all g): declare it as the extent,
        # so libsbml can check the kinetic laws.  Mixed kinds (nmol and cell counts) have no
        # common SBML extent; libsbml then warns that kinetic law units differ.
        kinds = {self.substance_unit(r.species[0]) for r in m.reactions}
        if len(kinds) == 1:
            sm.setExtentUnits(kinds.pop())
        self.model_annotation()
        return self.L.writeSBMLToString(self.doc)

    def compartments(self) -> None:
        self.comp_ids: dict[str, str] = {}
        vol_unit = self.unit(ureg.L)
        for c in self.m.compartments:
            cid = self.fresh(c.name)
            self.comp_ids[c.name] = cid
            comp = self.sm.createCompartment()
            comp.setId(cid)
            comp.setName(c.name)
            comp.setSpatialDimensions(3.0)
            comp.setConstant(True)
            comp.setUnits(vol_unit)
            size = self.value(c.volume)
            if math.isfinite(size):
                comp.setSize(size)
            if isinstance(c.volume, Expr):
                ia = self.sm.createInitialAssignment()
                ia.setSymbol(cid)
                ia.setMath(self.expr_math(c.volume, f"compartment {c.name} volume"))
            if cid != c.name:
                self.annotate(comp, "element", name=c.name)
        self.amounts_id = None
        if any(s.compartment is None for s in self.m.species):
            self.amounts_id = self.fresh("amounts")
            comp = self.sm.createCompartment()
            comp.setId(self.amounts_id)
            comp.setName("placeholder for mechsim species without a compartment")
            comp.setSpatialDimensions(3.0)
            comp.setConstant(True)
            comp.setUnits(vol_unit)
            comp.setSize(1.0)

    def parameters(self) -> None:
        for p in self.m.parameters:
            par = self.sm.createParameter()
            par.setId(p.name)
            par.setConstant(True)
            par.setUnits(self.unit(p.value))
            v = to_canonical(p.value)
            if not math.isnan(v):
                par.setValue(v)
            self.annotate(par, "element", unit=_unit_text(p.value.units), source=p.source,
                          note=p.note)
            self.notes(par, [f"{k}: {v}" for k, v in (("source", p.source), ("note", p.note))
                             if v])

    def rules(self) -> None:
        for r in self.m.rules:
            par = self.sm.createParameter()
            par.setId(r.name)
            par.setConstant(False)
            par.setUnits(self.unit(self.rule_units[r.name]))
            rule = self.sm.createAssignmentRule()
            rule.setVariable(r.name)
            rule.setMath(self.expr_math(r.expr, f"rule {r.name}"))
            self.annotate(par, "element", unit=_unit_text(r.unit) if r.unit is not None
                          else None)

    def per_volume_amount(self, species: str) -> bool:
        """A species without compartment whose unit is per volume (``M`` in g/L): exported
        as a concentration in the 1-L placeholder compartment (same numbers, clean units)."""
        s = self.m.species_by_name[species]
        return s.compartment is None and \
            dict((1 * s.unit).dimensionality).get("[length]", 0) <= -3

    def substance_unit(self, species: str) -> str:
        if self.per_volume_amount(species):
            return self.unit(self.m.species_by_name[species].unit * ureg.L)
        return self.unit(self.m.amount_unit(species))

    def species(self) -> None:
        m = self.m
        for s in m.species:
            conc = m.is_concentration(s.name) or self.per_volume_amount(s.name)
            sp = self.sm.createSpecies()
            sp.setId(s.name)
            sp.setCompartment(self.comp_ids[s.compartment] if s.compartment is not None
                              else self.amounts_id)
            sp.setHasOnlySubstanceUnits(not conc)
            sp.setBoundaryCondition(False)
            sp.setConstant(False)
            sp.setSubstanceUnits(self.substance_unit(s.name))
            v = self.value(s.initial)
            if math.isfinite(v):
                if conc:
                    sp.setInitialConcentration(v)
                else:
                    sp.setInitialAmount(v)
            if isinstance(s.initial, Expr):
                ia = self.sm.createInitialAssignment()
                ia.setSymbol(s.name)
                ia.setMath(self.expr_math(s.initial, f"species {s.name} initial"))
            self.annotate(sp, "element", unit=_unit_text(s.unit))

    def flux_compartment(self, r: Reaction) -> str | None:
        """SBML id of the compartment the rate is multiplied by to give the SBML flux."""
        m = self.m
        if self.per_volume_amount(r.species[0]):  # all its species are (same kind)
            return self.amounts_id
        amount = (1 * m.amount_unit(r.species[0])).dimensionality
        if r.rate.dimension(self.units).dimensionality == amount / DAY:
            return None
        return self.comp_ids[r.compartment or next(
            m.species_by_name[s].compartment for s in r.species if m.is_concentration(s))]

    def species_used(self, expr: Expr) -> set[str]:
        """Species an expression depends on, directly or through rules."""
        rules = self.m.rules_by_name
        seen, out, todo = set(), set(), list(expr.names)
        while todo:
            n = todo.pop()
            if n in seen:
                continue
            seen.add(n)
            if n in self.m.species_by_name:
                out.add(n)
            elif n in rules:
                todo.extend(rules[n].expr.names)
        return out

    def reactions(self) -> None:
        for r in self.m.reactions:
            rx = self.sm.createReaction()
            rid = self.fresh(r.name)
            rx.setId(rid)
            rx.setName(r.name)
            rx.setReversible(_has_minus(r.rate))
            for side, create in ((r.reactants, rx.createReactant),
                                 (r.products, rx.createProduct)):
                totals: dict[str, float] = {}
                for s, n in side:
                    totals[s] = totals.get(s, 0.0) + n
                for s, n in totals.items():
                    ref = create()
                    ref.setSpecies(s)
                    ref.setStoichiometry(n)
                    ref.setConstant(True)
            for s in sorted(self.species_used(r.rate) - set(r.species)):
                rx.createModifier().setSpecies(s)
            comp = self.flux_compartment(r)
            kl = rx.createKineticLaw()
            kl.setMath(self.expr_math(r.rate, f"reaction {r.name} rate", comp))
            if comp is not None:
                rx.setCompartment(comp)
            if rid != r.name:
                self.annotate(rx, "element", name=r.name)
            self.notes(rx, [f"{r.equation}; rate {r.rate.text}" +
                            (f" (times the volume of {comp})" if comp else "")])

    def events(self) -> None:
        """The model's [[event]]s as SBML events (the same semantics: see model.Event)."""
        for event in self.m.events:
            what = f"event {event.name}"
            ev = self.sm.createEvent()
            ev.setId(self.fresh(event.name))
            ev.setUseValuesFromTriggerTime(event.from_trigger_time)
            trig = ev.createTrigger()
            trig.setInitialValue(event.initial_value)
            trig.setPersistent(event.persistent)
            trig.setMath(self.expr_math(event.trigger, f"{what} trigger"))
            if event.delay is not None:
                ev.createDelay().setMath(self._event_value(event.delay, f"{what} delay",
                                                           self.unit(ureg.day)))
            if event.priority is not None:
                ev.createPriority().setMath(self._event_value(event.priority,
                                                              f"{what} priority",
                                                              "dimensionless"))
            for target, value in event.assignments:
                ea = ev.createEventAssignment()
                ea.setVariable(target)
                ea.setMath(self._event_value(value, f"{what} assignment to {target}",
                                             self.unit(self.units[target])))

    def _event_value(self, value, what: str, unit: str):
        if isinstance(value, Expr):
            return self.expr_math(value, what)
        return self.math(_number(float(to_canonical(value))), {}, what, number_units=unit)

    def doses(self) -> None:
        """Each dose time becomes one event: bolus jumps and the new infusion rates."""
        from ..compile import compile_model

        m = self.m
        cm = compile_model(m)
        plan = self.plan
        jumps: dict[float, dict[str, float]] = {}
        for t, i, jump in plan.boluses:
            per = jumps.setdefault(t, {})
            name = cm.state_names[i]
            per[name] = per.get(name, 0.0) + jump
        # infusions: one rate parameter (amount/time) and one input reaction per species
        infused = sorted({cm.state_names[i] for _, _, i, _ in plan.infusions},
                         key=cm.state_names.index)
        rate_ids = {}
        for s in infused:
            pid = rate_ids[s] = self.fresh(f"infusion_rate_{s}")
            par = self.sm.createParameter()
            par.setId(pid)
            par.setConstant(False)
            par.setValue(0.0)
            par.setUnits(self.unit(m.amount_unit(s) / ureg.day))
            rx = self.sm.createReaction()
            rx.setId(self.fresh(f"infusion_{s}"))
            rx.setReversible(False)
            ref = rx.createProduct()
            ref.setSpecies(s)
            ref.setStoichiometry(1.0)
            ref.setConstant(True)
            rx.createKineticLaw().setMath(self.math("_r", {"_r": pid}, "infusion"))
        edges = sorted({t for start, end, _, _ in plan.infusions for t in (start, end)})
        rates: dict[float, dict[str, float]] = {}
        current = dict.fromkeys(infused, 0.0)
        for a in edges:
            total = dict.fromkeys(infused, 0.0)
            for (start, end, i, _), amount_rate in zip(plan.infusions,
                                                       plan.infusion_amount_rates):
                if start <= a < end:
                    total[cm.state_names[i]] += amount_rate
            changed = {s: v for s, v in total.items() if v != current[s]}
            if changed:
                rates[a] = changed
                current.update(changed)
        day = self.unit(ureg.day)
        for k, t in enumerate(sorted(set(jumps) | set(rates)), start=1):
            ev = self.sm.createEvent()
            ev.setId(self.fresh(f"dose_{k}"))
            ev.setUseValuesFromTriggerTime(True)
            trig = ev.createTrigger()
            trig.setInitialValue(False)
            trig.setPersistent(True)
            trig.setMath(self.math(f"_t >= {_number(float(t))}", {"_t": TIME},
                                   "dose time", number_units=day))
            for s, jump in jumps.get(t, {}).items():
                ea = ev.createEventAssignment()
                ea.setVariable(s)
                unit = self.unit(m.species_by_name[s].unit)
                ea.setMath(self.math(f"_s + {_number(float(jump))}", {"_s": s},
                                     f"dose of {s}", number_units=unit))
            for s, v in rates.get(t, {}).items():
                ea = ev.createEventAssignment()
                ea.setVariable(rate_ids[s])
                ea.setMath(self.math(_number(float(v)), {}, f"infusion into {s}",
                                     number_units=self.unit(m.amount_unit(s) / ureg.day)))

    def model_annotation(self) -> None:
        m = self.m
        attrs = {"name": m.name, "time_unit": _unit_text(m.time_unit)}
        if m.description:
            attrs["description"] = m.description
        if self.amounts_id is not None:
            attrs["amounts_compartment"] = self.amounts_id
        if m.parameter_sets:
            attrs["parameter_sets"] = ", ".join(m.parameter_sets)
        parts = [f"<{PREFIX}:model xmlns:{PREFIX}=\"{NAMESPACE}\" " +
                 " ".join(f"{k}={quoteattr(v)}" for k, v in attrs.items()) + ">"]

        def val(v):
            return None if v is None else v.text if isinstance(v, Expr) else format_quantity(v)

        for d in m.drugs:
            parts.append(f"<{PREFIX}:drug name={quoteattr(d.name)} "
                         f"molecular_weight={quoteattr(val(d.molecular_weight))}/>")
        for r in m.routes:
            extra = {"drug": r.drug, "bioavailability": val(r.bioavailability),
                     "lag": val(r.lag)}
            text = "".join(f" {k}={quoteattr(v)}" for k, v in extra.items() if v is not None)
            parts.append(f"<{PREFIX}:route name={quoteattr(r.name)} "
                         f"target={quoteattr(r.target)}{text}/>")
        if self.regimen is not None:
            parts.append(f"<{PREFIX}:doses regimen={quoteattr(str(self.regimen))} "
                         f"until_days={quoteattr(_number(self.until))}/>")
        parts.append(f"</{PREFIX}:model>")
        if self.sm.appendAnnotation("".join(parts)) != self.L.LIBSBML_OPERATION_SUCCESS:
            raise ValidationError("could not write the mechsim model annotation")
        lines = [f"Exported by mechsim from model {m.name}" +
                 (f": {m.description}" if m.description else "") + ".",
                 "Units are mechsim's canonical units (day, nmol, L, g); kinetic laws are "
                 "fluxes in amount per day."]
        if self.amounts_id is not None:
            lines.append(f"Compartment {self.amounts_id} (1 L) is a placeholder for species "
                         "without a compartment: amounts (hasOnlySubstanceUnits), or, for a "
                         "per-volume unit such as g/L, concentrations in these 1 L.")
        if self.regimen is not None:
            lines.append(f"Doses as events: {self.regimen}, up to day {self.until:g}, "
                         "expanded for the parameter values in this file.")
        self.notes(self.sm, lines)


# =========================================================================== validation
def _check(text: str) -> tuple[list[str], list[str]]:
    L = libsbml()
    doc = L.readSBMLFromString(text)
    doc.setConsistencyChecks(L.LIBSBML_CAT_UNITS_CONSISTENCY, True)
    doc.checkConsistency()
    errors, warnings = [], []
    for i in range(doc.getNumErrors()):
        e = doc.getError(i)
        message = _message_text(e.getSeverityAsString().lower(), e.getErrorId(), e.getLine(),
                                one_line(e.getMessage()))
        (errors if e.getSeverity() >= L.LIBSBML_SEV_ERROR else warnings).append(message)
    return errors, warnings


#: libsbml's messages name the element they concern as "the <reaction> with id 'x'"
_ELEMENT = re.compile(r"<(\w+)> (?:element )?with (?:the )?id '([^']+)'")
#: and open with the text of the rule, then "Reference: L3V2 Section 3.4 " and the case
_REFERENCE = re.compile(r"Reference: L\d+V\d+ Sections? [\d.]+(?: and [\d.]+)?\s*")


def _message_text(severity: str, code: int, line: int, text: str) -> str:
    """One line per message: severity and libsbml's code, the element it concerns (kind
    and id, else the line of the SBML text) and what libsbml says about this case."""
    found = _ELEMENT.findall(text)
    where = f"{found[-1][0]} '{found[-1][1]}'" if found else f"line {line}"
    parts = _REFERENCE.split(text, maxsplit=1)
    specific = parts[1] if len(parts) == 2 and parts[1] else text
    return f"{severity} {code}, {where}: {specific}"


def validate_sbml(text: str) -> list[str]:
    """libsbml's consistency check (units included): messages of severity error or fatal.

    An empty list means libsbml found no error; :func:`sbml_warnings` lists the warnings.
    """
    return _check(text)[0]


def sbml_warnings(text: str) -> list[str]:
    """Warnings (and informational messages) of the same check as :func:`validate_sbml`."""
    return _check(text)[1]

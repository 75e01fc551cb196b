"""SBML import: a model file of any SBML level, without events, to a validated
:class:`~mechsim.model.Model`.

The Model is built the way the TOML reader builds one: every formula goes through
:class:`~mechsim.expr.Expr` (never ``eval``) and the Model checks every dimension.
Unsupported constructs (events, algebraic rules, delays, piecewise, ...) raise
:class:`~mechsim.errors.ParseError` naming the SBML element and id.  Files are read and
size-checked here and given to libsbml as text; a DOCTYPE (which could declare entities)
is refused first.  See ``docs/sbml.md``.
"""

from __future__ import annotations

import keyword
import math
import re
from collections.abc import Mapping
from pathlib import Path

import pint

from ..errors import MechsimError, ParseError, UnitError, ValidationError
from ..expr import FUNCTIONS, TIME, Expr
from ..model import Compartment, Drug, Model, Parameter, Reaction, Route, Rule, Species
from ..units import dimension_text, parse_unit, ureg
from .common import value_or_expr
from .sbml_common import DAY, MAX_SBML_BYTES, NAMESPACE, VOLUME, libsbml, nice_unit, one_line
from .toml_source import check_size

__all__ = ["parse_sbml", "read_sbml"]


# =========================================================================== import
def read_sbml(path: str | Path, *, routes: Mapping | None = None,
              drugs: Mapping | None = None) -> Model:
    """Read an SBML file (any level; events are not supported) into a validated Model.

    ``routes`` maps route names to target species (``{"iv": "C"}``) or to tables like the
    model file's (``{"sc": {"target": "depot", "bioavailability": "F"}}``); ``drugs`` maps
    drug names to molecular weights (``{"mab": "150 kg/mol"}``).  Files written by mechsim
    carry their routes and drugs in an annotation; arguments given here replace them.
    Errors are one-line :class:`~mechsim.errors.ParseError` (or ``UnitError`` /
    ``ValidationError`` from the model's checks) naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ParseError(f"no such file: {path}")
    check_size(path, MAX_SBML_BYTES)
    data = path.read_bytes()
    text = _decode(data, str(path))
    # parsed from the checked text, never by libsbml from the path: nothing else is read
    return parse_sbml(text, where=str(path), routes=routes, drugs=drugs)


def parse_sbml(text: str, *, where: str = "<sbml>", routes: Mapping | None = None,
               drugs: Mapping | None = None) -> Model:
    """Like :func:`read_sbml`, from SBML text; ``where`` names the source in errors."""
    if not isinstance(text, str):
        raise ParseError(f"SBML text must be a string, got {type(text).__name__}", where)
    _refuse_document_type(text, where)
    doc = libsbml().readSBMLFromString(text)
    # libsbml puts an XML declaration line in front of text that has none: its line
    # numbers are then one too high
    shift = 0 if text.startswith("<?xml") else 1
    return _model_from_document(doc, where, routes, drugs, shift)


_DOCTYPE = re.compile(r"<!\s*(DOCTYPE|ENTITY)\b", re.IGNORECASE)


def _refuse_document_type(text: str, where: str) -> None:
    """SBML is defined by its XML schema and never needs a DTD; a DOCTYPE can declare
    entities that read other files (external entities) or expand without bound (nested
    entities), so any DOCTYPE or ENTITY declaration is refused before the XML is parsed."""
    found = _DOCTYPE.search(text)
    if found:
        line = text.count("\n", 0, found.start()) + 1
        raise ParseError(f"line {line}: a <!{found.group(1).upper()} declaration is not "
                         "allowed in SBML (entities could read other files or expand without "
                         "bound); remove the DOCTYPE", where)


def _decode(data: bytes, where: str) -> str:
    """The text of an XML file: UTF-8 unless a byte-order mark says UTF-16 or UTF-32."""
    boms = ((b"\xef\xbb\xbf", "utf-8-sig"), (b"\xff\xfe\x00\x00", "utf-32"),
            (b"\x00\x00\xfe\xff", "utf-32"), (b"\xff\xfe", "utf-16"), (b"\xfe\xff", "utf-16"))
    codec = next((name for bom, name in boms if data.startswith(bom)), "utf-8")
    try:
        return data.decode(codec)
    except UnicodeDecodeError as exc:
        raise ParseError(f"not readable as {codec} text (byte {exc.start}); SBML files are "
                         "UTF-8", where) from None


def _model_from_document(doc, where: str, routes, drugs, line_shift: int = 0) -> Model:
    L = libsbml()
    bad = [doc.getError(i) for i in range(doc.getNumErrors())
           if doc.getError(i).getSeverity() >= L.LIBSBML_SEV_ERROR]
    if bad:
        e = bad[0]
        line = f" (line {e.getLine() - line_shift})" if e.getLine() > line_shift else ""
        if e.getErrorId() < 10000:  # XML layer
            raise ParseError(f"not well-formed XML{line}: {one_line(e.getMessage())}", where)
        if doc.getModel() is None:
            raise ParseError(f"not an SBML document{line}: {one_line(e.getShortMessage())} "
                             "(expected <sbml> with a <model>)", where)
        raise ParseError(f"not valid SBML{line}: {one_line(e.getMessage())}", where)
    if doc.getModel() is None:
        raise ParseError("not an SBML model: the document has no <model>", where)
    return _Importer(doc, where, routes, drugs).model()


_AST_UNSUPPORTED = {
    "AST_FUNCTION_PIECEWISE": "piecewise",
    "AST_FUNCTION_DELAY": "delay",
    "AST_FUNCTION_RATE_OF": "rateOf",
    "AST_LAMBDA": "lambda",
    "AST_NAME_AVOGADRO": "avogadro",
}


class _Importer:
    def __init__(self, doc, where: str, routes, drugs):
        self.L = libsbml()
        self.doc = doc
        self.where = where
        self.routes_arg = routes
        self.drugs_arg = drugs
        self.prepare()
        self.sm = doc.getModel()
        self.reject_unsupported()
        self.expand_functions()
        self.info = self.read_model_annotation()
        self.from_mechsim = self.mechsim_node(self.sm, "model") is not None

    def error(self, message: str) -> ParseError:
        return ParseError(message, self.where)

    # ---- document-level checks and conversions ----------------------------------------------
    def prepare(self) -> None:
        L, doc = self.L, self.doc
        ns = doc.getNamespaces()
        for i in range(ns.getNumNamespaces()):
            uri = ns.getURI(i)
            if uri.startswith("http://www.sbml.org/sbml/level3/") and "/core" not in uri \
                    and doc.getPackageRequired(uri):
                name = ns.getPrefix(i) or uri
                raise self.error(f"the model uses the SBML package '{name}', which changes "
                                 "the mathematics; read_sbml supports SBML core only")
        model = doc.getModel()
        for i in range(model.getNumReactions()):
            r = model.getReaction(i)
            if r.isSetFast() and r.getFast():
                raise self.error(f"reaction '{r.getId()}': fast reactions (fast=\"true\") "
                                 "are not supported")
        if (doc.getLevel(), doc.getVersion()) != (3, 2):
            doc.setLevelAndVersion(3, 2, False)
            bad = [doc.getError(i) for i in range(doc.getNumErrors())
                   if doc.getError(i).getSeverity() >= L.LIBSBML_SEV_ERROR]
            if bad:
                raise self.error(f"cannot convert the model to SBML Level 3 Version 2: "
                                 f"{one_line(bad[0].getMessage())}")

    def expand_functions(self) -> None:
        """Inline functionDefinitions (libsbml's converter) so formulas use built-ins only."""
        L, doc = self.L, self.doc
        if not doc.getModel().getNumFunctionDefinitions():
            return
        props = L.ConversionProperties()
        props.addOption("expandFunctionDefinitions", True)
        if doc.convert(props) != L.LIBSBML_OPERATION_SUCCESS or \
                doc.getModel().getNumFunctionDefinitions():
            fd = doc.getModel().getFunctionDefinition(0)
            raise self.error(f"functionDefinition '{fd.getId()}' could not be inlined into "
                             "the formulas that use it")
        self.sm = doc.getModel()

    def read_model_annotation(self) -> dict:
        info = {"drugs": [], "routes": []}
        node = self.mechsim_node(self.sm, "model")
        if node is None:
            return info
        for key in ("name", "time_unit", "description", "amounts_compartment"):
            if node.hasAttr(key):
                info[key] = node.getAttrValue(key)
        for i in range(node.getNumChildren()):
            child = node.getChild(i)
            attrs = {child.getAttrName(k): child.getAttrValue(k)
                     for k in range(child.getAttributesLength())}
            if child.getName() == "drug":
                info["drugs"].append(attrs)
            elif child.getName() == "route":
                info["routes"].append(attrs)
        return info

    def mechsim_node(self, element, tag: str):
        ann = element.getAnnotation()
        if ann is None:
            return None
        for i in range(ann.getNumChildren()):
            child = ann.getChild(i)
            if child.getURI() == NAMESPACE and child.getName() == tag:
                return child
        return None

    def element_info(self, element) -> dict[str, str]:
        node = self.mechsim_node(element, "element")
        if node is None:
            return {}
        return {node.getAttrName(k): node.getAttrValue(k)
                for k in range(node.getAttributesLength())}

    # ---- units -------------------------------------------------------------------------------
    def unit_quantity(self, uid: str, what: str) -> pint.Quantity:
        """An SBML unit reference as a pint Quantity (scale factor times unit)."""
        L = self.L
        if not uid:
            raise self.error(f"{what} has no units; mechsim checks the dimension of every "
                             "expression, so every parameter, species and compartment needs "
                             "units (units=\"dimensionless\" for pure numbers)")
        ud = self.sm.getUnitDefinition(uid)
        if ud is None:
            kind = L.UnitKind_forName(uid)
            if kind == L.UNIT_KIND_INVALID:
                raise self.error(f"{what}: unknown units '{uid}'")
            return self.kind_quantity(kind, 1.0, 0, 1.0, what)
        q = ureg.Quantity(1.0)
        for k in range(ud.getNumUnits()):
            u = ud.getUnit(k)
            q = q * self.kind_quantity(u.getKind(), u.getExponentAsDouble(), u.getScale(),
                                       u.getMultiplier(), what)
        return q

    def kind_quantity(self, kind, exponent, scale, multiplier, what) -> pint.Quantity:
        name = self.L.UnitKind_toString(kind)
        factor = multiplier * 10.0 ** scale
        if name in ("dimensionless", "item"):
            base = ureg.Quantity(factor)
        elif name == "avogadro":
            base = ureg.Quantity(factor * 6.02214076e23)
        else:
            try:
                base = ureg.Quantity(factor, name)
            except pint.UndefinedUnitError:
                raise self.error(f"{what}: SBML unit kind '{name}' is not supported") from None
        return base ** exponent

    @staticmethod
    def nice_unit(q: pint.Quantity) -> pint.Unit:
        return nice_unit(q)

    def display_unit(self, q: pint.Quantity, info: dict, what: str) -> pint.Unit:
        """The annotated mechsim unit if it has the dimension of ``q``, else a canonical one."""
        text = info.get("unit")
        if text is not None:
            unit = ureg.dimensionless if text == "1" else parse_unit(text, what=what,
                                                                     where=self.where)
            if (1 * unit).dimensionality == q.dimensionality:
                return unit
        return self.nice_unit(q)

    def quantity(self, value: float, q: pint.Quantity, unit: pint.Unit) -> pint.Quantity:
        """``value`` in the SBML unit ``q``, expressed in ``unit``."""
        if math.isnan(value):
            return ureg.Quantity(math.nan, unit)
        if value == 0:
            return ureg.Quantity(0.0, unit)
        out = float(ureg.Quantity(value * q.magnitude, q.units).to(unit).magnitude)
        if out != value:  # converted: drop the conversion noise (148, not 147.99999999999997)
            out = float(f"{out:.15g}")
        return ureg.Quantity(out, unit)

    # ---- names -----------------------------------------------------------------------------
    def build_names(self) -> None:
        """SBML id -> mechsim name for everything a formula may refer to."""
        sm = self.sm
        reserved = {TIME, *FUNCTIONS}
        self.names: dict[str, str] = {}
        taken: set[str] = set()
        ids = [sm.getSpecies(i).getId() for i in range(sm.getNumSpecies())] + \
              [sm.getParameter(i).getId() for i in range(sm.getNumParameters())] + \
              [sm.getCompartment(i).getId() for i in range(sm.getNumCompartments())]
        for sid in ids:
            name = sid
            while keyword.iskeyword(name) or name in reserved or name in taken or \
                    (name in ids and name != sid):
                name += "_"
            self.names[sid] = name
            taken.add(name)
        self.taken = taken
        self.compartment_ids = {sm.getCompartment(i).getId()
                                for i in range(sm.getNumCompartments())}
        self.reaction_ids = {sm.getReaction(i).getId() for i in range(sm.getNumReactions())}
        self.needed_compartments: set[str] = set()
        self.species_names = {self.names[sm.getSpecies(i).getId()]
                              for i in range(sm.getNumSpecies())}

    def fresh(self, base: str) -> str:
        name = base
        while name in self.taken or keyword.iskeyword(name) or name in (TIME, *FUNCTIONS):
            name += "_"
        self.taken.add(name)
        return name

    # ---- formulas ---------------------------------------------------------------------------
    def formula(self, node, what: str, local: Mapping[str, str] | None = None) -> str:
        """An SBML math tree as mechsim expression text (checked node by node)."""
        if node is None:
            raise self.error(f"{what} has no math")
        return self._text(node, what, local or {})[0]

    def _text(self, n, what: str, local: Mapping[str, str]) -> tuple[str, int]:
        """(text, precedence): 1 for + -, 2 for * /, 3 unary minus, 4 power, 5 atoms."""
        L = self.L
        t = n.getType()
        kids = [n.getChild(i) for i in range(n.getNumChildren())]

        def sub(k, below: int) -> str:  # child text, in parentheses if it binds looser
            text, prec = self._text(k, what, local)
            return f"({text})" if prec < below else text

        if n.isNumber():
            units = n.getUnits() if n.isSetUnits() else ""
            if units and units != "dimensionless":
                raise self.error(f"{what}: number with units '{units}' in "
                                 f"{one_line(L.formulaToL3String(n))!r}: mechsim numbers "
                                 "in formulas are dimensionless (use a parameter)")
            v = float(n.getValue())
            if not math.isfinite(v):
                raise self.error(f"{what}: non-finite number {v}")
            text = str(n.getInteger()) if t == L.AST_INTEGER else repr(v)
            return text, 3 if text.startswith("-") else 5
        if t == L.AST_NAME:
            sid = n.getName()
            if sid in local:
                return local[sid], 5
            if sid in self.reaction_ids:
                raise self.error(f"{what}: uses reaction id '{sid}' as a value (its rate); "
                                 "not supported")
            if sid not in self.names:
                raise self.error(f"{what}: unknown id '{sid}'")
            if sid in self.compartment_ids:
                self.needed_compartments.add(sid)
            return self.names[sid], 5
        if t == L.AST_NAME_TIME:
            return TIME, 5
        if t == L.AST_CONSTANT_PI:
            return repr(math.pi), 5
        if t == L.AST_CONSTANT_E:
            return repr(math.e), 5
        if t == L.AST_PLUS:
            return (" + ".join(sub(k, 1) for k in kids), 1) if kids else ("0", 5)
        if t == L.AST_TIMES:
            return ("*".join(sub(k, 2) for k in kids), 2) if kids else ("1", 5)
        if t == L.AST_MINUS and len(kids) == 1:
            return f"-{sub(kids[0], 3)}", 3
        if t == L.AST_MINUS and len(kids) == 2:
            return f"{sub(kids[0], 1)} - {sub(kids[1], 2)}", 1
        if t == L.AST_DIVIDE and len(kids) == 2:
            return f"{sub(kids[0], 2)}/{sub(kids[1], 3)}", 2
        if t in (L.AST_POWER, L.AST_FUNCTION_POWER) and len(kids) == 2:
            return f"{sub(kids[0], 5)}**{sub(kids[1], 4)}", 4
        if t == L.AST_FUNCTION_EXP and len(kids) == 1:
            return f"exp({sub(kids[0], 0)})", 5
        if t == L.AST_FUNCTION_LN and len(kids) == 1:
            return f"log({sub(kids[0], 0)})", 5
        if t == L.AST_FUNCTION_LOG:
            if len(kids) == 1:
                return f"log10({sub(kids[0], 0)})", 5
            base, arg = kids
            if base.isNumber() and base.getValue() == 10:
                return f"log10({sub(arg, 0)})", 5
            return f"log({sub(arg, 0)})/log({sub(base, 0)})", 2
        if t == L.AST_FUNCTION_ROOT:
            if len(kids) == 1:
                return f"sqrt({sub(kids[0], 0)})", 5
            degree, arg = kids
            if degree.isNumber() and degree.getValue() == 2:
                return f"sqrt({sub(arg, 0)})", 5
            return f"{sub(arg, 5)}**(1/{sub(degree, 3)})", 4
        name = next((label for attr, label in _AST_UNSUPPORTED.items()
                     if t == getattr(L, attr, None)), None)
        if name is None:
            name = n.getName() or L.formulaToL3String(n)
        raise self.error(f"{what}: {name}(...) is not supported (mechsim formulas allow "
                         f"numbers, names, time, + - * / ^, exp, ln, log10 and sqrt) in "
                         f"{one_line(L.formulaToL3String(n))!r}")

    def expr(self, text: str, what: str) -> Expr:
        return Expr(text, f"{self.where}: {what}")

    # ---- the model -------------------------------------------------------------------------
    def reject_unsupported(self) -> None:
        sm = self.sm
        if sm.getNumEvents():
            ev = sm.getEvent(0)
            raise self.error(f"event '{ev.getId() or ev.getName()}': SBML events are not "
                             "supported by read_sbml (mechsim gives doses through a regimen; "
                             "export models without a regimen to read them back)")
        changed = self.in_reactions()
        for i in range(sm.getNumRules()):
            rule = sm.getRule(i)
            if rule.isAlgebraic():
                raise self.error("algebraicRule: algebraic rules are not supported")
            if rule.getVariable() in changed:
                kind = "rateRule" if rule.isRate() else "assignmentRule"
                raise self.error(f"{kind} for species '{rule.getVariable()}': a rule on a "
                                 "species that reactions also change is not supported")
        if sm.isSetConversionFactor():
            raise self.error(f"model conversionFactor '{sm.getConversionFactor()}' is not "
                             "supported")
        for i in range(sm.getNumSpecies()):
            s = sm.getSpecies(i)
            if s.isSetConversionFactor():
                raise self.error(f"species '{s.getId()}': conversionFactor is not supported")

    def model(self) -> Model:
        self.build_names()
        sm = self.sm
        self.rules_by_var = {}
        for i in range(sm.getNumRules()):
            rule = sm.getRule(i)
            self.rules_by_var[rule.getVariable()] = rule
        self.ias = {sm.getInitialAssignment(i).getSymbol(): sm.getInitialAssignment(i)
                    for i in range(sm.getNumInitialAssignments())}
        self.parameters: list[Parameter] = []
        self.rules: list[Rule] = []
        self.extra_reactions: list[Reaction] = []
        self.rr_species: list[Species] = []
        self.reaction_names: set[str] = set()
        self.stripped: dict[str, str] = {}  # reaction name -> SBML id, law was V * rate
        compartments = self.read_compartments()
        self.read_parameters()
        species = self.read_species()
        reactions = self.read_reactions()
        compartments = self.compartment_symbols(compartments)
        name = self.info.get("name") or sm.getId() or Path(self.where).stem
        name = re.sub(r"\W", "_", name)
        if not name or name[0].isdigit():
            name = f"m_{name}"
        time_unit = self.time_unit()
        if self.from_mechsim:
            description = self.info.get("description", "")
        else:
            description = one_line(sm.getName()) if sm.isSetName() else ""
        try:
            model = Model(
                name=name,
                description=description,
                time_unit=time_unit,
                drugs=tuple(self.read_drugs()),
                compartments=tuple(compartments),
                parameters=tuple(self.parameters),
                species=tuple(species),
                reactions=tuple(reactions + self.extra_reactions),
                rules=tuple(self.rules),
                routes=tuple(self.read_routes()),
                source=self.where,
            )
        except MechsimError as exc:
            if exc.where is None:
                raise type(exc)(exc.message, self.where) from None
            raise
        self.check_stripped(model)
        return model

    def check_stripped(self, model: Model) -> None:
        """A kinetic law ``V * rate`` was read as a per-volume rate in V: make sure it is one
        (a law off by a volume would otherwise lose the factor silently)."""
        units = {p.name: p.value.units for p in model.parameters}
        units.update({s.name: s.unit for s in model.species})
        units.update(model.rule_units)
        units[TIME] = ureg.day
        for r in model.reactions:
            if r.name not in self.stripped:
                continue
            amount = (1 * model.amount_unit(r.species[0])).dimensionality
            found = r.rate.dimension(units).dimensionality
            if found == amount / DAY:
                raise UnitError(f"reaction '{self.stripped[r.name]}': kinetic law "
                                f"'{r.compartment} * ({r.rate.text})' has dimension "
                                f"{dimension_text(found * VOLUME)}, expected "
                                f"{dimension_text(amount / DAY)} (amount per time)",
                                self.where)

    def time_unit(self) -> pint.Unit:
        text = self.info.get("time_unit")
        if text:
            try:
                unit = parse_unit(text, what="time unit")
                if (1 * unit).dimensionality == DAY:
                    return unit
            except MechsimError:
                pass
        if self.sm.isSetTimeUnits():
            q = self.unit_quantity(self.sm.getTimeUnits(), "model timeUnits")
            if q.dimensionality == DAY:
                for u in (ureg.s, ureg.min, ureg.h, ureg.day, ureg.week):
                    if math.isclose(q.to(u).magnitude, 1.0, rel_tol=1e-12):
                        return u
        return ureg.day

    def read_compartments(self) -> dict[str, Compartment]:
        sm = self.sm
        out = {}
        self.comp_volume: dict[str, tuple | None] = {}  # id -> (volume, SBML unit) if 3-D
        self.comp_names: dict[str, str] = {}  # id -> mechsim compartment name
        for i in range(sm.getNumCompartments()):
            c = sm.getCompartment(i)
            cid = c.getId()
            what = f"compartment '{cid}'"
            if cid in self.rules_by_var:
                raise self.error(f"{what}: a rule changes its size; mechsim volumes are "
                                 "constant")
            dims = c.getSpatialDimensions() if c.isSetSpatialDimensions() else 3.0
            if dims != 3:
                self.comp_volume[cid] = None  # allowed only if nothing needs it
                continue
            units = c.getUnits() if c.isSetUnits() else sm.getVolumeUnits()
            q = self.unit_quantity(units, what)
            if q.dimensionality != VOLUME:
                raise self.error(f"{what}: units '{units}' are not a volume")
            info = self.element_info(c)
            name = info.get("name") or cid
            if cid in self.ias:
                text = self.formula(self.ias[cid].getMath(), f"initialAssignment to {cid}")
                volume = self.expr(text, f"{what} volume")
            elif c.isSetSize():
                volume = self.quantity(c.getSize(), q, ureg.L)
            else:
                raise self.error(f"{what} has no size")
            self.comp_volume[cid] = (volume, q)
            self.comp_names[cid] = name
            if cid != self.info.get("amounts_compartment"):
                out[cid] = Compartment(name, volume, self.where)
        return out

    def compartment_symbols(self, comps: dict[str, Compartment]) -> list[Compartment]:
        """Compartments used as values in formulas become parameters or rules of that name."""
        for cid in sorted(self.needed_compartments):
            if self.comp_volume.get(cid) is None:
                raise self.error(f"compartment '{cid}' is used in a formula but is not a "
                                 "3-dimensional volume")
            volume, _ = self.comp_volume[cid]
            name = self.names[cid]
            if isinstance(volume, Expr):
                self.rules.append(Rule(name, volume, ureg.L, volume.where))
            else:
                self.parameters.append(Parameter(name, volume, where=f"{self.where}: "
                                                 f"compartment '{cid}'"))
            if cid in comps:
                comps[cid] = Compartment(comps[cid].name, Expr(name), comps[cid].where)
        return list(comps.values())

    def read_parameters(self) -> None:
        sm = self.sm
        for i in range(sm.getNumParameters()):
            p = sm.getParameter(i)
            pid = p.getId()
            what = f"parameter '{pid}'"
            name = self.names[pid]
            rule = self.rules_by_var.get(pid)
            where = self.where
            info = self.element_info(p)
            if (rule is not None and rule.isAssignment()) or (rule is None and pid in self.ias):
                # a rule: its unit is optional (inferred), and mechsim's own exports give
                # the reporting unit in the annotation
                unit = None
                if p.isSetUnits() and not (self.from_mechsim and "unit" not in info):
                    unit = self.display_unit(self.unit_quantity(p.getUnits(), what), info,
                                             what)
                source = rule if rule is not None else self.ias[pid]
                label = "assignmentRule for" if rule is not None else "initialAssignment to"
                expr = self.expr(self.formula(source.getMath(), f"{label} {pid}"), what)
                varying = sorted(expr.names & (self.species_names | {TIME}))
                if rule is None and varying:
                    raise self.error(f"initialAssignment to parameter '{pid}' uses "
                                     f"'{varying[0]}' (a species or time); mechsim can only "
                                     "compute parameters from other parameters")
                self.rules.append(Rule(name, expr, unit, where))
                continue
            q = self.unit_quantity(p.getUnits() if p.isSetUnits() else "", what)
            unit = self.display_unit(q, info, what)
            if rule is not None:  # rate rule: becomes an amount species with an input
                self.rate_rule_species(p, name, unit, q, where)
            else:
                value = p.getValue() if p.isSetValue() else math.nan
                self.parameters.append(Parameter(name, self.quantity(value, q, unit),
                                                 info.get("source"), info.get("note"), where))

    def rate_rule_species(self, p, name, unit, q, where) -> None:
        pid = p.getId()
        value = p.getValue() if p.isSetValue() else math.nan
        if pid in self.ias:
            initial = self.expr(self.formula(self.ias[pid].getMath(),
                                             f"initialAssignment to {pid}"), where)
        else:
            initial = self.quantity(value, q, unit)
        self.rr_species.append(Species(name, unit, initial, None, where))
        rate = self.formula(self.rules_by_var[pid].getMath(), f"rateRule for {pid}")
        rname = self.fresh_reaction(f"rate_rule_{name}")
        self.extra_reactions.append(Reaction(rname, (), ((name, 1.0),),
                                             self.expr(rate, f"rateRule for {pid}"),
                                             None, where))

    def fresh_reaction(self, base: str) -> str:
        name = base
        while name in self.reaction_ids or name in self.reaction_names:
            name += "_"
        self.reaction_names.add(name)
        return name

    def in_reactions(self) -> set[str]:
        """Species changed by some reaction (not boundary or constant)."""
        sm = self.sm
        out = set()
        for i in range(sm.getNumReactions()):
            r = sm.getReaction(i)
            for k in range(r.getNumReactants()):
                out.add(r.getReactant(k).getSpecies())
            for k in range(r.getNumProducts()):
                out.add(r.getProduct(k).getSpecies())
        for s in out:
            if sm.getSpecies(s) is None:
                raise self.error(f"a reaction refers to unknown species '{s}'")
        return {s for s in out if not (sm.getSpecies(s).getBoundaryCondition() or
                                       sm.getSpecies(s).getConstant())}

    def read_species(self) -> list[Species]:
        sm = self.sm
        changed = self.in_reactions()
        out = []
        amounts = self.info.get("amounts_compartment")
        for i in range(sm.getNumSpecies()):
            s = sm.getSpecies(i)
            sid = s.getId()
            what = f"species '{sid}'"
            where = self.where
            units = s.getSubstanceUnits() if s.isSetSubstanceUnits() else sm.getSubstanceUnits()
            sub = self.unit_quantity(units, what)
            cid = s.getCompartment()
            conc = not s.getHasOnlySubstanceUnits()
            if conc:
                vol = self.comp_volume.get(cid)
                if vol is None:
                    raise self.error(f"{what}: a concentration (hasOnlySubstanceUnits=false) "
                                     f"needs a 3-dimensional compartment, '{cid}' is not")
                q = sub / vol[1]
            else:
                q = sub
            info = self.element_info(s)
            unit = self.display_unit(q, info, what)
            name = self.names[sid]
            compartment = None
            if cid != amounts and self.comp_volume.get(cid) is not None:
                compartment = self.comp_names[cid]
                if not conc and dict(q.dimensionality).get("[length]", 0) <= -3:
                    compartment = None  # an amount measured per volume: keep it an amount
            rule = self.rules_by_var.get(sid)
            if rule is not None:
                if sid in changed:
                    raise self.error(f"{what}: a {'rate' if rule.isRate() else 'assignment'} "
                                     "rule changes a species that reactions also change; not "
                                     "supported")
                if rule.isAssignment():
                    text = self.formula(rule.getMath(), f"assignmentRule for {sid}")
                    self.rules.append(Rule(name, self.expr(text, what), unit, where))
                    continue
            if sid in self.ias:
                initial = self.expr(self.formula(self.ias[sid].getMath(),
                                                 f"initialAssignment to {sid}"), what)
            else:
                initial = self.initial_value(s, conc, sub, q, unit, what)
            out.append(Species(name, unit, initial, compartment, where))
            if rule is not None:  # rate rule on a species no reaction changes
                rate = self.formula(rule.getMath(), f"rateRule for {sid}")
                rname = self.fresh_reaction(f"rate_rule_{name}")
                self.extra_reactions.append(Reaction(
                    rname, (), ((name, 1.0),), self.expr(rate, f"rateRule for {sid}"),
                    compartment if conc else None, where))
        return out + self.rr_species

    def initial_value(self, s, conc, sub, q, unit, what):
        """initialAmount/initialConcentration as the species' own kind of value."""
        cid = s.getCompartment()
        if s.isSetInitialConcentration():
            value, given_conc = s.getInitialConcentration(), True
        elif s.isSetInitialAmount():
            value, given_conc = s.getInitialAmount(), False
        else:
            raise self.error(f"{what} has no initial value")
        if given_conc == conc or value == 0:
            return self.quantity(value, q, unit)
        volume, vq = self.comp_volume.get(cid) or (None, None)
        if volume is None:
            raise self.error(f"{what}: initial value needs the size of compartment '{cid}'")
        gq = sub / vq if given_conc else sub  # unit of the value as given
        given = ureg.Quantity(value * gq.magnitude, gq.units)
        if isinstance(volume, Expr):  # computed size: initial = value / V or value * V
            self.needed_compartments.add(cid)
            pname = self.fresh(f"{self.names[s.getId()]}_initial")
            self.parameters.append(Parameter(pname, given.to(self.nice_unit(given)),
                                             where=f"{self.where}: {what}"))
            op = "/" if conc else "*"
            return self.expr(f"{pname} {op} {self.names[cid]}", f"{what} initial")
        out = given / volume if conc else given * volume
        return out.to(unit)

    def read_reactions(self) -> list[Reaction]:
        sm = self.sm
        out = []
        for i in range(sm.getNumReactions()):
            r = sm.getReaction(i)
            rid = r.getId()
            what = f"reaction '{rid}'"
            where = self.where
            kl = r.getKineticLaw()
            if kl is None or not kl.isSetMath():
                raise self.error(f"{what} has no kinetic law")
            local = {}
            for k in range(kl.getNumLocalParameters()):
                lp = kl.getLocalParameter(k)
                lq = self.unit_quantity(lp.getUnits() if lp.isSetUnits() else "",
                                        f"local parameter '{lp.getId()}' of {what}")
                pname = self.fresh(f"{rid}_{lp.getId()}")
                local[lp.getId()] = pname
                unit = self.nice_unit(lq)
                self.parameters.append(Parameter(pname, self.quantity(
                    lp.getValue() if lp.isSetValue() else math.nan, lq, unit), where=where))
            sides = []
            for refs in ([r.getReactant(k) for k in range(r.getNumReactants())],
                         [r.getProduct(k) for k in range(r.getNumProducts())]):
                terms: dict[str, float] = {}
                for ref in refs:
                    sp = sm.getSpecies(ref.getSpecies())
                    if ref.isSetId() and (ref.getId() in self.rules_by_var or
                                          ref.getId() in self.ias):
                        raise self.error(f"{what}: stoichiometry of {ref.getSpecies()} is "
                                         "computed (rule or initialAssignment); not supported")
                    if sp.getBoundaryCondition() or sp.getConstant():
                        continue
                    n = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
                    if n < 0 or not math.isfinite(n):
                        raise self.error(f"{what}: stoichiometry {n} of {ref.getSpecies()}")
                    if n == 0:
                        continue
                    name = self.names[ref.getSpecies()]
                    terms[name] = terms.get(name, 0.0) + n
                sides.append(tuple(terms.items()))
            if not (sides[0] or sides[1]):
                continue  # changes nothing mechsim integrates
            math_node, compartment = self.strip_compartment(kl.getMath())
            text = self.formula(math_node, f"kinetic law of {rid}", local)
            info = self.element_info(r)
            name = info.get("name") or rid
            self.reaction_names.add(name)
            if compartment is not None:
                self.stripped[name] = rid
            out.append(Reaction(name, sides[0], sides[1], self.expr(text, f"{what} rate"),
                                compartment, where))
        return out

    def strip_compartment(self, node):
        """``comp * rate`` -> (rate, comp): a per-volume rate in that compartment."""
        L = self.L
        if node is None or node.getType() != L.AST_TIMES:
            return node, None
        factors = []

        def flatten(n):
            if n.getType() == L.AST_TIMES:
                for k in range(n.getNumChildren()):
                    flatten(n.getChild(k))
            else:
                factors.append(n)

        flatten(node)
        for k, f in enumerate(factors):
            if f.getType() == L.AST_NAME and self.comp_volume.get(f.getName()) is not None \
                    and len(factors) > 1:
                rest = factors[:k] + factors[k + 1:]
                if len(rest) == 1:
                    new = rest[0].deepCopy()
                else:
                    new = L.ASTNode(L.AST_TIMES)
                    for x in rest:
                        new.addChild(x.deepCopy())
                cid = f.getName()
                # mechsim's 1-L placeholder: the rate is already a flux in mechsim's terms
                if cid == self.info.get("amounts_compartment"):
                    return new, None
                return new, self.comp_names[cid]
        return node, None

    def read_drugs(self):

        given = self.drugs_arg
        if given is None:
            for d in self.info["drugs"]:
                yield Drug(d["name"], value_or_expr(d["molecular_weight"],
                                                    f"drug {d['name']} molecular_weight",
                                                    self.where), self.where)
            return
        for name, value in given.items():
            if isinstance(value, Drug):
                yield value
                continue
            yield Drug(name, value_or_expr(value, f"drug {name} molecular_weight",
                                           "read_sbml(drugs=...)"), "read_sbml(drugs=...)")

    def read_routes(self):

        given = self.routes_arg
        if given is None:
            entries = [(d.pop("name"), d) for d in (dict(x) for x in self.info["routes"])]
            where = self.where
        else:
            entries = list(given.items())
            where = "read_sbml(routes=...)"
        for name, raw in entries:
            if isinstance(raw, Route):
                yield raw
                continue
            entry = {"target": raw} if isinstance(raw, str) else raw
            if not isinstance(entry, Mapping) or "target" not in entry:
                raise ValidationError(f"route {name}: give a target species name or a table "
                                      f"with 'target', got {raw!r}", where)
            unknown = sorted(set(entry) - {"target", "drug", "bioavailability", "lag"})
            if unknown:
                raise ValidationError(f"route {name}: unknown key {unknown[0]!r}", where)
            target = self.names.get(entry["target"], entry["target"])
            opt = {k: value_or_expr(entry[k], f"route {name} {k}", where)
                   for k in ("bioavailability", "lag") if entry.get(k) is not None}
            yield Route(name, target, entry.get("drug"), opt.get("bioavailability"),
                        opt.get("lag"), where)

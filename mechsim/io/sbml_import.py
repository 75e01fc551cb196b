"""SBML import: a model file of any SBML level to a validated :class:`~mechsim.model.Model`,
with the map from each SBML id to its mechsim name and unit (:class:`SBMLImport`).

The Model is built the way the TOML reader builds one: every formula goes through
:class:`~mechsim.expr.Expr` (never ``eval``) and the Model checks every dimension.  Where
SBML leaves units undeclared, the model's numbers are used as written and those values are
of undeclared unit (one UnitWarning lists them; ``strict_units=True`` refuses instead).
What stays out of scope (nonlinear algebraic rules, fast reactions, delay, SBML packages
other than comp) raises
:class:`~mechsim.errors.ParseError` naming the SBML element and id.  Files are read and
size-checked here and given to libsbml as text; a DOCTYPE (which could declare entities)
is refused first.  See ``docs/sbml.md``.
"""

from __future__ import annotations

import keyword
import math
import re
import warnings
from collections.abc import Mapping
from pathlib import Path

import pint

from ..errors import MechsimError, ParseError, UnitError, UnitWarning, ValidationError
from ..expr import FUNCTIONS, N_ARY, PIECEWISE, TIME, Expr
from ..model import (
    Compartment,
    Drug,
    Model,
    Parameter,
    Reaction,
    Route,
    Rule,
    Species,
)
from ..units import (
    dimension_text,
    is_undeclared,
    parse_unit,
    to_canonical,
    ureg,
)
from .common import value_or_expr
from .sbml_algebraic import solve_algebraic_rules
from .sbml_common import (
    DAY,
    MAX_SBML_BYTES,
    NAMESPACE,
    STRICT_UNITS,
    VOLUME,
    libsbml,
    one_line,
)
from .sbml_ids import SBMLImport, SBMLSymbol, in_sbml_unit
from .sbml_import_events import EventsMixin
from .sbml_import_initial import InitialValuesMixin
from .sbml_import_units import UnitsMixin
from .sbml_math import MathText
from .toml_source import check_size

__all__ = ["SBMLImport", "SBMLSymbol", "import_sbml", "import_sbml_text", "parse_sbml",
           "read_sbml"]


# =========================================================================== import
def import_sbml(path: str | Path, *, routes: Mapping | None = None,
                drugs: Mapping | None = None, strict_units: bool | None = None) -> SBMLImport:
    """Read an SBML file (any level) into an :class:`SBMLImport`: the validated Model, and
    each SBML id's mechsim name and SBML unit (``.symbols``).

    ``routes`` maps route names to target species (``{"iv": "C"}``) or to tables like the
    model file's (``{"sc": {"target": "depot", "bioavailability": "F"}}``); ``drugs`` maps
    drug names to molecular weights (``{"mab": "150 kg/mol"}``).  Files written by mechsim
    carry their routes and drugs in an annotation; arguments given here replace them.
    Values whose units SBML leaves undeclared are imported as numbers as written, with one
    UnitWarning listing them; ``strict_units=True`` refuses such a model instead (default:
    False, or what the command line's ``--strict-units`` says).
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
    return import_sbml_text(text, where=str(path), routes=routes, drugs=drugs,
                            strict_units=strict_units)


def import_sbml_text(text: str, *, where: str = "<sbml>", routes: Mapping | None = None,
                     drugs: Mapping | None = None, strict_units: bool | None = None
                     ) -> SBMLImport:
    """Like :func:`import_sbml`, from SBML text; ``where`` names the source in errors."""
    if strict_units is None:
        strict_units = STRICT_UNITS.get()
    if not isinstance(text, str):
        raise ParseError(f"SBML text must be a string, got {type(text).__name__}", where)
    _refuse_document_type(text, where)
    doc = libsbml().readSBMLFromString(text)
    # libsbml puts an XML declaration line in front of text that has none: its line
    # numbers are then one too high
    shift = 0 if text.startswith("<?xml") else 1
    return _model_from_document(doc, where, routes, drugs, shift, strict_units)


def read_sbml(path: str | Path, *, routes: Mapping | None = None,
              drugs: Mapping | None = None, strict_units: bool | None = None) -> Model:
    """Read an SBML file into a validated Model (:func:`import_sbml` without the id map)."""
    return import_sbml(path, routes=routes, drugs=drugs, strict_units=strict_units).model


def parse_sbml(text: str, *, where: str = "<sbml>", routes: Mapping | None = None,
               drugs: Mapping | None = None, strict_units: bool | None = None) -> Model:
    """Like :func:`read_sbml`, from SBML text; ``where`` names the source in errors."""
    return import_sbml_text(text, where=where, routes=routes, drugs=drugs,
                            strict_units=strict_units).model


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


def _model_from_document(doc, where: str, routes, drugs, line_shift: int = 0,
                         strict_units: bool = False) -> SBMLImport:
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
    first = _Importer(doc, where, routes, drugs, strict_units)
    try:
        return first.model()
    except UnitError:
        if strict_units or first.as_written:
            raise
        # SBML numbers carry no unit unless marked (sbml:units), so a model whose units
        # are all declared can fail mechsim's checks only because of them (0.25*c as the
        # rate of change of c).  If the checks pass with its numbers taken as undeclared,
        # its numbers are used as written, as in a model without units (converting the
        # declared values but not the numbers could give wrong numbers); a model whose
        # declared units disagree with each other is still refused.
        _Importer(doc, where, routes, drugs, strict_units, numbers=True).model()
        reason = "numbers without units in formulas where units are needed"
        return _Importer(doc, where, routes, drugs, strict_units, reason).model()


class _Importer(UnitsMixin, EventsMixin, InitialValuesMixin):
    def __init__(self, doc, where: str, routes, drugs, strict_units: bool = False,
                 as_written: str | None = None, numbers: bool = False):
        self.L = libsbml()
        self.doc = doc
        self.where = where
        self.routes_arg = routes
        self.drugs_arg = drugs
        self.strict_units = strict_units
        self.force_as_written = as_written  # why numbers are used as written, if told
        self.undeclared_numbers = numbers  # bare numbers as undeclared (a trial import)
        self.prepare()
        self.sm = doc.getModel()
        self.reject_unsupported()
        self.expand_functions()
        solve_algebraic_rules(self.L, self.sm, self.in_reactions(), self.error)
        self.info = self.read_model_annotation()
        self.from_mechsim = self.mechsim_node(self.sm, "model") is not None

    def error(self, message: str) -> ParseError:
        return ParseError(message, self.where)

    # ---- document-level checks and conversions ----------------------------------------------
    def prepare(self) -> None:
        L, doc = self.L, self.doc
        self.flatten_submodels()
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

    def flatten_submodels(self) -> None:
        """A model built from submodels (the 'comp' package) becomes one flat core model,
        by libsbml's flattening converter: the mathematics is the flat model's."""
        L, doc = self.L, self.doc
        comp = doc.getPlugin("comp")
        if comp is None or not doc.isPackageEnabled("comp"):
            return
        if comp.getNumExternalModelDefinitions():
            ext = comp.getExternalModelDefinition(0)
            raise self.error(f"externalModelDefinition '{ext.getId()}' refers to another "
                             f"file ({ext.getSource()}); mechsim reads one file: put the "
                             "submodel's definition in this file")
        props = L.ConversionProperties()
        props.addOption("flatten comp", True)
        props.addOption("leave_ports", False)
        if doc.convert(props) != L.LIBSBML_OPERATION_SUCCESS:
            bad = [doc.getError(i) for i in range(doc.getNumErrors())
                   if doc.getError(i).getSeverity() >= L.LIBSBML_SEV_ERROR]
            why = one_line(bad[0].getMessage()) if bad else "libsbml gave no reason"
            raise self.error(f"the model's submodels (SBML 'comp' package) could not be "
                             f"flattened into one model: {why}")

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
            bad = [doc.getError(i) for i in range(doc.getNumErrors())
                   if doc.getError(i).getSeverity() >= L.LIBSBML_SEV_ERROR]
            why = f": {one_line(bad[0].getShortMessage())}" if bad else ""
            raise self.error(f"functionDefinition '{fd.getId()}' could not be inlined into "
                             f"the formulas that use it{why}")
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

    # ---- names -----------------------------------------------------------------------------
    def build_names(self) -> None:
        """SBML id -> mechsim name for everything a formula may refer to."""
        sm = self.sm
        reserved = {TIME, PIECEWISE, *FUNCTIONS, *N_ARY}
        self.names: dict[str, str] = {}
        taken: set[str] = set()
        ids = [sm.getSpecies(i).getId() for i in range(sm.getNumSpecies())] + \
              [sm.getParameter(i).getId() for i in range(sm.getNumParameters())] + \
              [sm.getCompartment(i).getId() for i in range(sm.getNumCompartments())]
        self.species_refs: dict[str, object] = {}
        for i in range(sm.getNumReactions()):
            r = sm.getReaction(i)
            for ref in [r.getReactant(k) for k in range(r.getNumReactants())] + \
                    [r.getProduct(k) for k in range(r.getNumProducts())]:
                if ref.isSetId():
                    ids.append(ref.getId())
                    self.species_refs[ref.getId()] = ref
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
        """An SBML math tree as mechsim expression text (a value)."""
        self.local = local or {}
        try:
            return self.math.value(node, what)
        finally:
            self.local = {}

    def condition(self, node, what: str) -> str:
        return self.math.condition(node, what)

    def value_name(self, sid: str, what: str) -> str:
        """The mechsim text for an SBML id used as a value in a formula."""
        if sid in self.local:
            return self.local[sid]
        if sid in self.reaction_ids:
            return self.reaction_rate_rule(sid, what)
        if sid in self.species_refs:
            self.needed_refs.add(sid)
            return self.names[sid]
        if sid not in self.names:
            raise self.error(f"{what}: unknown id '{sid}'")
        if sid in self.compartment_ids:
            self.needed_compartments.add(sid)
        return self.names[sid]

    def rate_of(self, sid: str, what: str) -> str:
        """rateOf(x): the rate rule of x, or 0 for a value that only events change."""
        sm = self.sm
        if sid in self.local:  # a local parameter: constant
            return "0"
        rule = self.rules_by_var.get(sid)
        if rule is not None and rule.isRate():
            return self.math.value(rule.getMath(), f"rateRule for {sid}")
        s = sm.getSpecies(sid)
        if rule is None and s is not None and sid in self.in_reactions() and \
                s.getCompartment() not in self.variable_comps:
            return self.species_rate(sid, what)
        if rule is None and sid not in self.in_reactions() and sid not in self.species_refs:
            s = sm.getSpecies(sid)
            c = s.getCompartment() if s is not None else None
            if s is None or s.getHasOnlySubstanceUnits() or c not in self.variable_comps:
                return "0"
        raise self.error(f"{what}: rateOf({sid}) is supported for values set by a rate rule "
                         "or constant between events only")

    def reaction_rate_rule(self, rid: str, what: str) -> str:
        """A reaction id used as a value: its rate, as a rule of that name."""
        if rid in self.reaction_rules:
            return self.reaction_rules[rid]
        r = self.sm.getReaction(rid)
        kl = r.getKineticLaw()
        if kl is None or not kl.isSetMath():
            raise self.error(f"{what}: uses reaction '{rid}', which has no kinetic law")
        name = self.fresh(rid)
        self.reaction_rules[rid] = name
        saved = self.local
        self.local = self.local_map(r)
        try:
            text = self.math.value(kl.getMath(), f"kinetic law of {rid}")
        finally:
            self.local = saved
        self.rules.append(Rule(name, self.expr(text, f"rate of reaction {rid}"), None,
                               self.where))
        self.symbols[rid] = SBMLSymbol(rid, "reaction", name, self.reaction_rate_unit(kl))
        return name

    def reaction_rate_unit(self, law) -> pint.Quantity | None:
        """A reaction rate's SBML unit: extent per time when the model declares both, else
        the unit libsbml derives from the kinetic law's values, if they all have one; None
        (numbers as written) only when the rate's unit is undeclared for mechsim too."""
        sm = self.sm
        if self.as_written:
            return None
        if sm.isSetExtentUnits() and sm.isSetTimeUnits():
            return self.sbml_unit(self.declared_quantity(sm.getExtentUnits(), "extentUnits")
                                  / self.declared_quantity(sm.getTimeUnits(), "timeUnits"))
        derived = law.getDerivedUnitDefinition()
        if law.containsUndeclaredUnits() or derived is None:
            return None
        return self.sbml_unit(self.definition_quantity(derived, "kinetic law"))

    def expr(self, text: str, what: str) -> Expr:
        return Expr(text, f"{self.where}: {what}")

    # ---- the model -------------------------------------------------------------------------
    def reject_unsupported(self) -> None:
        sm = self.sm
        changed = self.in_reactions()
        for i in range(sm.getNumRules()):
            rule = sm.getRule(i)
            if rule.getVariable() in changed:
                kind = "rateRule" if rule.isRate() else "assignmentRule"
                raise self.error(f"{kind} for species '{rule.getVariable()}': a rule on a "
                                 "species that reactions also change is not supported")
        for i in range(sm.getNumEvents()):
            ev = sm.getEvent(i)
            for k in range(ev.getNumEventAssignments()):
                target = ev.getEventAssignment(k).getVariable()
                if target in changed and sm.getSpecies(target) is None:
                    raise self.error(f"event '{ev.getId()}': assigns '{target}'")

    def model(self) -> SBMLImport:
        self.build_names()
        sm = self.sm
        self.rules_by_var = {}
        for i in range(sm.getNumRules()):
            rule = sm.getRule(i)
            if rule.isSetMath():  # SBML L3V2: a rule without math has no effect
                self.rules_by_var[rule.getVariable()] = rule
        self.ias = {sm.getInitialAssignment(i).getSymbol(): sm.getInitialAssignment(i)
                    for i in range(sm.getNumInitialAssignments())
                    if sm.getInitialAssignment(i).isSetMath()}
        self.event_targets = {sm.getEvent(i).getEventAssignment(k).getVariable()
                              for i in range(sm.getNumEvents())
                              for k in range(sm.getEvent(i).getNumEventAssignments())}
        self.rescaled: set[str] = set()
        self.plan_units()
        self.local: dict[str, str] = {}
        self.local_names: dict[str, dict[str, str]] = {}
        self.reaction_rules: dict[str, str] = {}
        self.needed_refs: set[str] = set()
        self.ia_rules: set[str] = set()  # rules made from initial assignments
        self.rr_species_late: list[Species] = []
        self.time_name = TIME
        self.math = MathText(self.value_name, self.rate_of, self.error,
                             numbers_with_units=self.as_written, time=TIME,
                             unit_number=self.unit_number)
        self.math.undeclared_numbers = self.undeclared_numbers and not self.as_written
        self.parameters: list[Parameter] = []
        self.rules: list[Rule] = []
        self.extra_reactions: list[Reaction] = []
        self.rr_species: list[Species] = []
        self.reaction_names: set[str] = set()
        self.stripped: dict[str, str] = {}  # reaction name -> SBML id, law was V * rate
        self.symbols: dict[str, SBMLSymbol] = {}
        self.deferred: dict[str, tuple[str, str, pint.Unit]] = {}  # name -> (kind, text, unit)
        self.amount_states: dict[str, str] = {}  # species id -> amount state (variable V)
        self.variable_comps = {cid for cid in self.compartment_ids
                               if cid in self.rules_by_var or cid in self.event_targets}
        time_unit = self.time_unit()
        if self.as_written and time_unit != ureg.day:
            self.rescaled.add(f"model timeUnits ('{sm.getTimeUnits()}')")
            time_unit = ureg.day
        if self.as_written:  # SBML time is a number as written too
            self.time_name = self.fresh("time")
            self.math.time = self.time_name
        compartments = self.read_compartments()
        self.read_parameters()
        species = self.read_species()
        reactions = self.read_reactions()
        events = self.read_events()
        if not self.from_mechsim:  # a reaction's id means its rate: give each one a value
            for rid in sorted(self.reaction_ids - set(self.reaction_rules)):
                self.reaction_rate_rule(rid, f"reaction '{rid}'")
        compartments = self.compartment_symbols(compartments)
        self.species_ref_values()
        if self.as_written and self.time_name in self.names_used(reactions, events, species):
            self.rules.append(Rule(self.time_name, self.expr('t*"1 undeclared/day"',
                                                             "SBML time"), None, self.where))
        species = self.finish_initial_values(species)
        name = self.info.get("name") or sm.getId() or Path(self.where).stem
        name = re.sub(r"\W", "_", name)
        if not name or name[0].isdigit():
            name = f"m_{name}"
        if self.from_mechsim:
            description = self.info.get("description", "")
        else:
            description = one_line(sm.getName()) if sm.isSetName() else ""
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UnitWarning)  # one warning, below
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
                    events=tuple(events),
                )
        except MechsimError as exc:
            if exc.where is None:
                raise type(exc)(exc.message, self.where) from None
            raise
        self.check_stripped(model)
        self.refuse_equal_priorities(model)
        undeclared = tuple(self.undeclared) + tuple(sorted(self.rescaled))
        if undeclared:
            def listed(items):
                return ", ".join(items[:10]) + (f" and {len(items) - 10} more"
                                                if len(items) > 10 else "")
            also = f"; declared but used as written too: {listed(sorted(self.rescaled))}" \
                if self.rescaled else ""
            warnings.warn(f"{self.where}: units not declared for {listed(self.undeclared)}"
                          f"{also}; the model's numbers are used as written and unit checks "
                          "are skipped for expressions that involve these values "
                          "(strict_units=True refuses such models)", UnitWarning,
                          stacklevel=4)
        return SBMLImport(model, self.symbols, undeclared, self.where)

    def names_used(self, reactions, events, species) -> set[str]:
        exprs = [r.expr for r in self.rules] + \
            [r.rate for r in reactions + self.extra_reactions] + \
            [e.trigger for e in events] + [v for e in events for _, v in e.assignments] + \
            [x for e in events for x in (e.delay, e.priority) if isinstance(x, Expr)] + \
            [s.initial for s in species + self.rr_species_late if isinstance(s.initial, Expr)]
        exprs += [Expr(text) for _, text, _ in self.deferred.values()]
        return set().union(*(e.names for e in exprs)) if exprs else set()

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
            q = self.declared_quantity(self.sm.getTimeUnits(), "model timeUnits")
            if q.dimensionality == DAY:
                for u in (ureg.s, ureg.min, ureg.h, ureg.day, ureg.week):
                    if math.isclose(q.to(u).magnitude, 1.0, rel_tol=1e-12):
                        return u
                if not self.as_written:
                    raise self.error(f"model timeUnits '{self.sm.getTimeUnits()}' is not "
                                     "one of second, minute, hour, day, week")
        return ureg.day

    def read_compartments(self) -> dict[str, Compartment]:
        """3-D compartments of constant size become mechsim compartments (volumes); others
        (sizes that rules or events change, areas, lengths) hold their size in a parameter,
        rule or state of their name, and the species in them hold amounts."""
        sm = self.sm
        out = {}
        self.comp_volume: dict[str, tuple | None] = {}  # id -> (volume, SBML unit) if 3-D
        self.comp_names: dict[str, str] = {}  # id -> mechsim compartment name
        self.comp_sizes: dict[str, object] = {}  # id -> initial size (Quantity or Expr)
        self.comp_unit: dict[str, pint.Quantity] = {}  # id -> SBML unit of its size
        self.zero_d: set[str] = set()
        for i in range(sm.getNumCompartments()):
            c = sm.getCompartment(i)
            cid = c.getId()
            what = f"compartment '{cid}'"
            dims = c.getSpatialDimensionsAsDouble() if c.isSetSpatialDimensions() else 3.0
            units = c.getUnits() if c.isSetUnits() else self.default_size_units(c)
            info = self.element_info(c)
            name = info.get("name") or cid
            if dims == 0:  # no size: only amounts can live here
                self.zero_d.add(cid)
                self.comp_volume[cid] = None
                self.comp_unit[cid] = ureg.Quantity(1.0, "undeclared")
                self.symbols[cid] = SBMLSymbol(cid, "compartment", None, None)
                if cid in self.rules_by_var or cid in self.event_targets:
                    raise self.error(f"{what}: a 0-dimensional compartment has no size to "
                                     "change")
                continue
            q = self.unit_quantity(units, what)
            if dims == 3 and not is_undeclared(q) and q.dimensionality != VOLUME:
                raise self.error(f"{what}: units '{units}' are not a volume")
            rule = self.rules_by_var.get(cid)
            if cid in self.ias:
                text = self.formula(self.ias[cid].getMath(), f"initialAssignment to {cid}")
                size = self.expr(text, f"{what} size")
            elif c.isSetSize():
                size = c.getSize()
            elif rule is not None and rule.isAssignment():
                size = None
            else:
                raise self.error(f"{what} has no size")
            self.symbols[cid] = SBMLSymbol(cid, "compartment", self.names[cid],
                                           self.sbml_unit(q))
            self.comp_unit[cid] = q
            if dims != 3 or cid in self.variable_comps:
                self.variable_comps.add(cid)
                self.size_holder(c, size, q)
                self.comp_volume[cid] = None
                continue
            # a volume of undeclared unit is a volume in litres for mechsim, its number
            # unchanged
            vq = q if not is_undeclared(q) else ureg.Quantity(1.0, ureg.L)
            volume = size if isinstance(size, Expr) else self.quantity(size, vq, ureg.L)
            self.comp_volume[cid] = (volume, vq)
            self.comp_names[cid] = name
            if cid != self.info.get("amounts_compartment"):
                out[cid] = Compartment(name, volume, self.where)
        return out

    def size_holder(self, c, size, q) -> None:
        """The size of a compartment that is not a constant volume, in a rule (assignment
        rule), a state (rate rule, events) or a parameter of the compartment's name."""
        cid = c.getId()
        name = self.names[cid]
        what = f"compartment '{cid}'"
        unit = q.units if is_undeclared(q) else self.nice_unit(q)
        self.needed_compartments.add(cid)
        rule = self.rules_by_var.get(cid)
        if rule is not None and rule.isAssignment():
            text = self.formula(rule.getMath(), f"assignmentRule for {cid}")
            self.rules.append(Rule(name, self.expr(text, what),
                                   None if is_undeclared(q) or self.as_written else unit,
                                   self.where))
            self.comp_sizes[cid] = Expr(name)
            return
        initial = size if isinstance(size, Expr) else self.quantity(size, q, unit)
        if rule is None and cid not in self.event_targets:
            if isinstance(initial, Expr):
                self.rules.append(Rule(name, initial, None if is_undeclared(q) or
                                       self.as_written else unit, self.where))
                self.ia_rules.add(name)
            else:
                self.parameters.append(Parameter(name, initial, where=f"{self.where}: {what}"))
            self.comp_sizes[cid] = Expr(name)
            return
        self.rr_species.append(Species(name, unit, initial, None, self.where))
        if rule is not None:  # rate rule
            rate = self.formula(rule.getMath(), f"rateRule for {cid}")
            rname = self.fresh_reaction(f"rate_rule_{name}")
            self.extra_reactions.append(Reaction(rname, (), ((name, 1.0),),
                                                 self.expr(rate, f"rateRule for {cid}"),
                                                 None, self.where))
        self.comp_sizes[cid] = Expr(name)

    def compartment_symbols(self, comps: dict[str, Compartment]) -> list[Compartment]:
        """Compartments used as values in formulas become parameters or rules of that name."""
        for cid in sorted(self.needed_compartments):
            if cid in self.variable_comps:
                continue  # already a rule or a state of that name
            if self.comp_volume.get(cid) is None:
                raise self.error(f"compartment '{cid}' is used in a formula but is not a "
                                 "3-dimensional volume")
            volume, _ = self.comp_volume[cid]
            name = self.names[cid]
            unit = self.comp_unit[cid]
            if isinstance(volume, Expr):
                self.rules.append(Rule(name, volume, None if is_undeclared(unit) or
                                       self.as_written else ureg.L, volume.where))
            else:
                value = volume if not is_undeclared(unit) else \
                    ureg.Quantity(volume.to(ureg.L).magnitude, unit.units)
                self.parameters.append(Parameter(name, value, where=f"{self.where}: "
                                                 f"compartment '{cid}'"))
            if cid in comps:
                comps[cid] = Compartment(comps[cid].name, Expr(name), comps[cid].where)
        for cid, (volume, _) in ((c, v) for c, v in self.comp_volume.items() if v):
            if cid in self.needed_compartments:
                continue  # a parameter or rule of its name
            sym = self.symbols[cid]
            if not isinstance(volume, Expr):
                self.symbols[cid] = SBMLSymbol(cid, "compartment", None, sym.unit,
                                               constant=in_sbml_unit(volume, sym.unit))
            elif not self.from_mechsim:
                # a computed size no formula uses: a rule too, so that results show it
                unit = self.comp_unit[cid]
                self.rules.append(Rule(self.names[cid], volume, None if is_undeclared(unit)
                                       or self.as_written else ureg.L, volume.where))
            else:
                self.symbols[cid] = SBMLSymbol(cid, "compartment", None, None)
        return list(comps.values())

    def fixed_names(self) -> set[str]:
        """Parameters and the rules that use parameters only (fixed during a run)."""
        fixed = {p.name for p in self.parameters}
        changed = True
        while changed:
            changed = False
            for r in self.rules:
                if r.name not in fixed and r.expr.names <= fixed:
                    fixed.add(r.name)
                    changed = True
        return fixed

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
            declared = p.isSetUnits() and not (self.from_mechsim and "unit" not in info)
            if (rule is not None and rule.isAssignment()) or \
                    (rule is None and pid in self.ias and pid not in self.event_targets):
                # a rule: its unit is optional (inferred), and mechsim's own exports give
                # the reporting unit in the annotation
                unit = None
                q = None
                if declared:
                    q = self.unit_quantity(p.getUnits(), what)
                    # numbers as written: the rule's unit is what its formula gives
                    unit = None if is_undeclared(q) or self.as_written else \
                        self.display_unit(q, info, what)
                source = rule if rule is not None else self.ias[pid]
                label = "assignmentRule for" if rule is not None else "initialAssignment to"
                expr = self.expr(self.formula(source.getMath(), f"{label} {pid}"), what)
                self.rules.append(Rule(name, expr, unit, where))
                self.symbols[pid] = SBMLSymbol(pid, "parameter", name,
                                               self.sbml_unit(q) if q is not None else
                                               self.derived_unit(source))
                if rule is None:
                    self.ia_rules.add(name)
                continue
            q = self.unit_quantity(p.getUnits() if p.isSetUnits() else "", what)
            unit = self.display_unit(q, info, what) if not is_undeclared(q) else q.units
            self.symbols[pid] = SBMLSymbol(pid, "parameter", name, self.sbml_unit(q))
            if rule is not None or pid in self.event_targets:
                # changes during a run (rate rule, events): a state
                self.rate_rule_species(p, name, unit, q, where)
            else:
                value = p.getValue() if p.isSetValue() else math.nan
                self.parameters.append(Parameter(name, self.quantity(value, q, unit),
                                                 info.get("source"), info.get("note"), where))

    def derived_unit(self, source) -> pint.Unit | None:
        """The unit libsbml derives for a rule's math (None if it involves undeclared
        units): the unit SBML reports a rule's value in when the rule declares none."""
        if self.as_written:
            return None
        try:
            ud = source.getDerivedUnitDefinition()
            if ud is None or source.containsUndeclaredUnits():
                return None
            q = ureg.Quantity(1.0)
            for k in range(ud.getNumUnits()):
                u = ud.getUnit(k)
                q = q * self.kind_quantity(u.getKind(), u.getExponentAsDouble(),
                                           u.getScale(), u.getMultiplier(), "rule")
            return self.sbml_unit(q)
        except (MechsimError, AttributeError):
            return None

    def rate_rule_species(self, p, name, unit, q, where) -> None:
        pid = p.getId()
        value = p.getValue() if p.isSetValue() else math.nan
        if pid in self.ias:
            initial = self.expr(self.formula(self.ias[pid].getMath(),
                                             f"initialAssignment to {pid}"), where)
        else:
            initial = self.quantity(value, q, unit)
        self.rr_species.append(Species(name, unit, initial, None, where))
        rule = self.rules_by_var.get(pid)
        if rule is None:
            return  # changed by events only
        rate = self.formula(rule.getMath(), f"rateRule for {pid}")
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
            # a 0-dimensional compartment has no size: its species are amounts
            conc = not s.getHasOnlySubstanceUnits() and cid not in self.zero_d
            variable = cid in self.variable_comps
            if conc and not variable:
                vol = self.comp_volume.get(cid)
                if vol is None:
                    raise self.error(f"{what}: a concentration (hasOnlySubstanceUnits=false) "
                                     f"needs a 3-dimensional compartment, '{cid}' is not")
                if is_undeclared(sub) or is_undeclared(self.comp_unit[cid]):
                    q = ureg.Quantity(1.0, "undeclared/L")  # a concentration, as written
                else:
                    q = sub / vol[1]
            elif conc:
                cq = self.comp_unit[cid]
                q = sub / cq if not (is_undeclared(sub) or is_undeclared(cq)) else \
                    ureg.Quantity(1.0, "undeclared")
            else:
                q = sub
            info = self.element_info(s)
            unit = self.display_unit(q, info, what) if not is_undeclared(q) else q.units
            name = self.names[sid]
            self.symbols[sid] = SBMLSymbol(sid, "species", name, self.sbml_unit(q), conc, cid)
            compartment = None
            if cid != amounts and self.comp_volume.get(cid) is not None:
                compartment = self.comp_names[cid]
                if not conc and dict(q.dimensionality).get("[length]", 0) <= -3:
                    compartment = None  # an amount measured per volume: keep it an amount
            rule = self.rules_by_var.get(sid)
            if rule is not None and rule.isAssignment():
                text = self.formula(rule.getMath(), f"assignmentRule for {sid}")
                self.rules.append(Rule(name, self.expr(text, what),
                                       None if self.as_written else unit, where))
                continue
            if conc and variable and rule is None:
                out.append(self.amount_in_variable(s, name, sub, unit, q))
                continue
            if sid in self.ias:
                initial = self.expr(self.formula(self.ias[sid].getMath(),
                                                 f"initialAssignment to {sid}"), what)
            else:
                initial = self.initial_value(s, conc, sub, q, unit, what)
            out.append(Species(name, unit, initial, compartment if not variable else None,
                               where))
            if rule is not None:  # rate rule on a species no reaction changes
                rate = self.formula(rule.getMath(), f"rateRule for {sid}")
                rname = self.fresh_reaction(f"rate_rule_{name}")
                self.extra_reactions.append(Reaction(
                    rname, (), ((name, 1.0),), self.expr(rate, f"rateRule for {sid}"),
                    compartment if conc and not variable else None, where))
        return out + self.rr_species

    def amount_in_variable(self, s, name: str, sub, unit, q) -> Species:
        """A concentration species in a compartment whose size changes: the state is its
        amount (which reactions change, and which a change of size keeps), and the
        species' name is the rule amount / size."""
        sid = s.getId()
        cid = s.getCompartment()
        what = f"species '{sid}'"
        amount = self.fresh(f"{name}_amount")
        self.amount_states[sid] = amount
        size = self.names[cid]
        self.needed_compartments.add(cid)
        aunit = sub.units if not is_undeclared(sub) else ureg.undeclared
        if is_undeclared(q):
            aunit = ureg.undeclared
        self.rules.append(Rule(name, self.expr(f"{amount}/{size}", what),
                               None if is_undeclared(q) else unit, self.where))
        self.symbols[sid] = SBMLSymbol(sid, "species", name, self.sbml_unit(q), True, cid,
                                       amount=amount)
        if sid in self.ias:
            text = self.formula(self.ias[sid].getMath(), f"initialAssignment to {sid}")
            self.deferred[amount] = ("species", f"({text})*{size}", aunit)
            return Species(amount, aunit, ureg.Quantity(0.0, aunit), None, self.where)
        if s.isSetInitialAmount():
            value = s.getInitialAmount()
            return Species(amount, aunit, ureg.Quantity(value * sub.magnitude, sub.units).to(
                aunit) if not is_undeclared(aunit) else ureg.Quantity(value, aunit), None,
                self.where)
        if not s.isSetInitialConcentration():
            raise self.error(f"{what} has no initial value")
        value = s.getInitialConcentration()
        if not is_undeclared(q):  # the formula is evaluated in canonical units
            value = to_canonical(ureg.Quantity(value * float(q.magnitude), q.units))
        self.deferred[amount] = ("species", f"{value!r}*{size}", aunit)
        return Species(amount, aunit, ureg.Quantity(0.0, aunit), None, self.where)

    def initial_value(self, s, conc, sub, q, unit, what):
        """initialAmount/initialConcentration as the species' own kind of value."""
        cid = s.getCompartment()
        if s.isSetInitialConcentration():
            value, given_conc = s.getInitialConcentration(), True
        elif s.isSetInitialAmount():
            value, given_conc = s.getInitialAmount(), False
        else:
            raise self.error(f"{what} has no initial value")
        if is_undeclared(q) or is_undeclared(sub):  # numbers as written
            if given_conc == conc or value == 0:
                return ureg.Quantity(value, unit)
            size = self.comp_sizes.get(cid)
            vol = self.comp_volume.get(cid)
            if vol is None and size is None:
                raise self.error(f"{what}: initial value needs the size of compartment "
                                 f"'{cid}'")
            volume = size if size is not None else vol[0]
            if isinstance(volume, Expr):
                self.needed_compartments.add(cid)
                op = "/" if conc else "*"
                return self.expr(f'"{value!r} undeclared" {op} {self.names[cid]}',
                                 f"{what} initial")
            v = float(volume.magnitude)
            return ureg.Quantity(value / v if conc else value * v, unit)
        if given_conc == conc or value == 0:
            return self.quantity(value, q, unit)
        volume, vq = self.comp_volume.get(cid) or (self.comp_sizes.get(cid),
                                                   self.comp_unit.get(cid))
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

    def conversion_factor(self, sp) -> float:
        """A species' conversion factor (its own, else the model's) as a number: it scales
        the species' stoichiometries.  Only constant parameters can be used."""
        sm = self.sm
        cf = sp.getConversionFactor() if sp.isSetConversionFactor() else \
            (sm.getConversionFactor() if sm.isSetConversionFactor() else "")
        if not cf:
            return 1.0
        p = sm.getParameter(cf)
        if p is None or not p.getConstant() or cf in self.rules_by_var or \
                cf in self.event_targets:
            raise self.error(f"species '{sp.getId()}': conversionFactor '{cf}' must be a "
                             "constant parameter")
        if cf in self.ias:
            return None  # computed at t = 0 (see finish_initial_values)
        return p.getValue()

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
            local = self.local_map(r)
            # each species' net stoichiometry: a number, or a formula (a speciesReference
            # set by a rule, an initial assignment or an event, or a conversion factor
            # computed at t = 0)
            terms: dict[str, list] = {}
            for refs, sign in (([r.getReactant(k) for k in range(r.getNumReactants())], -1),
                               ([r.getProduct(k) for k in range(r.getNumProducts())], 1)):
                for ref in refs:
                    sp = sm.getSpecies(ref.getSpecies())
                    if sp.getBoundaryCondition() or sp.getConstant():
                        continue
                    n = self.stoichiometry(ref, what)
                    cf = self.conversion_factor(sp)
                    sid = ref.getSpecies()
                    name = self.amount_states.get(sid, self.names[sid])
                    if cf is None:
                        cf_text = self.names[sp.getConversionFactor() if
                                             sp.isSetConversionFactor() else
                                             sm.getConversionFactor()]
                        n = f"({n})*{cf_text}" if isinstance(n, str) else f"{n!r}*{cf_text}"
                    elif cf != 1.0:
                        n = f"({n})*{cf!r}" if isinstance(n, str) else n * cf
                    terms.setdefault(name, []).append((sign, n))
            if not terms:
                continue  # changes nothing mechsim integrates
            variable_species = any(sm.getSpecies(ref).getCompartment() in self.variable_comps
                                   for ref in self.species_of(r))
            if variable_species:
                math_node, compartment = kl.getMath(), None
            else:
                math_node, compartment = self.strip_compartment(kl.getMath())
            text = self.formula(math_node, f"kinetic law of {rid}", local)
            info = self.element_info(r)
            name = info.get("name") or rid
            self.reaction_names.add(name)
            if compartment is not None:
                self.stripped[name] = rid
            numeric = all(not isinstance(n, str) for parts in terms.values()
                          for _, n in parts)
            if numeric:
                reactants, products = [], []
                for sname, parts in terms.items():
                    net = sum(sign * n for sign, n in parts)
                    if net < 0:
                        reactants.append((sname, -net))
                    elif net > 0:
                        products.append((sname, net))
                    if not math.isfinite(net):
                        raise self.error(f"{what}: stoichiometry {net} of {sname}")
                if not (reactants or products):
                    continue
                out.append(Reaction(name, tuple(reactants), tuple(products),
                                    self.expr(text, f"{what} rate"), compartment, where))
                continue
            # a computed stoichiometry: one reaction per species, its rate the flux times
            # the species' net stoichiometry (mechsim stoichiometries are numbers)
            for sname, parts in terms.items():
                net = " + ".join(f"{'-' if sign < 0 else ''}({n})" for sign, n in parts)
                rname = self.fresh_reaction(f"{name}_{sname}")
                out.append(Reaction(rname, (), ((sname, 1.0),),
                                    self.expr(f"({net})*({text})", f"{what} rate"),
                                    compartment, where))
        return out

    def local_map(self, r) -> dict[str, str]:
        """A reaction's local parameters as global parameters ``<reaction>_<id>`` (made
        once, when first needed: by the reaction, or by a formula that uses its rate)."""
        rid = r.getId()
        if rid in self.local_names:
            return self.local_names[rid]
        kl = r.getKineticLaw()
        local: dict[str, str] = {}
        for k in range(kl.getNumLocalParameters() if kl is not None else 0):
            lp = kl.getLocalParameter(k)
            lq = self.unit_quantity(lp.getUnits() if lp.isSetUnits() else "",
                                    f"local parameter '{lp.getId()}' of reaction '{rid}'")
            pname = self.fresh(f"{rid}_{lp.getId()}")
            local[lp.getId()] = pname
            unit = self.nice_unit(lq) if not is_undeclared(lq) else lq.units
            self.parameters.append(Parameter(pname, self.quantity(
                lp.getValue() if lp.isSetValue() else math.nan, lq, unit), where=self.where))
        self.local_names[rid] = local
        return local

    def species_rate(self, sid: str, what: str) -> str:
        """rateOf a species that reactions change: the sum of stoichiometry times rate,
        per compartment size when the species' symbol is a concentration."""
        sm = self.sm
        sp = sm.getSpecies(sid)
        terms = []
        saved = self.local
        try:
            for i in range(sm.getNumReactions()):
                r = sm.getReaction(i)
                kl = r.getKineticLaw()
                for refs, sign in (([r.getReactant(k) for k in range(r.getNumReactants())],
                                    "-"), ([r.getProduct(k) for k in
                                            range(r.getNumProducts())], "")):
                    for ref in refs:
                        if ref.getSpecies() != sid:
                            continue
                        if kl is None or not kl.isSetMath():
                            raise self.error(f"{what}: reaction '{r.getId()}' has no law")
                        self.local = self.local_map(r)
                        law = self.math.value(kl.getMath(), f"kinetic law of {r.getId()}")
                        n = self.stoichiometry(ref, what)
                        cf = self.conversion_factor(sp)
                        if cf is None:
                            raise self.error(f"{what}: rateOf({sid}) with a computed "
                                             "conversion factor is not supported")
                        terms.append(f"{sign}({n})*{cf!r}*({law})")
        finally:
            self.local = saved
        total = " + ".join(terms) or "0"
        if not sp.getHasOnlySubstanceUnits() and sp.getCompartment() not in self.zero_d:
            self.needed_compartments.add(sp.getCompartment())
            return f"({total})/{self.names[sp.getCompartment()]}"
        return total

    def species_of(self, r) -> list[str]:
        return [r.getReactant(k).getSpecies() for k in range(r.getNumReactants())] + \
            [r.getProduct(k).getSpecies() for k in range(r.getNumProducts())]

    def stoichiometry(self, ref, what: str):
        """A speciesReference's stoichiometry: a number, or the mechsim name holding it
        when a rule, an initial assignment or an event sets it."""
        rid = ref.getId() if ref.isSetId() else None
        if rid is not None and (rid in self.rules_by_var or rid in self.ias or
                                rid in self.event_targets):
            self.needed_refs.add(rid)
            return self.names[rid]
        n = ref.getStoichiometry() if ref.isSetStoichiometry() else 1.0
        if not math.isfinite(n):
            raise self.error(f"{what}: stoichiometry {n} of {ref.getSpecies()}")
        return n

    def species_ref_values(self) -> None:
        """speciesReferences used as values (in formulas, or set by rules, initial
        assignments or events): parameters, rules or states of their id."""
        for rid in sorted(self.needed_refs):
            ref = self.species_refs[rid]
            name = self.names[rid]
            what = f"speciesReference '{rid}'"
            rule = self.rules_by_var.get(rid)
            self.symbols[rid] = SBMLSymbol(rid, "speciesReference", name, None)
            if rule is not None and rule.isAssignment():
                text = self.formula(rule.getMath(), f"assignmentRule for {rid}")
                self.rules.append(Rule(name, self.expr(text, what), None, self.where))
                continue
            n = ref.getStoichiometry() if ref.isSetStoichiometry() else \
                (math.nan if rid in self.ias else 1.0)
            if rule is not None or rid in self.event_targets:
                initial = ureg.Quantity(n)
                if rid in self.ias:
                    text = self.formula(self.ias[rid].getMath(), f"initialAssignment to {rid}")
                    self.deferred[name] = ("species", text, ureg.undeclared if
                                           self.as_written else ureg.dimensionless)
                    initial = ureg.Quantity(0.0)
                unit = ureg.undeclared if self.as_written else ureg.dimensionless
                initial = ureg.Quantity(initial.magnitude, unit)
                self.rr_species_late.append(Species(name, unit, initial, None, self.where))
                if rule is not None:
                    rate = self.formula(rule.getMath(), f"rateRule for {rid}")
                    self.extra_reactions.append(Reaction(
                        self.fresh_reaction(f"rate_rule_{name}"), (), ((name, 1.0),),
                        self.expr(rate, what), None, self.where))
                continue
            if rid in self.ias:
                text = self.formula(self.ias[rid].getMath(), f"initialAssignment to {rid}")
                self.deferred[name] = ("parameter", text, ureg.dimensionless)
                self.parameters.append(Parameter(name, ureg.Quantity(0.0), where=self.where))
            else:
                self.parameters.append(Parameter(name, ureg.Quantity(n), where=self.where))

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


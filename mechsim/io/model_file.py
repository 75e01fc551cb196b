"""Model files (TOML) -> :class:`~mechsim.model.Model`.

The format is documented in ``docs/model-format.md``.  Every table and key is checked against
a whitelist; expressions go through :mod:`mechsim.expr`; quantities through pint.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..errors import MechsimError, ParseError, UnitError, ValidationError
from ..expr import Expr
from ..model import Compartment, Drug, Event, Model, Reaction, Route, Rule, Species
from ..units import parse_unit, ureg
from .common import read_parameter_table, resolve, value_or_expr
from .expect_table import read_expectations
from .params_file import read_params
from .toml_source import TomlSource

__all__ = ["load_model", "read_model"]

_SECTIONS = {"model", "drugs", "compartments", "parameters", "species", "reactions", "rules",
             "routes", "expect", "event"}
_TERM = re.compile(r"^\s*(?:(\d+\.?\d*|\.\d+)\s+)?([A-Za-z_]\w*)\s*$")


def load_model(name_or_path: str | Path) -> Model:
    """Load a built-in model by name (``"cd38_myeloma"``), a model file by path, or an SBML
    file (``.xml``/``.sbml``, without events; needs ``pip install mechsim[sbml]``).

    >>> m = load_model("one_compartment")
    >>> [s.name for s in m.species]
    ['C', 'depot', 'eliminated']
    """
    path = resolve(name_or_path, "models")
    if path.suffix.lower() in (".xml", ".sbml"):
        from .sbml_import import read_sbml  # needs the sbml extra

        return read_sbml(path)
    return read_model(path)


def read_model(path: Path | str) -> Model:
    """Read and validate one model file."""
    return _ModelReader(TomlSource.read(path)).model()


class _ModelReader:
    def __init__(self, src: TomlSource):
        self.src = src
        self.data = src.data

    def table(self, section: str, *, required: bool = False) -> dict:
        value = self.data.get(section, {})
        if required and not value:
            raise ParseError(f"missing [{section}] table", self.src.path)
        if not isinstance(value, dict):
            raise ParseError(f"[{section}] must be a table", self.src.where((), section))
        return value

    def entry(self, section: str, name: str, raw, allowed: set[str], shorthand: str | None
              ) -> dict:
        """One ``[section.name]`` entry as a dict, with unknown keys rejected."""
        where = self.src.where((section,), name)
        if not isinstance(raw, dict):
            if shorthand is None:
                raise ParseError(f"{section}.{name} must be a table", where)
            raw = {shorthand: raw}
        unknown = sorted(set(raw) - allowed)
        if unknown:
            raise ParseError(f"{section}.{name}: unknown key {unknown[0]!r} (allowed: "
                             f"{', '.join(sorted(allowed))})",
                             self.src.where((section, name), unknown[0]))
        return raw

    def key_where(self, section: str, name: str, key: str) -> str:
        where = self.src.where((section, name), key)
        return where if where != self.src.path else self.src.where((section,), name)

    def model(self) -> Model:
        unknown = sorted(set(self.data) - _SECTIONS)
        if unknown:
            raise ParseError(f"unknown table [{unknown[0]}] (allowed: "
                             f"{', '.join(sorted(_SECTIONS))})",
                             self.src.where((unknown[0],)))
        head = self.table("model")
        unknown = sorted(set(head) - {"name", "description", "time_unit", "params", "outputs"})
        if unknown:
            raise ParseError(f"[model]: unknown key {unknown[0]!r} (allowed: description, "
                             "name, outputs, params, time_unit)",
                             self.src.where(("model",), unknown[0]))
        outputs = head.get("outputs", [])
        if not isinstance(outputs, list) or not all(isinstance(n, str) for n in outputs):
            raise ParseError("model.outputs must be a list of species and rule names",
                             self.src.where(("model",), "outputs"))
        # default name: the file name, made into an identifier ("tmdd-2cpt" -> "tmdd_2cpt")
        name = head.get("name", re.sub(r"\W", "_", Path(self.src.path).stem))
        unit_where = self.src.where(("model",), "time_unit")
        time_unit = parse_unit(head.get("time_unit", "day"), what="model.time_unit",
                               where=unit_where)
        if (1 * time_unit).dimensionality != ureg.day.dimensionality:
            raise UnitError(f"model.time_unit must be a time unit, got {head['time_unit']!r}",
                            unit_where)
        try:
            model = Model(
                name=name,
                description=str(head.get("description", "")),
                time_unit=time_unit,
                drugs=tuple(self.drugs()),
                compartments=tuple(self.compartments()),
                parameters=tuple(read_parameter_table(self.src, ("parameters",),
                                                      self.table("parameters"),
                                                      unit_only=True)),
                species=tuple(self.species()),
                reactions=tuple(self.reactions()),
                rules=tuple(self.rules()),
                routes=tuple(self.routes()),
                source=self.src.path,
                outputs=tuple(outputs),
                events=tuple(self.events()),
            )
        except ValidationError as exc:
            if exc.where is None:
                raise type(exc)(exc.message, self.src.path) from None
            raise
        model = self.apply_default_params(model, head.get("params", []))
        if "expect" in self.data:
            model = model.replace(expectations=read_expectations(self.src, self.data["expect"],
                                                                 model))
        return model

    def apply_default_params(self, model: Model, names) -> Model:
        """``[model] params = [...]``: parameter sets applied whenever the model is loaded.

        A name ending in ``.toml`` is a path relative to the model file; otherwise it is a
        built-in parameter set.
        """
        where = self.src.where(("model",), "params")
        if isinstance(names, str):
            names = [names]
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ParseError("model.params must be a list of parameter set names", where)
        for name in names:
            path = Path(self.src.path).parent / name if name.endswith(".toml") else name
            try:
                ps = read_params(resolve(path, "params"))
                ps.check_model(model.name)
            except MechsimError as exc:
                if exc.where is not None:  # an error inside that file: its own location
                    raise
                raise type(exc)(f"model.params: {exc.message}", where) from None
            model = model.with_parameters(ps.values)
        return model.replace(parameter_sets=tuple(names)) if names else model

    def label(self, section: str, name: str, entry: dict) -> str | None:
        if "label" not in entry:
            return None
        text = entry["label"]
        if not isinstance(text, str) or not text.strip() or "\n" in text:
            raise ParseError(f"{section}.{name}: label must be one line of text",
                             self.key_where(section, name, "label"))
        return text.strip()

    def drugs(self):
        for name, raw in self.table("drugs").items():
            d = self.entry("drugs", name, raw, {"molecular_weight"}, "molecular_weight")
            where = self.key_where("drugs", name, "molecular_weight")
            if "molecular_weight" not in d:
                raise ParseError(f"drug {name}: molecular_weight is required", where)
            yield Drug(name, value_or_expr(d["molecular_weight"],
                                           f"drug {name} molecular_weight", where), where)

    def compartments(self):
        for name, raw in self.table("compartments").items():
            c = self.entry("compartments", name, raw, {"volume"}, "volume")
            where = self.key_where("compartments", name, "volume")
            if "volume" not in c:
                raise ParseError(f"compartment {name}: volume is required", where)
            yield Compartment(name, value_or_expr(c["volume"], f"compartment {name} volume",
                                                  where), where)

    def species(self):
        table = self.table("species", required=True)
        for name, raw in table.items():
            s = self.entry("species", name, raw, {"unit", "compartment", "initial", "label"},
                           None)
            where = self.src.entry_where("species", name)
            unit = parse_unit(s.get("unit", ""), what=f"species {name} unit",
                              where=self.key_where("species", name, "unit"))
            initial = value_or_expr(s.get("initial", 0), f"species {name} initial",
                                    self.key_where("species", name, "initial"))
            yield Species(name, unit, initial, s.get("compartment"), where,
                          self.label("species", name, s))

    def reactions(self):
        for name, raw in self.table("reactions").items():
            r = self.entry("reactions", name, raw, {"equation", "rate", "compartment"}, None)
            where = self.src.entry_where("reactions", name)
            for key in ("equation", "rate"):
                if key not in r:
                    raise ParseError(f"reaction {name}: {key!r} is required", where)
            eq_where = self.key_where("reactions", name, "equation")
            reactants, products = parse_equation(r["equation"], name, eq_where)
            rate_where = self.key_where("reactions", name, "rate")
            if not isinstance(r["rate"], str):
                raise ParseError(f"reaction {name}: rate must be an expression in quotes",
                                 rate_where)
            yield Reaction(name, reactants, products, Expr(r["rate"], rate_where),
                           r.get("compartment"), where)

    def rules(self):
        for name, raw in self.table("rules").items():
            r = self.entry("rules", name, raw, {"expr", "unit", "label"}, "expr")
            where = self.key_where("rules", name, "expr")
            if not isinstance(r.get("expr"), str):
                raise ParseError(f"rule {name}: expr must be an expression in quotes", where)
            unit = parse_unit(r["unit"], what=f"rule {name} unit", where=where) \
                if "unit" in r else None
            yield Rule(name, Expr(r["expr"], where), unit, where, self.label("rules", name, r))

    def events(self):
        """``[[event]]`` entries: trigger, assign (target = value), and the optional delay,
        priority, persistent, initial_value and from_trigger_time (SBML's semantics)."""
        raw = self.data.get("event", [])
        if not isinstance(raw, list):
            raise ParseError("event must be an array of tables: write [[event]]",
                             self.src.where(("event",)))
        allowed = {"name", "trigger", "assign", "delay", "priority", "persistent",
                   "initial_value", "from_trigger_time"}
        for k, entry in enumerate(raw):
            table = self.src.item(("event",), k)
            where = self.src.where(table)
            if not isinstance(entry, dict):
                raise ParseError("each [[event]] must be a table", where)
            unknown = sorted(set(entry) - allowed)
            if unknown:
                raise ParseError(f"[[event]]: unknown key {unknown[0]!r} (allowed: "
                                 f"{', '.join(sorted(allowed))})", where)
            name = entry.get("name", f"event{k + 1}")
            if not isinstance(name, str) or not name.isidentifier():
                raise ParseError(f"[[event]]: name must be an identifier, got {name!r}", where)
            if not isinstance(entry.get("trigger"), str):
                raise ParseError(f"event {name}: trigger is required, a condition in quotes "
                                 "such as 'C < \"5 nM\"'", where)
            trigger_where = self.src.where(table, "trigger")
            assign = entry.get("assign")
            if not isinstance(assign, dict) or not assign:
                raise ParseError(f"event {name}: assign is required, a table of target = "
                                 "value (e.g. assign = { C = \"C + 10 nM\" })", where)
            flags = {}
            for key, default in (("persistent", True), ("initial_value", True),
                                 ("from_trigger_time", True)):
                flag = entry.get(key, default)
                if not isinstance(flag, bool):
                    raise ParseError(f"event {name}: {key} must be true or false", where)
                flags[key] = flag
            optional = {key: value_or_expr(entry[key], f"event {name} {key}", where)
                        for key in ("delay", "priority") if key in entry}
            yield Event(name, Expr(entry["trigger"], trigger_where, condition=True),
                        tuple((target, value_or_expr(value, f"event {name} assign {target}",
                                                     where))
                              for target, value in assign.items()),
                        optional.get("delay"), optional.get("priority"), where=where,
                        **flags)

    def routes(self):
        for name, raw in self.table("routes").items():
            r = self.entry("routes", name, raw, {"target", "drug", "bioavailability", "lag"},
                           "target")
            where = self.key_where("routes", name, "target")
            if "target" not in r:
                raise ParseError(f"route {name}: target is required", where)
            opt = {k: value_or_expr(r[k], f"route {name} {k}", self.key_where("routes", name, k))
                   for k in ("bioavailability", "lag") if k in r}
            yield Route(name, r["target"], r.get("drug"), opt.get("bioavailability"),
                        opt.get("lag"), where)


def parse_equation(text, reaction: str, where: str):
    """``"C + R -> RC"``, ``"-> R"``, ``"2 A -> B"`` into (reactants, products)."""
    if not isinstance(text, str):
        raise ParseError(f"reaction {reaction}: equation must be text like 'C + R -> RC'",
                         where)
    arrow = "<->" if "<->" in text else "->"
    if text.count(arrow) != 1:
        raise ParseError(f"reaction {reaction}: equation {text!r} needs exactly one '->'",
                         where)
    sides = text.split(arrow)

    def side(part: str):
        terms = []
        for term in filter(None, (t.strip() for t in part.split("+"))):
            m = _TERM.match(term)
            if not m:
                raise ParseError(f"reaction {reaction}: cannot read {term!r} in {text!r} "
                                 "(expected a species name, optionally preceded by a number "
                                 "and a space: '2 A')", where)
            terms.append((m.group(2), float(m.group(1)) if m.group(1) else 1.0))
        return tuple(terms)

    return side(sides[0]), side(sides[1])



"""``[[expect]]`` entries of a model file -> :class:`~mechsim.expectation.Expectation`.

Every key is checked against a whitelist and every value against the model (names,
dimensions, regimen grammar) when the file is loaded, so a typo is one line with file:line
there, not a confusing failure when the check runs.  Output expressions go through
:mod:`mechsim.expr` like rate laws.
"""

from __future__ import annotations

import math

from ..dosing import Regimen
from ..errors import MechsimError, ParseError
from ..expectation import DOSE, EFFECTS, Expectation, Range, with_dose
from ..expr import TIME, Expr
from ..model import Model
from ..units import dimension_text, format_unit, parse_quantity, ureg
from .toml_source import TomlSource

__all__ = ["read_expectations"]

_KEYS = {"name", "effect", "output", "at", "vary", "over", "regimen", "regimens", "given",
         "between", "tolerance", "violated"}
#: Effects that look at one run at a time, for which the varied input is optional.
_SINGLE = ("conserved", "within")
_TIME = ureg.day.dimensionality


def read_expectations(src: TomlSource, raw, model: Model) -> tuple[Expectation, ...]:
    """The ``[[expect]]`` array of ``src`` (``raw``), checked against ``model``."""
    if not isinstance(raw, list) or not all(isinstance(e, dict) for e in raw):
        raise ParseError("expect must be written as [[expect]] tables", src.where(("expect",)))
    out, seen = [], {}
    for index, entry in enumerate(raw):
        exp = _Entry(src, index, entry, model).expectation()
        if exp.name in seen:
            raise ParseError(f"[[expect]] {exp.name!r} is declared twice (first at "
                             f"{seen[exp.name]})", exp.where)
        seen[exp.name] = exp.where
        out.append(exp)
    return tuple(out)


class _Entry:
    def __init__(self, src: TomlSource, index: int, raw: dict, model: Model):
        self.src, self.raw, self.model = src, raw, model
        self.table = src.item(("expect",), index)
        self.label = f"[[expect]] {raw.get('name', f'number {index + 1}')!r}" \
            if isinstance(raw.get("name", ""), str) else f"[[expect]] number {index + 1}"

    def where(self, key: str | None = None) -> str:
        return self.src.where(self.table, key)

    def fail(self, message: str, key: str | None = None) -> ParseError:
        return ParseError(f"{self.label}: {message}", self.where(key))

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.raw.get(key)
        if value is None:
            if required:
                raise self.fail(f"'{key}' is required")
            return None
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"'{key}' must be a non-empty text", key)
        return value.strip()

    def quantity(self, key: str, value, dims, expected: str):
        q = parse_quantity(value, what=f"{self.label} {key}", where=self.where(key))
        if not math.isfinite(q.magnitude):
            raise self.fail(f"{key} {value!r} must be finite", key)
        if dims is not None and q.dimensionality != dims:
            raise self.fail(f"{key} {value!r} has the dimension {dimension_text(q.dimensionality)};"
                            f" expected {expected}", key)
        return q

    def range(self, key: str, value, dims, expected: str) -> Range:
        if not (isinstance(value, list) and len(value) == 2):
            raise self.fail(f"{key} must be a range [LOW, HIGH], e.g. [\"0 mg/kg\", "
                            f"\"10 mg/kg\"]", key)
        low, high = (self.quantity(key, v, dims, expected) for v in value)
        if dims is None and low.dimensionality != high.dimensionality:
            raise self.fail(f"{key}: the two ends have different dimensions", key)
        if not high.to(low.units).magnitude > low.magnitude:
            raise self.fail(f"{key}: the range must rise (LOW < HIGH), got {value}", key)
        return Range(low, high)

    def parameter(self, name: str, key: str):
        p = self.model.parameters_by_name.get(name)
        if p is None:
            raise self.fail(f"unknown parameter {name!r}", key)
        unit = format_unit(p.value.units) or "dimensionless"
        return p.value.dimensionality, f"the dimension of {p.name} ({unit})"

    def regimen_text(self, text: str, key: str, dose=None) -> None:
        shown = with_dose(text, dose) if dose is not None else text
        try:
            Regimen.parse(shown)
        except MechsimError as exc:
            raise self.fail(f"{key}: {exc.message}", key) from None
        if dose is None:
            return
        # a zero dose drops each part (between ';') that gives DOSE, so such a part must
        # give no other dose: "100 mg iv then DOSE iv at 1 day" would lose the 100 mg
        for part in (p for p in text.split(";") if DOSE in p):
            given = Regimen.parse(with_dose(part, dose))
            amounts = {(float(b.dose.amount.magnitude), b.dose.amount.units)
                       for sequence in given.sequences for b in sequence
                       if hasattr(b, "dose")}  # a Wait has none
            if len(amounts) > 1:
                raise self.fail(f"{key}: the part {part.strip()!r} gives other doses beside "
                                f"{DOSE}; put them in a part of their own, after ';'", key)

    def expectation(self) -> Expectation:
        unknown = sorted(set(self.raw) - _KEYS)
        if unknown:
            raise self.fail(f"unknown key {unknown[0]!r} (allowed: {', '.join(sorted(_KEYS))})",
                            unknown[0])
        name = self.text("name", required=True)
        effect = self.text("effect", required=True)
        if effect not in EFFECTS:
            raise self.fail(f"effect {effect!r} is not one of {', '.join(EFFECTS)}", "effect")
        outputs, dims = self.outputs()
        between = self.bounds(effect, dims)
        at = self.times(effect)
        vary, over, regimen, regimens = self.varied(effect)
        given = self.given(vary)
        tolerance = self.raw.get("tolerance", 1e-6)
        if isinstance(tolerance, bool) or not isinstance(tolerance, (int, float)) \
                or not 0 <= tolerance < 1:
            raise self.fail(f"tolerance must be a number from 0 to below 1 (relative), got "
                            f"{tolerance!r}", "tolerance")
        return Expectation(name=name, effect=effect, outputs=outputs, at=at, vary=vary,
                           over=over, regimen=regimen, regimens=regimens, given=given,
                           between=between, tolerance=float(tolerance),
                           violated=self.text("violated"), where=self.where())

    def outputs(self) -> tuple[Expr, ...]:
        raw = self.raw.get("output")
        texts = [raw] if isinstance(raw, str) else raw
        if not texts or not isinstance(texts, list) or not all(
                isinstance(t, str) for t in texts):
            raise self.fail("'output' must be an expression or a list of them, e.g. "
                            "output = \"RO\"", "output" if raw is not None else None)
        m = self.model
        known = set(m.species_by_name) | set(m.rules_by_name) | set(m.parameters_by_name) \
            | {TIME}
        exprs, dims = [], set()
        for text in texts:
            expr = Expr(text, self.where("output"))  # parsed and validated here
            unknown = sorted(expr.names - known)
            if unknown:
                raise self.fail(f"output {text!r}: unknown name {unknown[0]!r} (outputs may "
                                "use species, rules, parameters and t)", "output")
            units = {n: self.model.unit_of(n) for n in expr.names}
            try:
                dims.add(expr.dimension(units).dimensionality)
            except MechsimError as exc:
                raise self.fail(f"output {text!r}: {exc.message}", "output") from None
            exprs.append(expr)
        return tuple(exprs), dims

    def bounds(self, effect: str, dims: set) -> Range | None:
        if effect != "within":
            if "between" in self.raw:
                raise self.fail("'between' goes with effect = \"within\"", "between")
            return None
        if "between" not in self.raw:
            raise self.fail("effect \"within\" needs 'between', the bounds [LOW, HIGH]")
        if len(dims) != 1:
            raise self.fail("the outputs of a \"within\" entry must share one dimension, "
                            "the bounds'", "output")
        (dim,) = dims
        return self.range("between", self.raw["between"], dim,
                          f"the dimension of the outputs ({dimension_text(dim)})")

    def times(self, effect: str):
        raw = self.raw.get("at")
        values = [raw] if isinstance(raw, (str, int, float)) else raw
        if not values or not isinstance(values, list):
            raise self.fail("'at' must be a time or a list of times, e.g. at = [\"7 day\", "
                            "\"28 day\"]", "at" if raw is not None else None)
        times = [self.quantity("at", v, _TIME, "a time") for v in values]
        if any(t.magnitude <= 0 for t in times):
            raise self.fail("times in 'at' must be after 0", "at")
        return tuple(sorted(times, key=lambda t: t.to("day").magnitude))

    def varied(self, effect: str):
        vary = self.text("vary")
        regimen, regimens, over = self.text("regimen"), self.raw.get("regimens"), None
        if vary is None:
            if effect not in _SINGLE:
                raise self.fail(f"'vary' is required for effect {effect!r}: \"dose\", "
                                "\"regimen\" or a parameter name")
            for key in ("over", "regimens"):
                if key in self.raw:
                    raise self.fail(f"'{key}' needs 'vary'", key)
            if regimen is not None:
                self.regimen_text(regimen, "regimen")
            return None, None, regimen, ()
        if vary == "regimen":
            if "over" in self.raw:
                raise self.fail("vary = \"regimen\" takes 'regimens', not 'over'", "over")
            if regimen is not None:
                raise self.fail("vary = \"regimen\" takes 'regimens' (a list), not 'regimen'",
                                "regimen")
            if not (isinstance(regimens, list) and len(regimens) >= 2
                    and all(isinstance(r, str) for r in regimens)):
                raise self.fail("'regimens' must list at least two regimens, in rising order",
                                "regimens")
            for r in regimens:
                self.regimen_text(r, "regimens")
            return vary, None, None, tuple(regimens)
        if regimens is not None:
            raise self.fail("'regimens' goes with vary = \"regimen\"", "regimens")
        if "over" not in self.raw:
            raise self.fail(f"vary = {vary!r} needs 'over', the range [LOW, HIGH]")
        if vary == "dose":
            if regimen is None or DOSE not in regimen:
                raise self.fail(f"vary = \"dose\" needs a 'regimen' with the placeholder "
                                f"{DOSE}, e.g. \"{DOSE} iv every 2 weeks x 3\"", "regimen")
            over = self.range("over", self.raw["over"], None, "a dose")
            if over.low.magnitude < 0:
                raise self.fail("a dose range cannot go below 0", "over")
            self.regimen_text(regimen, "regimen", over.high)
            return vary, over, regimen, ()
        dims, expected = self.parameter(vary, "vary")
        over = self.range("over", self.raw["over"], dims, expected)
        if regimen is not None:
            self.regimen_text(regimen, "regimen")
        return vary, over, regimen, ()

    def given(self, vary: str | None) -> dict:
        raw = self.raw.get("given", {})
        if not isinstance(raw, dict):
            raise self.fail("'given' must be a table: { NAME = \"VALUE\" or [LOW, HIGH] }",
                            "given")
        out = {}
        for name, value in raw.items():
            if name == vary:
                raise self.fail(f"given {name}: it is the varied input", "given")
            dims, expected = self.parameter(name, "given")
            out[name] = self.range("given", value, dims, expected) if isinstance(value, list) \
                else self.quantity("given", value, dims, expected)
        return out

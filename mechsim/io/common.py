"""Pieces shared by the model and parameter file readers."""

from __future__ import annotations

import re

import pint

from ..errors import ParseError
from ..expr import Expr
from ..model import Parameter
from ..units import parse_quantity, parse_unit, ureg
from .builtin import builtin_dir, builtin_names, resolve
from .toml_source import TomlSource

__all__ = ["builtin_dir", "builtin_names", "read_parameter_table", "resolve", "value_or_expr"]


def read_parameter_table(src: TomlSource, table: tuple[str, ...], raw: dict, *,
                         unit_only: bool = False):
    """Parameters written as ``NAME = "1 nM"`` or ``NAME = {value=..., source=..., note=...}``.

    With ``unit_only`` (model files), ``NAME = {unit = "L/h"}`` declares a parameter whose
    value must come from a parameter file.
    """
    allowed = {"value", "source", "note"} | ({"unit"} if unit_only else set())
    for name, entry in raw.items():
        where = src.where(table, name)
        if isinstance(entry, dict):
            unknown = sorted(set(entry) - allowed)
            if unknown:
                raise ParseError(f"parameter {name}: unknown key {unknown[0]!r} (allowed: "
                                 f"{', '.join(sorted(allowed))})", where)
            if ("value" in entry) == ("unit" in entry and unit_only):
                need = "'value' or 'unit' (not both)" if unit_only else "'value'"
                raise ParseError(f"parameter {name}: {need} is required", where)
            if "unit" in entry:
                unit = parse_unit(entry["unit"], what=f"parameter {name} unit", where=where)
                yield Parameter(name, ureg.Quantity(float("nan"), unit), entry.get("source"),
                                entry.get("note"), where)
                continue
            value, source, note = entry["value"], entry.get("source"), entry.get("note")
        else:
            value, source, note = entry, None, None
        for label, text in (("source", source), ("note", note)):
            if text is not None and not isinstance(text, str):
                raise ParseError(f"parameter {name}: {label} must be text", where)
        q = parse_quantity(value, what=f"parameter {name}", where=where)
        if q.magnitude != q.magnitude:  # NaN means "declared, no value" internally
            raise ParseError(f"parameter {name}: value must be a number, got {value!r}", where)
        yield Parameter(name, q, source, note, where)


# A literal quantity is a number, whitespace, then a unit: "3 L", "0 nM", "1e5 1/(M*s)".
# The unit must start like a unit ("L", "µg", "1/day", "(M*s)"), so "2 * V" stays an expression.
_QUANTITY = re.compile(r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?(\s+[A-Za-zµμ%(1].*)?\s*$")


def value_or_expr(raw, what: str, where: str) -> Expr | pint.Quantity:
    """A literal quantity (``"3 L"``, ``0``) or an expression (``"V1"``, ``"R0*2"``)."""
    if isinstance(raw, bool):
        raise ParseError(f"{what} must be a quantity or an expression, got {raw!r}", where)
    if isinstance(raw, (int, float)):
        return parse_quantity(raw, what=what, where=where)
    if not isinstance(raw, str):
        raise ParseError(f"{what} must be a quantity or an expression in quotes, got "
                         f"{raw!r}", where)
    if _QUANTITY.match(raw):
        return parse_quantity(raw, what=what, where=where)
    return Expr(raw, where)

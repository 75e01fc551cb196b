"""Pieces shared by the model and parameter file readers."""

from __future__ import annotations

import re
from difflib import get_close_matches
from pathlib import Path

import pint

from ..errors import ParseError, ValidationError
from ..expr import Expr
from ..model import Parameter
from ..units import parse_quantity, parse_unit, ureg
from .toml_source import TomlSource

__all__ = ["builtin_dir", "builtin_names", "read_parameter_table", "resolve", "value_or_expr"]


#: Where each kind of built-in file lives in a source checkout; an installed package has a
#: copy of each folder in ``mechsim/_builtin/<kind>`` (pyproject.toml, force-include).
_SOURCE_FOLDERS = {"models": "models", "params": "params", "scenarios": "examples/scenarios",
                   "data": "examples/data"}
#: The suffix of each kind's files (a built-in is named without it).
_SUFFIX = {"data": ".csv"}


def builtin_dir(kind: str) -> Path:
    """Folder of the built-in ``models``, ``params`` or ``scenarios`` files (installed copy
    first)."""
    here = Path(__file__).resolve().parent.parent
    for candidate in (here / "_builtin" / kind, here.parent / _SOURCE_FOLDERS[kind]):
        if candidate.is_dir():
            return candidate
    raise ValidationError(f"built-in {kind}/ folder not found next to {here}; "
                          "reinstall mechsim")


def builtin_names(kind: str) -> list[str]:
    """Names of the built-in files of a kind, without the ``.toml`` suffix."""
    return sorted(p.stem for p in builtin_dir(kind).glob(f"*{_SUFFIX.get(kind, '.toml')}"))


def resolve(name_or_path: str | Path, kind: str) -> Path:
    """A path as given if it exists or looks like a file, else a built-in by name."""
    text = str(name_or_path)
    path = Path(text)
    singular = kind[:-1] if kind.endswith("s") else kind
    folder = ParseError(f"{text} is a folder; give a {singular} file or a built-in name")
    if path.is_file() or path.suffix or "/" in text or "\\" in text:
        if path.is_dir():
            raise folder
        if path.exists() and not path.is_file():  # a device or a pipe: it may never end
            raise ParseError(f"{text} is not a regular file")
        if not path.is_file():
            raise ParseError(f"no such file: {text}")
        return path
    candidate = builtin_dir(kind) / f"{text}{_SUFFIX.get(kind, '.toml')}"
    if candidate.is_file():
        return candidate
    if path.is_dir():
        raise folder
    names = builtin_names(kind)
    close = get_close_matches(text, names, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValidationError(f"unknown built-in {singular} {text!r} ({hint}built-in: "
                          f"{', '.join(names) or 'none'}; or give a file path)")


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

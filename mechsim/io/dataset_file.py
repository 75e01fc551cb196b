"""Event tables in the NONMEM style (CSV, one row per event): reading and writing.

This module reads a CSV into typed rows and column units, and writes rows back; it knows
the columns' meanings only as far as their types go.  Building subjects, regimens and
observations from the rows is :mod:`mechsim.dataset`'s job.

* The header names the columns; a unit may follow a name in brackets, as mechsim's own
  CSVs write it (``TIME [h]``, ``DV [mg/L]``), or be given by the caller.
* The standard columns (case-insensitive) are numeric; ``.`` or an empty cell means
  missing, as in NONMEM.  Any other column is read as numbers where every value is a
  number, as text otherwise.
* Errors name the file, the line and the column.
"""

from __future__ import annotations

import csv
import io as _io
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pint

from ..errors import ParseError
from ..units import format_unit, parse_unit
from .atomic import write_text_atomically
from .toml_source import read_text

__all__ = ["MAX_DATASET_BYTES", "STANDARD_COLUMNS", "DataTable", "read_table", "write_table"]

#: Columns with a fixed meaning (NONMEM's names); all others are covariates or ignored.
STANDARD_COLUMNS = ("ID", "TIME", "EVID", "MDV", "AMT", "RATE", "DUR", "CMT", "ADDL", "II",
                    "SS", "DV")
#: A dataset of a million rows is about 50 MB; beyond this it is refused before reading.
MAX_DATASET_BYTES = 200_000_000

_HEADER = re.compile(r"^\s*([^\[\]]+?)\s*(?:\[(.*)\])?\s*$")
_MISSING = {"", "."}


@dataclass(frozen=True, eq=False)
class DataTable:
    """The rows of an event table: ``columns`` (names as in the file, standard ones in
    upper case), ``units`` (column -> unit or None), and ``rows`` of (file line, values),
    each value a float, a text, or None for missing."""

    path: str
    columns: tuple[str, ...]
    units: Mapping[str, pint.Unit | None]
    rows: tuple[tuple[int, Mapping[str, float | str | None]], ...]
    text: str

    def where(self, line: int) -> str:
        return f"{self.path}:{line}"


def read_table(path: str | Path, units: Mapping[str, str] | None = None) -> DataTable:
    """Read an event table; ``units`` gives the unit of columns whose header has none
    (``{"TIME": "h", "AMT": "mg", "DV": "mg/L"}``; a unit in the header wins only if the
    two agree)."""
    path = Path(path)
    text = read_text(path, MAX_DATASET_BYTES)
    where = str(path)
    reader = csv.reader(_io.StringIO(text))
    try:
        header = next(reader)
    except StopIteration:
        raise ParseError("the dataset is empty (expected a header row such as "
                         "'ID,TIME,AMT,DV')", where) from None
    except csv.Error as exc:
        raise ParseError(f"not readable as CSV ({exc})", f"{where}:1") from None
    columns, header_units = [], {}
    for k, cell in enumerate(header, start=1):
        match = _HEADER.match(cell)
        if not match or not match.group(1):
            raise ParseError(f"column {k} has no name (got {cell!r})", f"{where}:1")
        name = match.group(1)
        if name.upper() in STANDARD_COLUMNS:
            name = name.upper()
        if name in columns:
            raise ParseError(f"column {name!r} appears twice", f"{where}:1")
        columns.append(name)
        if match.group(2) is not None:
            header_units[name] = parse_unit(match.group(2), what=f"column {name} unit",
                                            where=f"{where}:1")
    given = {}
    for key, unit in (units or {}).items():
        name = key.upper() if key.upper() in STANDARD_COLUMNS else key
        if name not in columns:
            raise ParseError(f"units given for column {key!r}, which the dataset does not have "
                             f"(columns: {', '.join(columns)})", where)
        given[name] = parse_unit(unit, what=f"unit of column {name}")
    resolved = {}
    for name in columns:
        a, b = header_units.get(name), given.get(name)
        if a is not None and b is not None and a != b:
            raise ParseError(f"column {name} is in {format_unit(a) or '1'} by its "
                             f"header but {format_unit(b) or '1'} was given", f"{where}:1")
        resolved[name] = a if a is not None else b
    rows = []
    try:
        for line, cells in enumerate(reader, start=2):
            if not cells or all(not c.strip() for c in cells):
                continue  # a blank line
            if len(cells) != len(columns):
                raise ParseError(f"{len(cells)} values for {len(columns)} columns",
                                 f"{where}:{line}")
            rows.append((line, _values(columns, cells, where, line)))
    except csv.Error as exc:
        raise ParseError(f"not readable as CSV ({exc})", where) from None
    text_columns = {c for c in columns if c not in STANDARD_COLUMNS and
                    any(isinstance(v[c], str) for _, v in rows)}
    if text_columns:  # a column with any text is text throughout (a category, a code)
        rows = [(line, {c: (_as_text(v) if c in text_columns else v)
                        for c, v in values.items()}) for line, values in rows]
    return DataTable(path=where, columns=tuple(columns), units=resolved, rows=tuple(rows),
                     text=text)


def _values(columns, cells, where, line) -> dict:
    out = {}
    for name, raw in zip(columns, cells):
        cell = raw.strip()
        if cell in _MISSING:
            out[name] = None
            continue
        try:
            value = float(cell)
        except ValueError:
            if name in STANDARD_COLUMNS:
                raise ParseError(f"column {name}: {cell!r} is not a number",
                                 f"{where}:{line}") from None
            out[name] = cell
            continue
        if not math.isfinite(value):
            raise ParseError(f"column {name}: {cell!r} is not a finite number", f"{where}:{line}")
        out[name] = value
    return out


def _as_text(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return f"{value:g}"


def write_table(path: str | Path, columns: Sequence[str],
                units: Mapping[str, pint.Unit | None], rows: Sequence[Mapping]) -> Path:
    """Write rows (dicts by column) as CSV with ``NAME [unit]`` headers; missing values
    are written as ``.``, whole numbers without a decimal point."""
    out = _io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"{c} [{format_unit(units[c]) or '1'}]" if units.get(c) is not None else c
                     for c in columns])
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return write_text_atomically(path, out.getvalue())


def _cell(value) -> str:
    if value is None:
        return "."
    if isinstance(value, str):
        return value
    value = float(value)  # numpy scalars' repr is "np.float64(...)"
    return str(int(value)) if value.is_integer() and abs(value) < 1e15 else repr(value)

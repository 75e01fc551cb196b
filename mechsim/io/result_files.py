"""Writing a Result's outputs: one writer per file format, chosen by the file's suffix.

A new format is one function ``write(result, path, names)`` registered in :data:`WRITERS`
under its suffix; the command line (``--out``) and :func:`write_result` pick it up.  Every
writer writes atomically (:mod:`mechsim.io.atomic`).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ..errors import ValidationError
from ..units import format_unit, split_output
from .atomic import write_atomically

__all__ = ["WRITERS", "format_table", "header", "write_result"]


def header(result, names: Sequence[str]) -> list[str]:
    """Column titles with units: ``time [d]``, ``C_mass [mg/L]``, ``RO [1]``
    (``C_mass[ng/mL]`` asked for: ``C_mass [ng/mL]``)."""
    return [f"time [{format_unit(result.time_unit)}]"] + \
        [f"{split_output(n)[0]} [{format_unit(result.unit(n)) or '1'}]" for n in names]


def write_csv(result, path: Path, names: Sequence[str]) -> Path:
    """Time and outputs as CSV, units in the header (``pandas.read_csv`` reads it back)."""
    columns = [result.time.magnitude] + [result[n].magnitude for n in names]

    def write(tmp: Path) -> None:
        with tmp.open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(header(result, names))
            writer.writerows(np.column_stack(columns).tolist())

    return write_atomically(path, write)


def write_json(result, path: Path, names: Sequence[str]) -> Path:
    """Model, regimen, time, each output with its unit, and the solver diagnostics."""
    diag = result.diagnostics
    record = {"model": result.model, "regimen": result.regimen,
              "time": {"unit": format_unit(result.time_unit),
                       "values": result.time.magnitude.tolist()},
              "outputs": {split_output(n)[0]: {"unit": format_unit(result.unit(n)) or "1",
                              "values": result[n].magnitude.tolist()} for n in names},
              "diagnostics": {"steps": diag.steps,
                              "conservation_residuals": dict(diag.conservation_residuals)}}
    return write_atomically(path, lambda tmp: tmp.write_text(json.dumps(record, indent=1) +
                                                             "\n"))


#: File suffix -> writer.  Register a new format here.
WRITERS: dict[str, Callable] = {".csv": write_csv, ".json": write_json}


def write_result(result, path: str | Path, names: Sequence[str] | None = None) -> Path:
    """Write ``names`` (default: every output) of ``result`` in the format of the suffix."""
    path = Path(path)
    writer = WRITERS.get(path.suffix.lower())
    if writer is None:
        raise ValidationError(f"cannot write {path}: the file name must end in "
                              f"{' or '.join(sorted(WRITERS))}")
    names = list(names or result.outputs or result.names)
    for name in names:
        result.unit(name)  # unknown names fail before anything is written
    return writer(result, path, names)


def format_table(result, names: Sequence[str]) -> str:
    """Time and outputs as tab-separated text with a header, 6 significant digits."""
    columns = [result.time.magnitude] + [result[n].magnitude for n in names]
    rows = ["\t".join(header(result, names))]
    rows += ["\t".join(f"{v:.6g}" for v in row) for row in zip(*columns)]
    return "\n".join(rows)

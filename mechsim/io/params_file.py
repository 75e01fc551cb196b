"""Parameter files (TOML): values with units and provenance, applied over a model's defaults.

Format::

    [meta]
    model = "cd38_myeloma"          # optional: the model these values are for
    description = "..."

    [parameters]
    CL = { value = "0.00955 L/h", source = "Fau et al. 2020, CPT:PSP 9:649, Table S3" }
    kon = { value = "1e5 1/(M*s)", note = "assumption: typical mAb association rate" }

    [error]                          # optional: residual error of observed outputs (fits)
    C_mass = { model = "proportional", proportional = "0.12" }
    IL6 = { model = "combined", additive = "0.5 pg/mL", proportional = "0.2" }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParseError, ValidationError
from ..model import Parameter
from ..units import parse_quantity
from .common import read_parameter_table, resolve
from .toml_source import TomlSource

__all__ = ["ERROR_KINDS", "ParameterSet", "load_params", "read_params"]


@dataclass(frozen=True)
class ParameterSet:
    """Named parameter values with sources; apply with ``model.with_parameters(ps.values)``."""

    name: str
    parameters: tuple[Parameter, ...]
    model: str | None = None
    description: str = ""
    source: str | None = field(default=None, compare=False)
    #: residual error per output: (output, kind, ((parameter, value), ...))
    errors: tuple[tuple[str, str, tuple[tuple[str, object], ...]], ...] = ()

    def error_model(self, output: str) -> tuple[str, dict[str, object]] | None:
        """``(kind, {"additive": Quantity, "proportional": float})`` of an output, or None."""
        for name, kind, values in self.errors:
            if name == output:
                return kind, dict(values)
        return None

    @property
    def values(self) -> dict[str, Parameter]:
        return {p.name: p for p in self.parameters}

    def check_model(self, model: str) -> None:
        """Refuse to apply values written for another model (``[meta] model``)."""
        if self.model is not None and self.model != model:
            raise ValidationError(f"parameter set {self.name} is for model {self.model!r}, "
                                  f"not {model!r}", self.source)


def load_params(name_or_path: str | Path) -> ParameterSet:
    """Load a built-in parameter set by name or a parameter file by path."""
    return read_params(resolve(name_or_path, "params"))


def read_params(path: Path | str) -> ParameterSet:
    src = TomlSource.read(path)
    unknown = sorted(set(src.data) - {"meta", "parameters", "error"})
    if {"variability", "covariates"} & set(unknown):
        raise ParseError("this is a population file (it has [variability] or [covariates]): "
                         "use it as the population of a trial, not as parameter values",
                         src.path)
    if unknown:
        raise ParseError(f"unknown table [{unknown[0]}] in a parameter file (allowed: meta, "
                         "parameters, error)", src.where((unknown[0],)))
    meta = src.data.get("meta", {})
    bad = sorted(set(meta) - {"model", "description"})
    if bad:
        raise ParseError(f"[meta]: unknown key {bad[0]!r} (allowed: description, model)",
                         src.where(("meta",), bad[0]))
    params = src.data.get("parameters")
    if not isinstance(params, dict) or not params:
        raise ParseError("a parameter file needs a non-empty [parameters] table", src.path)
    return ParameterSet(
        name=Path(src.path).stem,
        parameters=tuple(read_parameter_table(src, ("parameters",), params)),
        model=meta.get("model"),
        description=str(meta.get("description", "")),
        source=src.path,
        errors=read_error_table(src, src.data.get("error", {})),
    )


#: Residual error models and their parameters (names as in [error] tables and in fits).
ERROR_KINDS = {"additive": ("additive",), "proportional": ("proportional",),
               "combined": ("additive", "proportional")}


def read_error_table(src: TomlSource, raw) -> tuple:
    """The [error] table: ``OUTPUT = { model = KIND, additive = "1 mg/L", proportional =
    "0.1" }`` (the parameters the kind needs, and no others)."""
    if not isinstance(raw, dict):
        raise ParseError("[error] must be a table of OUTPUT = { model = ..., ... }",
                         src.where(("error",)))
    out = []
    for output, entry in raw.items():
        where = src.where(("error",), output)
        if not isinstance(entry, dict) or entry.get("model") not in ERROR_KINDS:
            raise ParseError(f"[error] {output}: expected {{ model = \"additive\", "
                             "\"proportional\" or \"combined\", and its parameters }", where)
        kind = entry["model"]
        needed = set(ERROR_KINDS[kind])
        given = set(entry) - {"model"}
        if given != needed:
            raise ParseError(f"[error] {output}: a {kind} error needs "
                             f"{' and '.join(sorted(needed))}, got "
                             f"{', '.join(sorted(given)) or 'none'}", where)
        values = []
        for name in ERROR_KINDS[kind]:
            q = parse_quantity(entry[name], what=f"[error] {output} {name}", where=where)
            if not q.magnitude > 0:
                raise ParseError(f"[error] {output} {name} must be positive", where)
            if name == "proportional" and not q.dimensionless:
                raise ParseError(f"[error] {output} proportional is a fraction (no unit)",
                                 where)
            values.append((name, q if name == "additive" else float(q.to("").magnitude)))
        out.append((output, kind, tuple(values)))
    return tuple(out)

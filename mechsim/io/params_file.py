"""Parameter files (TOML): values with units and provenance, applied over a model's defaults.

Format::

    [meta]
    model = "cd38_myeloma"          # optional: the model these values are for
    description = "..."

    [parameters]
    CL = { value = "0.00955 L/h", source = "Fau et al. 2020, CPT:PSP 9:649, Table S3" }
    kon = { value = "1e5 1/(M*s)", note = "assumption: typical mAb association rate" }
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ParseError, ValidationError
from ..model import Parameter
from .common import read_parameter_table, resolve
from .toml_source import TomlSource

__all__ = ["ParameterSet", "load_params", "read_params"]


@dataclass(frozen=True)
class ParameterSet:
    """Named parameter values with sources; apply with ``model.with_parameters(ps.values)``."""

    name: str
    parameters: tuple[Parameter, ...]
    model: str | None = None
    description: str = ""
    source: str | None = field(default=None, compare=False)

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
    unknown = sorted(set(src.data) - {"meta", "parameters"})
    if {"variability", "covariates"} & set(unknown):
        raise ParseError("this is a population file (it has [variability] or [covariates]): "
                         "use it as the population of a trial, not as parameter values",
                         src.path)
    if unknown:
        raise ParseError(f"unknown table [{unknown[0]}] in a parameter file (allowed: meta, "
                         "parameters)", src.where((unknown[0],)))
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
    )

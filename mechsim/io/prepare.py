"""A model ready to run: loaded by name or path, with parameter files and overrides on it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from ..model import Model
from .model_file import load_model
from .params_file import ParameterSet, load_params

__all__ = ["prepare_model"]


def prepare_model(model: Model | str, params=None, overrides: Mapping | None = None) -> Model:
    """Load a model by name/path if needed and layer parameter files and overrides on it.

    ``params`` is one parameter file (name, path or :class:`ParameterSet`) or a sequence of
    them, applied in order; ``overrides`` (``{name: value}``) are applied last.
    """
    if not isinstance(model, Model):
        model = load_model(model)
    layers: Iterable = () if params is None else \
        [params] if isinstance(params, (str, ParameterSet)) or hasattr(params, "__fspath__") \
        else params
    for layer in layers:
        ps = layer if isinstance(layer, ParameterSet) else load_params(layer)
        ps.check_model(model.name)
        model = model.with_parameters(ps.values)
    if overrides:
        model = model.with_parameters(dict(overrides), where="override")
    return model

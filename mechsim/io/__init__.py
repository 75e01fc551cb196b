"""Reading and writing mechsim's data files (models, parameters); errors carry path:line."""

from .common import builtin_dir, builtin_names
from .model_file import load_model, read_model
from .params_file import ParameterSet, load_params, read_params
from .prepare import prepare_model

__all__ = [
           "ParameterSet",
           "builtin_dir",
           "builtin_names",
           "load_model",
           "load_params",
           "prepare_model",
           "read_model",
           "read_params",
]

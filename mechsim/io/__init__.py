"""Reading and writing mechsim's data files (models, parameters); errors carry path:line.

Names are imported on first use (PEP 562): listing the built-in files (``builtin_names``)
must not pay for pint and sympy, which reading a model needs.
"""

from importlib import import_module

# public name -> module of this package that defines it
_EXPORTS = {
    "ParameterSet": "params_file",
    "SBMLImport": "sbml_import",
    "SBMLSymbol": "sbml_import",
    "builtin_dir": "builtin",
    "builtin_names": "builtin",
    "import_sbml": "sbml_import",
    "load_model": "model_file",
    "load_params": "params_file",
    "prepare_model": "prepare",
    "read_model": "model_file",
    "read_params": "params_file",
    "read_sbml": "sbml_import",
}
__all__ = ["ParameterSet", "SBMLImport", "SBMLSymbol", "builtin_dir", "builtin_names",
           "import_sbml", "load_model", "load_params", "prepare_model", "read_model",
           "read_params", "read_sbml"]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

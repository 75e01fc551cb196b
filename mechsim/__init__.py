"""mechsim: simulate drug mechanisms written as unit-checked ODE models.

>>> import mechsim
>>> model = mechsim.load_model("one_compartment")
>>> res = mechsim.simulate(model, "100 mg iv", until="1 day", every="1 day")
>>> res["C_mass"].to("mg/L").round(2)
<Quantity([10.  5.], 'milligram / liter')>

Names are imported on first use (PEP 562), so ``mechsim --version`` and ``--help`` do not
pay for importing scipy, sympy and pint.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("mechsim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

# public name -> module that defines it
_EXPORTS = {
    "load_model": "io", "load_params": "io", "ParameterSet": "io",
    "simulate": "simulation", "simulate_many": "batch", "BatchResult": "batch",
    "compile_model": "compile", "CompiledModel": "compile",
    "Regimen": "dosing", "Model": "model", "Result": "result", "Diagnostics": "result",
    "Quantity": "units", "ureg": "units",
    "Metric": "analysis", "dose_response": "analysis", "concentration_effect": "analysis",
    "local_sensitivity": "analysis", "sobol_indices": "analysis",
    "Population": "population", "VirtualPatients": "population",
    "load_population": "io.population_file",
    "Trial": "trial", "TrialArm": "trial", "TrialResult": "trial", "run_trial": "trial",
    "MechsimError": "errors", "ParseError": "errors", "UnitError": "errors",
    "ValidationError": "errors", "RegimenError": "errors", "SolverError": "errors",
    "MissingDependency": "errors", "NumericalWarning": "errors", "UnitWarning": "errors",
    "read_dataset": "dataset", "Dataset": "dataset", "fit": "estimation",
    "FitResult": "estimation", "check_model": "checks",
}
__all__ = [
    "BatchResult",
    "CompiledModel",
    "Dataset",
    "Diagnostics",
    "FitResult",
    "MechsimError",
    "Metric",
    "MissingDependency",
    "Model",
    "NumericalWarning",
    "ParameterSet",
    "ParseError",
    "Population",
    "Quantity",
    "Regimen",
    "RegimenError",
    "Result",
    "SolverError",
    "Trial",
    "TrialArm",
    "TrialResult",
    "UnitError",
    "UnitWarning",
    "ValidationError",
    "VirtualPatients",
    "__version__",
    "check_model",
    "compile_model",
    "concentration_effect",
    "dose_response",
    "fit",
    "load_model",
    "load_params",
    "load_population",
    "local_sensitivity",
    "read_dataset",
    "run_trial",
    "simulate",
    "simulate_many",
    "sobol_indices",
    "ureg",
]


def __getattr__(name: str):
    try:
        module = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'mechsim' has no attribute {name!r}") from None
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # next time without __getattr__
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))

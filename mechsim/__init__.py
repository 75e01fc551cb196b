"""mechsim: simulate drug mechanisms written as unit-checked ODE models.

>>> import mechsim
>>> model = mechsim.load_model("one_compartment")
>>> res = mechsim.simulate(model, "100 mg iv", until="1 day", every="1 day")
>>> res["C_mass"].to("mg/L").round(2)
<Quantity([10.  5.], 'milligram / liter')>
"""

from importlib.metadata import PackageNotFoundError, version

from .compile import CompiledModel, compile_model
from .dosing import Regimen
from .errors import MechsimError, ParseError, RegimenError, SolverError, UnitError, ValidationError
from .io import ParameterSet, load_model, load_params
from .model import Model
from .result import Diagnostics, Result
from .simulate import simulate
from .units import Quantity, ureg

try:
    __version__ = version("mechsim")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "CompiledModel",
    "Diagnostics",
    "MechsimError",
    "Model",
    "ParameterSet",
    "ParseError",
    "Quantity",
    "Regimen",
    "RegimenError",
    "Result",
    "SolverError",
    "UnitError",
    "ValidationError",
    "__version__",
    "compile_model",
    "load_model",
    "load_params",
    "simulate",
    "ureg",
]

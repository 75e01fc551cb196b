"""Optional dependencies: imported where a feature needs them, with one error if missing.

Each optional package belongs to an extra of ``pyproject.toml``; a missing one raises
:class:`~mechsim.errors.MissingDependency` (a MechsimError and an ImportError) whose message
names the feature and the command that installs it, so the command line prints one line.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from .errors import MissingDependency

__all__ = ["EXTRAS", "require"]

#: import name -> (pip distribution, mechsim extra that installs it)
EXTRAS = {
    "numba": ("numba", "fast"),
    "pandas": ("pandas", "pandas"),
    "libsbml": ("python-libsbml", "sbml"),
    "roadrunner": ("libroadrunner", "sbml"),
    "SALib": ("SALib", "sensitivity"),
    "lifelines": ("lifelines", "survival"),
    "distributed": ("distributed", "dask"),
}


def require(module: str, feature: str) -> ModuleType:
    """Import ``module`` (``"SALib.sample.sobol"``) or raise :class:`MissingDependency`
    saying that ``feature`` needs it and how to install it."""
    top = module.partition(".")[0]
    try:
        return import_module(module)
    except ImportError as exc:
        dist, extra = EXTRAS[top]
        install = f'pip install "mechsim[{extra}]" (or pip install {dist})'
        if exc.name is not None and exc.name.partition(".")[0] != top:
            # installed, but something it needs is not: reinstalling the extra fixes it
            raise MissingDependency(f"{feature} needs {dist}, which is installed but cannot "
                                    f"be imported ({exc}); reinstall it: {install}") from None
        raise MissingDependency(f"{feature} needs {dist}, which is not installed: "
                                f"{install}") from None

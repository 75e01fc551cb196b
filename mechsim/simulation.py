"""One run: a model under a dosing regimen, integrated between discontinuities.

The pipeline of every run (:mod:`mechsim.runspec` describes it, :mod:`mechsim.doseplan`
turns the regimen into jumps and infusions, :mod:`mechsim.solvers` integrates between them,
:func:`mechsim.result.build_result` assembles the answer).  A bolus is an exact jump in the
state; values are right-continuous (the value at a dose time includes the dose), and the
value just before each dose is kept as well.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np

from . import solvers
from .dosing import Regimen
from .errors import NumericalWarning
from .model import Model
from .result import Result, build_result
from .runspec import RunSpec
from .solvers import DEFAULT_METHOD

__all__ = ["run_one", "simulate"]


def simulate(model: Model | str, regimen: Regimen | str | None = None, *, until,
             params=None, overrides: Mapping | None = None, times=None, every=None,
             rtol: float = 1e-8, atol: float | Sequence[float] | None = None,
             method: str = DEFAULT_METHOD) -> Result:
    """Simulate a model under a dosing regimen.

    Parameters
    ----------
    model
        A :class:`~mechsim.model.Model`, a built-in model name or a model file path.
    regimen
        A :class:`~mechsim.dosing.Regimen` or its text (``"100 mg iv every 7 days x 4"``);
        None for no doses.
    until
        End time with a unit (``"12 weeks"`` or a Quantity).
    params
        Parameter file(s) (names, paths or :class:`ParameterSet`), applied in order over the
        model's defaults.
    overrides
        ``{name: value}`` applied last, e.g. ``{"CL": "0.3 L/day"}``.
    times, every
        Output times (Quantities or text), or an output spacing.  Default: 1001 evenly spaced
        times plus every discontinuity.  Results do not depend on this choice.
    rtol, atol
        Solver tolerances.  Default ``atol``: 1e-12 of each state's own unit (1e-12 nM for a
        state in nM, 1e-12 pg/mL for one in pg/mL).  A number or a sequence with one value per
        state is taken in the solver's canonical units (nmol, nM, L, g, day).
    method
        ``"auto"`` (default: the compiled ``"NDF"`` engine when numba is installed, else
        ``"LSODA"``), ``"NDF"``, ``"LSODA"``, ``"BDF"`` or ``"Radau"``; all use the
        analytic Jacobian.  A run the method cannot finish is redone by the next stiff
        method and reported (``result.diagnostics.failed_methods``, a NumericalWarning).

    Returns
    -------
    Result

    Examples
    --------
    >>> res = simulate("one_compartment", "100 mg iv", until="2 day", every="1 day")
    >>> res["C_mass"].to("mg/L").round(3)
    <Quantity([10.   5.   2.5], 'milligram / liter')>
    """
    spec = RunSpec.build(model, regimen, until=until, params=params, overrides=overrides,
                         times=times, every=every, rtol=rtol, atol=atol, method=method)
    return run_one(spec)


def run_one(spec: RunSpec, parameters: np.ndarray | None = None,
            regimen: Regimen | None = None) -> Result:
    """Integrate one run of ``spec`` (optionally with another parameter vector or regimen)
    and build its Result."""
    p = spec.parameters if parameters is None else parameters
    if regimen is not None:
        spec = spec.with_regimen(regimen)
    regimen = spec.regimen
    plan = spec.plan(p, regimen)
    grid = spec.grid(plan.breakpoints(spec.until))
    trajectory = solvers.solve(spec.problem(p, plan, grid), spec.method)
    if trajectory.failed_methods:
        first = trajectory.failed_methods[0]
        warnings.warn(f"{spec.compiled.name}: solver {first[0]} failed "
                      f"({first[1].split(';')[0]}); the result comes from "
                      f"{trajectory.method}, with the same tolerances",
                      NumericalWarning, stacklevel=3)
    return build_result(spec.compiled, p, plan, grid, trajectory, rtol=spec.rtol,
                        atol=spec.atol, atol_given=spec.atol_given, regimen=str(regimen))

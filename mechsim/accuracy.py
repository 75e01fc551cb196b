"""How far to trust a computed run: mass balance and the numerical-honesty warnings.

A run that was computed but deserves doubt is returned with a
:class:`~mechsim.errors.NumericalWarning` naming the state or law and the size: a state with
a unit that went negative by more than the error control allows, or a conservation law
(mass balance) that drifted.
"""

from __future__ import annotations

import warnings

import numpy as np

from .errors import NumericalWarning
from .units import is_undeclared, ureg

__all__ = ["RESIDUAL_FACTOR", "conservation_residuals", "warn_if_inaccurate"]


#: A conservation law may drift by this many times rtol before it is reported: each step
#: adds an error of up to rtol, and a run takes thousands of steps.
RESIDUAL_FACTOR = 1000.0


def warn_if_inaccurate(cm, out, residuals, rtol, atol_arr) -> None:
    """Warn (NumericalWarning) about states that went negative beyond the tolerance and
    conservation laws that drifted: the numbers are returned, with the reason to doubt them."""
    peak = np.max(np.abs(out), axis=1)
    lowest = np.min(out, axis=1)
    # Every method accepts a step when the weighted RMS norm over the n states of
    # error / (atol + rtol*|y|) is at most 1, so one state may carry up to sqrt(n) times its
    # own tolerance: a state that is truly 0 (a drug never given) can show noise that large.
    allowed = np.sqrt(len(atol_arr)) * (atol_arr + rtol * peak)
    # amounts and concentrations cannot be negative; a dimensionless state may be a signed
    # quantity (an effect, a deviation), so only states with a unit are checked
    # (a value of undeclared unit, from SBML, may be signed too)
    physical = np.array([not ureg.Quantity(1.0, u).dimensionless and not is_undeclared(u)
                         for u in cm.state_units], dtype=bool)
    for i in np.flatnonzero(physical & (lowest < -allowed)):
        warnings.warn(f"{cm.name}: state {cm.state_names[i]} went negative, down to "
                      f"{lowest[i]:.3g} (canonical units; tolerance {allowed[i]:.2g}); tighten "
                      "rtol/atol or check the rate laws", NumericalWarning, stacklevel=4)
    limit = max(RESIDUAL_FACTOR * rtol, 1e-9)
    for law, value in residuals.items():
        if value > limit:
            warnings.warn(f"{cm.name}: conservation law {law} drifted by {value:.2g} "
                          f"(relative; more than {limit:.2g}); tighten rtol/atol",
                          NumericalWarning, stacklevel=4)


def conservation_residuals(cm, p, plan, grid, states, y_initial, atol) -> dict[str, float]:
    """For each conservation law: the largest deviation over the run of
    ``law(t) - law(0) - dosed(t)``, relative to the largest of ``|law|`` and the dosed
    amount (see :class:`~mechsim.result.Diagnostics`)."""
    if not cm.conservation_laws:
        return {}
    volumes = np.asarray(cm.volumes(p), dtype=float)
    amounts = states * volumes[:, None]
    dosed = plan.dosed_amounts(grid, len(cm.state_names))
    out = {}
    for law in cm.conservation_laws:
        c = np.array(law.coefficients)
        total = c @ amounts
        start = c @ (y_initial * volumes)  # before any dose at t = 0
        inputs = c @ dosed
        # floor: what the tolerances allow the law to drift by, so rounding noise in a law
        # that holds nothing (no drug given) does not read as a 100 % error
        floor = float(np.abs(c * volumes) @ atol) * 1e3
        scale = max(np.max(np.abs(total)), np.max(np.abs(inputs)), floor, 1e-300)
        out[law.text] = float(np.max(np.abs(total - start - inputs)) / scale)
    return out

"""Closed-form pharmacokinetics and a unit-aware ``assert_allclose``, for tests and teaching.

All functions take plain floats in one consistent set of units (for example nmol, L, day) and
return concentrations in amount/volume of the same set.
"""

from __future__ import annotations

import numpy as np
import pint

__all__ = [
    "accumulation_ratio",
    "assert_quantity_allclose",
    "bolus_1cpt",
    "infusion_1cpt",
    "oral_1cpt",
    "superpose",
]


def bolus_1cpt(t, dose: float, volume: float, k: float):
    """C(t) after an IV bolus at t = 0: ``dose/V * exp(-k t)`` (0 before the dose)."""
    t = np.asarray(t, dtype=float)
    return np.where(t >= 0, dose / volume * np.exp(-k * np.clip(t, 0, None)), 0.0)


def infusion_1cpt(t, rate: float, duration: float, volume: float, k: float):
    """C(t) for a constant-rate infusion on [0, duration): rises to ``rate/(k V)``, then decays."""
    t = np.asarray(t, dtype=float)
    during = rate / (k * volume) * (1 - np.exp(-k * np.clip(t, 0, duration)))
    return np.where(t <= duration, during, during * np.exp(-k * (t - duration)))


def oral_1cpt(t, dose: float, volume: float, k: float, ka: float, f: float = 1.0,
              lag: float = 0.0):
    """Bateman function: first-order absorption (ka) with bioavailability and lag time."""
    t = np.asarray(t, dtype=float) - lag
    tt = np.clip(t, 0, None)
    if np.isclose(ka, k):
        c = f * dose / volume * k * tt * np.exp(-k * tt)
    else:
        c = f * dose * ka / (volume * (ka - k)) * (np.exp(-k * tt) - np.exp(-ka * tt))
    return np.where(t >= 0, c, 0.0)


def superpose(single, dose_times, t):
    """Linear superposition: ``sum_i single(t - t_i)`` for a response ``single(t)``."""
    t = np.asarray(t, dtype=float)
    return sum(np.where(t >= ti, single(t - ti), 0.0) for ti in dose_times)


def accumulation_ratio(k: float, tau: float) -> float:
    """Steady-state accumulation for doses every ``tau``: ``1 / (1 - exp(-k tau))``."""
    return 1.0 / (1.0 - np.exp(-k * tau))


def assert_quantity_allclose(actual, desired, *, rtol: float = 1e-7, atol=0.0) -> None:
    """``numpy.testing.assert_allclose`` for pint Quantities (units converted first)."""
    if isinstance(desired, pint.Quantity):
        if not isinstance(actual, pint.Quantity):
            raise AssertionError(f"expected a Quantity in {desired.units}, got {actual!r}")
        actual = actual.to(desired.units).magnitude
        if isinstance(atol, pint.Quantity):
            atol = atol.to(desired.units).magnitude
        desired = desired.magnitude
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=atol)

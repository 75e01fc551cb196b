"""The likelihood of observations under a residual error model, and its exact gradient.

Each observation ``y`` of an output with prediction ``f`` is normal with variance

    additive       s2 = a**2
    proportional   s2 = (b f)**2
    combined       s2 = a**2 + (b f)**2

``a`` in the unit of the observations, ``b`` a fraction.  The objective is
``-2 log L = sum(log(2 pi s2) + (y - f)**2 / s2)``, the number NONMEM reports as the
objective function value up to its constant ``n log(2 pi)``, which is kept here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ValidationError
from ..io.params_file import ERROR_KINDS

__all__ = ["ERROR_KINDS", "ErrorModel", "minus_two_log_likelihood"]

#: a proportional error at a prediction of exactly 0 would be a variance of 0: floor it
_TINY = 1e-300


@dataclass(frozen=True)
class ErrorModel:
    """The residual error of one output."""

    output: str
    kind: str

    def __post_init__(self):
        if self.kind not in ERROR_KINDS:
            raise ValidationError(f"error model of {self.output}: {self.kind!r} is not one of "
                                  f"{', '.join(ERROR_KINDS)}")

    @property
    def parameters(self) -> tuple[str, ...]:
        """Names of the error parameters: ``C_mass.additive``, ``C_mass.proportional``."""
        return tuple(f"{self.output}.{name}" for name in ERROR_KINDS[self.kind])

    def variance(self, f: np.ndarray, values: dict[str, float]):
        """``(s2, d s2/d f, {parameter: d s2 / d ln parameter})`` at predictions ``f``."""
        s2 = np.full_like(f, _TINY)
        d_f = np.zeros_like(f)
        d_log = {}
        for kind, name in zip(ERROR_KINDS[self.kind], self.parameters):
            v = values[name]
            if kind == "additive":
                s2 = s2 + v * v
                d_log[name] = np.full_like(f, 2 * v * v)
            else:
                s2 = s2 + (v * f) ** 2
                d_f = d_f + 2 * v * v * f
                d_log[name] = 2 * (v * f) ** 2
        return s2, d_f, d_log

    def curvature(self, f: np.ndarray, values: dict[str, float]):
        """``(d2 s2 / d f2, {parameter: d2 s2 / (d f d ln parameter)})`` at predictions
        ``f``: what the exact gradient of a population objective needs beyond
        :meth:`variance`."""
        d_ff = np.zeros_like(f)
        d_f_log = {}
        for kind, name in zip(ERROR_KINDS[self.kind], self.parameters):
            v = values[name]
            if kind == "additive":
                d_f_log[name] = np.zeros_like(f)
            else:
                d_ff = d_ff + 2 * v * v
                d_f_log[name] = 4 * v * v * f
        return d_ff, d_f_log


def minus_two_log_likelihood(y: np.ndarray, f: np.ndarray, df: np.ndarray,
                             errors: list[ErrorModel], which: np.ndarray,
                             values: dict[str, float]):
    """``(-2 log L, d/d(model parameters), {error parameter: d/d ln parameter}, s2)``.

    ``y``, ``f`` (observations, predictions) and ``which`` (index into ``errors`` of each
    observation's output) are flat arrays; ``df`` is (observations, k) of d f / d x_j."""
    total = 0.0
    grad = np.zeros(df.shape[1])
    grad_error = {}
    s2_all = np.empty_like(f)
    for e, error in enumerate(errors):
        rows = which == e
        yy, ff = y[rows], f[rows]
        s2, ds2_df, ds2_dlog = error.variance(ff, values)
        r = yy - ff
        total += float(np.sum(np.log(2 * math.pi * s2) + r * r / s2))
        # d/df of log s2 + r^2/s2, with dr/df = -1
        d_obj_df = ds2_df / s2 * (1 - r * r / s2) - 2 * r / s2
        grad += d_obj_df @ df[rows]
        for name, d in ds2_dlog.items():
            grad_error[name] = float(np.sum(d / s2 * (1 - r * r / s2)))
        s2_all[rows] = s2
    return total, grad, grad_error, s2_all

"""The two numerical rules of non-compartmental analysis, on plain arrays: areas by the
linear-up/log-down trapezoid, and the terminal slope by best fit (Phoenix's tie rule).
:mod:`mechsim.analysis.nca` applies them to a profile with doses and units."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["ADJ_R2_TOLERANCE", "MIN_POINTS", "TerminalFit", "auc_segments",
           "best_fit_lambda_z"]

#: Fits within this much of the best adjusted R^2 count as equally good (Phoenix).
ADJ_R2_TOLERANCE = 1e-4
#: The fewest points a terminal fit may use.
MIN_POINTS = 3


def auc_segments(t: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AUC and AUMC of each segment between consecutive samples, linear-up/log-down.

    Falling segments with both ends > 0 use the log rule (exact for an exponential between
    the two points), all others the linear rule.  A zero-length segment (a dose's jump) is 0.
    """
    t, c = np.asarray(t, dtype=float), np.asarray(c, dtype=float)
    t1, t2, c1, c2 = t[:-1], t[1:], c[:-1], c[1:]
    dt = t2 - t1
    auc = (c1 + c2) / 2 * dt
    aumc = (t1 * c1 + t2 * c2) / 2 * dt
    down = (c1 > c2) & (c2 > 0) & (dt > 0)
    if down.any():
        a, b, s, u, h = c1[down], c2[down], t1[down], t2[down], dt[down]
        log = np.log(a / b)
        auc[down] = (a - b) * h / log
        # integral of t*C over the segment with C = a exp(-(log/h)(t - s))
        aumc[down] = h * (s * a - u * b) / log + h * h * (a - b) / log ** 2
    return auc, aumc


@dataclass(frozen=True)
class TerminalFit:
    """The chosen terminal fit: rate constant, points used, adjusted R^2, first and last
    time used."""

    lambda_z: float
    points: int
    adj_r2: float
    first: float
    last: float


def best_fit_lambda_z(t: np.ndarray, c: np.ndarray) -> tuple[TerminalFit | None, str]:
    """Best-fit terminal slope over the last k >= 3 of the points ``(t, c)`` (already the
    positive samples after Cmax, in time order).  Returns (fit, "") or (None, reason).

    All fits at once from running sums taken from the end (each sum over the last k points),
    centred on the last point so the sums do not lose digits on long profiles.
    """
    t, c = np.asarray(t, dtype=float), np.asarray(c, dtype=float)
    n = t.size
    if n < MIN_POINTS:
        return None, (f"lambda_z not estimable: {n} positive sample{'s' * (n != 1)} after "
                      f"Cmax ({MIN_POINTS} needed)")
    x = (t - t[-1])[::-1]
    y = (np.log(c) - np.log(c[-1]))[::-1]
    k = np.arange(1, n + 1, dtype=float)
    sx, sy = np.cumsum(x), np.cumsum(y)
    sxx = np.cumsum(x * x) - sx * sx / k
    sxy = np.cumsum(x * y) - sx * sy / k
    syy = np.cumsum(y * y) - sy * sy / k
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = sxy / sxx
        r2 = np.where(syy > 0, sxy * sxy / (sxx * syy), np.nan)
        adj = 1 - (1 - r2) * (k - 1) / (k - 2)
    usable = (k >= MIN_POINTS) & (sxx > 0) & np.isfinite(adj) & (slope < 0)
    if not usable.any():
        return None, "lambda_z not estimable: the samples after Cmax do not decline"
    best = adj[usable].max()
    # the most points among the fits within the tolerance of the best (k ascends)
    chosen = int(np.flatnonzero(usable & (adj >= best - ADJ_R2_TOLERANCE))[-1])
    points = chosen + 1
    return TerminalFit(float(-slope[chosen]), points, float(adj[chosen]), float(t[n - points]),
                float(t[-1])), ""

"""Time-to-event summaries: Kaplan-Meier curves, medians with confidence intervals, Cox
hazard ratios and response-rate intervals.

The survival statistics come from lifelines (``pip install "mechsim[survival]"``), a
maintained library with the standard estimators: Kaplan-Meier with Greenwood
(exponential) confidence bands and a Cox proportional-hazards fit (Efron ties).  Response
rates use the exact Clopper-Pearson interval from scipy.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import ValidationError
from ..optional import require

__all__ = ["HazardRatio", "KaplanMeier", "hazard_ratio", "kaplan_meier", "proportion"]


def require_lifelines():
    """lifelines, or a one-line error that says how to install it."""
    return require("lifelines", "survival summaries (Kaplan-Meier, Cox hazard ratios)")


def _check(times, events) -> tuple[np.ndarray, np.ndarray]:
    t = np.asarray(times, dtype=float)
    e = np.asarray(events, dtype=bool)
    if t.ndim != 1 or t.shape != e.shape or t.size == 0:
        raise ValidationError("times and events must be 1-D arrays of the same, non-zero "
                              "length")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise ValidationError("event or censoring times must be finite and non-negative")
    return t, e


@dataclass(frozen=True, eq=False)
class KaplanMeier:
    """A Kaplan-Meier curve: survival after each time with pointwise confidence bands.

    ``median`` is ``inf`` if the curve never falls to 0.5; a CI bound is ``inf`` when the
    band does not reach 0.5 inside the follow-up.
    """

    time: np.ndarray = field(repr=False)
    survival: np.ndarray = field(repr=False)
    lower: np.ndarray = field(repr=False)
    upper: np.ndarray = field(repr=False)
    median: float
    median_lower: float
    median_upper: float
    n: int
    events: int
    alpha: float = 0.05
    #: every patient's time (event or censoring), sorted: what the numbers at risk count
    observed: np.ndarray = field(default_factory=lambda: np.empty(0), repr=False)

    def at_risk(self, times) -> np.ndarray:
        """Patients still at risk at each of ``times``: neither progressed nor censored
        before it (the numbers printed under a Kaplan-Meier figure)."""
        times = np.asarray(times, dtype=float)
        return self.observed.size - np.searchsorted(self.observed, times, side="left")


def kaplan_meier(times, events, *, alpha: float = 0.05) -> KaplanMeier:
    """Kaplan-Meier estimate of ``times`` (event or censoring) with ``events`` flags."""
    t, e = _check(times, events)
    lifelines = require_lifelines()
    from lifelines.utils import median_survival_times

    kmf = lifelines.KaplanMeierFitter(alpha=alpha).fit(t, e)
    ci = kmf.confidence_interval_survival_function_
    med_ci = median_survival_times(ci)
    return KaplanMeier(
        time=kmf.survival_function_.index.to_numpy(dtype=float),
        survival=kmf.survival_function_.iloc[:, 0].to_numpy(dtype=float),
        lower=ci.iloc[:, 0].to_numpy(dtype=float), upper=ci.iloc[:, 1].to_numpy(dtype=float),
        median=float(kmf.median_survival_time_),
        median_lower=float(med_ci.iloc[0, 0]), median_upper=float(med_ci.iloc[0, 1]),
        n=int(t.size), events=int(e.sum()), alpha=alpha, observed=np.sort(t))


@dataclass(frozen=True)
class HazardRatio:
    """Cox hazard ratio of a treated group against a control group, with its CI and the
    Wald p-value."""

    value: float
    lower: float
    upper: float
    p: float
    alpha: float = 0.05


def hazard_ratio(times, events, treated, *, alpha: float = 0.05) -> HazardRatio:
    """Cox proportional-hazards ratio of ``treated`` (True) against the rest."""
    t, e = _check(times, events)
    group = np.asarray(treated, dtype=bool)
    if group.shape != t.shape:
        raise ValidationError("treated must flag every patient")
    if group.all() or not group.any():
        raise ValidationError("a hazard ratio needs patients in both groups")
    if not e.any():
        raise ValidationError("a hazard ratio needs at least one event")
    lifelines = require_lifelines()
    import pandas as pd

    frame = pd.DataFrame({"T": t, "E": e, "treated": group.astype(float)})
    cox = lifelines.CoxPHFitter(alpha=alpha).fit(frame, duration_col="T", event_col="E")
    row = cox.summary.loc["treated"]
    level = f"{round(100 * (1 - alpha))}%"
    return HazardRatio(value=float(row["exp(coef)"]),
                       lower=float(row[f"exp(coef) lower {level}"]),
                       upper=float(row[f"exp(coef) upper {level}"]),
                       p=float(row["p"]), alpha=alpha)


def proportion(successes: int, n: int, *, alpha: float = 0.05) -> tuple[float, float, float]:
    """A rate and its exact (Clopper-Pearson) confidence interval."""
    from scipy.stats import binomtest

    if n <= 0:
        raise ValidationError("a rate needs at least one patient")
    ci = binomtest(int(successes), int(n)).proportion_ci(confidence_level=1 - alpha,
                                                         method="exact")
    return successes / n, float(ci.low), float(ci.high)

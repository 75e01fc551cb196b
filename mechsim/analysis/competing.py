"""Competing events of a virtual trial: PFS events that the disease marker does not show.

A progression-free-survival event is progression *or death*, and in myeloma progression is
not only a rise of serum M-protein: new bone lesions, plasmacytomas or hypercalcaemia count
too.  A :class:`CompetingEvent` is such an event with a hazard (a rate per time), either
constant (death without progression) or proportional to a model output relative to its
value at time 0 (progression seen by other criteria, in proportion to tumour burden).

Each patient draws one unit-exponential number E per event; the event happens at the first
time the cumulative hazard H(t) = rate * integral of scale(u) du reaches E (inverse
transform sampling of a non-homogeneous Poisson process's first event).  H is integrated
with the trapezoid rule on the trial's assessment grid and the crossing interpolated
linearly, so the time does not snap to the grid.  The draws come from the arm's seed, so
twin (paired) arms give a patient the same draws: with a constant hazard both arms see the
same death time, and a treatment that lowers the tumour burden delays the burden-driven
event.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pint

from ..errors import ValidationError
from ..units import parse_quantity, ureg

__all__ = ["CompetingEvent", "first_event_times"]


@dataclass(frozen=True)
class CompetingEvent:
    """An event that ends progression-free survival, other than the marker's progression.

    ``rate`` is a hazard (``"0.01 1/month"``); with ``scale_with`` (an output name) the
    hazard at time t is ``rate * output(t) / output(0)``.  ``source`` or ``note`` says where
    the rate comes from.
    """

    name: str
    rate: pint.Quantity | str
    scale_with: str | None = None
    source: str = ""
    note: str = ""

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValidationError("a competing event needs a name")
        rate = self.rate
        if not isinstance(rate, pint.Quantity):
            rate = parse_quantity(rate, what=f"competing event {self.name!r}: rate")
        if rate.dimensionality != (1 / ureg.day).dimensionality:
            raise ValidationError(f"competing event {self.name!r}: rate must be a hazard per "
                                  f"time such as '0.01 1/month', got {self.rate!r}")
        if not rate.magnitude >= 0 or not math.isfinite(rate.magnitude):
            raise ValidationError(f"competing event {self.name!r}: rate must be finite and "
                                  f">= 0, got {self.rate!r}")
        if not (self.source or self.note):
            raise ValidationError(f"competing event {self.name!r}: say where the rate comes "
                                  "from (source or note)")
        object.__setattr__(self, "rate", rate)

    @property
    def per_day(self) -> float:
        return float(self.rate.to("1/day").magnitude)


def first_event_times(t: np.ndarray, rate_per_day: float, draws: np.ndarray,
                      scale: np.ndarray | None = None) -> np.ndarray:
    """Event time (days, ``inf`` if none by ``t[-1]``) of each patient.

    ``t`` (times,) in days; ``draws`` (patients,) unit-exponential numbers; ``scale``
    (patients, times) the hazard's multiplier, ``None`` for a constant hazard.  Values that
    are not finite (a run that stopped early) end that patient's hazard there.
    """
    draws = np.asarray(draws, dtype=float)
    if scale is None:
        if rate_per_day == 0:
            return np.full(draws.shape, math.inf)
        out = t[0] + draws / rate_per_day
        return np.where(out <= t[-1], out, math.inf)
    scale = np.maximum(scale, 0.0)  # NaN (a stopped run) stays NaN
    steps = 0.5 * (scale[:, 1:] + scale[:, :-1]) * np.diff(t)[None, :] * rate_per_day
    steps = np.where(np.isfinite(steps), steps, np.inf)  # hazard unknown: no event after it
    cumulative = np.concatenate([np.zeros((scale.shape[0], 1)), np.cumsum(steps, axis=1)],
                                axis=1)
    reached = (cumulative >= draws[:, None]) & np.isfinite(cumulative)
    hit = reached.any(axis=1)
    k = np.where(hit, reached.argmax(axis=1), 0)
    out = np.full(draws.shape, math.inf)
    rows = np.nonzero(hit & (k > 0))[0]
    kk = k[rows]
    before, after = cumulative[rows, kk - 1], cumulative[rows, kk]
    frac = (draws[rows] - before) / (after - before)
    out[rows] = t[kk - 1] + np.clip(frac, 0.0, 1.0) * (t[kk] - t[kk - 1])
    out[hit & (k == 0)] = t[0]
    return out

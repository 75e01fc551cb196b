"""Disease endpoints of virtual trials: the interface, and myeloma's (IMWG, on M-protein).

A virtual trial (:mod:`mechsim.trial`) knows nothing about a disease: it asks its
:class:`Endpoints` which output to follow, when each patient progressed, how far each one
responded, and which response rates to report.  :class:`MyelomaIMWG` implements them for
myeloma; a second disease is a second class with the same five members, registered in
:data:`ENDPOINTS` so that scenario files can name it.

Myeloma endpoints from a serum M-protein time course (IMWG criteria simplified to M-protein):

* response: best reduction from baseline; partial response (PR) >= 50 %, very good partial
  response (VGPR) >= 90 %, minimal response (MR) >= 25 %.
* progression: M-protein up >= 25 % from its lowest value so far **and** by >= 5 g/L.
  The trial adds competing events (death, other progression; :mod:`mechsim.analysis.competing`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import ClassVar, Protocol

import numpy as np
import pint

from ..errors import ValidationError
from ..units import ureg

__all__ = ["ENDPOINTS", "Endpoints", "MyelomaIMWG", "Response", "best_response",
           "progression_time", "progression_times", "response_category"]


class Response(StrEnum):
    VGPR = "VGPR"
    PR = "PR"
    MR = "MR"
    SD = "SD"  # stable disease or less

    def at_least(self, other: Response) -> bool:
        order = [Response.SD, Response.MR, Response.PR, Response.VGPR]
        return order.index(self) >= order.index(other)


def _magnitudes(time: pint.Quantity, m_protein: pint.Quantity) -> tuple[np.ndarray, np.ndarray]:
    try:
        t = np.asarray(time.to(ureg.day).magnitude, dtype=float)
        m = np.asarray(m_protein.to("g/L").magnitude, dtype=float)
    except (AttributeError, pint.DimensionalityError):
        raise ValidationError("time must be a time Quantity and M-protein a mass "
                              "concentration Quantity (g/L)") from None
    if t.shape != m.shape or t.ndim != 1 or t.size < 2:
        raise ValidationError("time and M-protein must be 1-D arrays of equal length >= 2")
    return t, m


def best_response(m_protein: pint.Quantity) -> float:
    """Largest fractional reduction of M-protein from its first value (0 if it never falls)."""
    m = np.asarray(m_protein.to("g/L").magnitude, dtype=float)
    return float(max(0.0, 1.0 - m.min() / m[0]))


def response_category(reduction: float) -> Response:
    """IMWG category of a best fractional reduction."""
    if reduction >= 0.9:
        return Response.VGPR
    if reduction >= 0.5:
        return Response.PR
    if reduction >= 0.25:
        return Response.MR
    return Response.SD


def progression_time(time: pint.Quantity, m_protein: pint.Quantity, *,
                     relative: float = 0.25, absolute: pint.Quantity | str = "5 g/L"
                     ) -> pint.Quantity:
    """First time M-protein exceeds its running nadir by ``relative`` and by ``absolute``.

    The crossing is interpolated linearly between output times.  Returns ``inf`` days if
    there is no progression within the time course.
    """
    t, m = _magnitudes(time, m_protein)
    rise = ureg.Quantity(absolute).to("g/L").magnitude
    return ureg.Quantity(float(progression_times(t, m[None, :], relative, rise)[0]), ureg.day)


def progression_times(t: np.ndarray, m: np.ndarray, relative: float = 0.25,
                      rise: float = 5.0) -> np.ndarray:
    """:func:`progression_time` for many patients at once, on plain numbers.

    ``t`` (times,) in days, ``m`` (patients, times) in g/L, ``rise`` in g/L.  Returns the
    progression time of each patient in days, ``inf`` where there is none.
    """
    m = np.atleast_2d(m)
    nadir = np.minimum.accumulate(m, axis=1)
    threshold = np.maximum(nadir * (1 + relative), nadir + rise)
    above = m >= threshold
    hit = above.any(axis=1)
    i = np.where(hit, above.argmax(axis=1), 0)
    rows = np.arange(m.shape[0])
    out = np.full(m.shape[0], math.inf)
    first = hit & (i == 0)
    out[first] = t[0]
    later = hit & (i > 0)
    r, k = rows[later], i[later]
    # the running nadir is fixed between k-1 and k while M rises: interpolate the crossing
    level = threshold[r, k - 1]
    step = m[r, k] - m[r, k - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        frac = np.where(step != 0, (level - m[r, k - 1]) / step, 1.0)
    out[later] = t[k - 1] + np.clip(frac, 0.0, 1.0) * (t[k] - t[k - 1])
    return out


class Endpoints(Protocol):
    """What a virtual trial needs to know about a disease (see the module docstring)."""

    #: the name scenario files use (``[trial] endpoints = "..."``)
    name: ClassVar[str]
    #: the output followed, and the unit its values are given in
    marker: str
    unit: str
    #: (label in summaries, key of published values, category that counts as a response)
    rates: ClassVar[tuple[tuple[str, str, object], ...]]

    def progression_times(self, t: np.ndarray, values: np.ndarray) -> np.ndarray:
        """Event time (days, ``inf`` for none) of each patient: ``t`` (times,) in days,
        ``values`` (patients, times) of the marker in :attr:`unit`."""

    def best_response(self, t: np.ndarray, values: np.ndarray,
                      until: np.ndarray) -> np.ndarray:
        """Each patient's best response up to ``until`` (days, per patient)."""

    def category(self, response: float):
        """The response category of one best response (with ``at_least``)."""


@dataclass(frozen=True)
class MyelomaIMWG:
    """Myeloma endpoints on serum M-protein (IMWG, simplified to M-protein): best response
    as the largest fall from baseline (PR >= 50 %, VGPR >= 90 %), progression as a rise
    >= 25 % and >= ``absolute`` above the running nadir."""

    name: ClassVar[str] = "myeloma_imwg"
    rates: ClassVar = (("ORR (>= PR)", "orr", Response.PR),
                       (">= VGPR", "vgpr", Response.VGPR))
    marker: str = "M"
    unit: str = "g/L"
    relative: float = 0.25
    absolute_g_per_l: float = 5.0

    def progression_times(self, t: np.ndarray, values: np.ndarray) -> np.ndarray:
        return progression_times(t, values, self.relative, self.absolute_g_per_l)

    def best_response(self, t: np.ndarray, values: np.ndarray,
                      until: np.ndarray) -> np.ndarray:
        seen = np.where(t[None, :] <= until[:, None], values, np.inf).min(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            reduction = np.where(values[:, 0] > 0, 1.0 - seen / values[:, 0], 0.0)
        return np.maximum(reduction, 0.0)

    def category(self, response: float) -> Response:
        return response_category(response)


#: Endpoints by the name a scenario file gives (``[trial] endpoints``).
ENDPOINTS: dict[str, type] = {MyelomaIMWG.name: MyelomaIMWG}

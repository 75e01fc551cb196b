"""Exposure and response metrics over a Result, from a small safe text syntax.

A metric is ``NAME(OUTPUT[, ARG, ...])`` where OUTPUT is a state or observable and each ARG
is a quantity with its unit.  Parsed with a regular expression and pint, never evaluated.

================================  ==========================================================
``value(C_mass, 28 day)``          value at a time (right-continuous: includes doses then)
``max(C_mass)``, ``min(M)``        largest / smallest value; optional window ``, a, b``
``nadir(M)``                       smallest value (same as min)
``time_of_nadir(M)``               time of the smallest value
``time_of_max(C_mass)``            time of the largest value
``auc(C_mass, 0 day, 28 day)``     area under the curve over a window (whole run if omitted)
``mean(IL6, 4 weeks, 12 weeks)``   time-average over a window
``trough(C_mass, 28 day)``         value just before the dose at that time
``pct_baseline(IL6, 12 weeks)``    value at a time as % of the value at t = 0
``time_above(RO, 0.9)``            total time above a threshold (optional window)
``time_below(M, 9 g/L)``           total time below a threshold (optional window)
================================  ==========================================================

Non-compartmental analysis of a concentration output (:mod:`mechsim.analysis.nca`: times
from the first dose, in the model's time unit; NaN when not estimable):

================================  ==========================================================
``cmax(C_mass)``, ``tmax(C_mass)``  largest concentration and its time since the first dose
``clast(C)``, ``tlast(C)``         last positive concentration and its time
``auclast(C)``, ``aucinf(C)``      AUC to Tlast, and extrapolated to infinity
``lambda_z(C)``                    terminal rate constant (best fit)
``half_life(C)`` or ``thalf(C)``   terminal half-life, ln 2 / lambda_z
``cl(C_mass)``, ``vz(C_mass)``     Dose/AUCinf and Dose/(lambda_z AUCinf) (CL/F, Vz/F after
                                   extravascular doses); the dose is the run's total
``auc_tau(C, 28 day)``             AUC over the dosing interval that starts with the dose at
                                   that time; also ``cmax_tau``, ``cmin_tau``, ``tmax_tau``
================================  ==========================================================

>>> m = Metric.parse("auc(C_mass, 0 day, 2 day)")
>>> str(m)
'auc(C_mass, 0 d, 2 d)'
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pint

from ..errors import ValidationError
from ..units import format_quantity, format_unit, parse_quantity, split_output, ureg
from .nca_sources import nca_of_result

__all__ = ["METRICS", "NCA_INTERVAL_METRICS", "NCA_METRICS", "Metric", "MetricSet"]

# NAME(OUTPUT, ARG, ...); OUTPUT may ask for a unit: C_mass[ng/mL]
_CALL = re.compile(r"^\s*([a-z_]+)\s*\(\s*([A-Za-z_]\w*\s*(?:\[[^\]]*\])?)\s*(?:,(.*))?\)\s*$")

# name -> (number of arguments allowed, description); arguments are quantities
METRICS = {
    "value": ((1,), "value at a time"),
    "max": ((0, 2), "largest value (optionally within a window)"),
    "min": ((0, 2), "smallest value (optionally within a window)"),
    "nadir": ((0, 2), "smallest value"),
    "time_of_nadir": ((0, 2), "time of the smallest value"),
    "time_of_max": ((0, 2), "time of the largest value"),
    "auc": ((0, 2), "area under the curve"),
    "mean": ((0, 2), "time-averaged value"),
    "trough": ((1,), "value just before the dose given at a time"),
    "pct_baseline": ((1,), "value at a time as % of the value at t = 0"),
    "time_above": ((1, 3), "time spent above a threshold"),
    "time_below": ((1, 3), "time spent below a threshold"),
    # non-compartmental analysis (concentrations only)
    "cmax": ((0,), "NCA: largest concentration"),
    "tmax": ((0,), "NCA: time of the largest concentration since the first dose"),
    "clast": ((0,), "NCA: last positive concentration"),
    "tlast": ((0,), "NCA: time of the last positive concentration"),
    "auclast": ((0,), "NCA: AUC from the first dose to Tlast"),
    "aucinf": ((0,), "NCA: AUC extrapolated to infinity"),
    "lambda_z": ((0,), "NCA: terminal rate constant"),
    "half_life": ((0,), "NCA: terminal half-life"),
    "thalf": ((0,), "NCA: terminal half-life"),
    "cl": ((0,), "NCA: clearance, Dose/AUCinf (CL/F for extravascular doses)"),
    "vz": ((0,), "NCA: terminal volume, Dose/(lambda_z AUCinf) (Vz/F extravascular)"),
    "auc_tau": ((1,), "NCA: AUC over the dosing interval starting at a dose"),
    "cmax_tau": ((1,), "NCA: largest concentration in a dosing interval"),
    "cmin_tau": ((1,), "NCA: smallest concentration in a dosing interval"),
    "tmax_tau": ((1,), "NCA: time of the largest concentration since the interval's dose"),
}
#: metric -> attribute of the whole profile's NCAResult
_NCA_WHOLE = {"cmax": "cmax", "tmax": "tmax", "clast": "clast", "tlast": "tlast",
              "auclast": "auclast", "aucinf": "aucinf", "lambda_z": "lambda_z",
              "half_life": "half_life", "thalf": "half_life", "cl": "cl", "vz": "vz"}
#: metric -> attribute of an IntervalNCA
NCA_INTERVAL_METRICS = {"auc_tau": "auctau", "cmax_tau": "cmax", "cmin_tau": "cmin",
                        "tmax_tau": "tmax"}
#: the metrics that need a concentration output
NCA_METRICS = frozenset(_NCA_WHOLE) | frozenset(NCA_INTERVAL_METRICS)
_DAY = ureg.day.dimensionality
#: A profile whose range is below this fraction of its size does not move (the solver's
#: error is about 1e-8 of each value): it has no time of nadir or of maximum.
FLAT = 1e-6
#: the NCA metrics in words, for axis labels
_NCA_WORDS = {"cmax": "Cmax", "tmax": "Tmax", "clast": "Clast", "tlast": "Tlast",
              "auclast": "AUClast", "aucinf": "AUCinf", "lambda_z": "terminal rate constant",
              "half_life": "terminal half-life", "thalf": "terminal half-life",
              "cl": "clearance (dose/AUCinf)", "vz": "terminal volume Vz",
              "auc_tau": "AUC over the dosing interval", "cmax_tau": "Cmax in the interval",
              "cmin_tau": "Cmin in the interval", "tmax_tau": "Tmax in the interval"}


@dataclass(frozen=True)
class Metric:
    """One parsed metric; ``metric(result)`` returns a pint Quantity."""

    name: str
    output: str
    args: tuple[pint.Quantity, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Metric:
        if not isinstance(text, str):
            raise ValidationError(f"a metric must be text such as 'max(C_mass)', got {text!r}")
        match = _CALL.match(text)
        if not match:
            raise ValidationError(f"metric {text!r}: expected NAME(OUTPUT, ARG, ...) such as "
                                  "'auc(C_mass, 0 day, 28 day)'")
        name, output, rest = match.groups()
        if name not in METRICS:
            raise ValidationError(f"metric {text!r}: unknown metric {name!r} (known: "
                                  f"{', '.join(METRICS)})")
        parts = [a.strip() for a in rest.split(",")] if rest is not None else []
        if any(not p for p in parts):
            raise ValidationError(f"metric {text!r}: empty argument")
        args = tuple(parse_quantity(p, what=f"metric {text!r} argument") for p in parts)
        bare, unit = split_output(output)
        return cls(name, bare if unit is None else f"{bare}[{format_unit(unit)}]", args)

    @property
    def bare_output(self) -> str:
        """The output's name without a unit asked for (``C_mass`` of ``C_mass[ng/mL]``)."""
        return split_output(self.output)[0]

    def __post_init__(self):
        counts = METRICS[self.name][0]
        if len(self.args) not in counts:
            raise ValidationError(f"metric {self}: {self.name} takes "
                                  f"{' or '.join(map(str, counts))} argument(s) after the "
                                  f"output, got {len(self.args)}")
        times = self.args if self.name not in ("time_above", "time_below") else self.args[1:]
        for q in times:
            if q.dimensionality != _DAY:
                raise ValidationError(f"metric {self}: {format_quantity(q)} must be a time")

    def __str__(self) -> str:
        args = "".join(f", {format_quantity(q)}" for q in self.args)
        return f"{self.name}({self.output}{args})"

    def describe(self, labels: Mapping[str, str] | None = None) -> str:
        """The metric in words, for axis labels, with the output's label when ``labels``
        (a model's) has one: ``mean(IL6_rel, 0 d, 12 week)`` -> ``'time-averaged IL-6
        relative to baseline from 0 d to 12 week'``."""
        q = [format_quantity(a) for a in self.args]
        out = (labels or {}).get(self.bare_output, self.bare_output)

        def window(args):
            return f" from {args[0]} to {args[1]}" if args else ""

        n = self.name
        if n in NCA_METRICS:
            return f"{_NCA_WORDS[n]} of {out}" + (f" from the dose at {q[0]}" if q else "")
        if n == "value":
            return f"{out} at {q[0]}"
        if n == "pct_baseline":
            return f"{out} at {q[0]} as % of its value at time 0"
        if n == "trough":
            return f"{out} just before the dose at {q[0]}"
        if n in ("time_above", "time_below"):
            side = "above" if n == "time_above" else "below"
            return f"time with {out} {side} {q[0]}{window(q[1:])}"
        words = {"max": "largest", "min": "smallest", "nadir": "nadir of",
                 "time_of_nadir": "time of the smallest", "time_of_max": "time of the largest",
                 "auc": "area under the curve of", "mean": "time-averaged"}[n]
        return f"{words} {out}{window(q)}"

    def __call__(self, result) -> pint.Quantity:
        # values with the left limit inserted before every dose jump
        t, series = result.series(self.output)
        unit = series.units
        y = np.asarray(series.magnitude, dtype=float)
        n = self.name
        if n in NCA_METRICS:
            return self._nca(result)
        if n in ("value", "pct_baseline"):
            at = self._days(self.args[0], t)
            hit = np.flatnonzero(t == at)
            value = float(y[hit[-1]]) if hit.size else float(np.interp(at, t, y))
            if n == "value":
                return ureg.Quantity(value, unit)
            return ureg.Quantity(100 * value / y[0], ureg.percent)
        if n == "trough":
            times, before = result.before_dose(self.output)
            at = self.args[0].to(ureg.day).magnitude
            hit = np.flatnonzero(np.isclose(times.to(ureg.day).magnitude, at, atol=1e-9))
            if hit.size == 0:
                raise ValidationError(f"metric {self}: no dose at {format_quantity(self.args[0])}"
                                      " in this run")
            return before[hit[0]]
        if n in ("time_above", "time_below"):
            threshold = self.args[0]
            try:
                level = threshold.to(unit).magnitude
            except pint.DimensionalityError:
                raise ValidationError(f"metric {self}: threshold {format_quantity(threshold)} "
                                      f"does not match the unit of {self.output} ({unit})") \
                    from None
            tw, yw = self._window(t, y, self.args[1:])
            inside = yw > level if n == "time_above" else yw < level
            return ureg.Quantity(_time_where(tw, yw, level, inside), ureg.day)
        tw, yw = self._window(t, y, self.args)
        if n in ("max", "min", "nadir"):
            return ureg.Quantity(float(yw.max() if n == "max" else yw.min()), unit)
        if n in ("time_of_nadir", "time_of_max"):
            if np.ptp(yw) <= FLAT * np.max(np.abs(yw)):
                # a profile that does not move (a baseline without drug) has no time of its
                # smallest or largest value; argmin would pick one from solver noise
                return ureg.Quantity(math.nan, ureg.day)
            i = int(np.argmax(yw) if n == "time_of_max" else np.argmin(yw))
            return ureg.Quantity(tw[i], ureg.day)
        area = float(np.trapezoid(yw, tw))
        if n == "auc":
            return ureg.Quantity(area, unit * ureg.day)
        return ureg.Quantity(area / (tw[-1] - tw[0]), unit)  # mean

    def _nca(self, result) -> pint.Quantity:
        """An NCA parameter of the output (the output's unit is checked there)."""
        try:
            profile = nca_of_result(result, self.output)
        except ValidationError as exc:
            raise ValidationError(f"metric {self}: {exc.message}") from None
        if self.name in _NCA_WHOLE:
            return getattr(profile.whole, _NCA_WHOLE[self.name])
        at = self.args[0].to(result.time_unit)
        try:
            interval = profile.interval_at(at)
        except ValidationError:
            raise ValidationError(f"metric {self}: no dose at {format_quantity(self.args[0])} "
                                  "in this run") from None
        return getattr(interval, NCA_INTERVAL_METRICS[self.name])

    def _days(self, q: pint.Quantity, t: np.ndarray) -> float:
        at = q.to(ureg.day).magnitude
        if not t[0] <= at <= t[-1] * (1 + 1e-12):
            raise ValidationError(f"metric {self}: {format_quantity(q)} is outside the run "
                                  f"(0 to {t[-1]:g} day)")
        return at

    def _window(self, t, y, args):
        """Points in [a, b]: right limit at a, left limit at b (t may repeat at doses)."""
        if not args:
            return t, y
        a, b = (self._days(q, t) for q in args)
        if not a < b:
            raise ValidationError(f"metric {self}: the window must have start < end")
        inner = (t > a) & (t < b)
        at_a, at_b = np.flatnonzero(t == a), np.flatnonzero(t == b)
        y_a = y[at_a[-1]] if at_a.size else np.interp(a, t, y)
        y_b = y[at_b[0]] if at_b.size else np.interp(b, t, y)
        return np.concatenate([[a], t[inner], [b]]), np.concatenate([[y_a], y[inner], [y_b]])


@dataclass(frozen=True)
class MetricSet:
    """Several metrics of one run, as one picklable callable (it travels to worker
    processes with the runs it measures).  With ``finite``, a metric that is NaN or
    infinite is an error rather than a value."""

    metrics: tuple[Metric, ...]
    finite: bool = False

    def __call__(self, result) -> list[pint.Quantity]:
        values = [m(result) for m in self.metrics]
        if self.finite:
            for m, v in zip(self.metrics, values):
                if not np.isfinite(v.magnitude):
                    raise ValidationError(f"metric {m} is {v.magnitude}")
        return values


def _time_where(t, y, level, inside) -> float:
    """Total time where the condition holds, with crossings interpolated linearly."""
    total = 0.0
    for i in range(len(t) - 1):
        a_in, b_in = inside[i], inside[i + 1]
        dt = t[i + 1] - t[i]
        if a_in and b_in:
            total += dt
        elif a_in != b_in and y[i + 1] != y[i]:
            frac = (level - y[i]) / (y[i + 1] - y[i])
            total += dt * (frac if a_in else 1 - frac)
    return total

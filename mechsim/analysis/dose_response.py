"""Dose-response and concentration-effect curves: three candidate curves, chosen by AICc.

``dose_response`` runs one simulation per dose (log-spaced, with units) plus one without
drug and computes one or more metrics of each run; ``concentration_effect`` takes two
outputs of one run (e.g. occupancy against concentration).  Each response ``E`` is fitted
by least squares with three curves of the dose (or concentration) ``d``:

==============  ==============================================  ==========
``linear``      ``E = E0 + slope * d``                           2 parameters
``emax``        ``E = E0 + Emax * d / (ED50 + d)``                3
``sigmoid``     ``E = E0 + Emax * d^h / (C^h + d^h)``, C = ED50    4
``asymmetric``  ``E = E0 + Emax * (d^h / (C^h + d^h))^s``          5
==============  ==============================================  ==========

``asymmetric`` is the five-parameter logistic of bioassay analysis (Gottschalk and Dunn,
Anal. Biochem. 343 (2005) 54-65), with the asymmetry ``s`` on the rising side: a target
that binds drug until it is saturated and then stays occupied gives a response that bends
sharply into its plateau, which no symmetric curve follows (``s = 1`` is the sigmoid).  Its
ED50 is the dose of half the effect, ``C * (q / (1 - q))^(1/h)`` with ``q = 2^(-1/s)``; the
curve is fitted in ED50 directly, so its interval comes from the fit like the others'.

The curves are functions of the dose itself, so the point without drug is simply ``d = 0``,
where every curve equals ``E0``; ED50 and the Hill coefficient are estimated on the log
scale (log dose is their natural scale: the sigmoid is a logistic curve in log dose), so
their 95 % confidence intervals are asymmetric and never negative.

The curve is chosen by the corrected Akaike criterion AICc (AIC plus
``2k(k+1)/(n-k-1)``, with ``k`` counting the residual variance too): a sweep has a dozen
points and 3-5 parameters, where plain AIC favours too many parameters, and AICc tends to
AIC as points are added.  Simulated responses carry no noise, so residuals smaller than a
millionth of the response range are treated as exact: two curves that both go through
every point tie, and the one with fewer parameters wins.  A curve that misses some point by
more than a quarter of the response range is rejected (it describes nothing); one that
misses by more than :data:`MISS_WARNING` of the range is kept with a warning.  Lack of fit
is stated as the largest miss and the residual standard error, both as percentages of the
response range: without replicate noise a significance test (runs, F test) answers a
question whose answer is known (any misfit is systematic) and flags misses too small to
matter, so what is reported is how large the misfit is against the size of the effect.

``fit_model`` (``--model`` on the command line) names one curve instead of ``"auto"``; when
no curve is usable the result says why (``no_fit``) instead of drawing one.  Both functions
return frozen :class:`ExposureResponse` objects (several metrics: an
:class:`ExposureResponses`) with the table, the chosen fit and its 95 % confidence
intervals, the AICc of every candidate, one-line warnings (not monotonic, plateau missed,
points missed, too few doses on the steep part) and ``.plot(ax=None)``.  The method is
described in docs/dose_response.md.
"""

from __future__ import annotations

import csv
import io
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
import pint

from ..errors import RegimenError, ValidationError
from ..units import format_quantity, format_unit, parse_quantity, ureg
from .metrics import Metric, MetricSet

__all__ = [
    "FIT_MODELS",
    "Candidate",
    "ExposureResponse",
    "ExposureResponses",
    "HillFit",
    "LackOfFit",
    "LinearFit",
    "concentration_effect",
    "dose_range",
    "dose_response",
]

_RANGE = re.compile(r"^\s*([0-9.eE+-]+)\s*\.\.\s*([0-9.eE+-]+)\s*(.*)$")

#: The curves, by the name ``fit_model=`` and ``--model`` take, and the name they are shown by.
CURVES = {"linear": "linear", "emax": "Emax", "sigmoid": "sigmoid Emax",
          "asymmetric": "asymmetric sigmoid Emax"}
FIT_MODELS = ("auto", *CURVES)
_N_PARAMS = {"linear": 2, "emax": 3, "sigmoid": 4, "asymmetric": 5}

# Thresholds, as fractions of the observed response range (max - min over all points).
#: Simulated values are exact to ~1e-8 of their size (the solver's rtol); residuals below this
#: fraction of the range are indistinguishable from zero, so curves within it tie.
RESOLUTION = 1e-6
#: A reversal of direction smaller than this is not reported (far below what a figure shows).
MONOTONIC_TOLERANCE = 0.01
#: A chosen curve that misses a point by more than this (3 %: half again the size of a
#: marker on the figure) is kept with a warning that it does not pass through its points.
MISS_WARNING = 0.03
#: A curve that misses a point by more than this is rejected: it does not describe the data.
MISS_REJECT = 0.25
#: The plateau is missed when the fitted curve at the highest dose, or its asymptote where the
#: response has levelled off, is further than this from the observed response.
PLATEAU_TOLERANCE = 0.03
#: The response has levelled off when the two highest doses differ by less than this.
LEVELLED = 0.02
#: An asymptote further than this outside the observed range is an extrapolation.
FAR_OUTSIDE = 0.5
#: A sigmoid whose ED50 lies more than this factor beyond the lowest or highest dose is
#: rejected: its points lie on one flank only, and ED50, Hill and Emax trade off freely
#: (an asymmetric curve fitted to an AUC gave ED50 = 2e8 mg/kg with 1e-37..1e53 bounds).
ED50_REACH = 10.0


def dose_range(text: str, n: int = 25) -> pint.Quantity:
    """``"0.01..100 mg/kg"`` -> ``n`` log-spaced doses (a Quantity array)."""
    match = _RANGE.match(text) if isinstance(text, str) else None
    if not match:
        raise ValidationError(f"dose range {text!r}: expected LOW..HIGH UNIT, e.g. "
                              "'0.01..100 mg/kg'")
    try:
        low, high = float(match.group(1)), float(match.group(2))
    except ValueError:
        raise ValidationError(f"dose range {text!r}: LOW and HIGH must be numbers") from None
    unit = parse_quantity(f"1 {match.group(3)}", what=f"dose range {text!r}").units
    if not 0 < low < high or not np.isfinite(high):
        raise ValidationError(f"dose range {text!r}: need 0 < LOW < HIGH")
    if not (isinstance(n, int) and 3 <= n <= 1000):
        raise ValidationError(f"number of doses must be an integer from 3 to 1000, got {n!r}")
    return ureg.Quantity(np.geomspace(low, high, n), unit)


def check_fit_model(name) -> str:
    """The curve name, or a one-line error saying which names exist."""
    if name not in FIT_MODELS:
        raise ValidationError(f"fit model {name!r}: expected one of {', '.join(FIT_MODELS)}")
    return name


def _hill(x, e0, emax, log_ed50, log_h):
    x = np.asarray(x, dtype=float)
    h = np.exp(log_h)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        ratio = np.power(np.clip(x, 0, None) / np.exp(log_ed50), h)
        # x^h / (ED50^h + x^h) written so that an overflowing ratio gives 1, not inf/inf
        frac = np.where(np.isinf(ratio), 1.0, ratio / (1 + ratio))
    return e0 + emax * frac


def _emax(x, e0, emax, log_ed50):
    return _hill(x, e0, emax, log_ed50, 0.0)


def _asymmetric(x, e0, emax, log_ed50, log_h, log_s):
    """The five-parameter logistic in its half-effect dose ED50: the Hill fraction with
    scale C raised to the power s, C chosen so that the fraction reaches 1/2 at ED50."""
    h, s = np.exp(log_h), np.exp(log_s)
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        q = 2.0 ** (-1.0 / s)
        log_c = log_ed50 - np.log(q / (1.0 - q)) / h
        frac = _hill(x, 0.0, 1.0, log_c, log_h)
        return e0 + emax * np.power(frac, s)


def _g(value: float, digits: int = 4) -> str:
    return f"{value:.{digits}g}"


def _q(q: pint.Quantity, digits: int = 3) -> str:
    unit = format_unit(q.units)
    return f"{float(q.magnitude):.{digits}g}" + (f" {unit}" if unit else "")


def _ci(pair) -> str:
    return f"[{pair[0]:.4g}, {pair[1]:.4g}]"


@dataclass(frozen=True)
class LackOfFit:
    """How far a fitted curve is from its points, as fractions of the response range."""

    largest_miss: float        # max |observed - fitted| / range
    at: pint.Quantity          # the dose (or concentration) of that miss
    residual_se: float         # sqrt(SSE / (n - parameters)) / range

    def __str__(self) -> str:
        return (f"largest miss {100 * self.largest_miss:.2g} % of the response range "
                f"(at {_q(self.at)}), residual SE {100 * self.residual_se:.2g} %")


@dataclass(frozen=True)
class HillFit:
    """``E = E0 + Emax * x^h / (ED50^h + x^h)``; ``*_ci`` are 95 % confidence intervals.

    ``model`` is ``"sigmoid"`` (Hill estimated) or ``"emax"`` (Hill fixed at 1, its interval
    ``(1, 1)``).  ``aicc`` is the corrected Akaike criterion of the fit (only differences
    between fits of the same points mean anything).
    """

    e0: pint.Quantity
    emax: pint.Quantity
    ed50: pint.Quantity
    hill: float
    e0_ci: tuple[float, float]
    emax_ci: tuple[float, float]
    ed50_ci: tuple[float, float]
    hill_ci: tuple[float, float]
    r_squared: float
    model: str = "sigmoid"
    aicc: float = math.nan
    lack_of_fit: LackOfFit | None = None
    #: the asymmetric curve's exponent s and its interval (1 for the symmetric curves)
    asymmetry: float = 1.0
    asymmetry_ci: tuple[float, float] = (1.0, 1.0)

    @property
    def top(self) -> pint.Quantity:
        """The response the curve levels off at for very large doses, ``E0 + Emax``."""
        return self.e0 + self.emax

    def predict(self, x: pint.Quantity) -> pint.Quantity:
        xs = x.to(self.ed50.units).magnitude
        y = _asymmetric(xs, self.e0.magnitude, self.emax.magnitude,
                        np.log(self.ed50.magnitude), np.log(self.hill),
                        np.log(self.asymmetry))
        return ureg.Quantity(y, self.e0.units)

    def effect_dose(self, fraction: float) -> float:
        """The dose (magnitude, in ED50's unit) at which the curve has reached ``fraction``
        of its effect Emax."""
        s, h = self.asymmetry, self.hill
        q, p = 2.0 ** (-1.0 / s), fraction ** (1.0 / s)
        c = self.ed50.magnitude / (q / (1.0 - q)) ** (1.0 / h)
        return float(c * (p / (1.0 - p)) ** (1.0 / h))

    def parameters(self) -> str:
        """The parameters with their intervals, on one line."""
        unit = format_unit(self.e0.units) or "(dimensionless)"
        hill = f"Hill = {self.hill:.3g} {_ci(self.hill_ci)}" if self.model != "emax" \
            else "Hill = 1 (fixed)"
        if self.model == "asymmetric":
            hill += f", asymmetry s = {self.asymmetry:.3g} {_ci(self.asymmetry_ci)}"
        return (f"E0 = {_g(self.e0.magnitude)} {_ci(self.e0_ci)}, "
                f"Emax = {_g(self.emax.magnitude)} {_ci(self.emax_ci)} {unit}, "
                f"ED50 = {_g(self.ed50.magnitude)} {_ci(self.ed50_ci)} "
                f"{format_unit(self.ed50.units)}, {hill}")

    def __str__(self) -> str:
        return f"{self.parameters()}, R² = {self.r_squared:.4f}"


@dataclass(frozen=True)
class LinearFit:
    """``E = E0 + slope * x``; ``*_ci`` are 95 % confidence intervals."""

    e0: pint.Quantity
    slope: pint.Quantity
    e0_ci: tuple[float, float]
    slope_ci: tuple[float, float]
    r_squared: float
    aicc: float = math.nan
    lack_of_fit: LackOfFit | None = None
    model: str = "linear"
    #: the unit of the dose (or concentration) axis, to write the slope's unit as people
    #: do: "d*ug/mL per mg/kg", not the product pint makes of it ("kg*d*ug/mg/mL")
    per: str = ""

    def predict(self, x: pint.Quantity) -> pint.Quantity:
        return (self.e0 + self.slope * x).to(self.e0.units)

    def parameters(self) -> str:
        return (f"E0 = {_g(self.e0.magnitude)} {_ci(self.e0_ci)} "
                f"{format_unit(self.e0.units) or '(dimensionless)'}, "
                f"slope = {_g(self.slope.magnitude)} {_ci(self.slope_ci)} {self._slope_unit()}")

    def _slope_unit(self) -> str:
        if self.per:
            return f"{format_unit(self.e0.units) or '1'} per {self.per}"
        return format_unit(self.slope.units) or "(dimensionless)"

    def __str__(self) -> str:
        return f"{self.parameters()}, R² = {self.r_squared:.4f}"


@dataclass(frozen=True)
class Candidate:
    """One candidate curve: its fit (None if it could not be fitted) and, if it may not be
    chosen, why (``rejected``)."""

    model: str
    fit: LinearFit | HillFit | None
    rejected: str = ""

    @property
    def usable(self) -> bool:
        return self.fit is not None and not self.rejected

    @property
    def aicc(self) -> float:
        return self.fit.aicc if self.fit is not None else math.nan


# ---- fitting ------------------------------------------------------------------------------
def _t975(dof: int) -> float:
    from scipy import stats  # 1.5 s to import: only when a curve is fitted

    return float(stats.t.ppf(0.975, dof)) if dof >= 1 else math.inf


def _aicc(sse: float, n: int, n_params: int, floor: float) -> float:
    """Gaussian AICc with the residual variance as one more parameter; SSE floored at the
    resolution of simulated values so exact fits tie rather than race to round-off."""
    k = n_params + 1
    return n * math.log(max(sse, floor) / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


def _lack_of_fit(x, y, fitted, n_params, rng, x_unit) -> LackOfFit:
    miss = np.abs(y - fitted)
    i = int(np.argmax(miss))
    dof = max(len(x) - n_params, 1)
    return LackOfFit(largest_miss=float(miss[i] / rng), at=ureg.Quantity(float(x[i]), x_unit),
                     residual_se=float(np.sqrt(np.sum(miss ** 2) / dof) / rng))


def _fit_linear(x, y, x_unit, y_unit, rng, floor) -> LinearFit:
    n = len(x)
    design = np.column_stack([np.ones(n), x])
    params, *_ = np.linalg.lstsq(design, y, rcond=None)
    fitted = design @ params
    sse = float(np.sum((y - fitted) ** 2))
    dof = n - 2
    with np.errstate(divide="ignore", invalid="ignore"):
        cov = np.linalg.pinv(design.T @ design) * sse / dof
    half = _t975(dof) * np.sqrt(np.clip(np.diag(cov), 0, None))
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return LinearFit(
        e0=ureg.Quantity(float(params[0]), y_unit),
        slope=ureg.Quantity(float(params[1]), y_unit / x_unit),
        e0_ci=(float(params[0] - half[0]), float(params[0] + half[0])),
        slope_ci=(float(params[1] - half[1]), float(params[1] + half[1])),
        r_squared=1 - sse / ss_tot if ss_tot > 0 else 1.0,
        aicc=_aicc(sse, n, 2, floor), lack_of_fit=_lack_of_fit(x, y, fitted, 2, rng, x_unit),
        per=format_unit(x_unit) or "1")


def _start(xs, ys, hills, powers=(1.0,)):
    """Best (E0, Emax, log ED50, log h[, log s]) on a grid of ED50, h and s, E0 and Emax
    solved exactly (the curve is linear in them): a start inside the right valley whatever
    the data."""
    positive = xs[xs > 0]
    best = None
    for log_ed50 in np.linspace(np.log(positive.min()) - 2, np.log(positive.max()) + 2, 41):
        for h in hills:
            for power in powers:
                frac = _asymmetric(xs, 0.0, 1.0, log_ed50, np.log(h), np.log(power))
                design = np.column_stack([np.ones_like(xs), frac])
                coef, *_ = np.linalg.lstsq(design, ys, rcond=None)
                sse = float(np.sum((ys - design @ coef) ** 2))
                if best is None or sse < best[0]:
                    best = (sse, [coef[0], coef[1], log_ed50, np.log(h), np.log(power)])
    return best[1]


_CURVE = {"emax": _emax, "sigmoid": _hill, "asymmetric": _asymmetric}


def _fit_hill_model(x, y, x_unit, y_unit, model, rng, floor) -> HillFit | None:
    """Emax (h = 1), sigmoid Emax or the asymmetric sigmoid by least squares on scaled
    data; None if it fails."""
    from scipy import optimize

    positive = x > 0
    if positive.sum() < 2:
        return None
    # scaled so that the optimiser's tolerances mean the same whatever the units
    x_ref = float(np.exp(np.mean(np.log(x[positive]))))
    y_ref = float(y.min())
    xs, ys = x / x_ref, (y - y_ref) / rng
    f = _CURVE[model]
    n_params = _N_PARAMS[model]
    hills = (1.0,) if model == "emax" else (0.5, 1.0, 2.0, 4.0, 8.0)
    powers = (0.1, 0.2, 0.4, 1.0, 2.5, 5.0) if model == "asymmetric" else (1.0,)
    p0 = _start(xs, ys, hills, powers)[:n_params]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, cov = optimize.curve_fit(f, xs, ys, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError, optimize.OptimizeWarning, FloatingPointError):
        return None
    if not np.all(np.isfinite(params)):
        return None
    fitted_s = f(xs, *params)
    sse = float(np.sum((ys - fitted_s) ** 2)) * rng ** 2
    if not np.isfinite(sse):
        return None
    half = _t975(len(x) - n_params) * np.sqrt(np.clip(np.diag(cov), 0, None))
    half = np.where(np.isfinite(half), half, np.inf)
    lo, hi = params - half, params + half
    fitted = y_ref + rng * fitted_s
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    shaped = model != "emax"
    asymmetric = model == "asymmetric"
    with np.errstate(over="ignore"):
        log_x_ref = math.log(x_ref)
        return HillFit(
            e0=ureg.Quantity(y_ref + rng * params[0], y_unit),
            emax=ureg.Quantity(rng * params[1], y_unit),
            ed50=ureg.Quantity(float(np.exp(params[2] + log_x_ref)), x_unit),
            hill=float(np.exp(params[3])) if shaped else 1.0,
            e0_ci=(y_ref + rng * float(lo[0]), y_ref + rng * float(hi[0])),
            emax_ci=(rng * float(lo[1]), rng * float(hi[1])),
            ed50_ci=(float(np.exp(lo[2] + log_x_ref)), float(np.exp(hi[2] + log_x_ref))),
            hill_ci=(float(np.exp(lo[3])), float(np.exp(hi[3]))) if shaped else (1.0, 1.0),
            r_squared=1 - sse / ss_tot if ss_tot > 0 else 1.0, model=model,
            aicc=_aicc(sse, len(x), n_params, floor),
            lack_of_fit=_lack_of_fit(x, y, fitted, n_params, rng, x_unit),
            asymmetry=float(np.exp(params[4])) if asymmetric else 1.0,
            asymmetry_ci=(float(np.exp(lo[4])), float(np.exp(hi[4]))) if asymmetric
            else (1.0, 1.0))


def fit_hill(x: np.ndarray, y: np.ndarray, x_unit, y_unit) -> HillFit | None:
    """Least-squares sigmoid Emax (Hill) fit on magnitudes; None if it does not converge."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    rng = float(np.ptp(y)) if y.size else 0.0
    if (x > 0).sum() < 4 or not rng > 0 or not np.all(np.isfinite(y)):
        return None
    return _fit_hill_model(x, y, x_unit, y_unit, "sigmoid", rng,
                           len(x) * (RESOLUTION * rng) ** 2)


def fit_candidates(x, y, x_unit, y_unit) -> tuple[Candidate, ...] | str:
    """Fit every curve to the points; returns the candidates, or why nothing can be fitted."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    bad = ~(np.isfinite(x) & np.isfinite(y))
    if bad.any():
        where = _q(ureg.Quantity(float(x[np.flatnonzero(bad)[0]]), x_unit))
        return f"the response is not a finite number at {where}"
    rng = float(np.ptp(y))
    if not rng > RESOLUTION * float(np.max(np.abs(y))):
        return f"the response does not change with dose ({_q(ureg.Quantity(y[0], y_unit))} " \
               "at every dose)"
    floor = len(x) * (RESOLUTION * rng) ** 2
    out = []
    for model, n_params in _N_PARAMS.items():
        need = n_params + 3  # AICc needs n > k + 1, with k = parameters + residual variance
        if len(x) < need:
            out.append(Candidate(model, None, f"needs at least {need} points, has {len(x)}"))
            continue
        if model == "linear":
            fit = _fit_linear(x, y, x_unit, y_unit, rng, floor)
        else:
            fit = _fit_hill_model(x, y, x_unit, y_unit, model, rng, floor)
        if fit is None:
            out.append(Candidate(model, None, "did not converge"))
        elif isinstance(fit, HillFit) and not _ed50_inside(fit, x):
            out.append(Candidate(model, fit, f"its ED50, {_q(fit.ed50)}, lies more than "
                                             f"{ED50_REACH:g} times outside the doses: the "
                                             "doses do not determine it"))
        elif fit.lack_of_fit.largest_miss > MISS_REJECT:
            out.append(Candidate(model, fit, f"misses a point by "
                                             f"{100 * fit.lack_of_fit.largest_miss:.0f} % of "
                                             "the response range"))
        else:
            out.append(Candidate(model, fit))
    return tuple(out)


def _ed50_inside(fit: HillFit, x) -> bool:
    """Whether a curve's ED50 lies within :data:`ED50_REACH` times the range of the positive
    doses (beyond, the points only see one flank of the curve)."""
    positive = np.asarray(x, float)[np.asarray(x, float) > 0]
    ed50 = float(fit.ed50.magnitude)
    return bool(positive.size) and \
        positive.min() / ED50_REACH <= ed50 <= positive.max() * ED50_REACH


def _choose(candidates, fit_model: str):
    if fit_model == "auto":
        usable = [c for c in candidates if c.usable]
        if not usable:
            notes = "; ".join(f"{CURVES[c.model]} {c.rejected}" for c in candidates)
            return None, f"no curve fits this response: {notes}"
        return min(usable, key=lambda c: c.aicc).fit, ""
    chosen = next(c for c in candidates if c.model == fit_model)
    if not chosen.usable:
        return None, f"the {CURVES[fit_model]} curve does not fit this response: it " \
                     f"{chosen.rejected}"
    return chosen.fit, ""


# ---- warnings -----------------------------------------------------------------------------
def monotonic_warning(x, y, x_unit, y_unit) -> str:
    """One line if the response changes direction with dose by more than
    :data:`MONOTONIC_TOLERANCE` of its range (empty otherwise)."""
    order = np.argsort(np.asarray(x, float), kind="stable")
    xs, ys = np.asarray(x, float)[order], np.asarray(y, float)[order]
    rng = float(np.ptp(ys)) if ys.size else 0.0
    # a response flat to solver precision has a "range" of round-off: nothing to report
    if not np.all(np.isfinite(ys)) or not rng > RESOLUTION * float(np.max(np.abs(ys))):
        return ""
    rises = ys - np.minimum.accumulate(ys)       # largest rise after a lower value
    drops = np.maximum.accumulate(ys) - ys       # largest fall after a higher value
    j_rise, j_drop = int(np.argmax(rises)), int(np.argmax(drops))
    rise, drop = float(rises[j_rise]), float(drops[j_drop])
    if min(rise, drop) <= MONOTONIC_TOLERANCE * rng:
        return ""
    if drop >= rise:  # falls overall; the reversal is the largest rise
        overall, against, size = "falls", "rises", rise
        j = j_rise
        i = int(np.argmin(ys[:j + 1]))
    else:
        overall, against, size = "rises", "falls", drop
        j = j_drop
        i = int(np.argmax(ys[:j + 1]))
    # where it turns: the extreme the reversal starts from, or where it ends if it comes first
    turn = xs[i] if i > 0 else xs[j]

    def q(v):
        return _q(ureg.Quantity(float(v), x_unit))

    return (f"the response is not monotonic in dose (it turns at {q(turn)}): it {overall} "
            f"overall but {against} by {_q(ureg.Quantity(size, y_unit))} "
            f"({100 * size / rng:.0f} % of its range) from {q(xs[i])} to {q(xs[j])}")


def plateau_warning(x, y, fit, x_unit) -> str:
    """One line if a fitted Emax curve misses the plateau of the response (empty otherwise)."""
    if not isinstance(fit, HillFit):
        return ""
    order = np.argsort(np.asarray(x, float), kind="stable")
    xs, ys = np.asarray(x, float)[order], np.asarray(y, float)[order]
    rng = float(np.ptp(ys))
    lo, hi = float(ys.min()), float(ys.max())
    y_unit = fit.e0.units
    top = float(fit.top.magnitude)
    at_top = float(fit.predict(ureg.Quantity(xs[-1], x_unit)).magnitude)
    beyond = max(lo - top, top - hi, 0.0) / rng
    levelled = len(ys) >= 2 and abs(ys[-1] - ys[-2]) < LEVELLED * rng
    highest = _q(ureg.Quantity(xs[-1], x_unit))

    def q(v):
        return _q(ureg.Quantity(v, y_unit))

    if abs(at_top - ys[-1]) > PLATEAU_TOLERANCE * rng:
        return (f"the curve misses the plateau by "
                f"{100 * abs(at_top - ys[-1]) / rng:.0f} % of the range: at the highest "
                f"dose ({highest}) it gives {q(at_top)}, the response is {q(ys[-1])}")
    if levelled and beyond > PLATEAU_TOLERANCE:
        return (f"the curve misses the plateau by {100 * beyond:.0f} % of the range: it "
                f"levels off at E0 + Emax = {q(top)}, the response at {q(ys[-1])}")
    if beyond > FAR_OUTSIDE:
        return (f"Emax is an extrapolation (the response has not levelled off by "
                f"{highest}): the fitted E0 + Emax = {q(top)} lies {100 * beyond:.0f} % of "
                "the range outside the simulated responses")
    return ""


def steep_part_warning(x, fit, x_unit) -> str:
    """One line if fewer than two doses lie where a fitted Emax curve does most of its
    change (10-90 % of the effect): ED50 and Hill then rest on the model, not the points,
    and their intervals, which assume the model, are too narrow."""
    if not isinstance(fit, HillFit) or not fit.emax.magnitude:
        return ""
    xs = np.asarray(x, float)
    xs = xs[xs > 0]
    frac = (fit.predict(ureg.Quantity(xs, x_unit)) - fit.e0).magnitude / fit.emax.magnitude
    inside = int(np.sum((frac > 0.1) & (frac < 0.9)))
    if inside >= 2:
        return ""
    scale = ureg.Quantity(1.0, fit.ed50.units).to(x_unit).magnitude
    low, high = fit.effect_dose(0.1) * scale, fit.effect_dose(0.9) * scale
    unit = format_unit(x_unit)
    return (f"{'no dose lies' if inside == 0 else 'only one dose lies'} on the steep part of "
            f"the curve (10-90 % of the effect, {low:.3g}-{high:.3g} {unit}): ED50 and Hill "
            "rest on too few points; add doses there")


def miss_warning(fit) -> str:
    lof = fit.lack_of_fit if fit is not None else None
    if lof is None or lof.largest_miss <= MISS_WARNING:
        return ""
    return (f"the {CURVES[fit.model]} curve misses the points by up to "
            f"{100 * lof.largest_miss:.0f} % of the response range (at {_q(lof.at)}): "
            "it does not follow the shape of this response")


# ---- results ------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ExposureResponse:
    """A response over a range of doses or concentrations, with its fitted curve.

    ``fit`` is the chosen curve (None if none fits: ``no_fit`` says why); ``candidates``
    holds every curve tried with its AICc; ``warnings`` are one line each.
    """

    x: pint.Quantity            # doses or concentrations (0 = no drug)
    y: pint.Quantity            # metric values
    x_label: str
    y_label: str
    fit: HillFit | LinearFit | None
    description: str = ""
    candidates: tuple[Candidate, ...] = ()
    fit_model: str = "auto"     # "auto" (chosen by AICc) or the curve asked for
    warnings: tuple[str, ...] = ()
    no_fit: str = ""
    y_words: str = ""           # the metric in words, for the axis label

    def __post_init__(self):
        for name in ("x", "y"):
            value = getattr(self, name)
            mag = np.array(value.magnitude, dtype=float)
            mag.flags.writeable = False
            object.__setattr__(self, name, ureg.Quantity(mag, value.units))

    @classmethod
    def analyse(cls, x: pint.Quantity, y: pint.Quantity, *, x_label: str, y_label: str,
                description: str = "", fit_model: str = "auto",
                y_words: str = "") -> ExposureResponse:
        """Fit the candidate curves to the points, choose one and collect the warnings."""
        check_fit_model(fit_model)
        xm, ym = np.asarray(x.magnitude, float), np.asarray(y.magnitude, float)
        # a metric that is not defined at some dose (an NCA value without drug, a half-life
        # without a terminal phase) is NaN there: those points are left out, and said so
        undefined = np.isnan(ym)
        left_out = ""
        if undefined.any() and not undefined.all():
            where = ", ".join(_q(ureg.Quantity(float(v), x.units)) for v in xm[undefined])
            left_out = f"the metric is not defined at {where}: left out of the fit"
            xm, ym = xm[~undefined], ym[~undefined]
        found = fit_candidates(xm, ym, x.units, y.units)
        candidates, fit, no_fit = (), None, ""
        if isinstance(found, str):
            no_fit = f"no curve fitted: {found}"
        else:
            candidates = found
            fit, no_fit = _choose(candidates, fit_model)
        notes = (left_out, monotonic_warning(xm, ym, x.units, y.units),
                 plateau_warning(xm, ym, fit, x.units) if fit is not None else "",
                 miss_warning(fit), steep_part_warning(xm, fit, x.units))
        return cls(x=x, y=y, x_label=x_label, y_label=y_label, fit=fit,
                   description=description, candidates=candidates, fit_model=fit_model,
                   warnings=tuple(n for n in notes if n), no_fit=no_fit, y_words=y_words)

    def table(self) -> list[tuple[float, float]]:
        """Rows (x, y) as plain numbers in the units of :attr:`x` and :attr:`y`."""
        return list(zip(self.x.magnitude.tolist(), self.y.magnitude.tolist()))

    def fitted(self) -> np.ndarray:
        """The chosen curve at each x (in the unit of :attr:`y`); NaN without a fit."""
        if self.fit is None:
            return np.full(len(self.x), np.nan)
        return np.asarray(self.fit.predict(self.x).to(self.y.units).magnitude, float)

    def to_csv(self, path) -> None:
        """Write the two columns x and y with units in the header (see
        :meth:`ExposureResponses.to_csv` for the long table with the fitted values)."""
        from ..io.atomic import write_text_atomically
        header = f"{self.x_label} [{format_unit(self.x.units) or '1'}]," \
                 f"{self.y_label} [{format_unit(self.y.units) or '1'}]"
        rows = "\n".join(f"{a!r},{b!r}" for a, b in self.table())
        write_text_atomically(path, f"{header}\n{rows}\n")

    def summary(self) -> str:
        """The chosen curve, its parameters with 95 % CIs, each candidate's AICc, the lack of
        fit and the warnings, one statement a line."""
        unit = format_unit(self.y.units)
        head = f"{self.y_label}" + (f" [{unit}]" if unit else "")
        lines = []
        if self.fit is None:
            lines.append(f"{head}: {self.no_fit}")
        else:
            how = "smallest AICc" if self.fit_model == "auto" else "as asked"
            lines.append(f"{head}: {CURVES[self.fit.model]} curve ({how})")
            lines.append(f"  {self.fit.parameters()}")
            lines.append(f"  fit: R² = {self.fit.r_squared:.4f}, {self.fit.lack_of_fit}")
        if self.candidates:
            def one(c):
                aicc = f"{c.aicc:.1f}" if c.fit is not None else "-"
                why = f" (rejected: {c.rejected})" if c.rejected else ""
                return f"{CURVES[c.model]} {aicc}{why}"
            lines.append(f"  AICc: {', '.join(one(c) for c in self.candidates)}")
        lines += [f"  warning: {w}" for w in self.warnings]
        return "\n".join(lines)

    def plot(self, ax=None):
        """Points, the chosen curve (and ED50) on a log x axis with dose 0 at its left;
        returns the Axes."""
        from ..plotting import plot_exposure_response
        return plot_exposure_response(self, ax=ax)


@dataclass(frozen=True, eq=False)
class ExposureResponses:
    """Several metrics of one sweep: iterate, index and unpack it like the tuple of
    :class:`ExposureResponse` it holds; :meth:`rows` and :meth:`to_csv` give one long table
    (a row per metric and dose), :meth:`plot` one figure with a panel per metric."""

    curves: tuple[ExposureResponse, ...]
    description: str = ""

    def __iter__(self):
        return iter(self.curves)

    def __len__(self) -> int:
        return len(self.curves)

    def __getitem__(self, k):
        return self.curves[k]

    def header(self) -> list[str]:
        unit = format_unit(self.curves[0].x.units) or "1"
        return ["metric", f"{self.curves[0].x_label} [{unit}]", "value", "fitted", "unit"]

    def rows(self) -> list[tuple[str, float, float, float, str]]:
        """``(metric, dose, value, fitted value, unit)`` for every metric and dose, doses in
        the unit of the header; ``fitted`` is NaN where no curve fits."""
        out = []
        for c in self.curves:
            unit = format_unit(c.y.units) or "1"
            for x, y, f in zip(c.x.magnitude.tolist(), c.y.magnitude.tolist(),
                               c.fitted().tolist()):
                out.append((c.y_label, x, y, f, unit))
        return out

    def to_csv(self, path) -> None:
        """Write :meth:`rows` under :meth:`header` (written whole or not at all)."""
        from ..io.atomic import write_text_atomically

        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.header())
        for metric, x, y, f, unit in self.rows():
            writer.writerow([metric, repr(x), repr(y), "" if math.isnan(f) else repr(f), unit])
        write_text_atomically(path, buffer.getvalue())

    def summary(self) -> str:
        return "\n".join(c.summary() for c in self.curves)

    def plot(self, axes=None):
        """One panel per metric; returns the array of Axes."""
        from ..plotting import plot_exposure_responses
        return plot_exposure_responses(self, axes=axes)


def _dose_text(regimen: str, doses: pint.Quantity, background: str | None) -> str:
    """The regimen with the doses written in: ``0.01-10 mg/kg iv every 4 weeks x 3``."""
    mags = np.asarray(doses.magnitude, float)
    unit = format_unit(doses.units)
    span = f"{mags.min():g}-{mags.max():g} {unit}" if len(mags) > 1 else _q(doses[0], 6)
    text = regimen.replace("{dose}", span.strip())
    text += f" ({len(mags)} doses and no drug)"
    return text + (f" + {background}" if background else "")


def dose_response(model, regimen: str, doses, metric: str | Metric, *, until,
                  background: str | None = None, n: int = 25, params=None, overrides=None,
                  every=None, rtol: float = 1e-8, atol=None, progress: bool = False,
                  workers: int | None = None, executor=None,
                  fit_model: str = "auto") -> ExposureResponse | ExposureResponses:
    """Simulate each dose, compute metrics and fit a curve to each.

    Parameters
    ----------
    model
        Model, built-in name or path.
    regimen
        Regimen text with ``{dose}`` where the amount goes: ``"{dose} iv every 14 days x 6"``.
    doses
        ``"0.01..100 mg/kg"`` (``n`` log-spaced doses) or a Quantity array of doses.
    metric
        A metric (see :mod:`mechsim.analysis.metrics`), e.g. ``"value(M, 24 weeks)"``, or a
        list of metrics (then an :class:`ExposureResponses` is returned, from one set of runs).
    until
        Length of each simulation.
    background
        Regimen given in every run, including the no-drug one (e.g. a backbone therapy:
        ``"4 mg oral on days 1-21 of 28-day cycles"``).
    params, overrides, every, rtol, atol
        As in :func:`mechsim.simulate` (the same defaults: ``atol`` 1e-12 of each state's
        own unit).
    workers, executor
        How the runs are spread (threads, processes or a Dask client, as in
        :func:`mechsim.simulate_many`); the result does not depend on them.
    fit_model
        ``"auto"`` (the candidate with the smallest AICc), ``"linear"``, ``"emax"``,
        ``"sigmoid"`` or ``"asymmetric"``.  (``model`` is the simulated model, hence the
        longer name.)

    Returns
    -------
    ExposureResponse or ExposureResponses
        Includes a point at dose 0 (background only), which anchors E0 of the fit.

    Examples
    --------
    >>> dr = dose_response("one_compartment", "{dose} iv", "1..1000 nmol", "max(C)",
    ...                    until="1 day", n=5)
    >>> dr.y.magnitude.round(1).tolist()
    [0.0, 0.1, 0.6, 3.2, 17.8, 100.0]
    >>> dr.fit.model  # max(C) = dose / V: a straight line
    'linear'
    """
    from ..batch import measure_many
    from ..dosing import Regimen
    from ..runspec import RunSpec

    check_fit_model(fit_model)
    several = isinstance(metric, (list, tuple))
    metrics = tuple(m if isinstance(m, Metric) else Metric.parse(m)
                    for m in (metric if several else [metric]))
    if not metrics:
        raise ValidationError("give at least one metric")
    if not isinstance(regimen, str) or "{dose}" not in regimen:
        raise RegimenError(f"dose-response regimen must contain {{dose}} where the amount "
                           f"goes, e.g. '{{dose}} iv every 14 days x 6', got {regimen!r}")
    dose_values = dose_range(doses, n) if isinstance(doses, str) else doses
    if not isinstance(dose_values, pint.Quantity) or np.ndim(dose_values.magnitude) != 1:
        raise ValidationError("doses must be a range text or a 1-D Quantity array")
    base = Regimen.parse(background or "")
    # every regimen is parsed before any run, so a typo fails at once
    regimens = [Regimen.parse(regimen.replace("{dose}", format_quantity(d))) & base
                for d in dose_values]
    spec = RunSpec.build(model, base, until=until, params=params, overrides=overrides,
                         every=every, rtol=rtol, atol=atol)
    runs = [base, *regimens]
    values = measure_many(spec, np.tile(spec.parameters, (len(runs), 1)), MetricSet(metrics),
                          runs, workers=workers, executor=executor, progress=progress,
                          labels=[f"dose {format_quantity(d)}" for d in [0 * dose_values[0],
                                                                        *dose_values]])
    model = spec.model
    x = ureg.Quantity(np.concatenate([[0.0], dose_values.magnitude]), dose_values.units)
    description = f"{model.name}: {_dose_text(regimen, dose_values, background)}"
    curves = []
    for k, m in enumerate(metrics):
        unit = values[-1][k].units
        y = ureg.Quantity([row[k].to(unit).magnitude for row in values], unit)
        curves.append(ExposureResponse.analyse(x, y, x_label="dose", y_label=str(m),
                                               description=description, fit_model=fit_model,
                                               y_words=m.describe(model.labels)))
    return ExposureResponses(tuple(curves), description) if several else curves[0]


def concentration_effect(result, x: str, y: str, *, fit_model: str = "auto"
                         ) -> ExposureResponse:
    """Fit a curve of output ``y`` against output ``x`` over one run
    (e.g. ``concentration_effect(res, "C_mass", "RO")``); ``fit_model`` as in
    :func:`dose_response`."""
    xs, ys = result[x], result[y]
    return ExposureResponse.analyse(xs, ys, x_label=x, y_label=y, fit_model=fit_model,
                                    description=f"{result.model}: {result.regimen}")

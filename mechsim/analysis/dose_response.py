"""Dose-response and concentration-effect curves with an Emax/Hill fit.

``dose_response`` runs one simulation per dose (log-spaced, with units) plus one without
drug, computes a metric for each and fits ``E = E0 + Emax * d^h / (ED50^h + d^h)``;
``concentration_effect`` fits the same curve to two outputs of one run (e.g. occupancy
against concentration).  Both return a frozen :class:`ExposureResponse` with the table, the
fit (with 95 % confidence intervals) and ``.plot(ax=None)``.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass

import numpy as np
import pint

from ..errors import RegimenError, ValidationError
from ..units import format_quantity, format_unit, parse_quantity, ureg
from .metrics import Metric, MetricSet

__all__ = [
    "ExposureResponse",
    "HillFit",
    "concentration_effect",
    "dose_range",
    "dose_response",
]

_RANGE = re.compile(r"^\s*([0-9.eE+-]+)\s*\.\.\s*([0-9.eE+-]+)\s*(.*)$")


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


def _hill(x, e0, emax, log_ed50, log_h):
    x = np.asarray(x, dtype=float)
    h = np.exp(log_h)
    ratio = np.power(np.clip(x, 0, None) / np.exp(log_ed50), h)
    return e0 + emax * ratio / (1 + ratio)


@dataclass(frozen=True)
class HillFit:
    """``E = E0 + Emax * x^h / (ED50^h + x^h)``; ``*_ci`` are 95 % confidence intervals."""

    e0: pint.Quantity
    emax: pint.Quantity
    ed50: pint.Quantity
    hill: float
    e0_ci: tuple[float, float]
    emax_ci: tuple[float, float]
    ed50_ci: tuple[float, float]
    hill_ci: tuple[float, float]
    r_squared: float

    def predict(self, x: pint.Quantity) -> pint.Quantity:
        xs = x.to(self.ed50.units).magnitude
        y = _hill(xs, self.e0.magnitude, self.emax.magnitude, np.log(self.ed50.magnitude),
                  np.log(self.hill))
        return ureg.Quantity(y, self.e0.units)

    def __str__(self) -> str:
        def ci(pair):
            return f"[{pair[0]:.4g}, {pair[1]:.4g}]"
        return (f"E0 = {self.e0.magnitude:.4g} {ci(self.e0_ci)}, "
                f"Emax = {self.emax.magnitude:.4g} {ci(self.emax_ci)} "
                f"{format_unit(self.e0.units) or '(dimensionless)'}, "
                f"ED50 = {self.ed50.magnitude:.4g} {ci(self.ed50_ci)} "
                f"{format_unit(self.ed50.units)}, Hill = {self.hill:.3g} {ci(self.hill_ci)}, "
                f"R² = {self.r_squared:.4f}")


def fit_hill(x: np.ndarray, y: np.ndarray, x_unit, y_unit) -> HillFit | None:
    """Least-squares Hill fit on magnitudes; None if it does not converge."""
    from scipy import optimize, stats  # 1.5 s to import: only when a curve is fitted

    x, y = np.asarray(x, float), np.asarray(y, float)
    # a metric that is not estimable at some dose (an NCA value is NaN then) leaves it out
    finite = np.isfinite(y)
    x, y = x[finite], y[finite]
    positive = x > 0
    if positive.sum() < 4 or np.ptp(y) == 0:
        return None
    e0 = y[~positive].mean() if (~positive).any() else y[np.argmin(x)]
    emax = y[np.argmax(x)] - e0
    half = e0 + emax / 2
    ed50 = x[positive][np.argmin(abs(y[positive] - half))]
    p0 = [e0, emax, np.log(ed50), 0.0]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            params, cov = optimize.curve_fit(_hill, x, y, p0=p0, maxfev=20000)
    except (RuntimeError, ValueError, optimize.OptimizeWarning):
        return None
    residual = y - _hill(x, *params)
    ss_tot = np.sum((y - y.mean()) ** 2)
    r2 = 1 - np.sum(residual ** 2) / ss_tot if ss_tot > 0 else 1.0
    dof = max(len(x) - 4, 1)
    half_width = stats.t.ppf(0.975, dof) * np.sqrt(np.clip(np.diag(cov), 0, None))
    half_width = np.where(np.isfinite(half_width), half_width, np.inf)
    lo, hi = params - half_width, params + half_width
    with np.errstate(over="ignore"):
        return HillFit(
            e0=ureg.Quantity(params[0], y_unit), emax=ureg.Quantity(params[1], y_unit),
            ed50=ureg.Quantity(float(np.exp(params[2])), x_unit), hill=float(np.exp(params[3])),
            e0_ci=(float(lo[0]), float(hi[0])), emax_ci=(float(lo[1]), float(hi[1])),
            ed50_ci=(float(np.exp(lo[2])), float(np.exp(hi[2]))),
            hill_ci=(float(np.exp(lo[3])), float(np.exp(hi[3]))), r_squared=float(r2))


@dataclass(frozen=True, eq=False)
class ExposureResponse:
    """A response over a range of doses or concentrations, with its Hill fit."""

    x: pint.Quantity            # doses or concentrations (0 = no drug)
    y: pint.Quantity            # metric values
    x_label: str
    y_label: str
    fit: HillFit | None
    description: str = ""

    def __post_init__(self):
        for name in ("x", "y"):
            value = getattr(self, name)
            mag = np.array(value.magnitude, dtype=float)
            mag.flags.writeable = False
            object.__setattr__(self, name, ureg.Quantity(mag, value.units))

    def table(self) -> list[tuple[float, float]]:
        """Rows (x, y) as plain numbers in the units of :attr:`x` and :attr:`y`."""
        return list(zip(self.x.magnitude.tolist(), self.y.magnitude.tolist()))

    def to_csv(self, path) -> None:
        """Write the table with units in the header."""
        from ..io.atomic import write_text_atomically
        header = f"{self.x_label} [{format_unit(self.x.units) or '1'}]," \
                 f"{self.y_label} [{format_unit(self.y.units) or '1'}]"
        rows = "\n".join(f"{a!r},{b!r}" for a, b in self.table())
        write_text_atomically(path, f"{header}\n{rows}\n")

    def plot(self, ax=None):
        """Points, fitted curve and ED50 on a log x axis; returns the Axes."""
        from ..plotting import plot_exposure_response
        return plot_exposure_response(self, ax=ax)


def dose_response(model, regimen: str, doses, metric: str | Metric, *, until,
                  background: str | None = None, n: int = 25, params=None, overrides=None,
                  every=None, rtol: float = 1e-8, atol=None, progress: bool = False,
                  workers: int | None = None, executor=None) -> ExposureResponse:
    """Simulate each dose and fit an Emax/Hill curve to a metric.

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
        list of metrics (then a tuple of curves is returned, from one set of runs).
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

    Returns
    -------
    ExposureResponse
        Includes a point at dose 0 (background only), which anchors E0 of the fit.

    Examples
    --------
    >>> dr = dose_response("one_compartment", "{dose} iv", "1..1000 nmol", "max(C)",
    ...                    until="1 day", n=5)
    >>> dr.y.magnitude.round(1).tolist()
    [0.0, 0.1, 0.6, 3.2, 17.8, 100.0]
    """
    from ..batch import measure_many
    from ..dosing import Regimen
    from ..runspec import RunSpec

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
    description = f"{model.name}: {regimen}" + (f" + {background}" if background else "")
    curves = []
    for k, m in enumerate(metrics):
        unit = values[-1][k].units
        y = ureg.Quantity([row[k].to(unit).magnitude for row in values], unit)
        curves.append(ExposureResponse(x=x, y=y, x_label="dose", y_label=str(m),
                                       fit=fit_hill(x.magnitude, y.magnitude, x.units, y.units),
                                       description=description))
    return tuple(curves) if several else curves[0]


def concentration_effect(result, x: str, y: str) -> ExposureResponse:
    """Fit an Emax/Hill curve of output ``y`` against output ``x`` over one run
    (e.g. ``concentration_effect(res, "C_mass", "RO")``)."""
    xs, ys = result[x], result[y]
    fit = fit_hill(xs.magnitude, ys.magnitude, xs.units, ys.units)
    return ExposureResponse(x=xs, y=ys, x_label=x, y_label=y, fit=fit,
                            description=f"{result.model}: {result.regimen}")

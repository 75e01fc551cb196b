"""Which parameters drive a metric: local (normalised) and global (Sobol) sensitivity.

``local_sensitivity`` gives the normalised coefficient ``S_p = (dM/M) / (dp/p)`` of a metric
M for each parameter p at its nominal value, by central finite differences in ``log p``
(two runs per parameter, one nominal run).  ``sobol_indices`` gives first-order (S1) and
total (ST) Sobol indices over ranges of parameters, from Saltelli sampling of a scrambled
Sobol' sequence and SALib's estimators, with bootstrap confidence intervals.  Both return
frozen objects with the table and ``.plot(ax=None)`` (a tornado plot, a bar chart).

Everything that can be checked is checked before the first simulation: parameter names,
range units and order, the metric and its output, the regimen, and every sampled parameter
set (volumes, bioavailability, lag, body weight).

SALib is imported only when :func:`sobol_indices` runs (``pip install SALib``).
"""

from __future__ import annotations

import math
import numbers
import re
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pint

from ..errors import MechsimError, UnitError, ValidationError
from ..optional import require
from ..runner import positive
from ..units import (
    convertible,
    dimension_text,
    format_quantity,
    format_unit,
    parse_quantity,
    split_output,
    to_canonical,
    ureg,
)
from .metrics import NCA_INTERVAL_METRICS, NCA_METRICS, Metric, MetricSet
from .nca import is_concentration

__all__ = [
    "LocalSensitivity",
    "SobolResult",
    "local_sensitivity",
    "ranges_from_params",
    "sobol_indices",
]

SCALES = ("log", "linear")
_RANGE_TEXT = re.compile(r"^\s*([0-9.eE+-]+)\s*\.\.\s*([0-9.eE+-]+)\s*(.*)$")


# ---- shared machinery -------------------------------------------------------------------------
class _Runs:
    """One run specification and a set of metrics; runs parameter vectors (canonical units)
    through :func:`mechsim.batch.measure_many`, each exactly as :func:`mechsim.simulate`
    would run it."""

    def __init__(self, model, regimen, metrics, *, until, params, overrides, every, rtol, atol,
                 default_atol: float = 1e-12):
        from ..io import prepare_model
        from ..runspec import RunSpec

        prepared = prepare_model(model, params, overrides)
        if atol is None:  # default_atol of each state's own unit (pg/mL for IL-6 in pg/mL)
            atol = default_atol * np.array([to_canonical(ureg.Quantity(1.0, s.unit))
                                            for s in prepared.species])
        self.spec = RunSpec.build(prepared, regimen, until=until, every=every, rtol=rtol,
                                  atol=atol)
        self.model, self.cm, self.p0 = prepared, self.spec.compiled, self.spec.parameters
        self.end, self.regimen = self.spec.until, self.spec.regimen
        self.metrics = metrics
        self.description = f"{self.model.name}: {self.regimen}"
        plan = self.plan(self.p0)
        for m in metrics:
            _check_metric(m, self.cm, self.end, plan)

    def parameter(self, name: str):
        known = self.model.parameters_by_name
        if not isinstance(name, str) or name not in known:
            raise ValidationError(f"unknown parameter {name!r} for model {self.model.name} "
                                  f"(known: {', '.join(sorted(known))})")
        return known[name]

    def index(self, name: str) -> int:
        return self.cm.parameter_names.index(name)

    def plan(self, p: np.ndarray, label: str = ""):
        try:
            return self.spec.plan(p)
        except MechsimError as exc:
            if not label:
                raise
            raise type(exc)(f"{exc.message} ({label})", exc.where) from None

    def evaluate(self, jobs, *, progress: bool, desc: str, workers: int | None,
                 executor=None):
        """Metric values (one list of Quantities per job) for ``[(p, plan, label), ...]``
        (each plan was built first, so an impossible parameter set failed before any run,
        with its label)."""
        from ..batch import measure_many

        matrix = np.array([p for p, _, _ in jobs])
        return measure_many(self.spec, matrix, MetricSet(tuple(self.metrics), finite=True),
                            labels=[label or "nominal values" for _, _, label in jobs],
                            workers=workers, executor=executor, progress=progress)


def _parse_metrics(metric) -> tuple[list[Metric], bool]:
    several = isinstance(metric, (list, tuple))
    metrics = [m if isinstance(m, Metric) else Metric.parse(m)
               for m in (metric if several else [metric])]
    if not metrics:
        raise ValidationError("give at least one metric")
    return metrics, several


def _check_metric(m: Metric, cm, end: float, plan) -> None:
    """Output name, time arguments within the run, threshold units, trough dose times."""
    names = cm.state_names + cm.observable_names
    bare, wanted = split_output(m.output)
    if bare not in names:
        raise ValidationError(f"metric {m}: no output named {bare!r} in model {cm.name} "
                              f"(outputs: {', '.join(names)})")
    units = cm.state_units + cm.observable_units
    unit = convertible(bare, units[names.index(bare)], wanted)
    times = m.args
    if m.name in ("time_above", "time_below"):
        level, times = m.args[0], m.args[1:]
        if level.dimensionality != (1 * unit).dimensionality:
            raise UnitError(f"metric {m}: threshold {format_quantity(level)} does not match the "
                            f"unit of {m.output} ({format_unit(unit) or 'dimensionless'})")
    for q in times:
        at = q.to(ureg.day).magnitude
        if not 0 <= at <= end * (1 + 1e-12):
            raise ValidationError(f"metric {m}: {format_quantity(q)} is outside the run "
                                  f"(0 to {end:g} day)")
    if m.name in NCA_METRICS and not is_concentration(unit):
        raise ValidationError(f"metric {m}: {m.output} is in "
                              f"{format_unit(unit) or 'dimensionless units'}, not a "
                              "concentration; NCA needs a mass or amount per volume")
    if m.name == "trough" or m.name in NCA_INTERVAL_METRICS:
        at = m.args[0].to(ureg.day).magnitude
        if not any(math.isclose(t, at, abs_tol=1e-9) for t in plan.dose_times()):
            raise ValidationError(f"metric {m}: no dose at {format_quantity(m.args[0])} in "
                                  "this regimen")


def _check_workers(workers) -> None:
    if workers is not None:
        positive("workers", workers, 1)


def _short(q: pint.Quantity, digits: int = 6) -> str:
    """``'6.931 L/d'``: a value to a few significant digits, for tables and labels."""
    unit = format_unit(q.units)
    return f"{float(q.magnitude):.{digits}g} {unit}".strip()


def _unit_text(unit) -> str:
    return format_unit(unit) or "1"


def _freeze(a) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


# ---- local sensitivity ------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class LocalSensitivity:
    """Normalised local sensitivity coefficients of one metric.

    Attributes
    ----------
    metric
        The metric text, e.g. ``"auc(C, 0 d, 40 d)"``.
    nominal
        The metric at the nominal parameter values (a Quantity).
    parameters, values
        Parameter names and their nominal values (Quantities, in the model's units).
    coefficients
        ``S_p = (dM/M) / (dp/p)``, in the order of :attr:`parameters`.  ``nan`` if the
        nominal metric is 0.
    derivatives
        ``dM/d(ln p) = p dM/dp`` in the metric's unit (defined even when M = 0).
    relative_step
        The finite-difference step ``h`` in ``ln p``.
    schemes
        ``"central"`` for each parameter, or ``"backward"``/``"forward"`` (one-sided,
        also second order) where a step the other way gives an impossible value (e.g. a
        bioavailability of 1 cannot be stepped up).
    """

    metric: str
    nominal: pint.Quantity
    parameters: tuple[str, ...]
    values: tuple[pint.Quantity, ...]
    coefficients: np.ndarray
    derivatives: pint.Quantity
    relative_step: float
    schemes: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self):
        object.__setattr__(self, "coefficients", _freeze(self.coefficients))
        d = self.derivatives
        object.__setattr__(self, "derivatives", ureg.Quantity(_freeze(d.magnitude), d.units))

    def __getitem__(self, name: str) -> float:
        """The coefficient of one parameter."""
        try:
            return float(self.coefficients[self.parameters.index(name)])
        except ValueError:
            raise ValidationError(f"no coefficient for {name!r} (parameters: "
                                  f"{', '.join(self.parameters)})") from None

    def _order(self) -> list[int]:
        key = np.where(np.isnan(self.coefficients), -1.0, np.abs(self.coefficients))
        return sorted(range(len(self.parameters)), key=lambda i: -key[i])

    def table(self) -> list[tuple[str, pint.Quantity, float]]:
        """Rows (parameter, nominal value, coefficient), largest ``|S|`` first."""
        return [(self.parameters[i], self.values[i], float(self.coefficients[i]))
                for i in self._order()]

    def __str__(self) -> str:
        rows = self.table()
        width = max(9, *(len(name) for name, _, _ in rows))
        vwidth = max(12, *(len(_short(value)) for _, value, _ in rows))
        lines = [f"{self.metric} = {self.nominal.magnitude:.6g} "
                 f"{_unit_text(self.nominal.units)}  (local, h = {self.relative_step:g})",
                 f"  {self.description}",
                 f"  {'parameter':<{width}} {'value':>{vwidth}}   {'S = (dM/M)/(dp/p)':>18}"]
        schemes = dict(zip(self.parameters, self.schemes))
        for name, value, s in rows:
            note = f"   ({schemes[name]} difference)" if schemes.get(name, "central") != \
                "central" else ""
            lines.append(f"  {name:<{width}} {_short(value):>{vwidth}}   "
                         f"{s:>18.4f}{note}")
        return "\n".join(lines)

    def to_csv(self, path) -> None:
        """Write ``parameter, value, unit, coefficient, derivative [unit]`` rows."""
        from ..io.atomic import write_text_atomically
        unit = _unit_text(self.derivatives.units)
        rows = [f"parameter,value,unit,coefficient,dM/dlnp [{unit}]"]
        for i in self._order():
            v = self.values[i]
            rows.append(f"{self.parameters[i]},{v.magnitude!r},{_unit_text(v.units)},"
                        f"{float(self.coefficients[i])!r},"
                        f"{float(self.derivatives.magnitude[i])!r}")
        write_text_atomically(path, "\n".join(rows) + "\n")

    def plot(self, ax=None):
        """Tornado plot: one horizontal bar per parameter, largest on top; returns the Axes."""
        return _plot_tornado(self, ax)


def local_sensitivity(model, regimen, metric, parameters: Sequence[str] | None = None, *,
                      until, params=None, overrides: Mapping | None = None, every=None,
                      relative_step: float = 1e-3, rtol: float = 1e-10, atol=None,
                      progress: bool = False, workers: int | None = None, executor=None
                      ) -> LocalSensitivity | tuple[LocalSensitivity, ...]:
    """Normalised sensitivity coefficients ``S_p = (dM/M)/(dp/p)`` of a metric.

    For each parameter, two runs at ``p * exp(+h)`` and ``p * exp(-h)`` (``h =
    relative_step``) give ``dM/d(ln p) ~ (M+ - M-) / (2h)`` (error O(h²)); dividing by the
    nominal metric M gives S_p.  S_p = -1 means "1 % more p, 1 % less M".  Where one side
    is not allowed (a bioavailability of 1 stepped up), the two runs are taken on the other
    side, ``p * exp(-h)`` and ``p * exp(-2h)``, with the one-sided second-order formula.

    Parameters
    ----------
    model
        Model, built-in name or path.
    regimen
        Regimen text or :class:`~mechsim.dosing.Regimen` (None: no doses).
    metric
        Metric text such as ``"auc(C, 0 day, 40 day)"`` (see :mod:`mechsim.analysis.metrics`),
        or a list of metrics (then a tuple of results, from one set of runs).
    parameters
        Names of the parameters to perturb; None: every parameter with a nonzero value.
    until, params, overrides, every
        As for :func:`mechsim.simulate`.
    relative_step
        Step ``h`` in ``ln p`` (default 1e-3, i.e. ±0.1 %).
    rtol, atol
        Solver tolerances, tighter than :func:`~mechsim.simulate`'s defaults so that solver
        error (~rtol/h) stays far below the finite-difference error (~h²).  ``atol=None``:
        1e-14 of each state's own unit; a number or one value per state is taken in the
        solver's canonical units (nmol, nM, L, g, day), as in :func:`~mechsim.simulate`.
    workers, executor
        How the runs are spread, as in :func:`mechsim.simulate_many` (threads for the
        compiled engine, processes otherwise; or a ``concurrent.futures`` pool or Dask
        ``distributed.Client``); the result is the same.

    Examples
    --------
    >>> ls = local_sensitivity("one_compartment", "1000 nmol iv", "max(C)", ["V", "CL"],
    ...                        until="1 day")
    >>> round(ls["V"], 6), round(ls["CL"], 6)
    (-1.0, 0.0)
    """
    metrics, several = _parse_metrics(metric)
    if not (isinstance(relative_step, (int, float)) and 0 < relative_step <= 0.5):
        raise ValidationError(f"relative_step must be in (0, 0.5], got {relative_step!r}")
    _check_workers(workers)
    runs = _Runs(model, regimen, metrics, until=until, params=params, overrides=overrides,
                 every=every, rtol=rtol, atol=atol, default_atol=1e-14)
    if parameters is None:
        names = [n for n, v in zip(runs.cm.parameter_names, runs.p0) if v != 0]
    elif isinstance(parameters, str):
        names = [parameters]
    else:
        names = list(parameters)
    if not names:
        raise ValidationError("give at least one parameter")
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise ValidationError(f"parameter {dup!r} is listed twice")
    for name in names:
        param = runs.parameter(name)
        if runs.p0[runs.index(name)] == 0:
            raise ValidationError(f"parameter {name} is {format_quantity(param.value)}: a "
                                  "normalised sensitivity needs a nonzero value")

    h = float(relative_step)
    jobs = [(runs.p0, runs.plan(runs.p0), "")]
    schemes = []
    for name in names:
        scheme, steps = _steps(runs, name, h)
        schemes.append(scheme)
        jobs.extend(steps)
    rows = runs.evaluate(jobs, progress=progress, desc="local sensitivity", workers=workers,
                         executor=executor)

    values = tuple(runs.parameter(n).value for n in names)
    out = []
    for k, m in enumerate(metrics):
        nominal = rows[0][k]
        unit = nominal.units
        y = np.array([row[k].to(unit).magnitude for row in rows], dtype=float)
        m0, pairs = y[0], y[1:].reshape(-1, 2)
        deriv = np.array([_difference(sch, m0, a, b, h) for sch, (a, b) in zip(schemes, pairs)])
        with np.errstate(divide="ignore", invalid="ignore"):
            coeff = np.where(m0 != 0, deriv / m0, np.nan)
        out.append(LocalSensitivity(metric=str(m), nominal=nominal, parameters=tuple(names),
                                    values=values, coefficients=coeff,
                                    derivatives=ureg.Quantity(deriv, unit), relative_step=h,
                                    schemes=tuple(schemes), description=runs.description))
    return tuple(out) if several else out[0]


# finite-difference schemes for dM/d(ln p), second order in h; offsets in units of h
_SCHEMES = {"central": (1, -1), "backward": (-1, -2), "forward": (1, 2)}


def _steps(runs: _Runs, name: str, h: float):
    """The two perturbed runs of one parameter: central, or one-sided when a step would
    leave the allowed values (e.g. bioavailability 1 cannot be stepped up)."""
    i = runs.index(name)
    first_error = None
    for scheme, offsets in _SCHEMES.items():
        jobs = []
        try:
            for k in offsets:
                p = runs.p0.copy()
                p[i] *= math.exp(k * h)
                label = f"{name} x exp({k * h:+g})"
                jobs.append((p, runs.plan(p, label), label))
        except ValidationError as exc:
            first_error = first_error or exc
            continue
        return scheme, jobs
    raise first_error


def _difference(scheme: str, m0: float, a: float, b: float, h: float) -> float:
    if scheme == "central":      # (M(+h) - M(-h)) / 2h
        return (a - b) / (2 * h)
    if scheme == "backward":     # (3 M(0) - 4 M(-h) + M(-2h)) / 2h
        return (3 * m0 - 4 * a + b) / (2 * h)
    return (-3 * m0 + 4 * a - b) / (2 * h)  # forward: (-3 M(0) + 4 M(+h) - M(+2h)) / 2h


# ---- global sensitivity (Sobol) ---------------------------------------------------------------
def ranges_from_params(model, parameters: Iterable[str] | None = None, *, factor: float = 2.0,
                       params=None, overrides: Mapping | None = None
                       ) -> dict[str, tuple[pint.Quantity, pint.Quantity]]:
    """Ranges ``[value/factor, value*factor]`` around each parameter's current value.

    ``model``, ``params`` and ``overrides`` are layered as for :func:`mechsim.simulate`, so the
    values (and their units) are those of the parameter files.  ``parameters=None`` takes
    every parameter with a nonzero value.  Pair with ``scale="log"`` (the default of
    :func:`sobol_indices`): the range is then symmetric around the value in ``log p``.

    >>> ranges_from_params("one_compartment", ["CL"], params="one_compartment_typical")
    {'CL': (<Quantity(0.1, 'liter / day')>, <Quantity(0.4, 'liter / day')>)}
    """
    from ..io import prepare_model

    if not (isinstance(factor, (int, float)) and not isinstance(factor, bool)
            and math.isfinite(factor) and factor > 1):
        raise ValidationError(f"factor must be a number > 1, got {factor!r}")
    model = prepare_model(model, params, overrides)
    known = model.parameters_by_name
    names = [n for n, p in known.items() if p.is_set and p.value.magnitude != 0] \
        if parameters is None else ([parameters] if isinstance(parameters, str)
                                    else list(parameters))
    out = {}
    for name in names:
        if name not in known:
            raise ValidationError(f"unknown parameter {name!r} for model {model.name} "
                                  f"(known: {', '.join(sorted(known))})")
        value = known[name].value
        if not known[name].is_set or value.magnitude == 0:
            raise ValidationError(f"parameter {name} is {format_quantity(value)}: a range "
                                  "from a factor needs a nonzero value")
        low, high = sorted([value / factor, value * factor], key=lambda q: q.magnitude)
        out[name] = (low, high)
    return out


@dataclass(frozen=True, eq=False)
class SobolResult:
    """First-order and total Sobol indices of one metric over parameter ranges.

    Attributes
    ----------
    metric, unit
        The metric text and the unit of its values.
    parameters
        Parameter names, in the order of every array here.
    low, high, scales
        Each parameter's range (Quantities in the model's units) and how it was sampled:
        ``"log"`` (uniform in ``ln p``) or ``"linear"`` (uniform in p).
    S1, ST
        First-order and total indices: the share of the metric's variance due to the
        parameter alone, and including all its interactions.
    S1_conf, ST_conf
        Half-widths of the :attr:`confidence` intervals (bootstrap), so the interval of
        ``S1[i]`` is ``S1[i] ± S1_conf[i]``.
    n, runs, seed
        Base sample size (a power of 2), number of simulations ``n (D + 2)``, and the seed
        (pass it back as ``seed=`` to reproduce the samples and intervals).
    samples, values
        Every sampled parameter set (``runs x D``, magnitudes in the units of :attr:`low`)
        and the metric of each run (a Quantity array), for scatter plots.
    nominal
        The metric at the nominal parameter values.
    """

    metric: str
    unit: pint.Unit
    parameters: tuple[str, ...]
    low: tuple[pint.Quantity, ...]
    high: tuple[pint.Quantity, ...]
    scales: tuple[str, ...]
    S1: np.ndarray
    S1_conf: np.ndarray
    ST: np.ndarray
    ST_conf: np.ndarray
    confidence: float
    n: int
    runs: int
    seed: int
    samples: np.ndarray
    values: pint.Quantity
    nominal: pint.Quantity
    description: str = ""

    def __post_init__(self):
        for name in ("S1", "S1_conf", "ST", "ST_conf", "samples"):
            object.__setattr__(self, name, _freeze(getattr(self, name)))
        v = self.values
        object.__setattr__(self, "values", ureg.Quantity(_freeze(v.magnitude), v.units))

    def index(self, name: str) -> int:
        try:
            return self.parameters.index(name)
        except ValueError:
            raise ValidationError(f"no index for {name!r} (parameters: "
                                  f"{', '.join(self.parameters)})") from None

    def interval(self, name: str, kind: str = "S1") -> tuple[float, float]:
        """Confidence interval of ``S1`` or ``ST`` of one parameter."""
        if kind not in ("S1", "ST"):
            raise ValidationError(f"kind must be 'S1' or 'ST', got {kind!r}")
        i = self.index(name)
        s, c = getattr(self, kind)[i], getattr(self, f"{kind}_conf")[i]
        return float(s - c), float(s + c)

    def _order(self) -> list[int]:
        return sorted(range(len(self.parameters)), key=lambda i: -self.ST[i])

    def table(self) -> list[tuple[str, float, float, float, float, float, float]]:
        """Rows (parameter, S1, S1 low, S1 high, ST, ST low, ST high), largest ST first."""
        return [(self.parameters[i], float(self.S1[i]), float(self.S1[i] - self.S1_conf[i]),
                 float(self.S1[i] + self.S1_conf[i]), float(self.ST[i]),
                 float(self.ST[i] - self.ST_conf[i]), float(self.ST[i] + self.ST_conf[i]))
                for i in self._order()]

    def range_text(self, i: int) -> str:
        lo, hi = self.low[i], self.high[i]
        unit = format_unit(lo.units)
        return f"{lo.magnitude:.3g}..{hi.magnitude:.3g}{' ' + unit if unit else ''} " \
               f"({self.scales[i]})"

    def __str__(self) -> str:
        mag = self.values.magnitude
        pct = round(100 * self.confidence)
        order = self._order()
        width = max(9, *(len(self.parameters[i]) for i in order))
        rwidth = max(5, *(len(self.range_text(i)) for i in order))
        lines = [f"{self.metric} [{_unit_text(self.unit)}]: nominal "
                 f"{self.nominal.magnitude:.4g}; over the ranges mean {mag.mean():.4g}, "
                 f"sd {mag.std():.3g}, 5-95 % {np.percentile(mag, 5):.4g}.."
                 f"{np.percentile(mag, 95):.4g}  (Sobol, {self.runs} runs, n = {self.n}, "
                 f"seed {self.seed})",
                 f"  {self.description}",
                 f"  {'parameter':<{width}} {'range':<{rwidth}} {'S1':>6}  "
                 f"{f'{pct} % CI':<16} {'ST':>6}  {f'{pct} % CI':<16}"]
        for i in order:
            s1, s1c, st, stc = self.S1[i], self.S1_conf[i], self.ST[i], self.ST_conf[i]
            lines.append(f"  {self.parameters[i]:<{width}} {self.range_text(i):<{rwidth}} "
                         f"{s1:6.3f}  [{s1 - s1c:6.3f}, {s1 + s1c:5.3f}] {st:6.3f}  "
                         f"[{st - stc:6.3f}, {st + stc:5.3f}]")
        return "\n".join(lines)

    def to_csv(self, path) -> None:
        """Write one row per parameter: range, S1, ST and their interval bounds."""
        from ..io.atomic import write_text_atomically
        rows = ["parameter,low,high,unit,scale,S1,S1_low,S1_high,ST,ST_low,ST_high"]
        for row, i in zip(self.table(), self._order()):
            rows.append(f"{row[0]},{self.low[i].magnitude!r},{self.high[i].magnitude!r},"
                        f"{_unit_text(self.low[i].units)},{self.scales[i]},"
                        + ",".join(repr(x) for x in row[1:]))
        write_text_atomically(path, "\n".join(rows) + "\n")

    def plot(self, ax=None):
        """Bars of S1 and ST per parameter with confidence-interval error bars."""
        return _plot_sobol(self, ax)


def _parse_range(name: str, spec, param) -> tuple[pint.Quantity, pint.Quantity]:
    """``(low, high)`` as Quantities/text/numbers, or ``"LOW..HIGH UNIT"``."""
    what = f"range of {name}"
    if isinstance(spec, str):
        match = _RANGE_TEXT.match(spec)
        if not match:
            raise ValidationError(f"{what}: expected (LOW, HIGH) or 'LOW..HIGH UNIT', got "
                                  f"{spec!r}")
        unit = match.group(3).strip()
        spec = tuple(f"{match.group(k)} {unit}".strip() for k in (1, 2))
    if isinstance(spec, pint.Quantity) and np.ndim(spec.magnitude) == 1:
        spec = tuple(spec)
    if not isinstance(spec, (tuple, list)) or len(spec) != 2:
        raise ValidationError(f"{what}: expected (LOW, HIGH), got {spec!r}")
    low, high = (parse_quantity(v, what=what) for v in spec)
    target = param.value
    for q in (low, high):
        if q.dimensionality != target.dimensionality:
            raise UnitError(f"{what}: {format_quantity(q)} must have the dimension of "
                            f"{format_quantity(target)} "
                            f"({dimension_text(target.dimensionality)}), got "
                            f"{dimension_text(q.dimensionality)}")
    low, high = low.to(target.units), high.to(target.units)
    if not (np.isfinite(low.magnitude) and np.isfinite(high.magnitude)):
        raise ValidationError(f"{what}: bounds must be finite")
    if not low.magnitude < high.magnitude:
        raise ValidationError(f"{what}: need LOW < HIGH, got {format_quantity(low)} and "
                              f"{format_quantity(high)}")
    return low, high


def sobol_indices(model, regimen, metric, ranges, *, until, n: int = 256, seed: int | None = 0,
                  scale: str | Mapping[str, str] = "log", factor: float = 2.0, params=None,
                  overrides: Mapping | None = None, every=None, rtol: float = 1e-8,
                  atol=None, confidence: float = 0.95, resamples: int = 1000,
                  progress: bool = False, workers: int | None = None, executor=None
                  ) -> SobolResult | tuple[SobolResult, ...]:
    """First-order and total Sobol indices of a metric over parameter ranges.

    Parameter sets come from Saltelli's scheme on a scrambled Sobol' sequence
    (``SALib.sample.sobol``, ``calc_second_order=False``): ``n (D + 2)`` simulations for D
    parameters.  The indices are SALib's estimators (Saltelli 2010 for S1, Jansen for ST);
    their confidence intervals are ``index ± z * sd`` of ``resamples`` bootstrap
    re-estimates.  Parameters not in ``ranges`` keep their nominal values.

    Parameters
    ----------
    model, regimen, metric
        As for :func:`local_sensitivity` (``metric`` may be a list: one result per metric,
        from one set of runs).
    ranges
        ``{name: (low, high)}`` with Quantities or text (``("0.1 L/day", "0.4 L/day")``,
        or ``"0.1..0.4 L/day"``; numbers for dimensionless parameters), or a list of names
        meaning ``[value/factor, value*factor]`` around the current values (see
        :func:`ranges_from_params`).
    until, params, overrides, every, rtol, atol
        As for :func:`mechsim.simulate`; ``atol=None``: 1e-12 of each state's own unit.
    n
        Base sample size, a power of 2 (the Sobol' sequence is balanced only then).
    seed
        Seeds the scrambling of the sequence and the bootstrap; None draws a fresh seed
        (recorded in the result).  Same seed, same inputs: same result.
    scale
        ``"log"`` (default: uniform in ``ln p``; bounds must be positive) or ``"linear"``
        (uniform in p), for every parameter or as ``{name: scale}`` (others: ``"log"``).
    confidence
        Level of the bootstrap intervals (default 0.95).
    workers, executor
        How the runs are spread, as in :func:`mechsim.simulate_many` (threads for the
        compiled engine, processes otherwise; or a ``concurrent.futures`` pool or Dask
        ``distributed.Client``); the result is the same.

    Examples
    --------
    The peak after a bolus, D/V, depends on V alone:

    >>> s = sobol_indices("one_compartment", "1000 nmol iv", "max(C)",
    ...                   {"V": ("5 L", "20 L"), "CL": ("3 L/day", "12 L/day")},
    ...                   until="1 day", n=64, every="1 day")
    >>> [(name, round(st, 2)) for name, s1, _, _, st, _, _ in s.table()]
    [('V', 1.0), ('CL', 0.0)]
    """
    metrics, several = _parse_metrics(metric)
    integer = isinstance(n, numbers.Integral) and not isinstance(n, bool)
    if not (integer and n >= 2 and n & (n - 1) == 0):
        lower = 2 ** max(1, int(math.log2(n))) if integer and n > 0 else 2
        raise ValidationError(f"n must be a power of 2 (at least 2), got {n!r}; e.g. "
                              f"{lower} or {2 * lower}")
    n = int(n)
    if seed is not None and not (isinstance(seed, numbers.Integral) and seed >= 0):
        raise ValidationError(f"seed must be a non-negative integer or None, got {seed!r}")
    if not (isinstance(confidence, float) and 0 < confidence < 1):
        raise ValidationError(f"confidence must be a number between 0 and 1, got "
                              f"{confidence!r}")
    if not (isinstance(resamples, int) and resamples >= 10):
        raise ValidationError(f"resamples must be an integer >= 10, got {resamples!r}")
    _check_workers(workers)
    runs = _Runs(model, regimen, metrics, until=until, params=params, overrides=overrides,
                 every=every, rtol=rtol, atol=atol)
    if isinstance(ranges, str):
        ranges = [ranges]
    if isinstance(ranges, Mapping):
        specs = dict(ranges)
    elif isinstance(ranges, Iterable):
        names = list(ranges)
        for name in names:
            runs.parameter(name)
        specs = ranges_from_params(runs.model, names, factor=factor)
    else:
        raise ValidationError("ranges must be {name: (low, high)} or a list of parameter names")
    if not specs:
        raise ValidationError("give at least one parameter range")
    names = list(specs)
    bounds = [_parse_range(name, specs[name], runs.parameter(name)) for name in names]
    scales = _scales(scale, names)
    for name, (low, _), sc in zip(names, bounds, scales):
        if sc == "log" and not low.magnitude > 0:
            raise ValidationError(f"range of {name}: log-uniform sampling needs positive "
                                  f"bounds, got {format_quantity(low)} (use scale='linear' "
                                  f"for {name})")

    sobol_analyze = require("SALib.analyze.sobol", "Sobol indices")
    sobol_sample = require("SALib.sample.sobol", "Sobol indices")

    seq = np.random.SeedSequence(seed)
    sample_seed, boot_seed = (int(s.generate_state(1)[0]) or 1 for s in seq.spawn(2))
    d = len(names)
    problem = {"num_vars": d, "names": names, "bounds": [[0.0, 1.0]] * d}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        unit_cube = sobol_sample.sample(problem, n, calc_second_order=False, seed=sample_seed)
    samples = np.empty_like(unit_cube)  # in each parameter's own unit
    canonical = np.empty_like(unit_cube)
    for j, ((low, high), sc) in enumerate(zip(bounds, scales)):
        a, b = low.magnitude, high.magnitude
        u = unit_cube[:, j]
        samples[:, j] = np.exp(np.log(a) + u * (np.log(b) - np.log(a))) if sc == "log" \
            else a + u * (b - a)
        canonical[:, j] = samples[:, j] * to_canonical(ureg.Quantity(1.0, low.units))
    columns = [runs.index(name) for name in names]

    # every parameter set is checked (volumes, F, lag, weight) before the first run
    jobs = [(runs.p0, runs.plan(runs.p0), "")]
    for k, row in enumerate(canonical):
        p = runs.p0.copy()
        p[columns] = row
        label = "sample " + ", ".join(f"{name} = {samples[k, j]:.6g} {format_unit(b[0].units)}"
                                      .rstrip() for j, (name, b) in enumerate(zip(names, bounds)))
        jobs.append((p, runs.plan(p, label), label))
    rows = runs.evaluate(jobs, progress=progress, desc="sobol", workers=workers,
                         executor=executor)

    out = []
    for k, m in enumerate(metrics):
        nominal = rows[0][k]
        unit = nominal.units
        y = np.array([row[k].to(unit).magnitude for row in rows[1:]], dtype=float)
        if np.ptp(y) <= 1e-12 * max(1.0, float(np.max(np.abs(y)))):
            warnings.warn(f"metric {m} does not vary over these ranges; all indices are 0",
                          stacklevel=2)
            zeros = np.zeros(d)
            s1 = s1c = st = stc = zeros
        else:
            si = sobol_analyze.analyze(problem, y, calc_second_order=False,
                                       num_resamples=resamples, conf_level=confidence,
                                       seed=boot_seed)
            s1, s1c, st, stc = (np.asarray(si[key], dtype=float)
                                for key in ("S1", "S1_conf", "ST", "ST_conf"))
        out.append(SobolResult(
            metric=str(m), unit=unit, parameters=tuple(names),
            low=tuple(b[0] for b in bounds), high=tuple(b[1] for b in bounds),
            scales=tuple(scales), S1=s1, S1_conf=s1c, ST=st, ST_conf=stc,
            confidence=confidence, n=n, runs=len(y), seed=int(seq.entropy),
            samples=samples, values=ureg.Quantity(y, unit), nominal=nominal,
            description=runs.description))
    return tuple(out) if several else out[0]


def _scales(scale, names: list[str]) -> list[str]:
    if isinstance(scale, str):
        chosen = dict.fromkeys(names, scale)
    elif isinstance(scale, Mapping):
        extra = sorted(set(scale) - set(names))
        if extra:
            raise ValidationError(f"scale given for {extra[0]!r}, which has no range")
        chosen = {name: scale.get(name, "log") for name in names}
    else:
        raise ValidationError(f"scale must be 'log', 'linear' or {{name: scale}}, got {scale!r}")
    for name, sc in chosen.items():
        if sc not in SCALES:
            raise ValidationError(f"scale of {name} must be 'log' or 'linear', got {sc!r}")
    return [chosen[name] for name in names]


# ---- figures ----------------------------------------------------------------------------------
def _metric_label(metric: str, unit) -> str:
    text = _unit_text(unit)
    return f"{metric} [{text}]" if text != "1" else metric


def _title_width(ax) -> int:
    """Characters of 8-point text that fit over one column of the figure."""
    spec = ax.get_subplotspec() if hasattr(ax, "get_subplotspec") else None
    columns = spec.get_gridspec().ncols if spec is not None else 1
    return max(40, int(ax.figure.get_figwidth() / columns * 0.85 * 13))


def _plot_tornado(ls: LocalSensitivity, ax=None):
    import textwrap

    import matplotlib.pyplot as plt

    rows = ls.table()[::-1]  # largest at the top
    if ax is None:
        _, ax = plt.subplots(figsize=(7.2, 1.2 + 0.38 * len(rows)))
    s = np.array([r[2] for r in rows])
    ypos = np.arange(len(rows))
    colours = np.where(s >= 0, "tab:red", "tab:blue")
    ax.barh(ypos, np.nan_to_num(s), color=colours, height=0.65)
    ax.set_yticks(ypos, [f"{name} = {_short(value, 4)}" for name, value, _ in rows],
                  fontsize=9)
    ax.axvline(0, color="black", lw=0.8)
    span = float(np.nanmax(np.abs(s))) if np.isfinite(s).any() else 1.0
    span = span or 1.0
    for y, v in zip(ypos, s):
        if np.isfinite(v):
            ax.annotate(f"{v:+.3g}", (v, y), xytext=(4 if v >= 0 else -4, 0),
                        textcoords="offset points", va="center", ha="left" if v >= 0 else "right",
                        fontsize=8)
    ax.set_xlim(-1.3 * span if (s < 0).any() else -0.1 * span,
                1.3 * span if (s > 0).any() else 0.1 * span)
    ax.set_xlabel("normalised sensitivity  S = (dM/M) / (dp/p)\n"
                  "red: M rises with p, blue: M falls", fontsize=9)
    nominal = f"{ls.nominal.magnitude:.4g} {format_unit(ls.nominal.units)}".strip()
    chars = _title_width(ax)
    ax.set_title(textwrap.fill(f"M = {_metric_label(ls.metric, ls.nominal.units)}, nominal "
                               f"{nominal}", chars) + "\n" +
                 textwrap.fill(ls.description, chars), fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.figure.tight_layout()
    return ax


def _plot_sobol(sr: SobolResult, ax=None):
    import textwrap

    import matplotlib.pyplot as plt

    order = sr._order()
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.4, 1.1 * len(order) + 2), 4.6))
    x = np.arange(len(order))
    width = 0.38
    pct = round(100 * sr.confidence)
    ax.bar(x - width / 2, sr.S1[order], width, yerr=sr.S1_conf[order], capsize=3,
           color="tab:blue", label="first order S1")
    ax.bar(x + width / 2, sr.ST[order], width, yerr=sr.ST_conf[order], capsize=3,
           color="tab:orange", label="total ST")
    unit_text = [format_unit(sr.low[i].units) for i in order]
    labels = [f"{sr.parameters[i]}\n{sr.low[i].magnitude:.3g}..{sr.high[i].magnitude:.3g}"
              + (f"\n{u}" if u else "") + f"\n({sr.scales[i]})" for i, u in zip(order, unit_text)]
    ax.set_xticks(x, labels, fontsize=8)
    ax.axhline(0, color="black", lw=0.8)
    ax.set_ylabel(f"Sobol index (share of variance)\nerror bars: {pct} % bootstrap CI")
    low = np.concatenate([sr.S1 - sr.S1_conf, sr.ST - sr.ST_conf])
    high = np.concatenate([sr.S1 + sr.S1_conf, sr.ST + sr.ST_conf])
    ax.set_ylim(min(0.0, float(np.min(low)) - 0.05), max(1.05, float(np.max(high)) + 0.05))
    chars = _title_width(ax)
    ax.set_title(textwrap.fill(f"{_metric_label(sr.metric, sr.unit)}: {sr.runs} runs "
                               f"(n = {sr.n}), ranges sampled uniformly (log: in ln p)", chars)
                 + "\n" + textwrap.fill(sr.description, chars), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=8)
    ax.figure.tight_layout()
    return ax

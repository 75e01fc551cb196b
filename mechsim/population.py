"""Virtual populations: between-patient variability, covariates and a seed.

A :class:`Population` is read from a population file (format in docs/populations.md, reader
in :mod:`mechsim.io.population_file`) and turned into virtual patients by
:meth:`Population.sample`:

1. every continuous random variable (a varied model parameter or a continuous covariate)
   gets a standard-normal deviate; correlations mix them through a Cholesky factor (a
   Gaussian copula, so a uniform variable can be correlated too);
2. each deviate is mapped to its distribution: log-normal ``median * exp(omega * z)`` with
   ``omega**2 = log(1 + cv**2)``, normal ``mean + sd * z``, uniform ``lower + (upper - lower)
   * Phi(z)``; a patient outside any bound is redrawn whole (truncation, which keeps the
   correlations);
3. categorical covariates are drawn from their shares;
4. covariate effects are applied in file order: ``power`` (``value * (cov/ref)**exponent``),
   ``multiply`` and ``set`` for one level of a categorical covariate.  A covariate named like
   a model parameter sets that parameter (e.g. body weight ``WT`` in a model with allometry).

The draws depend only on the seed and the patient count, never on how runs are scheduled.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches

import numpy as np
import pint
from scipy.special import ndtr

from .errors import ValidationError
from .model import Model
from .units import canonical_unit, dimension_text, format_quantity, ureg

__all__ = ["BSA_FORMULAS", "Categorical", "Derived", "Distribution", "Effect", "Fixed",
           "Population",
           "VirtualPatients"]

_MAX_REDRAWS = 200  # rounds of redrawing out-of-bounds patients before giving up


@dataclass(frozen=True)
class Distribution:
    """A continuous random variable: a model parameter's variability or a covariate.

    ``center`` is the median (log-normal) or mean (normal); None takes the model's value.
    ``spread`` is omega (log-normal, dimensionless) or the standard deviation (normal).
    """

    name: str
    kind: str                                   # "lognormal" | "normal" | "uniform"
    center: pint.Quantity | None = None
    spread: pint.Quantity | float | None = None
    lower: pint.Quantity | None = None
    upper: pint.Quantity | None = None
    where: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Categorical:
    """A categorical covariate: levels and their shares (summing to 1)."""

    name: str
    levels: tuple[tuple[str, float], ...]
    where: str | None = field(default=None, compare=False)


def _mosteller(height_cm, weight_kg):
    return np.sqrt(height_cm * weight_kg / 3600.0)


def _dubois(height_cm, weight_kg):
    return 0.007184 * weight_kg ** 0.425 * height_cm ** 0.725


#: Body surface area (m2) from height (cm) and weight (kg): Mosteller RD, N Engl J Med
#: 317:1098 (1987); DuBois D, DuBois EF, Arch Intern Med 17:863 (1916).
BSA_FORMULAS = {"mosteller": _mosteller, "dubois": _dubois}


@dataclass(frozen=True)
class Derived:
    """A covariate computed from others for each patient: body surface area by a named
    formula (:data:`BSA_FORMULAS`) from the numeric covariates ``HT`` and ``WT``."""

    name: str
    formula: str
    inputs: tuple[str, ...] = ("HT", "WT")
    where: str | None = field(default=None, compare=False)

    def values(self, values: Mapping[str, np.ndarray]) -> np.ndarray:
        """Canonical values (dm2) from the inputs' canonical values (dm, g)."""
        height_cm, weight_kg = values["HT"] * 10.0, values["WT"] / 1000.0
        return BSA_FORMULAS[self.formula](height_cm, weight_kg) * 100.0


@dataclass(frozen=True)
class Effect:
    """A covariate effect on a model parameter.

    ``kind`` "power": parameter * (covariate / reference) ** exponent; "linear":
    parameter * (1 + value * (covariate - reference)), ``value`` per unit of the covariate;
    "multiply" / "set":
    for patients whose categorical ``covariate`` is ``level``, multiply by ``value`` or set
    the parameter to ``value``.
    """

    covariate: str
    parameter: str
    kind: str
    value: pint.Quantity | float
    reference: pint.Quantity | None = None
    level: str | None = None
    where: str | None = field(default=None, compare=False)
    #: a population fit estimates ``value`` (the file's value is its start)
    estimate: bool = False


@dataclass(frozen=True)
class Fixed:
    """A typical value given to every patient (``value`` None: the model's), and how a
    population fit estimates it (``scale`` "log" or "linear")."""

    name: str
    value: pint.Quantity | None = None
    scale: str = "log"
    where: str | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Population:
    """Everything needed to draw virtual patients for one model (see module docstring)."""

    name: str
    model: str | None
    variability: tuple[Distribution, ...] = ()
    covariates: tuple[Distribution | Categorical, ...] = ()
    effects: tuple[Effect, ...] = ()
    correlations: tuple[tuple[str, str, float], ...] = ()
    #: typical values without variability, the same for every patient (a fitted
    #: population's fixed effects; in a file given to a population fit: what it estimates)
    fixed: tuple[Fixed, ...] = ()
    #: residual error per output, as in a parameter file's [error] table:
    #: (output, kind, ((name, value), ...))
    errors: tuple = ()
    seed: int | None = None
    description: str = ""
    path: str | None = field(default=None, compare=False)

    def check(self, model: Model) -> None:
        """Every named parameter exists in ``model`` with the right dimension."""
        if self.model is not None and self.model != model.name:
            raise ValidationError(f"population {self.name} is for model {self.model!r}, not "
                                  f"{model.name!r}", self.path)
        known = model.parameters_by_name
        covariates = {c.name for c in self.covariates}
        for d in self.variability:
            _dimension(known, d.name, d.where, d.center, d.lower, d.upper,
                       d.spread if d.kind == "normal" else None)
            _non_negative(known, d)
        for f in self.fixed:
            _dimension(known, f.name, f.where, f.value)
            if f.name in {d.name for d in self.variability}:
                raise ValidationError(f"{f.name} is in [variability] and in [fixed]: give it "
                                      "once", f.where)
        for c in self.covariates:
            if c.name in known and isinstance(c, Distribution):
                _dimension(known, c.name, c.where, c.center, c.lower, c.upper)
                _non_negative(known, c)
            elif c.name in known and isinstance(c, Categorical):
                raise ValidationError(f"covariate {c.name} is categorical but {model.name} "
                                      f"has a numeric parameter of that name", c.where)
        for c in self.covariates:
            if isinstance(c, Derived):
                for name, dims, what in (("HT", ureg.cm.dimensionality, "a length"),
                                         ("WT", ureg.kg.dimensionality, "a mass")):
                    cov = next((x for x in self.covariates if x.name == name), None)
                    if not isinstance(cov, Distribution) or _center_dims(cov, known) != dims:
                        raise ValidationError(f"covariate {c.name}: the {c.formula} formula "
                                              f"needs a numeric covariate {name} ({what})",
                                              c.where)
                if c.name in known and known[c.name].value.dimensionality != \
                        (ureg.m ** 2).dimensionality:
                    raise ValidationError(f"covariate {c.name} is a body surface area but "
                                          f"parameter {c.name} of {model.name} is not an "
                                          "area", c.where)
        for e in self.effects:
            if e.covariate not in covariates:
                raise ValidationError(f"effect on {e.parameter}: unknown covariate "
                                      f"{e.covariate!r} (declared: "
                                      f"{', '.join(sorted(covariates)) or 'none'})", e.where)
            _dimension(known, e.parameter, e.where,
                       e.value if e.kind == "set" else None)
            cov = next(c for c in self.covariates if c.name == e.covariate)
            if e.kind in ("power", "linear"):
                if isinstance(cov, Categorical):
                    raise ValidationError(f"effect on {e.parameter}: a {e.kind} model needs a "
                                          f"numeric covariate; {cov.name} is categorical",
                                          e.where)
                if e.reference.dimensionality != _center_dims(cov, known):
                    raise ValidationError(
                        f"effect on {e.parameter}: reference {format_quantity(e.reference)} "
                        f"does not have the dimension of covariate {cov.name}", e.where)
            else:
                if not isinstance(cov, Categorical):
                    raise ValidationError(f"effect on {e.parameter}: '{e.kind}' needs a "
                                          f"categorical covariate; {cov.name} is numeric",
                                          e.where)
                if e.level not in dict(cov.levels):
                    raise ValidationError(
                        f"effect on {e.parameter}: {cov.name} has no level {e.level!r} "
                        f"(levels: {', '.join(k for k, _ in cov.levels)})", e.where)
        continuous = {d.name for d in self._continuous()}
        for a, b, _ in self.correlations:
            for name in (a, b):
                if name not in continuous:
                    raise ValidationError(f"correlation names {name!r}, which is not a varied "
                                          "parameter or numeric covariate", self.path)

    def _continuous(self) -> list[Distribution]:
        return list(self.variability) + [c for c in self.covariates
                                         if isinstance(c, Distribution)]

    def sample(self, model: Model, n: int, seed: int | None = None,
               given: Mapping[str, object] | None = None) -> VirtualPatients:
        """``n`` virtual patients of ``model`` (parameters applied); ``seed`` overrides the
        file's seed.  ``given`` fixes covariates instead of drawing them (one value for all
        patients, or one per patient: a Quantity for a numeric covariate, a level name for a
        categorical one), e.g. a real patient's weight in a visual predictive check; the
        draws of everything else are the same as without it."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValidationError(f"number of patients must be a positive integer, got {n!r}")
        seed = self.seed if seed is None else seed
        if seed is None:
            raise ValidationError(f"population {self.name} has no seed: give one in [meta] "
                                  "or as an argument (runs must be reproducible)", self.path)
        self.check(model)
        known = model.parameters_by_name
        rng = np.random.default_rng(seed)
        dists = self._continuous()
        values = _draw_continuous(dists, self._correlation_matrix(dists), known, int(n), rng,
                                  self.path)
        labels = {}
        for c in self.covariates:
            if isinstance(c, Categorical):
                names = np.array([k for k, _ in c.levels])
                cut = np.cumsum([share for _, share in c.levels])
                labels[c.name] = names[np.minimum(np.searchsorted(cut, rng.random(n),
                                                                  side="right"),
                                                  len(names) - 1)]
        for name, value in (given or {}).items():
            cov = next((c for c in self.covariates if c.name == name), None)
            if cov is None:
                raise ValidationError(f"given covariate {name!r} is not a covariate of "
                                      f"population {self.name}", self.path)
            if isinstance(cov, Categorical):
                levels = np.broadcast_to(np.asarray(value, dtype=str), (n,))
                unknown = sorted(set(levels) - {k for k, _ in cov.levels})
                if unknown:
                    raise ValidationError(f"given covariate {name}: no level {unknown[0]!r}",
                                          self.path)
                labels[name] = np.array(levels)
            else:
                q = value if isinstance(value, pint.Quantity) else ureg.Quantity(value)
                if q.dimensionality != _center_dims(cov, known):
                    raise ValidationError(f"given covariate {name} must have the dimension "
                                          f"of the population's {name}", self.path)
                values[name] = np.broadcast_to(
                    np.asarray(q.to(canonical_unit(q)).magnitude, dtype=float), (n,)).copy()
        for c in self.covariates:
            if isinstance(c, Derived) and c.name not in (given or {}):
                values[c.name] = c.values(values)  # after the draws and given values
        params = {d.name: values[d.name] for d in self.variability}
        for f in self.fixed:
            if f.value is not None:
                params[f.name] = np.full(n, _canonical(f.value))
        for c in self.covariates:
            if c.name in known and isinstance(c, (Distribution, Derived)):
                params[c.name] = values[c.name]
        for e in self.effects:
            current = params.get(e.parameter)
            if current is None:
                current = np.full(n, _canonical(known[e.parameter].value))
            if e.kind == "power":
                ratio = values[e.covariate] / _canonical(e.reference)
                params[e.parameter] = current * ratio ** float(e.value)
            elif e.kind == "linear":
                factor = 1.0 + _canonical(e.value) * (values[e.covariate] -
                                                      _canonical(e.reference))
                if np.any(factor <= 0):
                    raise ValidationError(
                        f"effect of {e.covariate} on {e.parameter}: the linear factor "
                        f"1 + {format_quantity(e.value)} * ({e.covariate} - "
                        f"{format_quantity(e.reference)}) is not positive for "
                        f"{int(np.sum(factor <= 0))} of {n} patients", e.where)
                params[e.parameter] = current * factor
            else:
                hit = labels[e.covariate] == e.level
                new = (current * float(e.value) if e.kind == "multiply"
                       else np.full(n, _canonical(e.value)))
                params[e.parameter] = np.where(hit, new, current)
        covariates = {c.name: labels[c.name] if isinstance(c, Categorical) else values[c.name]
                      for c in self.covariates}
        units = {name: known[name].value.units for name in params}
        units.update({c.name: _center_unit(c, known) for c in self.covariates
                      if isinstance(c, Distribution)})
        units.update({c.name: ureg.m ** 2 for c in self.covariates if isinstance(c, Derived)})
        return VirtualPatients(parameters=params, covariates=covariates, units=units,
                               seed=int(seed))

    def _correlation_matrix(self, dists: list[Distribution]) -> np.ndarray:
        index = {d.name: i for i, d in enumerate(dists)}
        corr = np.eye(len(dists))
        for a, b, r in self.correlations:
            corr[index[a], index[b]] = corr[index[b], index[a]] = r
        if len(dists):
            try:
                np.linalg.cholesky(corr)
            except np.linalg.LinAlgError:
                raise ValidationError("the correlations do not form a valid correlation "
                                      "matrix (not positive definite)", self.path) from None
        return corr


@dataclass(frozen=True, eq=False)
class VirtualPatients:
    """Sampled patients: parameter columns (canonical floats) and covariates."""

    parameters: Mapping[str, np.ndarray]
    covariates: Mapping[str, np.ndarray]
    units: Mapping[str, pint.Unit]
    seed: int

    def __len__(self) -> int:
        columns = list(self.parameters.values()) + list(self.covariates.values())
        return len(columns[0]) if columns else 0

    def quantities(self) -> dict[str, pint.Quantity]:
        """Parameter columns as Quantities in their model units (for simulate_many)."""
        return {name: _from_canonical(v, self.units[name])
                for name, v in self.parameters.items()}

    def covariate(self, name: str):
        """A covariate column: a Quantity (numeric) or an array of level names."""
        v = self.covariates[name]
        return v if v.dtype.kind in "US" else _from_canonical(v, self.units[name])


def _canonical(q: pint.Quantity) -> float:
    return float(q.to(canonical_unit(q)).magnitude)


def _from_canonical(values: np.ndarray, unit: pint.Unit) -> pint.Quantity:
    q = ureg.Quantity(values, canonical_unit(ureg.Quantity(1.0, unit)))
    return q.to(unit)


def _center_dims(d: Distribution | Derived, known) -> object:
    if isinstance(d, Derived):
        return (ureg.m ** 2).dimensionality
    for q in (d.center, d.lower, d.upper):
        if q is not None:
            return q.dimensionality
    if d.name not in known:
        raise ValidationError(f"covariate {d.name}: give its median or mean", d.where)
    return known[d.name].value.dimensionality


def _center_unit(d: Distribution, known) -> pint.Unit:
    for q in (d.center, d.lower, d.upper):
        if q is not None:
            return q.units
    return known[d.name].value.units  # _center_dims has checked it exists


def _non_negative(known, d: Distribution) -> None:
    """A parameter with a unit cannot be negative (model.Parameter refuses it): a normal or
    uniform distribution of one needs a lower bound >= 0, or a random patient would abort
    the whole run."""
    if d.kind == "lognormal" or known[d.name].value.dimensionless:
        return
    if d.lower is None or d.lower.magnitude < 0:
        raise ValidationError(f"{d.name}: a {d.kind} distribution can draw negative values; "
                              f"give lower >= 0 (or use lognormal)", d.where)


def _dimension(known, name: str, where, *quantities) -> None:
    if name not in known:
        close = get_close_matches(name, list(known), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(f"unknown parameter {name!r}{hint}", where)
    dims = known[name].value.dimensionality
    for q in quantities:
        if q is not None and q.dimensionality != dims:
            raise ValidationError(f"{name}: {format_quantity(q)} does not have the dimension "
                                  f"of the parameter ({dimension_text(dims)})", where)


def _draw_continuous(dists, corr, known, n, rng, path) -> dict[str, np.ndarray]:
    """Columns of canonical values, truncated to the bounds by redrawing whole patients."""
    if not dists:
        return {}
    chol = np.linalg.cholesky(corr)
    center = []
    for d in dists:
        c = d.center if d.center is not None else known.get(d.name).value \
            if d.name in known else None
        if c is None and d.kind != "uniform":
            raise ValidationError(f"covariate {d.name}: give its median or mean", d.where)
        center.append(_canonical(c) if c is not None else math.nan)
    lows = np.array([_canonical(d.lower) if d.lower is not None else -np.inf for d in dists])
    highs = np.array([_canonical(d.upper) if d.upper is not None else np.inf for d in dists])

    def transform(z: np.ndarray) -> np.ndarray:
        out = np.empty_like(z)
        for j, d in enumerate(dists):
            if d.kind == "lognormal":
                out[:, j] = center[j] * np.exp(float(d.spread) * z[:, j])
            elif d.kind == "normal":
                out[:, j] = center[j] + _canonical(d.spread) * z[:, j]
            else:
                out[:, j] = lows[j] + (highs[j] - lows[j]) * ndtr(z[:, j])
        return out

    values = transform(rng.standard_normal((n, len(dists))) @ chol.T)
    for _ in range(_MAX_REDRAWS):
        bad = np.flatnonzero(np.any((values < lows) | (values > highs), axis=1))
        if bad.size == 0:
            break
        values[bad] = transform(rng.standard_normal((bad.size, len(dists))) @ chol.T)
    else:
        raise ValidationError(f"the bounds reject almost every patient ({_MAX_REDRAWS} "
                              "redraws were not enough): widen them or check the "
                              "medians", path)
    return {d.name: values[:, j] for j, d in enumerate(dists)}

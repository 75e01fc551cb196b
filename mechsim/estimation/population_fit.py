"""Population fits: a population file and a dataset in, FOCEI estimates, their standard
errors, empirical Bayes estimates and diagnostics out (see docs/fitting.md, "Population
estimation").

The population file says what is estimated:

* ``[variability]``: each log-normal entry is a parameter with a random effect; its typical
  value (``median``, default the model's) and ``omega`` / ``cv`` are the starting values;
* ``[fixed]``: typical values estimated without a random effect (``value`` the start,
  ``scale = "linear"`` for one that may be negative, such as a covariate effect);
* ``[error]``: the residual error model per output and its starting values.

The fitted population (:meth:`PopulationFitResult.to_population`) is a file of the same
format with the estimates in place of the starts, so it can be simulated at once (a virtual
trial, a VPC) or used as the start of another fit.
"""

from __future__ import annotations

import csv
import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pint

from ..errors import ValidationError
from ..units import format_quantity, format_unit, ureg
from .focei import PopulationProblem, focei

__all__ = ["PopulationFitResult", "fit_population"]


def fit_population(model, data, population, *, estimate: Sequence[str] = (), params=None,
                   overrides: Mapping | None = None, error=None, rtol: float = 1e-8,
                   atol=None, method: str = "auto", workers: int | None = None,
                   executor=None, covariance: bool = True,
                   max_iterations: int = 200) -> PopulationFitResult:
    """FOCEI estimates of the population in ``population`` (a file, a built-in name or a
    :class:`~mechsim.population.Population`) from ``data``; ``estimate`` adds typical
    values to estimate without a random effect (as ``[fixed]`` entries would).
    ``max_iterations=0`` evaluates the objective, the empirical Bayes estimates and the
    covariance at the file's values without estimating (NONMEM's MAXEVAL=0).  The
    subjects' inner problems run on ``workers`` processes of this machine, or on
    ``executor`` (any pool with ``submit``, or a Dask ``distributed.Client``)."""
    setup = population_problem(model, data, population, estimate=estimate, params=params,
                               overrides=overrides, error=error, rtol=rtol, atol=atol,
                               method=method, workers=workers, executor=executor)
    fitted = focei(setup.problem, setup.theta0, setup.omega0, setup.errors0,
                   covariance=covariance, max_iterations=max_iterations, pairs=setup.pairs)
    return _result(setup.spec, data, setup.population, setup.context, setup.problem, fitted)


@dataclass(frozen=True)
class PopulationSetup:
    """What a population fit starts from: the FOCEI problem and the starting values."""

    spec: object
    population: object
    context: object
    problem: PopulationProblem
    theta0: np.ndarray
    omega0: np.ndarray
    errors0: dict
    pairs: tuple


def population_problem(model, data, population, *, estimate: Sequence[str] = (),
                       params=None, overrides: Mapping | None = None, error=None,
                       rtol: float = 1e-8, atol=None, method: str = "auto",
                       workers: int | None = None, executor=None) -> PopulationSetup:
    """The FOCEI problem of :func:`fit_population` and its starting values."""
    from ..io.population_file import load_population
    from ..population import Population
    from ..runspec import RunSpec
    from .fit import _Context, _error_kinds

    if not isinstance(population, Population):
        population = load_population(population)
    random = []
    for d in population.variability:
        if d.kind != "lognormal":
            raise ValidationError(f"{d.name}: a population fit estimates log-normal "
                                  f"variability only, not {d.kind}", d.where)
        random.append(d.name)
    if population.covariates:
        raise ValidationError("a population fit takes covariates from the dataset: "
                              "[covariates] is for simulation (covariate effects go in "
                              "[[effects]] or in the model)", population.path)
    fixed = [f.name for f in population.fixed] + [n for n in estimate if n not in random
                                                  and n not in {f.name for f in
                                                                population.fixed}]
    names = tuple(random + fixed)
    if not names:
        raise ValidationError("the population names nothing to estimate", population.path)
    observed = sum(1 for s in data.subjects if len(s.outputs))
    if observed < 2:
        raise ValidationError(f"a population fit needs observations of at least two "
                              f"subjects; the dataset has {observed}")
    twice = [n for n in estimate if n in random or n in {f.name for f in population.fixed}]
    if twice:
        raise ValidationError(f"{twice[0]} is estimated by the population file already "
                              "(give it once: in the file, or with estimate)")
    if population.errors:
        errors = {o: kind for o, kind, _ in population.errors}
        missing = [o for o in data.outputs if o not in errors]
        if missing:
            raise ValidationError(f"[error] of {population.name} has no entry for output "
                                  f"{missing[0]}", population.path)
    else:
        errors = _error_kinds(error or "proportional", data.outputs)
    start: dict[str, object] = {}
    for d in population.variability:
        if d.center is not None:
            start[d.name] = d.center
    for f in population.fixed:
        if f.value is not None:
            start[f.name] = f.value
    for output, _, values in population.errors:
        for name, value in values:
            start[f"{output}.{name}"] = value
    scale = {f.name: f.scale for f in population.fixed}
    end = ureg.Quantity(max(data.last_time_days(), 1e-3), ureg.day)
    spec = RunSpec.build(model, until=end, params=params, overrides=overrides, rtol=rtol,
                         atol=atol, method=method)
    # the effects' covariates are the dataset's columns, checked with the data (_effects)
    dataclasses.replace(population, effects=()).check(spec.model)
    context = _Context(spec, data, names, errors, {}, start, scale, workers, None, 0, 0)
    log = context.param.log[:len(names)]
    effects = _effects(population, data, context.problem)
    problem = PopulationProblem(context.problem, log, random, workers=workers,
                                effects=effects, executor=executor)
    k = len(names)
    spread = np.array([float(d.spread) for d in population.variability])
    omega0 = np.diag(spread ** 2)
    pairs = []
    for a, b, r in population.correlations:  # a block of Omega: the covariances estimated
        i, j = random.index(a), random.index(b)
        omega0[i, j] = omega0[j, i] = r * spread[i] * spread[j]
        pairs.append((min(i, j), max(i, j)))
    errors0 = dict(zip(context.problem.error_names, context.start[k:]))
    return PopulationSetup(spec, population, context, problem, context.start[:k], omega0,
                           errors0, tuple(pairs))


def _effects(population, data, problem) -> list:
    """The population's covariate effects with each subject's covariate value."""
    from .focei import CovariateEffect

    out = []
    for e in population.effects:
        if e.kind == "set":
            raise ValidationError(f"effect of {e.covariate} on {e.parameter}: a 'set' effect "
                                  "cannot be part of a fit (use multiply)", e.where)
        if e.covariate not in data.covariate_names:
            raise ValidationError(f"effect of {e.covariate} on {e.parameter}: the dataset "
                                  f"has no column {e.covariate} (covariates: "
                                  f"{', '.join(data.covariate_names) or 'none'})", e.where)
        raw = [data.subjects[s.index].covariates.get(e.covariate) for s in problem.subjects]
        what = f"effect of {e.covariate} on {e.parameter}"
        unit, spread = "", 1.0
        if e.kind in ("power", "linear"):
            # a linear slope is per unit of the reference: (WT - 70 kg) in kg
            per = ureg.Quantity(1.0, e.reference.units)
            if e.kind == "linear" and e.reference.units != ureg.dimensionless:
                unit = f"1/({e.reference.units:~})"  # "%" too: a slope per percent
            values = []
            for v in raw:
                if v is None or isinstance(v, str):
                    raise ValidationError(f"{what}: a {e.kind} effect needs numbers, and column "
                                          f"{e.covariate} holds {v!r}", e.where)
                q = v if isinstance(v, pint.Quantity) else ureg.Quantity(float(v))
                if q.dimensionality != e.reference.dimensionality:
                    raise ValidationError(f"effect of {e.covariate} on {e.parameter}: the "
                                          f"column's values ({format_quantity(q)}) and the "
                                          f"reference ({format_quantity(e.reference)}) "
                                          "differ in dimension", e.where)
                values.append(float((q / e.reference).to("").magnitude) if e.kind == "power"
                              else float(((q - e.reference) / per).to("").magnitude))
            covariate = np.array(values)
            name = f"{e.covariate}_{e.kind}_{e.parameter}"
            if e.kind == "linear" and np.any(covariate != 0):
                # the optimiser sees the effect at the farthest subject (beta * max |x|):
                # a slope per kg is a small number, and its first step would be far too
                # long on the slope's own scale
                spread = float(np.max(np.abs(covariate)))
        else:
            covariate = np.array([_level(v) for v in raw])
            if _level(e.level) not in set(covariate):
                raise ValidationError(f"{what}: no subject has level {e.level!r} (levels: "
                                      f"{', '.join(sorted(set(covariate)))})", e.where)
            name = f"{e.covariate}_{e.level}_on_{e.parameter}"
            if e.estimate and not float(e.value) > 0:
                raise ValidationError(f"{what}: an estimated factor starts above 0 (it is "
                                      "estimated on the log scale)", e.where)
        value = float((e.value * per).to("").magnitude) * spread if e.kind == "linear" \
            else float(e.value)
        if spread != 1.0:
            covariate = covariate / spread
        out.append(CovariateEffect(name, e.parameter, e.kind, covariate,
                                   None if e.estimate else value, value,
                                   None if e.level is None else _level(e.level), unit,
                                   spread))
    return out


def _level(value) -> str:
    """A category as text: a number by its value (7 and 7.0 are one level)."""
    magnitude = getattr(value, "magnitude", value)
    try:
        number = float(magnitude)
    except (TypeError, ValueError):
        return str(value)
    return repr(number) if math.isfinite(number) else str(value)


def _result(spec, data, population, context, problem, fitted) -> PopulationFitResult:
    estimates, errors = {}, {}
    slopes = {e.name: (e.unit, e.spread) for e in problem.effects if e.kind == "linear"}
    for name, value, se in zip(fitted.names, fitted.estimates, fitted.standard_errors):
        if name in context.units:  # typical values and error parameters, in their units
            estimates[name] = context._quantity(name, value)
            errors[name] = context._quantity(name, se)
        elif name in slopes:  # linear covariate effects: per unit of the covariate
            unit, spread = slopes[name]
            estimates[name] = ureg.Quantity(value / spread, unit)
            errors[name] = ureg.Quantity(se / spread, unit)
        else:  # variances, correlations and covariate effects: numbers
            estimates[name] = ureg.Quantity(value, "")
            errors[name] = ureg.Quantity(se, "")
    diagnostics = _diagnostics(problem, fitted)
    return PopulationFitResult(
        model=spec.model.name, dataset=data.path, dataset_sha256=data.sha256,
        population=population.name, names=fitted.names, random=problem.random,
        fixed=tuple(n for n in problem.names if n not in problem.random),
        estimates=estimates, standard_errors=errors, minus2ll=fitted.minus2ll,
        ofv=fitted.ofv, n_observations=fitted.n_observations, n_subjects=len(fitted.etas),
        etas=fitted.etas, subject_ids=fitted.subject_ids, shrinkage=fitted.shrinkage,
        success=fitted.success, message=fitted.message, solves=fitted.solves,
        evaluations=fitted.evaluations,
        seconds=fitted.seconds, error_models={e.output: e.kind for e in problem.errors},
        value_units={o: data.value_units[o] for o in data.outputs},
        relative_r=_relative(fitted),
        linear=tuple(n for n, is_log in zip(problem.names, problem.fixed_log) if not is_log),
        effects=_effect_entries(population, problem, estimates, errors),
        **diagnostics)


def _effect_entries(population, problem, estimates, errors) -> tuple:
    """The population's [[effects]] with the estimated values put in."""
    out = []
    for e, ce in zip(population.effects, problem.effects):
        value = estimates[ce.name].magnitude if ce.value is None else ce.value / ce.spread
        entry = [("covariate", f'"{e.covariate}"'), ("parameter", f'"{e.parameter}"')]
        if e.kind == "power":
            entry += [("power", repr(float(value))),
                      ("reference", f'"{format_quantity(e.reference)}"')]
        elif e.kind == "linear":
            slope = f"{float(value)!r} {ce.unit}".strip()
            entry += [("linear", f'"{slope}"'),
                      ("reference", f'"{format_quantity(e.reference)}"')]
        else:
            entry += [("level", f'"{e.level}"'), ("multiply", repr(float(value)))]
        if ce.value is None:
            entry.append(("note", f'"estimated (SE {errors[ce.name].magnitude:.3g})"'))
        out.append(tuple(entry))
    return tuple(out)


def _relative(fitted) -> dict[str, float]:
    """The R^-1 standard errors relative to the sandwich ones (a check of the model)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = fitted.standard_errors_r / fitted.standard_errors
    return dict(zip(fitted.names, ratio.tolist()))


def _diagnostics(problem: PopulationProblem, fitted) -> dict:
    """PRED (eta = 0), IPRED (eta = the EBE), IWRES and CWRES per observation.

    CWRES (Hooker et al., Pharm Res 2007;24:2187): the residual from the FOCE linearisation
    around the EBE, ``E = f(eta) - G eta``, decorrelated by the Cholesky factor of its
    covariance ``G Omega G' + diag(R)``."""
    m = len(problem.random)
    omega = fitted.omega
    errors = dict(zip(problem.error_names, fitted.estimates[-len(problem.error_names):]))
    rows = {key: [] for key in ("id", "time", "output", "dv", "pred", "ipred", "iwres",
                                "cwres")}
    subjects = problem.subjects
    at_zero = problem.predict_many(subjects, fitted.typical, np.zeros((len(subjects), m)))
    at_ebe = problem.predict_many(subjects, fitted.typical, fitted.etas)
    for subject, eta, (pred, _), (ipred, g) in zip(subjects, fitted.etas, at_zero, at_ebe):
        r, _ = problem._variance(subject, ipred, errors)
        y = subject.values
        linear = ipred - g @ eta
        cov = g @ omega @ g.T + np.diag(r)
        chol = np.linalg.cholesky(cov)
        rows["cwres"].append(np.linalg.solve(chol, y - linear))
        rows["iwres"].append((y - ipred) / np.sqrt(r))
        rows["pred"].append(pred)
        rows["ipred"].append(ipred)
        rows["dv"].append(y)
        rows["id"].extend([subject.id] * y.size)
        rows["time"].append(subject.days)
        rows["output"].extend(subject.outputs)
    return {"table": {key: (np.concatenate(v) if key not in ("id", "output") else tuple(v))
                      for key, v in rows.items()}}


@dataclass(frozen=True, eq=False)
class PopulationFitResult:
    """A population fit (``fit(..., population=...)``): FOCEI estimates of the typical
    values (``fixed``, and those of the parameters with random effects, ``random``), the
    variances of the random effects (``omega2(NAME)``) and the residual error parameters,
    with standard errors from the sandwich covariance ``R^-1 S R^-1`` (NONMEM's default
    covariance step); the objective as -2 ln L and as NONMEM's OFV; each subject's
    empirical Bayes estimates ``etas`` (rows in ``subject_ids`` order, columns in
    ``random`` order) and the eta-shrinkage; per observation ``table`` with DV, PRED,
    IPRED, IWRES and CWRES (times in days)."""

    model: str
    dataset: str | None
    dataset_sha256: str | None
    population: str
    names: tuple[str, ...]
    random: tuple[str, ...]
    fixed: tuple[str, ...]
    estimates: Mapping[str, pint.Quantity]
    standard_errors: Mapping[str, pint.Quantity]
    minus2ll: float
    ofv: float
    n_observations: int
    n_subjects: int
    etas: np.ndarray
    subject_ids: tuple[str, ...]
    shrinkage: np.ndarray
    success: bool
    message: str
    solves: int
    seconds: float
    error_models: Mapping[str, str]
    value_units: Mapping[str, object]
    relative_r: Mapping[str, float]
    table: Mapping[str, object]
    linear: tuple[str, ...] = ()   # typical values estimated on their own scale
    #: the covariate effects as [[effects]] entries (key, TOML value) with their values
    effects: tuple = ()
    method: str = "FOCEI"
    evaluations: int = 0  # of the objective, with its gradient or not

    def __str__(self) -> str:
        data = Path(self.dataset).name if self.dataset else "data"
        lines = [f"{self.model} population fitted to {data} ({self.n_subjects} subjects, "
                 f"{self.n_observations} observations): {self.method} (first-order "
                 "conditional estimation with interaction)",
                 f"  OFV {self.ofv:.4f} (NONMEM's objective)   -2 ln L {self.minus2ll:.4f}   "
                 f"({'converged' if self.success else 'NOT converged: ' + self.message}; "
                 f"{self.evaluations} evaluations, {self.solves:,} model solves, "
                 f"{self.seconds:.1f} s)",
                 "  standard errors: sandwich R^-1 S R^-1",
                 f"  {'parameter':<24}{'estimate':>12}{'SE':>12}{'RSE %':>8}  unit"]
        for name in self.names:
            est, se = self.estimates[name], self.standard_errors[name]
            rse = abs(se.magnitude / est.magnitude) * 100 if est.magnitude else math.nan
            unit = format_unit(est.units)
            lines.append(f"  {name:<24}{est.magnitude:>12.5g}{se.magnitude:>12.4g}"
                         f"{rse:>8.1f}  {unit}".rstrip())
        for name, s in zip(self.random, self.shrinkage):
            omega2 = self.estimates[f"omega2({name})"].magnitude
            lines.append(f"  {name}: between-subject CV {math.sqrt(math.expm1(omega2)):.1%}, "
                         f"eta-shrinkage {s:.1%}")
        return "\n".join(lines)

    @property
    def eta_table(self) -> list[dict]:
        """One row per subject: its id and its empirical Bayes estimate of each eta."""
        return [{"ID": sid, **{f"ETA({n})": float(v) for n, v in zip(self.random, row)}}
                for sid, row in zip(self.subject_ids, self.etas)]

    def to_population(self, path) -> Path:
        """The fitted population as a population file: log-normal variability with the
        estimated medians and omegas, the fixed effects and the residual error.  It can be
        given to a virtual trial or ``mechsim vpc --population`` as it is, or start
        another fit."""
        from ..io.atomic import write_text_atomically

        when = datetime.now(UTC).isoformat(timespec="seconds")
        data = Path(self.dataset).name if self.dataset else "in-memory data"
        source = (f"fitted by mechsim.fit ({self.method}) to {data} (sha256 "
                  f"{self.dataset_sha256}) on {when}")
        lines = ["[meta]", f'model = "{self.model}"',
                 f'description = "{self.method} estimates from {data}"', "seed = 1", "",
                 "[variability]"]
        for name in self.random:
            median = self.estimates[name]
            omega2 = self.estimates[f"omega2({name})"].magnitude
            se = self.standard_errors[f"omega2({name})"].magnitude
            lines.append(f'{name} = {{ distribution = "lognormal", median = '
                         f'"{format_quantity(median)}", omega = {math.sqrt(omega2)!r}, '
                         f'source = "{source}", note = "omega^2 {omega2:.5g} (SE {se:.3g}); '
                         f'median SE {self.standard_errors[name].magnitude:.4g}" }}')
        for name in self.names:
            if name.startswith("corr("):
                a, b = name[5:-1].split(",")
                lines += ["", "[[correlations]]", f'between = ["{a}", "{b}"]',
                          f"value = {float(self.estimates[name].magnitude)!r}",
                          f'source = "{source}"',
                          f'note = "SE {self.standard_errors[name].magnitude:.3g}"']
        for effect in self.effects:
            lines += ["", "[[effects]]"] + [f"{key} = {value}" for key, value in effect]
        if self.fixed:
            lines += ["", "[fixed]"]
            for name in self.fixed:
                est = self.estimates[name]
                scale = ', scale = "linear"' if name in self.linear else ""
                lines.append(f'{name} = {{ value = "{format_quantity(est)}"{scale}, source = '
                             f'"{source}", note = "SE '
                             f'{self.standard_errors[name].magnitude:.4g}" }}')
        lines += ["", "[error]"]
        for output, kind in self.error_models.items():
            values = ", ".join(
                f'{n.split(".", 1)[1]} = "{format_quantity(self.estimates[n])}"'
                for n in self.names if n.startswith(output + "."))
            lines.append(f'{output} = {{ model = "{kind}", {values} }}')
        return write_text_atomically(path, "\n".join(lines) + "\n")

    def write_tables(self, folder) -> list[Path]:
        """estimates.csv, etas.csv and predictions.csv into ``folder``."""
        folder = Path(folder)
        written = []
        path = folder / "estimates.csv"
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["parameter", "estimate", "se", "unit"])
            for name in self.names:
                est, se = self.estimates[name], self.standard_errors[name]
                w.writerow([name, repr(float(est.magnitude)), repr(float(se.magnitude)),
                            format_unit(est.units) or "1"])
        written.append(path)
        path = folder / "etas.csv"
        with path.open("w", newline="") as fh:
            rows = self.eta_table
            w = csv.DictWriter(fh, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
        written.append(path)
        path = folder / "predictions.csv"
        t = self.table
        with path.open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["ID", "TIME [h]", "output", "DV", "PRED", "IPRED", "IWRES", "CWRES",
                        "unit"])
            hours = t["time"] * 24.0
            for j in range(len(t["id"])):
                w.writerow([t["id"][j], repr(float(hours[j])), t["output"][j],
                            repr(float(t["dv"][j])), repr(float(t["pred"][j])),
                            repr(float(t["ipred"][j])), repr(float(t["iwres"][j])),
                            repr(float(t["cwres"][j])),
                            format_unit(self.value_units[t["output"][j]]) or "1"])
        written.append(path)
        return written

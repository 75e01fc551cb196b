"""Maximum-likelihood estimation of model parameters from a dataset.

:func:`fit` maximises the likelihood of a dataset's observations (:mod:`.likelihood`) over
the parameters named in ``estimate`` and the residual error parameters, with exact
gradients from the sensitivity equations (:mod:`.gradients`) and scipy's L-BFGS-B on
``ln p`` (or ``p`` for parameters asked to be linear), within bounds.

Uncertainty comes from the observed Fisher information: the Hessian of ``-log L`` at the
optimum, computed by central differences of the exact gradient (2 evaluations per
parameter), in the optimiser's variables.  Standard errors of a log-scaled parameter are
given on the natural scale by the delta method (``se(p) = p se(ln p)``); its 95 % interval
is ``exp(ln p +- 1.96 se(ln p))``, so it stays positive.  A parameter whose information is
(nearly) zero is named as not identifiable instead of given a meaningless interval.
:meth:`FitResult.profile` gives a profile-likelihood interval.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pint

from ..errors import SolverError, UnitError, ValidationError
from ..runspec import RunSpec
from ..units import canonical_unit, format_quantity, format_unit, parse_quantity, ureg
from .problem import FitProblem, Parameterisation

__all__ = ["FitResult", "IndividualFits", "Profile", "fit"]

#: z of a two-sided 95 % interval, and the rise of -2 log L that bounds a 95 % profile
#: interval (chi-square with one degree of freedom)
_Z95 = 1.959963984540054
_CHI2_95 = 3.841458820694124
#: a parameter whose information eigenvalue is below this fraction of the largest is
#: reported as not identifiable
_IDENTIFIABLE = 1e-10


@dataclass(frozen=True)
class Profile:
    """A profile likelihood: ``values`` of the parameter, the best ``minus2ll`` with it
    fixed there, and the 95 % interval where the profile stays within 3.84 of the minimum
    (an end is None where the profile never rises that far: not identifiable that way)."""

    name: str
    values: pint.Quantity
    minus2ll: np.ndarray
    lower: pint.Quantity | None
    upper: pint.Quantity | None

    @property
    def identifiable(self) -> bool:
        return self.lower is not None and self.upper is not None

    def __str__(self) -> str:
        def end(q):
            return "not reached (flat)" if q is None else f"{q.magnitude:.5g}"
        unit = format_unit(self.values.units)
        return (f"profile of {self.name}: 95 % interval [{end(self.lower)}, "
                f"{end(self.upper)}] {unit}".rstrip())


@dataclass(frozen=True, eq=False)
class FitResult:
    """The outcome of :func:`fit` (see the module docstring).

    Attributes
    ----------
    estimates, standard_errors, lower, upper
        ``{name: Quantity}`` in each parameter's declared unit (error parameters: additive
        in the unit of DV, proportional as a fraction), for model and error parameters.
    correlation
        Correlation matrix of the estimates (order of ``names``).
    not_identifiable
        Parameters the data cannot pin down (SE and interval are NaN).
    minus2ll, aic, bic
        At the optimum; -2 log L includes the constant ``n log(2 pi)``.
    observed, predicted, weighted_residuals
        Per observation, in dataset order (``subject_ids``, ``times`` and ``outputs`` say
        which), in the unit of each output (``value_units``); ``observations`` and
        ``predictions`` are Quantities when there is one output, :meth:`of` gives one
        output's.
    """

    model: str
    dataset: str | None
    dataset_sha256: str | None
    names: tuple[str, ...]
    estimates: Mapping[str, pint.Quantity]
    standard_errors: Mapping[str, pint.Quantity]
    lower: Mapping[str, pint.Quantity]
    upper: Mapping[str, pint.Quantity]
    correlation: np.ndarray
    not_identifiable: tuple[str, ...]
    minus2ll: float
    aic: float
    bic: float
    n_observations: int
    success: bool
    message: str
    iterations: int
    evaluations: int
    solves: int
    seconds: float
    starts: int = 1
    starts_at_best: int = 1
    error_models: Mapping[str, str] = field(default_factory=dict)
    subject_ids: np.ndarray = field(default=None, repr=False)
    times: pint.Quantity = field(default=None, repr=False)
    observed: np.ndarray = field(default=None, repr=False)
    predicted: np.ndarray = field(default=None, repr=False)
    weighted_residuals: np.ndarray = field(default=None, repr=False)
    outputs: tuple[str, ...] = field(default=(), repr=False)
    value_units: Mapping[str, pint.Unit] = field(default_factory=dict, repr=False)
    method: str = "maximum likelihood (L-BFGS-B, exact gradients)"
    _context: object = field(default=None, repr=False, compare=False)

    def _single_unit(self) -> pint.Unit:
        if len(self.value_units) != 1:
            raise ValidationError(f"the fit has {len(self.value_units)} outputs in their own "
                                  "units; use .of(output)")
        return next(iter(self.value_units.values()))

    @property
    def observations(self) -> pint.Quantity:
        return ureg.Quantity(self.observed, self._single_unit())

    @property
    def predictions(self) -> pint.Quantity:
        return ureg.Quantity(self.predicted, self._single_unit())

    @property
    def residuals(self) -> pint.Quantity:
        return self.observations - self.predictions

    def of(self, output: str):
        """``(subject_ids, times, observed, predicted, weighted_residuals)`` of one output
        (observed and predicted as Quantities in its unit)."""
        rows = np.array([o == output for o in self.outputs], dtype=bool)
        if not rows.any():
            raise ValidationError(f"no observations of {output!r} in this fit")
        unit = self.value_units[output]
        return (self.subject_ids[rows], self.times[rows],
                ureg.Quantity(self.observed[rows], unit),
                ureg.Quantity(self.predicted[rows], unit), self.weighted_residuals[rows])

    @property
    def parameters(self) -> tuple[str, ...]:
        """The model parameters estimated (without the error parameters)."""
        return tuple(n for n in self.names if n not in self.error_parameters)

    @property
    def error_parameters(self) -> tuple[str, ...]:
        return tuple(n for n in self.names if "." in n)

    def table(self) -> list[tuple[str, pint.Quantity, pint.Quantity, pint.Quantity,
                                  pint.Quantity]]:
        """Rows (name, estimate, standard error, lower, upper of the 95 % interval)."""
        return [(n, self.estimates[n], self.standard_errors[n], self.lower[n], self.upper[n])
                for n in self.names]

    def __str__(self) -> str:
        width = max(len(n) for n in self.names) + 2
        lines = [f"{self.model} fitted to {Path(self.dataset).name if self.dataset else 'data'}"
                 f" ({self.n_observations} observations): {self.method}",
                 f"  -2 log L {self.minus2ll:.4f}   AIC {self.aic:.4f}   BIC {self.bic:.4f}"
                 f"   ({'converged' if self.success else 'NOT converged: ' + self.message}; "
                 f"{self.iterations} iterations, {self.solves} model solves, "
                 f"{self.seconds:.2f} s)"]
        if self.starts > 1:
            lines.append(f"  {self.starts_at_best} of {self.starts} starts reached the best "
                         "optimum")
        lines.append(f"  {'parameter':<{width}}{'estimate':>14}{'SE':>12}{'RSE %':>8}   "
                     "95 % interval")
        for name, est, se, lo, hi in self.table():
            unit = format_unit(est.units)
            if name in self.not_identifiable:
                lines.append(f"  {name:<{width}}{est.magnitude:>14.5g}{'':>12}{'':>8}   "
                             f"not identifiable from these data  {unit}")
                continue
            rse = 100 * abs(se.magnitude / est.magnitude) if est.magnitude else math.nan
            lines.append(f"  {name:<{width}}{est.magnitude:>14.5g}{se.magnitude:>12.4g}"
                         f"{rse:>8.1f}   [{lo.magnitude:.5g}, {hi.magnitude:.5g}] "
                         f"{unit}".rstrip())
        return "\n".join(lines)

    def to_csv(self, path) -> Path:
        """The estimates table with units: parameter, estimate, SE, lower, upper, unit."""
        from ..io.atomic import write_text_atomically

        rows = ["parameter,estimate,standard_error,lower_95,upper_95,unit,identifiable"]
        for name, est, se, lo, hi in self.table():
            cells = ",".join(repr(float(q.magnitude)) for q in (est, se, lo, hi))
            rows.append(f"{name},{cells},{format_unit(est.units) or '1'},"
                        f"{int(name not in self.not_identifiable)}")
        return write_text_atomically(path, "\n".join(rows) + "\n")

    def to_params(self, path) -> Path:
        """A parameter file with the estimated values; each entry says it was fitted, to
        which dataset (name and SHA-256), when and how.  The residual error model goes in
        an ``[error]`` table (read by :func:`mechsim.estimation.vpc`)."""
        from ..io.atomic import write_text_atomically

        when = datetime.now(UTC).isoformat(timespec="seconds")
        data = Path(self.dataset).name if self.dataset else "in-memory data"
        source = (f"fitted by mechsim.fit ({self.method}) to {data} (sha256 "
                  f"{self.dataset_sha256}) on {when}")
        lines = ["[meta]", f'model = "{self.model}"',
                 f'description = "Estimates of {", ".join(self.parameters)} from {data}"', "",
                 "[parameters]"]
        for name in self.parameters:
            est = self.estimates[name]
            se = self.standard_errors[name]
            note = "not identifiable from these data" if name in self.not_identifiable \
                else f"SE {se.magnitude:.4g} {format_unit(se.units)}".rstrip()
            lines.append(f'{name} = {{ value = "{format_quantity(est)}", source = '
                         f'"{source}", note = "{note}" }}')
        lines += ["", "[error]"]
        for output, kind in self.error_models.items():
            values = ", ".join(f'{p.split(".", 1)[1]} = "{format_quantity(self.estimates[p])}"'
                               for p in self.error_parameters if p.startswith(output + "."))
            lines.append(f'{output} = {{ model = "{kind}", {values} }}')
        return write_text_atomically(path, "\n".join(lines) + "\n")

    def profile(self, name: str, *, points: int = 12) -> Profile:
        """The profile likelihood of ``name``: -2 log L minimised over the other
        parameters with ``name`` fixed, from the estimate outwards until it rises by
        3.84 (or ``points`` steps on each side), and the interval where it crosses."""
        if self._context is None:
            raise ValidationError("this fit cannot be profiled (it was not made by fit())")
        return self._context.profile(self, name, points)


@dataclass(frozen=True, eq=False)
class IndividualFits:
    """One :class:`FitResult` per subject (``fit(..., individual=True)``)."""

    fits: Mapping[str, FitResult]
    failed: Mapping[str, str] = field(default_factory=dict)

    def __getitem__(self, subject) -> FitResult:
        return self.fits[str(subject)]

    def table(self) -> list[tuple[str, str, pint.Quantity, pint.Quantity]]:
        """Rows (subject, parameter, estimate, standard error)."""
        return [(sid, name, f.estimates[name], f.standard_errors[name])
                for sid, f in self.fits.items() for name in f.names]

    def __str__(self) -> str:
        names = next(iter(self.fits.values())).names if self.fits else ()
        lines = [f"individual fits of {len(self.fits)} subjects"
                 + (f" ({len(self.failed)} not fitted)" if self.failed else "")]
        lines.append("  subject " + "".join(f"{n:>16}" for n in names) + "      -2LL")
        for sid, f in self.fits.items():
            lines.append(f"  {sid:<8}" + "".join(
                f"{f.estimates[n].magnitude:>15.5g}{'*' if n in f.not_identifiable else ' '}"
                for n in names) + f"{f.minus2ll:>10.3f}")
        if any(f.not_identifiable for f in self.fits.values()):
            lines.append("  * not identifiable from that subject's data")
        for sid, why in self.failed.items():
            lines.append(f"  {sid:<8} not fitted: {why}")
        return "\n".join(lines)


def fit(model, data, *, estimate: Sequence[str] = (), params=None,
        overrides: Mapping | None = None, population=None,
        error: str | Mapping[str, str] = "proportional", bounds: Mapping | None = None,
        start: Mapping | None = None, scale: Mapping[str, str] | None = None,
        individual: bool = False, multistart: int = 0, seed: int = 0, rtol: float = 1e-8,
        atol=None, method: str = "auto", workers: int | None = None,
        executor=None) -> FitResult | IndividualFits:
    """Estimate ``estimate`` (and the residual error) from ``data`` by maximum likelihood.

    Parameters
    ----------
    model
        Model, built-in name or path.
    data
        A :class:`~mechsim.dataset.Dataset` (see :func:`mechsim.read_dataset`).
    estimate
        Names of the model parameters to estimate; the others keep their values.
    params, overrides
        Parameter files and overrides applied first (the starting point), as in simulate.
    error
        ``"additive"``, ``"proportional"`` or ``"combined"`` for every observed output, or
        ``{output: kind}``; the error parameters are estimated too.
    bounds
        ``{name: (low, high)}`` with units (text or Quantities); error parameters by their
        names (``"C_mass.proportional"``).
    start
        Starting values ``{name: value}`` (default: the model's values; error parameters
        0.1 for proportional, 10 % of the mean observation for additive).
    scale
        ``{name: "linear"}`` for parameters to estimate on their own scale (default
        ``"log"``: positive, estimated as ``ln p``).
    population
        A population file (or :class:`~mechsim.population.Population`) naming the
        parameters with log-normal between-subject variability, the typical values to
        estimate without it (``[fixed]``) and the residual error (``[error]``): the fit is
        then a population (nonlinear mixed-effects) fit by FOCEI and returns a
        :class:`~mechsim.estimation.population_fit.PopulationFitResult`
        (docs/fitting.md, "Population estimation"); ``estimate`` adds typical values.
    individual
        Fit each subject on its own (subjects spread over ``workers``/``executor``).
    multistart
        Number of extra starts from a space-filling design (a scrambled Sobol' sequence
        over the bounds in the optimiser's variables, or a factor 10 either side of the
        start where no bounds are given); the best optimum is kept and the result says how
        many starts reached it.
    rtol, atol, method
        Solver settings (tolerances cover the sensitivities too).  ``method="FOCEI"``, the
        estimation method of population fits (the only one), is accepted with
        ``population`` and leaves the solver to choose itself ("auto").
    """
    from ..dataset import Dataset

    started = time.perf_counter()
    if not isinstance(data, Dataset):
        raise ValidationError(f"data must be a Dataset (mechsim.read_dataset), got "
                              f"{type(data).__name__}")
    if isinstance(method, str) and method.upper() == "FOCEI":
        if population is None:
            raise ValidationError("method 'FOCEI' estimates a population: give population="
                                  "FILE (without one, method is the ODE solver: auto, NDF, "
                                  "LSODA, BDF or Radau)")
        method = "auto"
    if population is not None:
        from .population_fit import fit_population

        if individual or multistart or bounds or start or scale:
            raise ValidationError("a population fit takes its starts and scales from the "
                                  "population file; individual, multistart, bounds, start "
                                  "and scale are for fits without one")
        return fit_population(model, data, population, estimate=tuple(estimate),
                              params=params, overrides=overrides,
                              error=None if error == "proportional" else error, rtol=rtol,
                              atol=atol, method=method, workers=workers, executor=executor)
    estimate = _names(estimate)
    end = ureg.Quantity(max(data.last_time_days(), 1e-3), ureg.day)
    spec = RunSpec.build(model, until=end, params=params, overrides=overrides, rtol=rtol,
                         atol=atol, method=method)
    errors = _error_kinds(error, data.outputs)
    context = _Context(spec, data, estimate, errors, bounds or {}, start or {}, scale or {},
                       workers, executor, multistart, seed)
    if individual:
        return context.individual(started)
    return context.pooled(started)


def _names(estimate) -> tuple[str, ...]:
    names = (estimate,) if isinstance(estimate, str) else tuple(estimate)
    if not names:
        raise ValidationError("give at least one parameter to estimate")
    if len(set(names)) != len(names):
        raise ValidationError(f"{next(n for n in names if names.count(n) > 1)!r} is listed "
                              "twice in estimate")
    return names


def _error_kinds(error, outputs) -> dict[str, str]:
    if isinstance(error, str):
        return dict.fromkeys(outputs, error)
    if not isinstance(error, Mapping):
        raise ValidationError("error must be 'additive', 'proportional', 'combined' or "
                              "{output: kind}")
    missing = [o for o in outputs if o not in error]
    if missing:
        raise ValidationError(f"no error model for output {missing[0]} (error={dict(error)})")
    return {o: error[o] for o in outputs}


class _Context:
    """One fit's fixed parts: the problem, the parameterisation, starts and bounds."""

    def __init__(self, spec, data, estimate, errors, bounds, start, scale, workers,
                 executor, multistart, seed):
        self.spec, self.data, self.errors = spec, data, errors
        self.workers, self.executor = workers, executor
        self.multistart, self.seed = multistart, seed
        if not (isinstance(multistart, int) and multistart >= 0):
            raise ValidationError(f"multistart must be a whole number >= 0, got "
                                  f"{multistart!r}")
        self.problem = FitProblem(spec, data, estimate, errors)
        cm = spec.compiled
        error_names = self.problem.error_names
        known = set(estimate) | set(error_names)
        for mapping, what in ((bounds, "bounds"), (start, "start"), (scale, "scale")):
            extra = sorted(set(mapping) - known)
            if extra:
                raise ValidationError(f"{what} names {extra[0]!r}, which is not estimated "
                                      f"(estimated: {', '.join(sorted(known))})")
        self.units = {n: cm.parameter_units[cm.parameter_names.index(n)] for n in estimate}
        for n in error_names:
            output = n.rsplit(".", 1)[0]
            self.units[n] = data.value_units[output] if n.endswith(".additive") \
                else ureg.dimensionless
        for n, how in scale.items():
            if how not in ("log", "linear"):
                raise ValidationError(f"scale of {n}: 'log' or 'linear', got {how!r}")
            if n in error_names and how != "log":
                raise ValidationError(f"{n} is an error parameter: it is always estimated on "
                                      "the log scale")
        names = tuple(estimate) + error_names
        self.param = Parameterisation(names, tuple(scale.get(n, "log") == "log"
                                                   for n in names), len(estimate))
        self.start = self._start(start, names)
        for n, v, is_log in zip(names, self.start, self.param.log):
            if is_log and not v > 0:
                raise ValidationError(f"{n} starts at {v:g} (canonical units): a log-scaled "
                                      "parameter must start above 0; give start= or "
                                      f"scale={{'{n}': 'linear'}}")
        self.bounds = self._bounds(bounds, names)

    # ---- values in canonical units --------------------------------------------------------
    def _canonical(self, name, value) -> float:
        q = parse_quantity(value, what=f"value of {name}")
        unit = self.units[name]
        if q.dimensionality != (1 * unit).dimensionality:
            raise UnitError(f"{name} must have the dimension of {format_unit(unit)}, "
                            f"got {format_quantity(q)}")
        return float(q.to(canonical_unit(1 * unit)).magnitude) \
            if not name.count(".") else float(q.to(unit).magnitude)

    def _start(self, start, names) -> np.ndarray:
        spec, cm = self.spec, self.spec.compiled
        values = []
        outputs = self.data.outputs
        for n in names:
            if n in start:
                values.append(self._canonical(n, start[n]))
            elif n.endswith(".additive"):
                y = self.problem.y[self.problem.which == outputs.index(n.rsplit(".", 1)[0])]
                mean = float(np.mean(np.abs(y)))
                values.append(0.1 * mean if mean > 0 else 1.0)
            elif n.endswith(".proportional"):
                values.append(0.1)
            else:
                values.append(float(spec.parameters[cm.parameter_names.index(n)]))
        return np.array(values)

    def _bounds(self, bounds, names) -> list[tuple[float | None, float | None]]:
        out = []
        for n, is_log in zip(names, self.param.log):
            if n not in bounds:
                out.append((None, None))
                continue
            pair = bounds[n]
            if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
                raise ValidationError(f"bounds of {n}: expected (low, high), got {pair!r}")
            lo, hi = (self._canonical(n, v) for v in pair)
            if not lo < hi:
                raise ValidationError(f"bounds of {n}: need low < high")
            if is_log and not lo > 0:
                raise ValidationError(f"bounds of {n}: a log-scaled parameter needs low > 0")
            out.append((math.log(lo), math.log(hi)) if is_log else (lo, hi))
        return out

    # ---- the objective -------------------------------------------------------------------
    def objective(self, x, fixed=None, subjects=None):
        """(-2 log L, gradient) in the optimiser's variables; ``fixed`` = (index, x value)
        holds one variable (profiles)."""
        x = np.asarray(x, dtype=float)
        if fixed is not None:
            x = np.insert(x, fixed[0], fixed[1])
        values = self.param.to_values(x)
        if not np.all(np.isfinite(values)):
            return math.inf, np.zeros(x.size - (fixed is not None))
        try:
            total, grad, _, _ = self.problem.evaluate(values, self.param.log,
                                                      workers=self.workers,
                                                      executor=self.executor,
                                                      subjects=subjects)
        except (SolverError, ValidationError):
            # values no run can take (a volume of 0, a solver that cannot finish): the
            # optimiser's line search backs off from them
            return math.inf, np.zeros(x.size - (fixed is not None))
        # gradient by x: the problem gives d/d ln p for log-scaled and d/dp for linear ones
        if not math.isfinite(total):
            return math.inf, np.zeros(x.size - (fixed is not None))
        if fixed is not None:
            grad = np.delete(grad, fixed[0])
        return total, grad

    def optimise(self, x0, bounds, fixed=None, subjects=None):
        from scipy.optimize import minimize

        result = minimize(self.objective, x0, args=(fixed, subjects), jac=True,
                          method="L-BFGS-B", bounds=bounds,
                          options={"maxiter": 1000, "ftol": 1e-14, "gtol": 1e-9,
                                   "maxcor": 30})
        return result

    def starts(self) -> list[np.ndarray]:
        x0 = self.param.to_x(self.start)
        points = [x0]
        if self.multistart:
            from scipy.stats import qmc

            low = np.array([b[0] if b[0] is not None else x - (math.log(10) if lg else
                                                                 max(abs(x), 1.0))
                            for b, x, lg in zip(self.bounds, x0, self.param.log)])
            high = np.array([b[1] if b[1] is not None else x + (math.log(10) if lg else
                                                                  max(abs(x), 1.0))
                             for b, x, lg in zip(self.bounds, x0, self.param.log)])
            design = qmc.Sobol(len(x0), scramble=True, seed=self.seed).random(
                self.multistart)
            points += list(low + design * (high - low))
        return points

    # ---- pooled ----------------------------------------------------------------------------
    def pooled(self, started, subjects=None) -> FitResult:
        chosen = self.problem.subjects if subjects is None else subjects
        n_obs = sum(s.days.size for s in chosen)
        if n_obs <= len(self.param.names):
            raise ValidationError(f"{n_obs} observations for {len(self.param.names)} "
                                  f"parameters ({', '.join(self.param.names)}): a fit needs "
                                  "more observations than parameters")
        best, reached, total_iterations, total_evaluations = None, [], 0, 0
        for x0 in self.starts():
            result = self.optimise(x0, self.bounds, subjects=subjects)
            total_iterations += result.nit
            total_evaluations += result.nfev
            reached.append(result.fun)
            if best is None or result.fun < best.fun:
                best = result
        if not math.isfinite(best.fun):
            raise SolverError("the fit found no parameter values at which every subject "
                              "could be simulated", hint="check the starting values and "
                              "bounds")
        at_best = sum(1 for v in reached if v - best.fun <= 1e-3)
        return self.result(best, total_iterations, total_evaluations, len(reached), at_best,
                           started, subjects)

    def information(self, x, subjects=None) -> np.ndarray:
        """The observed Fisher information in x (Hessian of -log L = half that of -2LL),
        by central differences of the exact gradient."""
        k = x.size
        hessian = np.empty((k, k))
        for j in range(k):
            h = 1e-4 * max(1.0, abs(x[j]))
            up, down = x.copy(), x.copy()
            up[j] += h
            down[j] -= h
            hessian[:, j] = (self.objective(up, subjects=subjects)[1] -
                             self.objective(down, subjects=subjects)[1]) / (2 * h)
        return 0.5 * (hessian + hessian.T) / 2

    def result(self, best, iterations, evaluations, starts, at_best, started,
               subjects) -> FitResult:
        x = np.asarray(best.x, dtype=float)
        names, log = self.param.names, np.array(self.param.log)
        info = self.information(x, subjects)
        not_identifiable, cov = _covariance(info, names)
        values = self.param.to_values(x)
        se_x = np.sqrt(np.clip(np.diag(cov), 0, None))
        se = np.where(log, values * se_x, se_x)
        lo = np.where(log, np.exp(x - _Z95 * se_x), x - _Z95 * se_x)
        hi = np.where(log, np.exp(x + _Z95 * se_x), x + _Z95 * se_x)
        with np.errstate(invalid="ignore", divide="ignore"):
            corr = cov / np.outer(se_x, se_x)
        for n in not_identifiable:
            i = names.index(n)
            se[i] = lo[i] = hi[i] = math.nan
            corr[i, :] = corr[:, i] = math.nan
        total, _, f, s2 = self.problem.evaluate(values, self.param.log, workers=self.workers,
                                                executor=self.executor, subjects=subjects)
        chosen = self.problem.subjects if subjects is None else subjects
        y = np.concatenate([s.values for s in chosen])
        n_obs, p = y.size, len(names)
        return FitResult(
            model=self.spec.model.name, dataset=self.data.path,
            dataset_sha256=self.data.sha256, names=names,
            estimates={n: self._quantity(n, v) for n, v in zip(names, values)},
            standard_errors={n: self._quantity(n, v) for n, v in zip(names, se)},
            lower={n: self._quantity(n, v) for n, v in zip(names, lo)},
            upper={n: self._quantity(n, v) for n, v in zip(names, hi)},
            correlation=corr, not_identifiable=tuple(not_identifiable), minus2ll=float(total),
            aic=float(total + 2 * p), bic=float(total + p * math.log(n_obs)),
            n_observations=int(n_obs), success=bool(best.success),
            message=str(best.message), iterations=int(iterations),
            evaluations=int(evaluations), solves=int(self.problem.solves),
            seconds=time.perf_counter() - started, starts=starts, starts_at_best=at_best,
            error_models=dict(self.errors),
            subject_ids=np.concatenate([[s.id] * s.days.size for s in chosen]),
            times=ureg.Quantity(np.concatenate([s.days for s in chosen]), ureg.day).to(
                self.data.time_unit),
            observed=y, predicted=f, weighted_residuals=(y - f) / np.sqrt(s2),
            outputs=tuple(o for s in chosen for o in s.outputs),
            value_units=dict(self.data.value_units),
            _context=_Profiler(self, subjects))

    def _quantity(self, name: str, canonical: float) -> pint.Quantity:
        unit = self.units[name]
        if "." in name:  # error parameters are kept in their own units
            return ureg.Quantity(canonical, unit)
        return ureg.Quantity(canonical, canonical_unit(1 * unit)).to(unit)

    # ---- individual ----------------------------------------------------------------------
    def individual(self, started) -> IndividualFits:
        from ..runner import map_chunks

        subjects = self.problem.subjects
        inner = replace_workers(self)
        outcomes = map_chunks(_fit_subject, [(inner, s) for s in subjects],
                              sizes=[1] * len(subjects),
                              workers=1 if self.workers is None and self.executor is None
                              else (self.workers or 1), executor=self.executor,
                              progress=False)
        fits, failed = {}, {}
        for s, (result, why) in zip(subjects, outcomes):
            if result is None:
                failed[s.id] = why
            else:
                fits[s.id] = result
        return IndividualFits(fits=fits, failed=failed)


def replace_workers(context: _Context) -> _Context:
    """The same context evaluating one subject at a time in the calling thread (the
    subjects themselves are what is spread)."""
    import copy

    inner = copy.copy(context)
    inner.workers, inner.executor = 1, None
    return inner


def _fit_subject(context: _Context, subject):
    started = time.perf_counter()
    try:
        return context.pooled(started, subjects=[subject]), None
    except (SolverError, ValidationError, np.linalg.LinAlgError) as exc:
        return None, str(exc)


def _covariance(info: np.ndarray, names) -> tuple[list[str], np.ndarray]:
    """The covariance (inverse information), and the parameters with next to no
    information: those that weigh most in the eigenvectors of the smallest eigenvalues."""
    values, vectors = np.linalg.eigh(info)
    largest = max(float(np.max(np.abs(values))), 1e-300)
    weak = values <= _IDENTIFIABLE * largest
    flagged = []
    for j in np.flatnonzero(weak):
        flagged.append(names[int(np.argmax(np.abs(vectors[:, j])))])
    inverse = np.zeros_like(info)
    for j in np.flatnonzero(~weak):
        inverse += np.outer(vectors[:, j], vectors[:, j]) / values[j]
    return sorted(set(flagged), key=names.index), inverse


class _Profiler:
    """Re-optimises with one parameter held (profile likelihoods of a finished fit)."""

    def __init__(self, context: _Context, subjects):
        self.context, self.subjects = context, subjects

    def profile(self, result: FitResult, name: str, points: int) -> Profile:
        from scipy.optimize import brentq

        ctx = self.context
        names = ctx.param.names
        if name not in names:
            raise ValidationError(f"{name!r} was not estimated (estimated: "
                                  f"{', '.join(names)})")
        j = names.index(name)
        x_hat = ctx.param.to_x([_canonical_of(ctx, n, result.estimates[n]) for n in names])
        best = result.minus2ll
        rest = np.delete(x_hat, j)
        bounds = [b for i, b in enumerate(ctx.bounds) if i != j]
        se_x = result.standard_errors[name].magnitude / result.estimates[name].magnitude \
            if ctx.param.log[j] else result.standard_errors[name].magnitude
        step = se_x if math.isfinite(se_x) and se_x > 0 else 0.1
        step = min(step, 1.0) if ctx.param.log[j] else step

        def level(value):
            fitted = ctx.optimise(rest, bounds, fixed=(j, value), subjects=self.subjects)
            return fitted.fun

        xs, ys, ends = [x_hat[j]], [best], {}
        for direction in (-1, 1):
            prev_x = x_hat[j]
            for k in range(1, points + 1):
                x = x_hat[j] + direction * k * step
                lo, hi = ctx.bounds[j]
                if (lo is not None and x < lo) or (hi is not None and x > hi):
                    break
                y = level(x)
                xs.append(x)
                ys.append(y)
                if y - best >= _CHI2_95:
                    ends[direction] = brentq(lambda v: level(v) - best - _CHI2_95, prev_x, x,
                                             xtol=1e-4 * step)
                    break
                prev_x = x
        order = np.argsort(xs)
        xs_arr = np.array(xs)[order]
        unit_value = [ctx._quantity(name, v) for v in
                      (np.exp(xs_arr) if ctx.param.log[j] else xs_arr)]
        quantities = ureg.Quantity([q.magnitude for q in unit_value], unit_value[0].units)

        def at(direction):
            if direction not in ends:
                return None
            v = ends[direction]
            return ctx._quantity(name, math.exp(v) if ctx.param.log[j] else v)

        return Profile(name=name, values=quantities, minus2ll=np.array(ys)[order],
                       lower=at(-1), upper=at(1))


def _canonical_of(ctx: _Context, name: str, q: pint.Quantity) -> float:
    if "." in name:
        return float(q.magnitude)
    return float(q.to(canonical_unit(q)).magnitude)


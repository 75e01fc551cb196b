"""Population estimation by first-order conditional estimation with interaction (FOCEI).

The population model: subject i's parameter vector is the typical values with a log-normal
random effect on some parameters, ``p_ik = theta_k * exp(eta_ik)``, ``eta_i ~ N(0, Omega)``;
observations are normal around the prediction with the error model's variance
``R_ij(eta_i)`` (proportional: ``(b f_ij)**2``, so the variance depends on eta: the
"interaction").

For given population parameters (theta, Omega, error parameters) each subject's
contribution is found by an inner optimisation, the empirical Bayes estimate

    eta_i = argmin  O_i(eta) = sum_j [ln(2 pi R_ij) + (y_ij - f_ij)**2 / R_ij] + eta' Omega^-1 eta

and the Laplace approximation of the integral over eta with the first-order (FOCE)
approximation of the Hessian,

    H_i = Omega^-1 + sum_j [g_j g_j' / R_ij + 1/2 dR_j dR_j' / R_ij**2],

with ``g_j = d f_ij / d eta`` and ``dR_j = d R_ij / d eta`` from the sensitivity equations
(exact), gives

    -2 ln L_i = O_i(eta_i) + ln det Omega + ln det H_i.

The objective is the sum over subjects; NONMEM's objective function value (OFV) is the same
without the constant ``n ln 2 pi`` (n observations), and both are reported.  The outer
optimisation over (ln theta or theta, ln omega**2, ln error parameters) is L-BFGS-B on
forward differences of the objective, the inner problems warm-started from the previous
estimates and solved by Gauss-Newton steps with the same Hessian (converged to a tight
tolerance so that the differences are smooth).  The covariance step: R = half the Hessian
of the objective by central differences, S = the sum over subjects of the products of their
gradients / 4; the sandwich ``R^-1 S R^-1`` is reported (NONMEM's default), ``R^-1`` too.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from ..errors import MechsimError, SolverError, ValidationError
from ..runner import workers_or_cpus
from .problem import Parameterisation

__all__ = ["CovariateEffect", "PopulationFit", "PopulationProblem"]

#: Inner optimisation: stop when the Gauss-Newton step in eta is below this
INNER_TOL = 1e-9
INNER_MAX = 100
#: Largest change of an eta in one inner step (a factor e**2 on a parameter)
MAX_STEP = 2.0


class PopulationProblem:
    """A FitProblem (predictions and their exact derivatives per subject) with random
    effects on some of its estimated parameters.

    ``fixed_log``: per estimated model parameter, whether it is estimated as ``ln theta``;
    ``random``: names of the parameters with a random effect (log-normal: they must be
    log-scaled); the error parameters of the FitProblem are estimated on the log scale.
    """

    def __init__(self, problem, fixed_log: Sequence[bool], random: Sequence[str],
                 workers: int | None = None, effects: Sequence[CovariateEffect] = (),
                 executor=None):
        self.problem = problem
        self.names = problem.estimate
        self.fixed_log = tuple(bool(x) for x in fixed_log)
        unknown = [n for n in random if n not in self.names]
        if unknown:
            raise ValidationError(f"random effect on {unknown[0]!r}, which is not estimated "
                                  f"(estimated: {', '.join(self.names)})")
        self.random = tuple(random)
        self.eta_index = np.array([self.names.index(n) for n in random], dtype=int)
        linear = [n for n, i in zip(self.random, self.eta_index) if not self.fixed_log[i]]
        if linear:
            raise ValidationError(f"{linear[0]} has a log-normal random effect, so it is "
                                  "estimated on the log scale (scale 'linear' is not allowed)")
        self.errors = problem.errors
        self.error_names = problem.error_names
        self.subjects = problem.subjects
        self.etas = np.zeros((len(self.subjects), len(self.random)))
        self.workers = workers_or_cpus(workers)
        self._pool = None
        self._remote_solves = 0
        self.executor = executor
        self._shipped = None  # this problem, sent to the executor's workers once
        self.effects = tuple(effects)
        self.estimated_effects = tuple(e for e in self.effects if e.value is None)
        for e in self.effects:
            if e.parameter not in self.names:
                raise ValidationError(f"covariate effect {e.name}: {e.parameter} is not "
                                      "estimated (an effect acts on a typical value of "
                                      "[variability] or [fixed])")

    def typical(self, theta: np.ndarray, betas: Sequence[float] = ()) -> np.ndarray:
        """Each subject's typical values (subjects x parameters): ``theta`` times the
        covariate effects, the estimated ones at ``betas``."""
        out = np.tile(np.asarray(theta, dtype=float), (len(self.subjects), 1))
        values = iter(betas)
        for e in self.effects:
            beta = next(values) if e.value is None else e.value
            j = self.names.index(e.parameter)
            out[:, j] *= e.factor(beta)
        return out

    @property
    def solves(self) -> int:
        return self.problem.solves + self._remote_solves

    def __getstate__(self):  # what a worker process needs: no pool, no executor
        state = dict(self.__dict__)
        state.update(_pool=None, executor=None, _shipped=None)
        return state

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _inner_all(self, theta, omega_inv, errors) -> list:
        """Each subject's (eta, O_i, ln det H_i), or None where it failed: here, or split
        over worker processes that received this problem once, when they started (the
        inner problems are Python-bound: threads would share one core)."""
        if self.executor is not None:
            # any pool with submit(fn, *args), a Dask client among them; a Dask client
            # holds the problem on its workers (scatter), others get it with each chunk
            if self._shipped is None:
                scatter = getattr(self.executor, "scatter", None)
                self._shipped = scatter(self, broadcast=True) if scatter else self
            chunks = np.array_split(np.arange(len(self.subjects)),
                                    min(len(self.subjects), 2 * self.workers))
            futures = [self.executor.submit(_inner_chunk, self._shipped, c, theta[c],
                                            omega_inv, errors, self.etas[c])
                       for c in chunks]
        elif self.workers <= 1 or len(self.subjects) < 2 * self.workers:
            return _inner_chunk(self, range(len(self.subjects)), theta, omega_inv, errors,
                                self.etas)[0]
        else:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, initializer=_start_worker,
                                                 initargs=(self,))
            chunks = np.array_split(np.arange(len(self.subjects)), self.workers)
            futures = [self._pool.submit(_remote_chunk, c, theta[c], omega_inv, errors,
                                         self.etas[c]) for c in chunks]
        found = []
        for future in futures:
            part, solves = future.result()
            found.extend(part)
            self._remote_solves += solves
        return found

    # ---- the inner problems ------------------------------------------------------------------
    def predict_many(self, subjects, theta, etas, *, return_exceptions: bool = False):
        """Predictions and d f / d eta of subjects (``theta``: their typical values, one
        row each) with random effects ``etas`` (see :meth:`FitProblem.predict_many`)."""
        rows = []
        for typical, eta in zip(theta, etas):
            p = typical.copy()
            p[self.eta_index] = typical[self.eta_index] * np.exp(eta)
            rows.append(p)
        found = self.problem.predict_many(subjects, rows, self.fixed_log,
                                          return_exceptions=return_exceptions)
        return [x if isinstance(x, MechsimError) else (x[0], x[1][:, self.eta_index])
                for x in found]

    def _variance(self, subject, f: np.ndarray, errors: Mapping[str, float]):
        """R and dR/df of each observation of a subject (each output's error model)."""
        r = np.empty_like(f)
        dr = np.empty_like(f)
        for k, model in enumerate(self.errors):
            cols = subject.which == k
            r[cols], dr[cols], _ = model.variance(f[cols], errors)
        return r, dr

    def _terms(self, subject, eta, predicted, omega_inv, errors):
        """(O_i, its gradient, the FOCE Hessian H_i) at ``eta`` from the prediction there
        (f, d f / d eta), or None where there is none to use (a step too far: a volume of
        inf, a variance not positive): the line search backs off."""
        if isinstance(predicted, MechsimError):
            return None
        f, g = predicted
        r, drdf = self._variance(subject, f, errors)
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(g)) and np.all(r > 0)):
            return None
        res = subject.values - f
        o = float(np.sum(np.log(2 * math.pi * r) + res * res / r) + eta @ omega_inv @ eta)
        dr = drdf[:, None] * g
        grad = (2 * omega_inv @ eta + dr.T @ (1 / r - res * res / r ** 2)
                - 2 * g.T @ (res / r))
        h = omega_inv + (g.T / r) @ g + 0.5 * (dr.T / r ** 2) @ dr
        return o, grad, h

    def inner_problems(self, indices, theta, omega_inv, errors, etas) -> list:
        """Each subject's (eta_i, O_i(eta_i), ln det H_i), or the error that ended its inner
        problem (SolverError, ValidationError, LinAlgError).  ``theta`` and ``etas``: one
        row per index (typical values, starting etas).

        The subjects' inner problems run in lockstep: every evaluation they need at one
        moment is one :meth:`FitProblem.predict_many` (one compiled call for them all
        instead of one per subject, each of which costs more in crossing into compiled code
        than a small run).  Each subject still takes exactly the steps it would alone."""
        subjects = [self.subjects[i] for i in indices]
        found: list = [None] * len(subjects)
        waiting = {}  # position -> (its inner problem, the eta it needs the terms of)
        for k, (subject, eta0) in enumerate(zip(subjects, etas)):
            steps = _inner_steps(subject, eta0)
            waiting[k] = (steps, next(steps))
        while waiting:
            order = list(waiting)
            predicted = self.predict_many([subjects[k] for k in order],
                                          [theta[k] for k in order],
                                          [waiting[k][1] for k in order],
                                          return_exceptions=True)
            for k, prediction in zip(order, predicted):
                steps, eta = waiting.pop(k)
                try:
                    waiting[k] = (steps, steps.send(
                        self._terms(subjects[k], eta, prediction, omega_inv, errors)))
                except StopIteration as done:
                    found[k] = done.value
                except (SolverError, ValidationError, np.linalg.LinAlgError) as exc:
                    found[k] = exc
        return found

    # ---- the population objective -----------------------------------------------------------
    def objective(self, theta, omega: np.ndarray, errors: Mapping[str, float],
                  betas: Sequence[float] = (), *, keep: bool = True,
                  per_subject: bool = False):
        """-2 ln L (the FOCEI approximation, constants included) at population values:
        ``theta`` the typical values (canonical), ``omega`` the covariance of the etas,
        ``errors`` the error parameters by name, ``betas`` the estimated covariate
        effects."""
        theta = self.typical(theta, betas)
        logged = np.asarray(self.fixed_log, dtype=bool)
        if not np.all(np.isfinite(theta)) or np.any(theta[:, logged] <= 0):
            return math.inf if not per_subject else (math.inf, None)
        omega = np.atleast_2d(np.asarray(omega, dtype=float))
        sign, logdet_omega = np.linalg.slogdet(omega)
        if sign <= 0:
            return math.inf if not per_subject else (math.inf, None)
        omega_inv = np.linalg.inv(omega)
        etas = np.empty_like(self.etas)
        found = self._inner_all(theta, omega_inv, errors)
        if any(x is None for x in found):
            return math.inf if not per_subject else (math.inf, None)
        parts = []
        for i, (eta, o, logdet_h) in enumerate(found):
            parts.append(o + logdet_omega + logdet_h)
            etas[i] = eta
        total = float(np.sum(parts))
        if keep:
            self.etas = etas
        return (total, np.array(parts)) if per_subject else total


def _inner_steps(subject, eta0):
    """One subject's inner problem, a coroutine: it yields each eta whose terms
    (O_i, gradient, H_i) it needs and is sent them (None: no usable prediction there); it
    returns (eta_i, O_i(eta_i), ln det H_i).  Gauss-Newton with the FOCE Hessian, steps of
    at most MAX_STEP, halved until the objective falls."""
    eta = np.array(eta0, dtype=float)
    current = yield eta
    if current is None:
        raise SolverError(f"subject {subject.id}: the prediction is not finite or the "
                          "residual variance not positive at the starting eta")
    for _ in range(INNER_MAX):
        o, grad, h = current
        step = np.linalg.solve(2 * h, grad)  # Gauss-Newton (FOCE Hessian of O_i)
        if np.max(np.abs(step)) < INNER_TOL:
            break  # converged: the step would not move eta
        step *= min(1.0, MAX_STEP / np.max(np.abs(step)))  # exp(eta) stays finite
        scale = 1.0
        for _ in range(30):  # halve until the objective falls
            trial = eta - scale * step
            candidate = yield trial
            if candidate is not None and candidate[0] <= o + 1e-12 * abs(o):
                break
            scale *= 0.5
        else:
            break
        eta, current = trial, candidate
        if np.max(np.abs(scale * step)) < INNER_TOL:
            break
    o, _, h = current
    _, logdet = np.linalg.slogdet(h)
    return eta, o, logdet


def _first_failure(pop: PopulationProblem, theta, omega, errors, betas) -> str:
    """Why the objective is infinite at these values: the first subject that fails."""
    try:
        omega_inv = np.linalg.inv(omega)
    except np.linalg.LinAlgError:
        return "Omega is singular"
    found = pop.inner_problems(range(len(pop.subjects)), pop.typical(theta, betas),
                               omega_inv, errors, pop.etas)
    for subject, outcome in zip(pop.subjects, found):
        if isinstance(outcome, MechsimError):
            return f"subject {subject.id}: {outcome.message}"
        if isinstance(outcome, Exception):
            return f"subject {subject.id}: {outcome}"
    return "Omega is not positive definite"


def _inner_chunk(pop: PopulationProblem, indices, theta, omega_inv, errors, etas):
    """The inner problems of some subjects (``etas``: their starting etas, in order), and
    the number of model solves they took."""
    before = pop.problem.solves
    found = pop.inner_problems(indices, theta, omega_inv, errors, etas)
    # an error: values no run can take (a volume of 0 or inf, a solver that cannot finish):
    # the objective is infinite there and the optimiser backs off
    out = [None if isinstance(x, Exception) else x for x in found]
    return out, pop.problem.solves - before


_WORKER: dict = {}


def _start_worker(pop: PopulationProblem) -> None:
    _WORKER["problem"] = pop


def _remote_chunk(indices, theta, omega_inv, errors, etas):
    return _inner_chunk(_WORKER["problem"], indices, theta, omega_inv, errors, etas)


@dataclass(frozen=True)
class CovariateEffect:
    """A covariate effect on a typical value, per subject: ``power``:
    ``(covariate / reference) ** beta`` (``covariate`` holds the ratios); ``linear``:
    ``1 + beta * (covariate - reference)`` (``covariate`` holds the differences divided
    by ``spread``, and beta is the slope, in ``unit``, times ``spread``); ``multiply``:
    ``beta`` for the subjects whose categorical covariate is ``level``, 1 for the others.
    ``value`` None: beta is estimated from ``start``."""

    name: str
    parameter: str
    kind: str
    covariate: np.ndarray          # per subject: numbers in the reference's unit, or levels
    value: float | None
    start: float = 0.0
    level: str | None = None
    unit: str = ""  # of beta
    spread: float = 1.0  # beta here is the reported beta times this (linear effects)

    def factor(self, beta: float) -> np.ndarray:
        if self.kind == "power":
            return self.covariate ** beta
        if self.kind == "linear":  # not positive for some subject: the objective is inf
            return 1.0 + beta * self.covariate
        return np.where(self.covariate == self.level, beta, 1.0)

    @property
    def log(self) -> bool:
        """A factor is estimated as its logarithm (it stays positive)."""
        return self.kind == "multiply"


@dataclass(frozen=True)
class PopulationFit:
    """What a population fit estimated (canonical units; see :func:`focei`)."""

    names: tuple[str, ...]                 # fixed effects, then omegas, then error params
    estimates: np.ndarray
    standard_errors: np.ndarray            # sandwich (R^-1 S R^-1), natural scale
    standard_errors_r: np.ndarray          # from R^-1 alone
    minus2ll: float
    ofv: float                             # NONMEM's OFV: -2 ln L without n ln 2 pi
    etas: np.ndarray                       # (subjects, random effects): empirical Bayes
    random: tuple[str, ...]
    shrinkage: np.ndarray                  # per random effect, 1 - sd(eta) / omega
    n_observations: int
    solves: int
    seconds: float
    success: bool
    message: str
    subject_ids: tuple[str, ...] = field(default=())
    omega: np.ndarray | None = None        # the estimated covariance of the etas
    typical: np.ndarray | None = None      # each subject's typical values (covariates)


def focei(pop: PopulationProblem, theta0: np.ndarray, omega0: np.ndarray,
          errors0: Mapping[str, float], *, covariance: bool = True,
          max_iterations: int = 200,
          pairs: Sequence[tuple[int, int]] = ()) -> PopulationFit:
    """See :func:`_focei`; the worker processes end with the fit, however it ends."""
    try:
        return _focei(pop, theta0, omega0, errors0, covariance=covariance,
                      max_iterations=max_iterations, pairs=pairs)
    finally:
        pop.close()


def _focei(pop: PopulationProblem, theta0: np.ndarray, omega0: np.ndarray,
           errors0: Mapping[str, float], *, covariance: bool = True,
           max_iterations: int = 200,
           pairs: Sequence[tuple[int, int]] = ()) -> PopulationFit:
    """Estimate theta, Omega and the error parameters by FOCEI, starting from ``theta0``
    (canonical), ``omega0`` (the covariance of the etas) and ``errors0``.  Omega is
    diagonal except for the correlations of ``pairs`` (indices of random effects), which
    are estimated too (as atanh of the correlation: any value keeps it within (-1, 1); an
    Omega that is not positive definite is refused by the objective)."""
    from scipy.optimize import minimize

    started = time.perf_counter()
    k, m, c = len(pop.names), len(pop.random), len(pairs)
    e = len(pop.estimated_effects)
    # typical values and estimated effects: each as its logarithm or as it is
    scale = Parameterisation(pop.names + tuple(ef.name for ef in pop.estimated_effects),
                             pop.fixed_log + tuple(ef.log for ef in pop.estimated_effects),
                             k + e)
    error_names = pop.error_names
    omega0 = np.atleast_2d(np.asarray(omega0, dtype=float))

    # x: theta (ln or linear), covariate effects, ln omega^2, atanh rho, ln error params
    def unpack(x):
        values = scale.to_values(x[:k + e])
        theta, betas = values[:k], values[k:]
        o = x[k + e:]
        variances = np.exp(o[:m])
        omega = np.diag(variances)
        for (a, b), z in zip(pairs, o[m:m + c]):
            omega[a, b] = omega[b, a] = math.tanh(z) * math.sqrt(variances[a] * variances[b])
        errors = dict(zip(error_names, np.exp(o[m + c:])))
        return theta, omega, errors, betas

    def pack(theta, omega, errors, betas):
        variances = np.diag(omega)
        rho = [omega[a, b] / math.sqrt(variances[a] * variances[b]) for a, b in pairs]
        return np.concatenate([scale.to_x(np.concatenate([theta, betas])),
                               np.log(variances),
                               np.arctanh(rho), np.log([errors[n] for n in error_names])])

    x0 = pack(theta0, omega0, errors0, [ef.start for ef in pop.estimated_effects])
    if not math.isfinite(pop.objective(*unpack(x0))):  # the etas of the start
        raise ValidationError(f"the objective cannot be evaluated at the starting values: "
                              f"{_first_failure(pop, *unpack(x0))}")

    def value(x, keep=False):
        with np.errstate(over="ignore", invalid="ignore"):
            return pop.objective(*unpack(x), keep=keep)

    def value_and_gradient(x):
        f0 = value(x, keep=True)
        if not math.isfinite(f0):
            return 1e300, np.zeros_like(x)
        grad = np.empty_like(x)
        for j in range(x.size):
            h = 1e-5 * max(1.0, abs(x[j]))
            step = x.copy()
            step[j] += h
            f1 = value(step)
            grad[j] = (f1 - f0) / h if math.isfinite(f1) else 0.0
        return f0, grad

    if max_iterations > 0:
        result = minimize(value_and_gradient, x0, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iterations, "ftol": 1e-11, "gtol": 1e-3})
        x, success, message = result.x, bool(result.success), str(result.message)
    else:  # NONMEM's MAXEVAL=0: the objective (and covariance) at the given values
        x, success, message = x0, True, "evaluated at the given values (no estimation)"
    best = pop.objective(*unpack(x), keep=True)
    theta, omega, errors, betas = unpack(x)
    rho = np.tanh(x[k + e + m:k + e + m + c])
    estimates = np.concatenate([theta, betas, np.diag(omega), rho,
                                [errors[n] for n in error_names]])
    se = se_r = np.full(x.size, np.nan)
    if covariance:
        cov_x, cov_r = _covariance(pop, unpack, x)
        # the natural scale: d value / d x is the value for log-scaled entries
        dvalue = np.concatenate([np.where(scale.log, np.concatenate([theta, betas]), 1.0),
                                 np.diag(omega),
                                 1.0 - rho ** 2, [errors[n] for n in error_names]])
        se = dvalue * np.sqrt(np.clip(np.diag(cov_x), 0, None))
        se_r = dvalue * np.sqrt(np.clip(np.diag(cov_r), 0, None))
    n = pop.problem.n_observations
    sd = np.sqrt(np.diag(omega))
    shrinkage = 1.0 - pop.etas.std(axis=0, ddof=0) / sd
    names = pop.names + tuple(ef.name for ef in pop.estimated_effects) + \
        tuple(f"omega2({r})" for r in pop.random) + \
        tuple(f"corr({pop.random[a]},{pop.random[b]})" for a, b in pairs) + error_names
    return PopulationFit(names=names, estimates=estimates, standard_errors=se,
                         standard_errors_r=se_r, minus2ll=float(best),
                         ofv=float(best - n * math.log(2 * math.pi)), etas=pop.etas.copy(),
                         random=pop.random, shrinkage=shrinkage, n_observations=n,
                         solves=pop.solves, seconds=time.perf_counter() - started,
                         success=success, message=message,
                         subject_ids=tuple(s.id for s in pop.subjects), omega=omega,
                         typical=pop.typical(theta, betas))


def _covariance(pop: PopulationProblem, unpack, x: np.ndarray):
    """(R^-1 S R^-1, R^-1) in the optimiser's variables, by central differences."""
    d = x.size
    h = 1e-3 * np.maximum(1.0, np.abs(x))
    saved = pop.etas.copy()

    def parts(point):
        pop.etas = saved.copy()  # every point from the optimum's etas: smooth differences
        _, per = pop.objective(*unpack(point), keep=False, per_subject=True)
        if per is None:
            raise SolverError("the covariance step could not evaluate the objective near "
                              "the estimates")
        return per

    f0 = parts(x)
    plus, minus = [], []
    for j in range(d):
        e = np.zeros(d)
        e[j] = h[j]
        plus.append(parts(x + e))
        minus.append(parts(x - e))
    hessian = np.empty((d, d))
    for a in range(d):
        hessian[a, a] = (plus[a].sum() - 2 * f0.sum() + minus[a].sum()) / h[a] ** 2
        for b in range(a + 1, d):
            ea, eb = np.zeros(d), np.zeros(d)
            ea[a], eb[b] = h[a], h[b]
            fpp = parts(x + ea + eb).sum()
            fmm = parts(x - ea - eb).sum()
            # the mixed derivative from the diagonal ones and the two diagonal points
            hessian[a, b] = hessian[b, a] = (fpp - plus[a].sum() - plus[b].sum()
                                             + 2 * f0.sum() - minus[a].sum()
                                             - minus[b].sum() + fmm) / (2 * h[a] * h[b])
    pop.etas = saved
    gradients = (np.array(plus) - np.array(minus)) / (2 * h[:, None])  # (d, subjects)
    r = hessian / 2.0
    s = gradients @ gradients.T / 4.0
    try:
        r_inv = np.linalg.inv(r)
    except np.linalg.LinAlgError:
        import warnings

        from ..errors import NumericalWarning

        warnings.warn("the covariance step failed: the Hessian of the objective is singular "
                      "(a parameter the data cannot determine?); no standard errors",
                      NumericalWarning, stacklevel=3)
        nan = np.full((d, d), np.nan)
        return nan, nan
    return r_inv @ s @ r_inv, r_inv

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
optimisation over (ln theta or theta, ln omega**2, ln error parameters) is L-BFGS-B on the
exact gradient of the objective (:mod:`.focei_gradient`: the implicit-function derivative
through each subject's eta, from the sensitivities and their central differences along the
etas; NONMEM differences the objective instead, one evaluation per parameter).  The inner
problems start from the etas the last gradient predicts and take quasi-Newton steps (the
FOCE Hessian, or the exact one of the last evaluation, then BFGS updates), converged to
steps below 1e-9 or until the runs' noise keeps O_i from falling (the gradient allows for
what is left of dO_i/deta there).  The covariance step: R = half the Hessian of the
objective by central differences of its gradient, S = the sum over subjects of the products
of their gradients / 4; the sandwich ``R^-1 S R^-1`` is reported (NONMEM's default), ``R^-1`` too.
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
from .focei_gradient import STEP, EtaMoves, subject_gradient
from .problem import Parameterisation

__all__ = ["CovariateEffect", "PopulationFit", "PopulationProblem"]

#: Inner optimisation: stop when the step in eta is below this
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
        # u, the parameters as the sensitivities see them (ln p or p), per subject
        self.scale = Parameterisation(self.names, self.fixed_log, len(self.names))
        self._moves = None  # how the etas move from there (EtaMoves), after a gradient
        self.evaluations = 0  # of the objective, with or without its gradient
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
        state.update(_pool=None, executor=None, _shipped=None, _moves=None)
        return state

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _inner_all(self, theta, omega_inv, errors, gradient: bool, start, newton) -> list:
        """Each subject's (eta, O_i, ln det H_i) and with ``gradient`` its derivatives (see
        :meth:`inner_problems`), or None where it failed: here, or split over worker
        processes that received this problem once, when they started (the inner problems
        are Python-bound: threads would share one core)."""
        if self.executor is not None:
            # any pool with submit(fn, *args), a Dask client among them; a Dask client
            # holds the problem on its workers (scatter), others get it with each chunk
            if self._shipped is None:
                scatter = getattr(self.executor, "scatter", None)
                self._shipped = scatter(self, broadcast=True) if scatter else self
            chunks = np.array_split(np.arange(len(self.subjects)),
                                    min(len(self.subjects), 2 * self.workers))
            futures = [self.executor.submit(_inner_chunk, self._shipped, c, theta[c],
                                            omega_inv, errors, start[c], gradient,
                                            [newton[i] for i in c])
                       for c in chunks]
        elif self.workers <= 1 or len(self.subjects) < 2 * self.workers:
            return _inner_chunk(self, range(len(self.subjects)), theta, omega_inv, errors,
                                start, gradient, newton)[0]
        else:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(self.workers, initializer=_start_worker,
                                                 initargs=(self,))
            chunks = np.array_split(np.arange(len(self.subjects)), self.workers)
            futures = [self._pool.submit(_remote_chunk, c, theta[c], omega_inv, errors,
                                         start[c], gradient, [newton[i] for i in c])
                       for c in chunks]
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
        found = self._predict(subjects, theta, etas, return_exceptions)
        return [x if isinstance(x, MechsimError) else (x[0], x[1][:, self.eta_index])
                for x in found]

    def _predict(self, subjects, theta, etas, return_exceptions: bool = False):
        """Predictions and d f / du, u the estimated parameters as the optimiser sees them
        (``ln p`` or ``p``); the random effects add to ``u``."""
        rows = []
        for typical, eta in zip(theta, etas):
            p = typical.copy()
            p[self.eta_index] = typical[self.eta_index] * np.exp(eta)
            rows.append(p)
        return self.problem.predict_many(subjects, rows, self.fixed_log,
                                         return_exceptions=return_exceptions)

    def _variance(self, subject, f: np.ndarray, errors: Mapping[str, float]):
        """R and dR/df of each observation of a subject (each output's error model)."""
        r = np.empty_like(f)
        dr = np.empty_like(f)
        for k, model in enumerate(self.errors):
            cols = subject.which == k
            r[cols], dr[cols], _ = model.variance(f[cols], errors)
        return r, dr

    def _terms(self, subject, eta, predicted, omega_inv, errors):
        """(O_i, its gradient, the FOCE Hessian H_i, the prediction) at ``eta`` from the
        prediction there (f, d f / du), or None where there is none to use (a step too
        far: a volume of inf, a variance not positive): the line search backs off."""
        if isinstance(predicted, MechsimError):
            return None
        f, g = predicted[0], predicted[1][:, self.eta_index]
        r, drdf = self._variance(subject, f, errors)
        if not (np.all(np.isfinite(f)) and np.all(np.isfinite(g)) and np.all(r > 0)):
            return None
        res = subject.values - f
        o = float(np.sum(np.log(2 * math.pi * r) + res * res / r) + eta @ omega_inv @ eta)
        dr = drdf[:, None] * g
        grad = (2 * omega_inv @ eta + dr.T @ (1 / r - res * res / r ** 2)
                - 2 * g.T @ (res / r))
        h = omega_inv + (g.T / r) @ g + 0.5 * (dr.T / r ** 2) @ dr
        return o, grad, h, predicted

    def inner_problems(self, indices, theta, omega_inv, errors, etas,
                       gradient: bool = False, newton=None) -> list:
        """Each subject's (eta_i, O_i(eta_i), ln det H_i), or the error that ended its inner
        problem (SolverError, ValidationError, LinAlgError).  ``theta`` and ``etas``: one
        row per index (typical values, starting etas); ``newton``, if given, per index a
        Hessian to start from or None (:func:`_inner_steps`).  With ``gradient`` each
        also has the derivatives of its -2 ln L_i (:func:`.focei_gradient.subject_gradient`).

        The subjects' inner problems run in lockstep: every evaluation they need at one
        moment is one :meth:`FitProblem.predict_many` (one compiled call for them all
        instead of one per subject, each of which costs more in crossing into compiled code
        than a small run).  Each subject still takes exactly the steps it would alone."""
        subjects = [self.subjects[i] for i in indices]
        found: list = [None] * len(subjects)
        waiting = {}  # position -> (its inner problem, the eta it needs the terms of)
        for k, (subject, eta0) in enumerate(zip(subjects, etas)):
            steps = _inner_steps(subject, eta0, newton[k] if newton else None)
            waiting[k] = (steps, next(steps))
        while waiting:
            order = list(waiting)
            predicted = self._predict([subjects[k] for k in order],
                                      [theta[k] for k in order],
                                      [waiting[k][1] for k in order], return_exceptions=True)
            for k, prediction in zip(order, predicted):
                steps, eta = waiting.pop(k)
                try:
                    waiting[k] = (steps, steps.send(
                        self._terms(subjects[k], eta, prediction, omega_inv, errors)))
                except StopIteration as done:
                    found[k] = done.value
                except (SolverError, ValidationError, np.linalg.LinAlgError) as exc:
                    found[k] = exc
        if gradient:
            self._add_gradients(subjects, theta, found, omega_inv, errors)
        # the prediction at eta_i (its last element) stays here
        return [x[:3] + x[4:] if isinstance(x, tuple) else x for x in found]

    def _add_gradients(self, subjects, theta, found, omega_inv, errors) -> None:
        """Append to each subject's (eta, O, ln det H, prediction) the derivatives of its
        -2 ln L_i (:func:`.focei_gradient.subject_gradient`), from the prediction at its
        eta and one batch of predictions at eta +- STEP along each random effect.  A
        subject whose predictions fail there gets the error instead."""
        m = len(self.random)
        shifts = [sign * STEP * e for e in np.eye(m) for sign in (1, -1)]
        ok = [k for k, x in enumerate(found) if isinstance(x, tuple)]
        predicted = self._predict([subjects[k] for k in ok for _ in shifts],
                                  [theta[k] for k in ok for _ in shifts],
                                  [found[k][0] + d for k in ok for d in shifts],
                                  return_exceptions=True)
        for n, k in enumerate(ok):
            runs = predicted[n * len(shifts):(n + 1) * len(shifts)]
            bad = next((x for x in runs if isinstance(x, MechsimError)), None)
            if bad is not None:
                found[k] = bad
                continue
            f, jac = found[k][3]
            jac_eta = np.zeros(jac.shape + (m,))
            for a in range(m):
                jac_eta[:, :, a] = (runs[2 * a][1] - runs[2 * a + 1][1]) / (2 * STEP)
            try:
                parts = subject_gradient(subjects[k], found[k][0], f, jac, jac_eta,
                                         self.eta_index, self.errors, errors,
                                         self.error_names, omega_inv)
            except np.linalg.LinAlgError as exc:  # M singular: no usable derivative
                found[k] = exc
                continue
            if not all(np.all(np.isfinite(x)) for x in parts[:3]):
                found[k] = SolverError(f"subject {subjects[k].id}: the derivatives of its "
                                       "objective are not finite")
                continue
            found[k] = found[k] + parts

    # ---- the population objective -----------------------------------------------------------
    def evaluate(self, theta, omega: np.ndarray, errors: Mapping[str, float],
                 betas: Sequence[float] = (), *, keep: bool = True,
                 gradient: bool = False) -> Evaluation | None:
        """-2 ln L (the FOCEI approximation, constants included) per subject at population
        values, and with ``gradient`` its derivatives (see :class:`Evaluation`), or None
        where it is infinite.  ``theta``: the typical values (canonical), ``omega`` the
        covariance of the etas, ``errors`` the error parameters by name, ``betas`` the
        estimated covariate effects.  ``keep``: the empirical Bayes estimates found start
        the next evaluation."""
        typical = self.typical(theta, betas)
        logged = np.asarray(self.fixed_log, dtype=bool)
        if not np.all(np.isfinite(typical)) or np.any(typical[:, logged] <= 0):
            return None
        omega = np.atleast_2d(np.asarray(omega, dtype=float))
        sign, logdet_omega = np.linalg.slogdet(omega)
        if sign <= 0:
            return None
        omega_inv = np.linalg.inv(omega)
        self.evaluations += 1
        u = self.scale.to_x(typical)
        log_errors = np.log([errors[n] for n in self.error_names])
        start, newton = self.etas, [None] * len(self.subjects)
        if self._moves is not None:
            start, newton = self._moves.predict(u, log_errors, omega)
        found = self._inner_all(typical, omega_inv, errors, gradient, start, newton)
        if any(x is None for x in found):
            return None
        etas = np.array([x[0] for x in found]).reshape(self.etas.shape)
        if keep:
            self.etas = etas
            self._moves = EtaMoves(u, log_errors, omega, etas, [x[6] for x in found]) \
                if gradient else None
        parts = np.array([x[1] + logdet_omega + x[2] for x in found])
        if not gradient:
            return Evaluation(parts, etas)
        return Evaluation(parts, etas, np.array([x[3] for x in found]),
                          np.array([x[4] for x in found]), np.array([x[5] for x in found]))

    def objective(self, theta, omega: np.ndarray, errors: Mapping[str, float],
                  betas: Sequence[float] = (), *, keep: bool = True) -> float:
        """-2 ln L at population values (:meth:`evaluate`), inf where it cannot be
        evaluated."""
        found = self.evaluate(theta, omega, errors, betas, keep=keep)
        return math.inf if found is None else found.total

    def typical_jacobian(self, theta, betas: Sequence[float] = ()) -> np.ndarray:
        """d u / d (typical values, estimated effects) per subject (subjects, parameters,
        parameters + effects), ``u`` as the sensitivities see the parameters (``ln p`` or
        ``p``) and the typical values and effects as the optimiser does (``ln`` where
        log-scaled)."""
        k = len(self.names)
        factors = self.typical(np.ones(k), betas)  # the product of each one's effects
        typical = factors * np.asarray(theta, dtype=float)
        out = np.zeros((len(self.subjects), k, k + len(self.estimated_effects)))
        for j in range(k):
            out[:, j, j] = 1.0 if self.fixed_log[j] else factors[:, j]
        column = k
        for e, beta in zip(self.estimated_effects, betas):
            j = self.names.index(e.parameter)
            d = e.dlog_factor(beta)
            out[:, j, column] = d if self.fixed_log[j] else typical[:, j] * d
            column += 1
        return out


@dataclass(frozen=True)
class Evaluation:
    """The FOCEI objective at population values: ``parts`` -2 ln L_i per subject,
    ``etas`` their empirical Bayes estimates; with the gradient, per subject d/du
    (``d_u``, u as in :meth:`PopulationProblem.typical_jacobian`), d/d ln (error
    parameters) (``d_error``) and ``d_omega``, the matrix G with d(-2 ln L_i) =
    tr(G dOmega)."""

    parts: np.ndarray
    etas: np.ndarray
    d_u: np.ndarray | None = None
    d_error: np.ndarray | None = None
    d_omega: np.ndarray | None = None

    @property
    def total(self) -> float:
        return float(np.sum(self.parts))


def _inner_steps(subject, eta0, newton=None):
    """One subject's inner problem, a coroutine: it yields each eta whose terms
    (O_i, gradient, H_i, prediction) it needs and is sent them (None: no usable prediction
    there); it returns (eta_i, O_i(eta_i), ln det H_i, the prediction at eta_i).

    Quasi-Newton steps of at most MAX_STEP, halved until the objective falls, from the
    FOCE Hessian (2 H_i) or ``newton``, the exact Hessian of O_i at the last evaluated
    population values (EtaMoves) where it is positive definite, then BFGS updates from the
    gradients met.  Pure Gauss-Newton steps (2 H_i each time) leave out the residuals'
    curvature and converged slowly, tens of steps for subjects whose data say little about
    an eta; with the updates most inner problems take one to five evaluations."""
    eta = np.array(eta0, dtype=float)
    current = yield eta
    if current is None:
        raise SolverError(f"subject {subject.id}: the prediction is not finite or the "
                          "residual variance not positive at the starting eta")
    if newton is not None and not np.all(np.linalg.eigvalsh(newton) > 0):
        newton = None
    hessian = None  # after the first step: BFGS updates of the first matrix
    for _ in range(INNER_MAX):
        o, grad, h, _ = current
        fresh = hessian is None and newton is None  # the FOCE Hessian at this very eta
        if hessian is None:
            hessian = 2 * h if newton is None else newton
        step = np.linalg.solve(hessian, grad)
        if np.max(np.abs(step)) < INNER_TOL:
            break  # converged: the step would not move eta
        step *= min(1.0, MAX_STEP / np.max(np.abs(step)))  # exp(eta) stays finite
        scale, candidate = 1.0, None
        while np.max(np.abs(scale * step)) >= INNER_TOL:  # halve until the objective falls
            trial = eta - scale * step
            candidate = yield trial
            if candidate is not None and candidate[0] <= o + 1e-12 * abs(o):
                break
            scale *= 0.5
            candidate = None
        if candidate is None:
            if fresh:
                break  # no step that moves eta lowers O_i: converged as far as it can tell
            hessian, newton = None, None  # once more from the FOCE Hessian at this eta
            continue
        moved, change = trial - eta, candidate[1] - grad
        curvature = float(moved @ change)
        if curvature > 0:  # BFGS: the matrix learns the curvature the steps met
            bs = hessian @ moved
            hessian = hessian + np.outer(change, change) / curvature - \
                np.outer(bs, bs) / float(moved @ bs)
        else:
            hessian, newton = None, None
        eta, current = trial, candidate
        if np.max(np.abs(scale * step)) < INNER_TOL:
            break
    o, _, h, predicted = current
    _, logdet = np.linalg.slogdet(h)
    return eta, o, logdet, predicted


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


def _inner_chunk(pop: PopulationProblem, indices, theta, omega_inv, errors, etas,
                 gradient, newton):
    """The inner problems of some subjects (``etas``: their starting etas, in order), and
    the number of model solves they took."""
    before = pop.problem.solves
    found = pop.inner_problems(indices, theta, omega_inv, errors, etas, gradient, newton)
    # an error: values no run can take (a volume of 0 or inf, a solver that cannot finish):
    # the objective is infinite there and the optimiser backs off
    out = [None if isinstance(x, Exception) else x for x in found]
    return out, pop.problem.solves - before


_WORKER: dict = {}


def _start_worker(pop: PopulationProblem) -> None:
    _WORKER["problem"] = pop


def _remote_chunk(indices, theta, omega_inv, errors, etas, gradient, newton):
    return _inner_chunk(_WORKER["problem"], indices, theta, omega_inv, errors, etas,
                        gradient, newton)


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

    def dlog_factor(self, beta: float) -> np.ndarray:
        """d ln factor / d beta as the optimiser sees beta (``ln beta`` for ``multiply``)."""
        if self.kind == "power":
            return np.log(self.covariate)
        if self.kind == "linear":
            return self.covariate / (1.0 + beta * self.covariate)
        return (self.covariate == self.level).astype(float)

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
    evaluations: int = 0                   # of the objective (with its gradient or not)
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


class _Variables:
    """The optimiser's variables x: the typical values and estimated covariate effects
    (each as its logarithm or as it is), ln omega^2 per random effect, atanh of the
    estimated correlations (``pairs`` of random effects), ln of the error parameters."""

    def __init__(self, pop: PopulationProblem, pairs: Sequence[tuple[int, int]]):
        self.pop, self.pairs = pop, tuple(pairs)
        self.k, self.e = len(pop.names), len(pop.estimated_effects)
        self.m, self.c = len(pop.random), len(self.pairs)
        self.scale = Parameterisation(
            pop.names + tuple(ef.name for ef in pop.estimated_effects),
            pop.fixed_log + tuple(ef.log for ef in pop.estimated_effects), self.k + self.e)

    def unpack(self, x):
        """(theta, Omega, errors by name, betas) at x."""
        k, e, m, c = self.k, self.e, self.m, self.c
        values = self.scale.to_values(x[:k + e])
        o = x[k + e:]
        variances = np.exp(o[:m])
        omega = np.diag(variances)
        for (a, b), z in zip(self.pairs, o[m:m + c]):
            omega[a, b] = omega[b, a] = math.tanh(z) * math.sqrt(variances[a] * variances[b])
        errors = dict(zip(self.pop.error_names, np.exp(o[m + c:])))
        return values[:k], omega, errors, values[k:]

    def pack(self, theta, omega, errors, betas) -> np.ndarray:
        variances = np.diag(omega)
        rho = [omega[a, b] / math.sqrt(variances[a] * variances[b]) for a, b in self.pairs]
        return np.concatenate([self.scale.to_x(np.concatenate([theta, betas])),
                               np.log(variances), np.arctanh(rho),
                               np.log([errors[n] for n in self.pop.error_names])])

    def evaluate(self, x, *, keep: bool = False, gradient: bool = False):
        with np.errstate(over="ignore", invalid="ignore"):
            return self.pop.evaluate(*self.unpack(x), keep=keep, gradient=gradient)

    def gradients(self, x, found: Evaluation) -> np.ndarray:
        """d(-2 ln L_i)/dx per subject (subjects, x.size), from an evaluation at x with
        its gradient: the chain rule from u, Omega and ln(error parameters) to x."""
        k, e, m = self.k, self.e, self.m
        theta, omega, _, betas = self.unpack(x)
        out = np.empty((len(found.parts), x.size))
        out[:, :k + e] = np.einsum("sp,spa->sa", found.d_u,
                                   self.pop.typical_jacobian(theta, betas))
        g = found.d_omega
        variances = np.diag(omega)
        # d Omega / d ln v_a: v_a at (a, a), Omega_ab / 2 at (a, b) and (b, a)
        out[:, k + e:k + e + m] = np.einsum("saa->sa", g) * variances
        for n, (a, b) in enumerate(self.pairs):
            out[:, k + e + a] += g[:, a, b] * omega[a, b]
            out[:, k + e + b] += g[:, a, b] * omega[a, b]
            rho = omega[a, b] / math.sqrt(variances[a] * variances[b])
            out[:, k + e + m + n] = 2 * g[:, a, b] * (1 - rho * rho) * \
                math.sqrt(variances[a] * variances[b])
        out[:, k + e + m + self.c:] = found.d_error
        return out


def _focei(pop: PopulationProblem, theta0: np.ndarray, omega0: np.ndarray,
           errors0: Mapping[str, float], *, covariance: bool = True,
           max_iterations: int = 200,
           pairs: Sequence[tuple[int, int]] = ()) -> PopulationFit:
    """Estimate theta, Omega and the error parameters by FOCEI, starting from ``theta0``
    (canonical), ``omega0`` (the covariance of the etas) and ``errors0``.  Omega is
    diagonal except for the correlations of ``pairs`` (indices of random effects), which
    are estimated too (as atanh of the correlation: any value keeps it within (-1, 1); an
    Omega that is not positive definite is refused by the objective).  L-BFGS-B on the
    exact gradient (:mod:`.focei_gradient`)."""
    from scipy.optimize import minimize

    started = time.perf_counter()
    variables = _Variables(pop, pairs)
    k, e, m, c = variables.k, variables.e, variables.m, variables.c
    error_names = pop.error_names
    omega0 = np.atleast_2d(np.asarray(omega0, dtype=float))
    x0 = variables.pack(theta0, omega0, errors0, [ef.start for ef in pop.estimated_effects])
    if variables.evaluate(x0, keep=True) is None:  # the etas of the start
        raise ValidationError(f"the objective cannot be evaluated at the starting values: "
                              f"{_first_failure(pop, *variables.unpack(x0))}")

    def value_and_gradient(x):
        found = variables.evaluate(x, keep=True, gradient=True)
        if found is None:
            return 1e300, np.zeros_like(x)
        return found.total, variables.gradients(x, found).sum(axis=0)

    if max_iterations > 0:
        result = minimize(value_and_gradient, x0, jac=True, method="L-BFGS-B",
                          options={"maxiter": max_iterations, "ftol": 1e-11, "gtol": 1e-3})
        x, success, message = result.x, bool(result.success), str(result.message)
    else:  # NONMEM's MAXEVAL=0: the objective (and covariance) at the given values
        x, success, message = x0, True, "evaluated at the given values (no estimation)"
    best = pop.objective(*variables.unpack(x), keep=True)
    theta, omega, errors, betas = variables.unpack(x)
    rho = np.tanh(x[k + e + m:k + e + m + c])
    estimates = np.concatenate([theta, betas, np.diag(omega), rho,
                                [errors[n] for n in error_names]])
    se = se_r = np.full(x.size, np.nan)
    if covariance:
        cov_x, cov_r = _covariance(variables, x)
        # the natural scale: d value / d x is the value for log-scaled entries
        dvalue = np.concatenate([np.where(variables.scale.log,
                                          np.concatenate([theta, betas]), 1.0),
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
                         solves=pop.solves, evaluations=pop.evaluations,
                         seconds=time.perf_counter() - started,
                         success=success, message=message,
                         subject_ids=tuple(s.id for s in pop.subjects), omega=omega,
                         typical=pop.typical(theta, betas))


def _covariance(variables: _Variables, x: np.ndarray):
    """(R^-1 S R^-1, R^-1) in the optimiser's variables: R half the Hessian of the
    objective, by central differences of its exact gradient; S the sum over subjects of
    the products of their gradients / 4."""
    d = x.size
    h = 1e-3 * np.maximum(1.0, np.abs(x))

    def gradients(point, keep=False):
        # every point starts from the optimum's etas (kept, with how they move)
        found = variables.evaluate(point, gradient=True, keep=keep)
        if found is None:
            raise SolverError("the covariance step could not evaluate the objective near "
                              "the estimates")
        return variables.gradients(point, found)

    per_subject = gradients(x, keep=True)
    hessian = np.empty((d, d))
    for j in range(d):
        step = np.zeros(d)
        step[j] = h[j]
        hessian[:, j] = (gradients(x + step).sum(axis=0) -
                         gradients(x - step).sum(axis=0)) / (2 * h[j])
    r = (hessian + hessian.T) / 4.0
    s = per_subject.T @ per_subject / 4.0
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

"""A model and a dataset set up for estimation: predictions and their exact gradients.

:class:`FitProblem` keeps everything that does not change between evaluations (each
subject's converted doses, output grid, observations in numbers, covariates) so that an
evaluation of the likelihood at new parameter values is one integration of the sensitivity
system per subject and a little arithmetic.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from .. import solvers
from ..doseplan import check_fixed_values
from ..errors import SolverError, UnitError, ValidationError
from ..runner import chunk_ranges, map_chunks, workers_or_cpus
from ..runspec import RunSpec
from ..solvers import Problem
from ..units import canonical_unit, dimension_text, format_unit, ureg
from .dose_template import DoseTemplate, dose_template, segment_arrays, usable
from .gradients import sensitivity_model
from .likelihood import ErrorModel, minus_two_log_likelihood

__all__ = ["FitProblem", "Parameterisation"]


@dataclass(frozen=True)
class Parameterisation:
    """How the optimiser sees the parameters: ``x_j = ln p_j`` (``log``) or ``x_j = p_j``
    (``linear``) for the model parameters, ``ln`` for the error parameters; values and
    bounds in canonical units."""

    names: tuple[str, ...]            # model parameters, then error parameters
    log: tuple[bool, ...]
    n_model: int

    def to_x(self, values: np.ndarray) -> np.ndarray:
        values = np.asarray(values, dtype=float)
        return np.where(self.log, np.log(np.where(self.log, values, 1.0)), values)

    def to_values(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=float)
        with np.errstate(over="ignore"):  # a line search may probe far: inf, then refused
            return np.where(self.log, np.exp(np.where(self.log, x, 0.0)), x)


class FitProblem:
    """The data, the model and the error models of a fit (see the module docstring)."""

    def __init__(self, spec: RunSpec, dataset, estimate: Sequence[str],
                 errors: Mapping[str, str], subjects: Sequence[int] | None = None):
        cm = spec.compiled
        self.spec, self.dataset = spec, dataset
        self.sens = sensitivity_model(cm, estimate)
        self.estimate = tuple(estimate)
        covariates = set(dataset.covariate_names) & set(cm.parameter_names)
        taken = sorted(covariates & set(self.estimate))
        if taken:
            raise ValidationError(f"{taken[0]} comes from the dataset (a covariate column), "
                                  "so it cannot be estimated")
        outputs = dataset.outputs
        missing = [o for o in outputs if o not in errors]
        if missing:
            raise ValidationError(f"no error model for output {missing[0]}")
        self.errors = [ErrorModel(o, errors[o]) for o in outputs]
        self.error_names = tuple(n for e in self.errors for n in e.parameters)
        self._factors = {o: self._factor(o) for o in outputs}
        matrix = dataset.parameter_matrix(spec)
        chosen = range(dataset.n_subjects) if subjects is None else subjects
        self.subjects = [self._subject(i, matrix[i]) for i in chosen
                         if len(dataset.subjects[i].outputs)]
        if not self.subjects:
            raise ValidationError("the dataset has no observations to fit")
        self.y = np.concatenate([s.values for s in self.subjects])
        self.which = np.concatenate([s.which for s in self.subjects])
        self.solves = 0
        self._lock = threading.Lock()
        self._templates: dict[int, DoseTemplate] = {}  # by subject index, made on first use

    def __getstate__(self):  # a lock does not travel to another process
        state = dict(self.__dict__)
        del state["_lock"]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def n_observations(self) -> int:
        return int(self.y.size)

    def _factor(self, output: str) -> float:
        return dv_factor(self.spec.compiled, output, self.dataset.value_units[output])

    def _subject(self, i: int, p: np.ndarray):
        s = self.dataset.subjects[i]
        days = s.times_days
        until = float(days.max()) if days.max() > 0 else 1.0
        events = self.spec.events(s.regimen) if s.regimen.sequences else ()
        grid = np.unique(np.concatenate([[0.0], days, [until]]))
        which = np.array([self.dataset.outputs.index(o) for o in s.outputs], dtype=int)
        return _Subject(index=i, id=s.id, p=p, events=events, until=until, grid=grid,
                        columns=np.searchsorted(grid, days), days=days,
                        before=np.asarray(s.before_dose, dtype=bool),
                        values=np.asarray(s.values, dtype=float), which=which,
                        outputs=tuple(s.outputs))

    # ---- predictions ---------------------------------------------------------------------
    def predict(self, subject, theta: np.ndarray, log: Sequence[bool]):
        """Predictions (in DV units) of one subject's observations, and their derivatives
        by the optimiser's variables (d f / d ln p for log-scaled parameters)."""
        p, scales, problem = self._problem(subject, theta, log)
        trajectory = solvers.solve(problem, self.spec.method)
        self._count(1)
        z = trajectory.states[:, subject.columns]
        _put_pre_dose(z, subject, trajectory.pre_dose_days, trajectory.pre_dose_states)
        return self._outputs(subject, p, scales, z)

    def predict_many(self, subjects, thetas, log: Sequence[bool], *,
                     return_exceptions: bool = False) -> list:
        """:meth:`predict` of each subject at its row of ``thetas``, in order.  With the
        compiled engine and a model without events the runs are one compiled call (each
        call from Python costs far more than a small run: the model's functions cross into
        numba on every call), on the union of the subjects' output grids; each run ends at
        its own subject's end, so it computes what :meth:`predict` would.  A subject's
        dose plan does not change its layout between calls (no estimated parameter moves a
        dose), so after the first call its segment arrays are filled in from its
        :class:`~.dose_template.DoseTemplate` for all subjects at once instead of building
        a plan per subject; a subject the template does not fit takes the general path.
        ``return_exceptions``: a subject whose prediction fails gets its SolverError or
        ValidationError in its place instead of the error being raised."""
        def one(subject, theta):
            try:
                return self.predict(subject, theta, log)
            except (SolverError, ValidationError) as exc:
                if not return_exceptions:
                    raise
                return exc

        # spec.method is resolved already ("auto" became NDF or LSODA); models with events
        # take the event driver, one run at a time, as NDF.solve does
        if self.spec.method != "NDF" or self.sens.augmented.events or len(subjects) < 2 or \
                not self.sens.n:
            return [one(s, t) for s, t in zip(subjects, thetas)]
        found: list = [None] * len(subjects)
        templated, general = self._templated(subjects, thetas, log)
        batch = []  # (index, p, scales, problem) of the subjects solved together
        for i in general:
            try:
                batch.append((i, *self._problem(subjects[i], thetas[i], log)))
            except (SolverError, ValidationError):
                found[i] = one(subjects[i], thetas[i])  # raises it again, or keeps it
        grid, runs = self._solve_together([b[3] for b in batch])
        finished = [(i, p, scales, grid, run) for (i, p, scales, _), run in zip(batch, runs)]
        finished += self._solve_templated(subjects, *templated)
        for i, p, scales, grid, run in finished:
            subject = subjects[i]
            if run is None:  # not finished: predict repeats it, then the fallback methods
                found[i] = one(subject, thetas[i])
                continue
            states, (days, pre) = run
            z = states[:, np.searchsorted(grid, subject.days)]
            _put_pre_dose(z, subject, days, pre)
            found[i] = self._outputs(subject, p, scales, z)
        return found

    def _templated(self, subjects, thetas, log: Sequence[bool]):
        """((positions, parameter rows, scale rows, dose templates) of the subjects whose
        dose template fits their parameters, the positions of the others): those take the
        general path, which builds their plan (and raises the error of a subject it
        refuses)."""
        theta = np.asarray(thetas, dtype=float)
        matrix = np.array([s.p for s in subjects])
        matrix[:, list(self.sens.columns)] = theta
        scales = np.where(np.asarray(log, dtype=bool), theta, 1.0)
        templates = [self._template(s, p) for s, p in zip(subjects, matrix)]
        made = np.flatnonzero([t is not None for t in templates])
        fits = np.zeros(len(subjects), dtype=bool)
        if made.size:
            fits[made] = usable(self.sens, [templates[i] for i in made], matrix[made])
        chosen = np.flatnonzero(fits)
        return ((chosen, matrix[chosen], scales[chosen], [templates[i] for i in chosen]),
                np.flatnonzero(~fits).tolist())

    def _template(self, subject, p: np.ndarray) -> DoseTemplate | None:
        """The subject's dose template, made at ``p`` on first use; None while ``p`` is not
        one the general path accepts (it will say why)."""
        template = self._templates.get(subject.index)
        if template is None:
            try:
                check_fixed_values(self.sens.compiled, p)
                template = dose_template(self.sens, subject.events, p, subject.until)
            except (SolverError, ValidationError):
                return None
            self._templates[subject.index] = template
        return template

    def _solve_templated(self, subjects, positions, matrix, scales, templates) -> list:
        """(position, p, scales, grid, run) of each templated subject (run as in
        :meth:`_solve_together`), in compiled calls of ndf.BLOCK runs."""
        from ..solvers.ndf import BLOCK, extended_rows, run_segments
        from ..solvers.ndf_kernel import OK

        if not len(positions):
            return []
        sens = self.sens
        grid = np.unique(np.concatenate([subjects[i].grid for i in positions]))
        params = extended_rows(sens.augmented, np.concatenate([matrix, scales], axis=1))
        atol = np.tile(self.spec.atol, sens.k + 1)
        found = []
        for lo in range(0, len(positions), BLOCK):
            block = slice(lo, min(lo + BLOCK, len(positions)))
            offsets, starts, ends, rates, jumps = segment_arrays(
                sens, templates[block], matrix[block], scales[block])
            out = np.empty((len(offsets) - 1, len(sens.augmented.state_names),
                            grid.size))
            status, pre, _ = run_segments(sens.augmented, params[block], offsets, starts,
                                          ends, rates, jumps, grid, self.spec.rtol, atol, out)
            self._count(int(np.count_nonzero(status == OK)))  # the others: counted when redone
            for r, i in enumerate(range(block.start, block.stop)):
                t = templates[i]
                # always the states themselves: where they equal the outputs at the dose
                # times (the None of _solve_together) _put_pre_dose writes the same values
                before = pre[offsets[r]:offsets[r + 1]][t.is_dose]
                run = (out[r], (t.starts[t.is_dose], before)) if status[r] == OK else None
                found.append((positions[i], matrix[i], scales[i], grid, run))
        return found

    def _problem(self, subject, theta: np.ndarray, log: Sequence[bool]):
        """(model parameters, scales, the solver Problem) of one subject's run of the
        sensitivity system at ``theta``."""
        sens = self.sens
        p = subject.p.copy()
        p[list(sens.columns)] = theta
        scales = np.where(log, theta, 1.0)
        plan = sens.plan(subject.events, p, scales, subject.until)
        problem = Problem.build(sens.augmented, sens.parameters(p, scales), plan,
                                subject.grid, self.spec.rtol,
                                np.tile(self.spec.atol, sens.k + 1))
        return p, scales, problem

    def _solve_together(self, problems):
        """(the union of the problems' grids, per problem (states on it, (pre-dose days,
        pre-dose states or None)) or None where the compiled run did not finish)."""
        from ..solvers.ndf import solve_chunk
        from ..solvers.ndf_kernel import OK

        if not problems:
            return None, []
        grid = np.unique(np.concatenate([q.grid for q in problems]))
        cm = self.sens.augmented
        out = np.empty((len(problems), len(cm.state_names), grid.size))
        status, pre, _ = solve_chunk(cm, np.array([q.parameters for q in problems]),
                                     [q.plan for q in problems], grid, self.spec.rtol,
                                     problems[0].atol, out,
                                     until=np.array([q.until for q in problems]))
        self._count(int(np.count_nonzero(status == OK)))  # the others: counted when redone
        return grid, [(out[i], pre[i]) if status[i] == OK else None
                      for i in range(len(problems))]

    def _count(self, solves: int) -> None:
        with self._lock:
            self.solves += solves

    def _outputs(self, subject, p: np.ndarray, scales: np.ndarray, z: np.ndarray):
        """Predictions and their derivatives (see :meth:`predict`) from the states of the
        sensitivity system at the subject's observations ``z`` (states, observations)."""
        sens = self.sens
        n, k = sens.n, sens.k
        y, s = z[:n], z[n:].reshape(k, n, -1)
        f = np.empty(subject.days.size)
        df = np.empty((subject.days.size, k))
        for output in set(subject.outputs):
            cols = np.array([o == output for o in subject.outputs])
            fn = sens.output_gradient(output)
            with np.errstate(all="ignore"):
                parts = np.asarray(fn(subject.days[cols], y[:, cols], p[:, None]),
                                   dtype=float).reshape(1 + n + k, -1)
            g, dg_dy, dg_dp = parts[0], parts[1:1 + n], parts[1 + n:]
            factor = self._factors[output]
            f[cols] = factor * g
            df[cols] = factor * (np.einsum("lm,klm->mk", dg_dy, s[:, :, cols]) +
                                 (scales[:, None] * dg_dp).T)
        return f, df

    def evaluate(self, values: np.ndarray, log: Sequence[bool], *, workers: int | None = 1,
                 executor=None, subjects=None):
        """``(-2 log L, gradient by the optimiser's variables, predictions, variances)`` at
        parameter values (canonical model parameters, then error parameters)."""
        k = len(self.estimate)
        theta = np.asarray(values[:k], dtype=float)
        errors = dict(zip(self.error_names, values[k:]))
        chosen = self.subjects if subjects is None else subjects
        chunks = chunk_ranges(len(chosen), workers_or_cpus(workers))
        outcomes = map_chunks(_predict_chunk, [(self, [chosen[i] for i in c], theta,
                                                tuple(log[:k])) for c in chunks],
                              sizes=[len(c) for c in chunks], workers=workers_or_cpus(workers),
                              executor=executor, progress=False)
        f = np.concatenate([o[0] for o in outcomes])
        df = np.concatenate([o[1] for o in outcomes])
        y = np.concatenate([s.values for s in chosen])
        which = np.concatenate([s.which for s in chosen])
        total, grad, grad_error, s2 = minus_two_log_likelihood(y, f, df, self.errors, which,
                                                               errors)
        gradient = np.concatenate([grad, [grad_error[n] for n in self.error_names]])
        return total, gradient, f, s2


def _put_pre_dose(z: np.ndarray, subject, days: np.ndarray, states) -> None:
    """Observations at a dose time recorded before the dose (the dataset's row order):
    the state just before it, into ``z`` (states, observations).  ``states`` None: the
    run says they equal the outputs at those times, which ``z`` holds already."""
    if states is None or not subject.before.any():
        return
    for m in np.flatnonzero(subject.before):
        at = np.flatnonzero(days == subject.days[m])
        if at.size:
            z[:, m] = states[at[0]]


def _predict_chunk(problem: FitProblem, subjects, theta, log):
    f, df = [], []
    for subject in subjects:
        try:
            a, b = problem.predict(subject, theta, log)
        except SolverError as exc:
            raise SolverError(f"subject {subject.id}: {exc.detail}", hint=exc.hint,
                              failures=exc.failures) from None
        f.append(a)
        df.append(b)
    return np.concatenate(f), np.concatenate(df)


@dataclass(frozen=True, eq=False)
class _Subject:
    index: int
    id: str
    p: np.ndarray
    events: tuple
    until: float
    grid: np.ndarray
    columns: np.ndarray
    days: np.ndarray
    before: np.ndarray
    values: np.ndarray
    which: np.ndarray
    outputs: tuple[str, ...]


def dv_factor(cm, output: str, dv) -> float:
    """The factor from ``output``'s canonical solver unit to the unit of the data's DV,
    refusing an output the model lacks or a DV of another dimension."""
    names = cm.state_names + cm.observable_names
    units = cm.state_units + cm.observable_units
    if output not in names:
        raise ValidationError(f"the dataset observes {output!r}, which is not an output "
                              f"of model {cm.name} (outputs: {', '.join(names)})")
    unit = units[names.index(output)]
    if (1 * unit).dimensionality != (1 * dv).dimensionality:
        raise UnitError(f"the dataset's DV is in {format_unit(dv)} "
                        f"({dimension_text((1 * dv).dimensionality)}) but {output} is in "
                        f"{format_unit(unit)} ({dimension_text((1 * unit).dimensionality)})")
    return float(ureg.Quantity(1.0, canonical_unit(1 * unit)).to(dv).magnitude)

"""Visual predictive check: the dataset's design simulated many times, against the data.

Each replicate gives every subject its own regimen, covariates and observation times; with
a population file each subject also gets a fresh draw of the between-subject variability
(its covariates given from the data), and every simulated observation gets residual error
from the error model (the ``[error]`` table of a fitted parameter file, or ``error=``).
Observation times are binned (by quantiles of the observed times); in each bin the 5th,
50th and 95th percentiles of the observations are drawn over the ``ci`` interval (across
replicates) of the same percentiles of the simulations.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pint

from ..errors import ValidationError
from ..io.params_file import ParameterSet, load_params
from ..units import canonical_unit, format_unit, ureg
from .problem import dv_factor

__all__ = ["VPC", "Design", "simulate_design", "vpc"]

#: replicates simulated together (bounds the memory of one batch of runs)
_BLOCK = 100


@dataclass(frozen=True, eq=False)
class VPC:
    """A visual predictive check (see the module docstring)."""

    output: str
    unit: pint.Unit
    time_unit: pint.Unit
    times: np.ndarray             # observation times, time unit
    observed: np.ndarray          # observations
    edges: np.ndarray             # bin edges, time unit
    centers: np.ndarray           # median observation time in each bin
    percentiles: tuple[float, ...]
    observed_percentiles: np.ndarray     # (percentiles, bins)
    simulated: np.ndarray                # (percentiles, 3, bins): lower, median, upper
    ci: float
    replicates: int

    def outside(self) -> np.ndarray:
        """(percentiles, bins): where the observed percentile leaves the simulated band."""
        low, high = self.simulated[:, 0], self.simulated[:, 2]
        return (self.observed_percentiles < low) | (self.observed_percentiles > high)

    def plot(self, ax=None, *, log: bool = False):
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(7, 4.5))
        ax.plot(self.times, self.observed, "o", markersize=3, color="0.55", alpha=0.6,
                label="observations")
        colours = {len(self.percentiles) // 2: "tab:red"}
        for k, pct in enumerate(self.percentiles):
            colour = colours.get(k, "tab:blue")
            low, mid, high = self.simulated[k]
            ax.fill_between(self.centers, low, high, color=colour, alpha=0.2, linewidth=0,
                            label=f"simulated {pct:g}th percentile, {self.ci:.0%} interval")
            ax.plot(self.centers, mid, "--", color=colour, linewidth=0.8)
            ax.plot(self.centers, self.observed_percentiles[k], "-", color=colour,
                    linewidth=1.6, label=f"observed {pct:g}th percentile")
        if log:
            ax.set_yscale("log")
        ax.set_xlabel(f"time [{format_unit(self.time_unit)}]")
        ax.set_ylabel(f"{self.output} [{format_unit(self.unit)}]")
        ax.set_title(f"visual predictive check ({self.replicates} replicates)", fontsize=10)
        ax.legend(fontsize=7, loc="upper right")
        ax.grid(alpha=0.3)
        return ax


def vpc(model, data, *, params=None, overrides: Mapping | None = None, population=None,
        n: int = 500, seed: int = 0, bins: int | Sequence[float] = 8,
        percentiles: Sequence[float] = (5, 50, 95), ci: float = 0.90,
        error: Mapping | None = None, output: str | None = None, rtol: float = 1e-8,
        workers: int | None = None, executor=None) -> VPC:
    """A visual predictive check of ``model`` on the design of ``data``.

    ``params`` (parameter files; a fitted one carries the error model), ``population`` (a
    population file or object: between-subject variability), ``n`` replicates, ``bins``
    (a number of quantile bins, or edges in the dataset's time unit), ``error`` as
    ``{output: (kind, {"additive": Quantity, "proportional": float})}`` if no parameter
    file gives it.
    """
    if not 0 < ci < 1:
        raise ValidationError(f"ci must lie in (0, 1), got {ci!r}")
    design = simulate_design(model, data, params=params, overrides=overrides,
                             population=population, n=n, seed=seed, error=error,
                             output=output, rtol=rtol, workers=workers, executor=executor)
    simulated, observed_t, observed_y = design.simulated, design.times, design.observed
    edges = _edges(observed_t, bins)
    which = np.clip(np.searchsorted(edges, observed_t, side="right") - 1, 0, edges.size - 2)
    used = [b for b in range(edges.size - 1) if np.any(which == b)]
    pcts = tuple(float(p) for p in percentiles)
    obs_p = np.array([[np.percentile(observed_y[which == b], p) for b in used] for p in pcts])
    sim = np.empty((len(pcts), 3, len(used)))
    tail = (1 - ci) / 2 * 100
    for k, p in enumerate(pcts):
        per_rep = np.array([np.percentile(simulated[:, which == b], p, axis=1) for b in used])
        sim[k] = np.percentile(per_rep, [tail, 50, 100 - tail], axis=1)
    centers = np.array([np.median(observed_t[which == b]) for b in used])
    return VPC(output=design.output, unit=design.unit, time_unit=data.time_unit,
               times=observed_t, observed=observed_y, edges=edges, centers=centers,
               percentiles=pcts, observed_percentiles=obs_p, simulated=sim, ci=ci,
               replicates=n)


@dataclass(frozen=True, eq=False)
class Design:
    """The observations of one output and ``n`` simulations of them (see
    :func:`simulate_design`): arrays over the observations of all subjects, in order."""

    output: str
    unit: pint.Unit
    subject_ids: tuple[str, ...]   # per observation
    times: np.ndarray              # per observation, the dataset's time unit
    observed: np.ndarray           # per observation
    predicted: np.ndarray          # (n, observations): the model, without residual error
    simulated: np.ndarray          # (n, observations): with residual error


def simulate_design(model, data, *, params=None, overrides: Mapping | None = None,
                    population=None, n: int = 500, seed: int = 0,
                    error: Mapping | None = None, output: str | None = None,
                    rtol: float = 1e-8, workers: int | None = None,
                    executor=None) -> Design:
    """The dataset's design (each subject's regimen, covariates and observation times)
    simulated ``n`` times: with a population, each replicate draws every subject's
    between-subject variability afresh; every simulated observation gets residual error
    (see :func:`vpc` for ``params`` and ``error``)."""
    from ..batch import run_many
    from ..io.population_file import load_population
    from ..runspec import RunSpec

    if not (isinstance(n, int) and n >= 10):
        raise ValidationError(f"n (replicates) must be an integer >= 10, got {n!r}")
    output = output or (data.outputs[0] if data.outputs else None)
    if output is None or output not in data.outputs:
        raise ValidationError(f"the dataset has no observations of {output!r}")
    times_days = np.unique(np.concatenate([s.times_days for s in data.subjects]))
    spec = RunSpec.build(model, until=ureg.Quantity(max(times_days.max(), 1e-3), ureg.day),
                         params=params, overrides=overrides, rtol=rtol,
                         times=ureg.Quantity(np.union1d([0.0], times_days), ureg.day))
    if isinstance(population, str):
        population = load_population(population)
    rng = np.random.default_rng(seed)
    base = data.parameter_matrix(spec)
    subjects = [i for i, s in enumerate(data.subjects) if output in s.outputs]
    regimens = [data.subjects[i].regimen for i in subjects]
    unit = data.value_units[output]
    factor = dv_factor(spec.compiled, output, unit)
    kind, values = _error(output, params, error, population)
    predictions = []   # per block: (replicates, observations)
    for start in range(0, n if population is not None else 1, _BLOCK):
        reps = min(_BLOCK, n - start) if population is not None else 1
        matrix = np.concatenate([_draws(population, spec, data, i, base[i], reps, seed, start)
                                 for i in subjects])
        batch = run_many(spec, matrix, [r for r in regimens for _ in range(reps)],
                         workers=workers, executor=executor, progress=False)
        values_at = _at_observations(batch, output, data, subjects, reps) * factor
        predictions.append(values_at)
    f = np.concatenate(predictions) if population is not None else \
        np.repeat(predictions[0], n, axis=0)
    sd = _sd(kind, values, f, unit)
    simulated = f + sd * rng.standard_normal(f.shape)
    observed_t = np.concatenate([data.subjects[i].observed(output)[0].to(
        data.time_unit).magnitude for i in subjects])
    observed_y = np.concatenate([data.subjects[i].observed(output)[1].magnitude
                                 for i in subjects])
    ids = tuple(data.subjects[i].id for i in subjects
                for _ in range(len(data.subjects[i].observed(output)[1])))
    return Design(output=output, unit=unit, subject_ids=ids, times=observed_t,
                  observed=observed_y, predicted=f, simulated=simulated)


def _error(output: str, params, error, population=None):
    if error is not None:
        if output not in error:
            raise ValidationError(f"error= gives no error model for {output}")
        kind, values = error[output]
        return kind, dict(values)
    layers = [] if params is None else [params] if isinstance(params, (str, ParameterSet)) \
        or hasattr(params, "__fspath__") else list(params)
    for layer in reversed(layers):
        ps = layer if isinstance(layer, ParameterSet) else load_params(layer)
        found = ps.error_model(output)
        if found is not None:
            return found
    for name, kind, values in getattr(population, "errors", ()):  # a fitted population's
        if name == output:
            return kind, dict(values)
    raise ValidationError(f"no residual error model for {output}: give a parameter file with "
                          "an [error] table (a fitted one, --params FITTED.toml) or, in "
                          "Python, error={output: (kind, values)}")


def _draws(population, spec, data, i: int, base: np.ndarray, reps: int, seed: int,
           start: int) -> np.ndarray:
    """``reps`` parameter vectors of subject ``i``: its own (typical values, its covariates)
    or draws of the population with its covariates given."""
    if population is None:
        return base[None, :].copy()
    subject = data.subjects[i]
    covariates = {c.name for c in population.covariates}
    given = {k: v for k, v in subject.covariates.items() if k in covariates}
    people = population.sample(spec.model, reps, seed=int(np.random.SeedSequence(
        [seed, i, start]).generate_state(1)[0]), given=given)
    rows = np.tile(base, (reps, 1))
    names = spec.compiled.parameter_names
    for name, values in people.parameters.items():  # canonical already
        rows[:, names.index(name)] = values
    for name in data.parameter_values(spec.model)[i]:  # the data's covariates win
        rows[:, names.index(name)] = base[names.index(name)]
    return rows


def _at_observations(batch, output: str, data, subjects, reps: int) -> np.ndarray:
    """(replicates, observations of all subjects) of ``output``, canonical; an observation
    recorded before a dose at its time takes the value just before the dose."""
    from ..runspec import grid_index

    values = batch[output]
    canonical = values.to(canonical_unit(values)).magnitude
    cm = batch.compiled
    columns = []
    for k, i in enumerate(subjects):
        subject = data.subjects[i]
        rows = np.array([o == output for o in subject.outputs], dtype=bool)
        times = subject.times_days[rows]
        block = canonical[k * reps:(k + 1) * reps][:, grid_index(batch.time_days, times)]
        for m in np.flatnonzero(subject.before_dose[rows]):
            for r in range(reps):
                run = k * reps + r
                pre_t, pre_y = batch.before_doses(run)
                at = np.flatnonzero(np.isclose(pre_t, times[m], rtol=0, atol=1e-9))
                if at.size:
                    block[r, m] = _output_value(cm, output, times[m], pre_y[at[0]],
                                                batch.parameter_values[run])
        columns.append(block)
    return np.concatenate(columns, axis=1)


def _output_value(cm, output: str, t: float, y: np.ndarray, p: np.ndarray) -> float:
    if output in cm.state_names:
        return float(y[cm.state_names.index(output)])
    values = cm.observables(np.array([t]), y[:, None], p)
    return float(values[cm.observable_names.index(output), 0])


def _sd(kind: str, values: dict, f: np.ndarray, unit) -> np.ndarray:
    var = np.zeros_like(f)
    if "additive" in values:
        a = values["additive"]
        a = a.to(unit).magnitude if isinstance(a, pint.Quantity) else float(a)
        var = var + a * a
    if "proportional" in values:
        var = var + (float(values["proportional"]) * f) ** 2
    return np.sqrt(var)


def _edges(t: np.ndarray, bins) -> np.ndarray:
    if isinstance(bins, int):
        if bins < 1:
            raise ValidationError(f"bins must be >= 1, got {bins}")
        edges = np.unique(np.quantile(t, np.linspace(0, 1, bins + 1)))
    else:
        edges = np.unique(np.asarray(bins, dtype=float))
    if edges.size < 2:
        edges = np.array([t.min(), t.max() + 1e-9])
    edges[-1] = max(edges[-1], t.max()) + 1e-9
    return edges

"""Normalised prediction distribution errors (NPDE): a simulation-based check of a model
and its variability, observation by observation.

The dataset's design is simulated ``n`` times (:func:`~.vpc.simulate_design`: fresh
between-subject variability in every replicate, residual error on every observation).
For each subject, the observed vector and every simulated vector are decorrelated with
the empirical mean ``E`` and covariance ``V`` of the simulations
(``y* = L^-1 (y - E)`` with ``V = L L'``, the Cholesky factor, as the npde R package does
by default; Comets, Brendel & Mentré, Comput Methods Programs Biomed 2008;90:154).  The
prediction distribution error of an observation is the fraction of simulated ``y*`` below
the observed one (0 and 1 moved to ``1/(2n)`` and ``1 - 1/(2n)``), and the NPDE its
standard-normal quantile.  Under the model the NPDE are independent N(0, 1); the summary
tests their mean (t-test), variance (chi-square against 1) and normality (Shapiro-Wilk),
and the global test takes the smallest p-value times 3 (Bonferroni).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pint

from ..errors import ValidationError
from ..units import format_unit
from .vpc import simulate_design

__all__ = ["NPDE", "npde"]


@dataclass(frozen=True, eq=False)
class NPDE:
    """NPDE per observation, and the tests of their distribution (see the module)."""

    output: str
    unit: pint.Unit
    time_unit: pint.Unit
    subject_ids: tuple[str, ...]
    times: np.ndarray
    observed: np.ndarray
    predicted: np.ndarray          # mean of the simulations (per observation)
    pde: np.ndarray
    npde: np.ndarray
    replicates: int
    p_mean: float                  # t-test: mean 0
    p_variance: float              # chi-square: variance 1
    p_normal: float                # Shapiro-Wilk
    p_global: float                # Bonferroni of the three

    def __str__(self) -> str:
        return (f"NPDE of {self.output} ({self.npde.size} observations, {self.replicates} "
                f"replicates): mean {np.mean(self.npde):.3f} (p = {self.p_mean:.3g}), "
                f"variance {np.var(self.npde, ddof=1):.3f} (p = {self.p_variance:.3g}), "
                f"Shapiro-Wilk p = {self.p_normal:.3g}; global p = {self.p_global:.3g}")

    def write_csv(self, path) -> Path:
        """One row per observation: id, time, observed, mean prediction, pde, npde; the
        summary of the tests in a comment line first."""
        path = Path(path)
        with path.open("w", newline="", encoding="utf-8") as handle:
            handle.write(f"# {self}\n")
            writer = csv.writer(handle)
            writer.writerow(["id", f"time [{format_unit(self.time_unit)}]",
                             f"{self.output} [{format_unit(self.unit)}]",
                             "mean prediction", "pde", "npde"])
            for row in zip(self.subject_ids, self.times.tolist(), self.observed.tolist(),
                           self.predicted.tolist(), self.pde.tolist(), self.npde.tolist()):
                writer.writerow([row[0], *(repr(float(x)) for x in row[1:])])
        return path

    def plot(self):
        """Three panels: the NPDE against N(0, 1) quantiles, against time and against the
        mean prediction; returns the figure."""
        import matplotlib.pyplot as plt
        from scipy import stats

        fig, axes = plt.subplots(1, 3, figsize=(12, 3.8))
        ordered = np.sort(self.npde)
        theory = stats.norm.ppf((np.arange(1, ordered.size + 1) - 0.5) / ordered.size)
        axes[0].plot(theory, ordered, "o", markersize=3)
        lim = max(3.0, float(np.max(np.abs(ordered))))
        axes[0].plot([-lim, lim], [-lim, lim], "k--", linewidth=0.8)
        axes[0].set_xlabel("N(0, 1) quantile")
        axes[0].set_ylabel("NPDE")
        for ax, x, label in ((axes[1], self.times, f"time [{format_unit(self.time_unit)}]"),
                             (axes[2], self.predicted,
                              f"mean prediction [{format_unit(self.unit)}]")):
            ax.plot(x, self.npde, "o", markersize=3, alpha=0.7)
            for level in (-1.96, 0.0, 1.96):
                ax.axhline(level, color="k", linestyle="--" if level else "-",
                           linewidth=0.8)
            ax.set_xlabel(label)
            ax.set_ylabel("NPDE")
        for ax in axes:
            ax.grid(alpha=0.3)
        fig.suptitle(str(self), fontsize=8)
        fig.tight_layout()
        return fig


def npde(model, data, *, population=None, params=None, overrides=None, n: int = 1000,
         seed: int = 0, error=None, output: str | None = None, rtol: float = 1e-8,
         workers: int | None = None, executor=None) -> NPDE:
    """NPDE of ``output`` of ``data`` under ``model`` with ``population`` (a fitted
    population file: its variability and its ``[error]``) or ``params``/``error`` as for
    :func:`~mechsim.estimation.vpc.vpc`; ``n`` replicates (at least 100; the npde
    literature uses 1000)."""
    from scipy import stats

    if not (isinstance(n, int) and n >= 100):
        raise ValidationError(f"n (replicates) must be an integer >= 100, got {n!r}")
    design = simulate_design(model, data, params=params, overrides=overrides,
                             population=population, n=n, seed=seed, error=error,
                             output=output, rtol=rtol, workers=workers, executor=executor)
    ids = np.array(design.subject_ids)
    pde = np.empty(design.observed.size)
    for subject in dict.fromkeys(design.subject_ids):
        cols = np.flatnonzero(ids == subject)
        pde[cols] = _decorrelated_pde(design.observed[cols], design.simulated[:, cols],
                                      subject)
    pde = np.clip(pde, 1 / (2 * n), 1 - 1 / (2 * n))
    values = stats.norm.ppf(pde)
    m = values.size
    if m < 3:
        raise ValidationError(f"NPDE need at least 3 observations of {design.output}, "
                              f"got {m}")
    p_mean = float(stats.ttest_1samp(values, 0.0).pvalue)
    chi2 = (m - 1) * np.var(values, ddof=1)
    p_variance = float(2 * min(stats.chi2.cdf(chi2, m - 1), stats.chi2.sf(chi2, m - 1)))
    p_normal = float(stats.shapiro(values).pvalue)
    return NPDE(output=design.output, unit=design.unit, time_unit=data.time_unit,
                subject_ids=design.subject_ids, times=design.times,
                observed=design.observed, predicted=design.predicted.mean(axis=0), pde=pde,
                npde=values, replicates=n, p_mean=p_mean, p_variance=p_variance,
                p_normal=p_normal, p_global=min(1.0, 3 * min(p_mean, p_variance, p_normal)))


def _decorrelated_pde(observed: np.ndarray, simulated: np.ndarray, subject: str):
    """The prediction distribution errors of one subject's observations (see the module);
    ``simulated``: (replicates, observations)."""
    mean = simulated.mean(axis=0)
    centred = simulated - mean
    cov = centred.T @ centred / (simulated.shape[0] - 1)
    try:
        factor = np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        raise ValidationError(f"subject {subject}: the simulated observations have a "
                              "singular covariance (two at the same time, or no "
                              "variability or residual error), so they cannot be "
                              "decorrelated") from None
    from scipy.linalg import solve_triangular

    obs = solve_triangular(factor, observed - mean, lower=True)
    sims = solve_triangular(factor, centred.T, lower=True)   # (observations, replicates)
    return np.mean(sims < obs[:, None], axis=1)

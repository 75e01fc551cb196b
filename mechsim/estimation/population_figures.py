"""Diagnostic figures of a population fit (:class:`PopulationFitResult`): observations
against population and individual predictions, conditional weighted residuals, the
distributions of the empirical Bayes estimates and their relation to the covariates, and a
visual predictive check with the fitted variability.  matplotlib is imported only here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["write_population_diagnostics"]


def write_population_diagnostics(result, dataset, model, folder, population_file,
                                 *, vpc_replicates: int = 200, npde_replicates: int = 500,
                                 seed: int = 0) -> list[Path]:
    """goodness_of_fit.png, cwres.png, etas.png, eta_covariates.png, vpc.png, npde.png and
    npde.csv in ``folder``; ``population_file``: the fitted population (for the VPC and
    the NPDE, which simulate the design with it)."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure
    from .npde import npde
    from .vpc import vpc

    folder = Path(folder)
    t = result.table
    unit = next(iter(result.value_units.values()))
    written = []

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 4.3))
    for ax, key, what in ((axes[0], "pred", "population (PRED)"),
                          (axes[1], "ipred", "individual (IPRED)")):
        ax.scatter(t[key], t["dv"], s=12, alpha=0.7)
        top = float(np.nanmax(np.concatenate([t[key], t["dv"]]))) * 1.05
        ax.plot([0, top], [0, top], color="black", lw=0.8)
        ax.set_xlim(0, top)
        ax.set_ylim(0, top)
        ax.set_xlabel(f"{what} prediction [{unit:~P}]")
        ax.set_ylabel(f"observed [{unit:~P}]")
        ax.grid(alpha=0.3)
    fig.suptitle(f"{result.model}: observations against predictions ({result.method})",
                 fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder / "goodness_of_fit.png")  # closes the figure
    written.append(folder / "goodness_of_fit.png")

    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    for ax, x, label in ((axes[0], t["time"] * 24.0, "time [h]"),
                         (axes[1], t["pred"], f"PRED [{unit:~P}]")):
        ax.scatter(x, t["cwres"], s=12, alpha=0.7)
        ax.axhline(0, color="black", lw=0.8)
        for level in (-2, 2):
            ax.axhline(level, color="grey", lw=0.8, ls=":")
        ax.set_xlabel(label)
        ax.set_ylabel("CWRES")
        ax.grid(alpha=0.3)
    fig.suptitle("conditional weighted residuals (FOCE linearisation)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, folder / "cwres.png")  # closes the figure
    written.append(folder / "cwres.png")

    m = len(result.random)
    fig, axes = plt.subplots(1, m, figsize=(4.2 * m, 3.6), squeeze=False)
    for k, name in enumerate(result.random):
        ax = axes[0][k]
        omega = float(np.sqrt(result.estimates[f"omega2({name})"].magnitude))
        ax.hist(result.etas[:, k], bins=15, density=True, alpha=0.6)
        grid = np.linspace(-4 * omega, 4 * omega, 200)
        ax.plot(grid, np.exp(-0.5 * (grid / omega) ** 2) / (omega * np.sqrt(2 * np.pi)),
                color="black", lw=1, label=f"N(0, {omega ** 2:.3g})")
        ax.set_xlabel(f"ETA({name})")
        ax.set_title(f"shrinkage {result.shrinkage[k]:.0%}", fontsize=9)
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, folder / "etas.png")  # closes the figure
    written.append(folder / "etas.png")

    covariates = [c for c in dataset.covariate_names]
    if covariates:
        fig, axes = plt.subplots(m, len(covariates), figsize=(3.6 * len(covariates),
                                                              3.2 * m), squeeze=False)
        index = {s.id: s for s in dataset.subjects}
        for k, name in enumerate(result.random):
            for c, cov in enumerate(covariates):
                ax = axes[k][c]
                x = [_number(index[sid].covariates.get(cov)) for sid in result.subject_ids]
                ax.scatter(x, result.etas[:, k], s=12, alpha=0.7)
                ax.axhline(0, color="black", lw=0.8)
                ax.set_xlabel(cov)
                ax.set_ylabel(f"ETA({name})")
                ax.grid(alpha=0.3)
        fig.tight_layout()
        save_figure(fig, folder / "eta_covariates.png")  # closes the figure
        written.append(folder / "eta_covariates.png")

    check = vpc(model, dataset, population=str(population_file), n=vpc_replicates,
                seed=seed)
    ax = check.plot()
    ax.set_title(f"visual predictive check, fitted variability ({vpc_replicates} "
                 "replicates)", fontsize=10)
    save_figure(ax.figure, folder / "vpc.png")  # closes the figure
    written.append(folder / "vpc.png")

    errors = npde(model, dataset, population=str(population_file), n=npde_replicates,
                  seed=seed + 1)
    save_figure(errors.plot(), folder / "npde.png")  # closes the figure
    written.append(folder / "npde.png")
    written.append(errors.write_csv(folder / "npde.csv"))
    return written


def _number(value) -> float:
    magnitude = getattr(value, "magnitude", value)
    try:
        return float(magnitude)
    except (TypeError, ValueError):
        return np.nan

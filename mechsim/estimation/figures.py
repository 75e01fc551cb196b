"""Goodness-of-fit figures of a :class:`~mechsim.estimation.FitResult`.

Every function takes ``ax=None`` (or ``axes``) and returns what it drew on; matplotlib is
imported only when one is called.  :func:`write_diagnostics` writes the usual set.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ..units import format_unit

__all__ = ["plot_individual_fits", "plot_observed_vs_predicted", "plot_residuals",
           "write_diagnostics", "write_individual_diagnostics"]


def _label(fit, output: str) -> str:
    return f"{output} [{format_unit(fit.value_units[output]) or '1'}]"


def plot_observed_vs_predicted(fit, output: str | None = None, ax=None):
    """Observations of one output (default: the first) against predictions, with the line
    of identity."""
    import matplotlib.pyplot as plt

    output = output or fit.outputs[0]
    if ax is None:
        _, ax = plt.subplots(figsize=(4.8, 4.5))
    _, _, observed, predicted, _ = fit.of(output)
    obs, pred = observed.magnitude, predicted.magnitude
    ax.scatter(pred, obs, s=12, alpha=0.7)
    top = float(np.nanmax(np.concatenate([obs, pred]))) * 1.05
    ax.plot([0, top], [0, top], color="black", linewidth=0.8)
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel(f"predicted {_label(fit, output)}")
    ax.set_ylabel(f"observed {_label(fit, output)}")
    ax.set_title(f"observed vs predicted: {output}", fontsize=10)
    ax.grid(alpha=0.3)
    return ax


def plot_residuals(fit, against: str = "time", ax=None):
    """Weighted residuals ``(y - f) / sd`` against time or against the prediction."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.8))
    outputs = list(dict.fromkeys(fit.outputs))
    for output in outputs:
        _, times, _, predicted, wres = fit.of(output)
        x = times.magnitude if against == "time" else predicted.magnitude
        ax.scatter(x, wres, s=12, alpha=0.7, label=output)
    if len(outputs) > 1:
        ax.legend(fontsize=7)
    ax.axhline(0, color="black", linewidth=0.8)
    for level in (-2, 2):
        ax.axhline(level, color="grey", linewidth=0.6, linestyle="--")
    ax.set_xlabel(f"time [{format_unit(fit.times.units)}]" if against == "time"
                  else "prediction" if len(outputs) > 1 else f"predicted "
                  f"{_label(fit, outputs[0])}")
    ax.set_ylabel("weighted residual")
    ax.set_title(f"weighted residuals vs {'time' if against == 'time' else 'prediction'}",
                 fontsize=10)
    ax.grid(alpha=0.3)
    return ax


def plot_individual_fits(fit, curves: dict, *, output: str | None = None, columns: int = 5,
                         axes=None):
    """One panel per subject: its observations of ``output`` (default: the first) over its
    predicted curve.  ``curves`` maps subject id to a :class:`~mechsim.result.Result` at
    the fitted values; returns the Axes."""
    import matplotlib.pyplot as plt

    output = output or fit.outputs[0]
    sids, times, observed, _, _ = fit.of(output)
    ids = list(curves)
    rows = math.ceil(len(ids) / columns)
    if axes is None:
        _, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.1 * rows),
                               squeeze=False)
    flat = np.asarray(axes).ravel()
    unit = fit.value_units[output]
    for ax, sid in zip(flat, ids):
        res = curves[sid]
        mine = sids == sid
        t = res.time.to(fit.times.units).magnitude
        shown = t <= max(times.magnitude[mine].max(initial=0.0) * 1.15, t[1])
        ax.plot(t[shown], res[output].to(unit).magnitude[shown], linewidth=1)
        ax.plot(times.magnitude[mine], observed.magnitude[mine], "o", markersize=3.5)
        ax.set_title(f"subject {sid}", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in flat[len(ids):]:
        ax.set_visible(False)
    fig = flat[0].figure
    fig.supxlabel(f"time [{format_unit(fit.times.units)}]", fontsize=9)
    fig.supylabel(_label(fit, output), fontsize=9)
    return axes


def write_diagnostics(fit, dataset, model, folder, *, params=None, overrides=None,
                      per_page: int = 25) -> list[Path]:
    """Observed vs predicted, weighted residuals vs time and vs prediction, and the
    individual fits (``per_page`` subjects a figure) as PNG files in ``folder``."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    folder = Path(folder)
    written = []
    outputs = list(dict.fromkeys(fit.outputs))
    fig, axes = plt.subplots(1, len(outputs), figsize=(4.8 * len(outputs), 4.5),
                             squeeze=False)
    for ax, output in zip(axes[0], outputs):
        plot_observed_vs_predicted(fit, output, ax)
    fig.tight_layout()
    save_figure(fig, folder / "observed_vs_predicted.png")
    written.append(folder / "observed_vs_predicted.png")
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
    plot_residuals(fit, "time", a)
    plot_residuals(fit, "prediction", b)
    fig.tight_layout()
    save_figure(fig, folder / "residuals.png")
    written.append(folder / "residuals.png")
    fitted = {**dict(overrides or {}), **{n: fit.estimates[n] for n in fit.parameters}}
    results = dataset.simulate(model, params=params, overrides=fitted)
    panels = [(fit, s.id, r) for s, r in zip(dataset.subjects, results) if len(s.outputs)]
    return written + _individual_pages(panels, folder, per_page)


def write_individual_diagnostics(fits, dataset, model, folder, *, params=None,
                                 overrides=None, per_page: int = 25) -> list[Path]:
    """The individual fits of ``fit(..., individual=True)``: one panel per fitted subject,
    its observations over the curve of its own estimates."""
    from dataclasses import replace

    panels = []
    for sid, one in fits.fits.items():
        alone = replace(dataset, subjects=(dataset.subject(sid),))
        fitted = {**dict(overrides or {}), **{n: one.estimates[n] for n in one.parameters}}
        panels.append((one, sid, alone.simulate(model, params=params, overrides=fitted)[0]))
    return _individual_pages(panels, Path(folder), per_page)


def _individual_pages(panels, folder: Path, per_page: int) -> list[Path]:
    """``panels`` of (fit holding the subject's observations, subject id, its curve) as
    pages of ``per_page`` panels: individual_fits.png, or _1, _2, ... when more than one."""
    import matplotlib.pyplot as plt

    from ..plotting import save_figure

    written = []
    for page, start in enumerate(range(0, len(panels), per_page), start=1):
        chosen = panels[start:start + per_page]
        columns = min(5, len(chosen))
        _, axes = plt.subplots(math.ceil(len(chosen) / columns), columns,
                               figsize=(2.6 * columns, 2.1 * math.ceil(len(chosen) / columns)),
                               squeeze=False)
        flat = axes.ravel()
        for ax, (fit, sid, curve) in zip(flat, chosen):
            plot_individual_fits(fit, {sid: curve}, axes=np.array([ax]))
        for ax in flat[len(chosen):]:
            ax.set_visible(False)
        fig = flat[0].figure
        fig.tight_layout()
        name = "individual_fits.png" if len(panels) <= per_page else \
            f"individual_fits_{page}.png"
        save_figure(fig, folder / name)
        written.append(folder / name)
    return written

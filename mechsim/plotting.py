"""Figures: every function takes ``ax=None`` (or ``axes``) and returns what it drew on.

matplotlib is imported only when a function here is called.
"""

from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np

from .errors import ValidationError
from .units import format_unit, split_output

__all__ = ["plot_exposure_response", "plot_exposure_responses", "plot_kaplan_meier",
           "plot_timecourse", "save_figure"]


def _unit_text(unit) -> str:
    text = format_unit(unit)
    return text if text else "relative"


def plot_timecourse(results, names: Sequence[str], *, axes=None, time_unit=None,
                    log: Sequence[str] = (), units: Mapping[str, str] | None = None,
                    overlay: bool = False):
    """One panel per output (or all on one panel with ``overlay=True``), one line per
    result; returns the array of Axes.

    ``results`` is a Result or a mapping label -> Result; ``names`` may ask for a unit
    (``"C_mass[ng/mL]"``); ``log`` names outputs drawn on a log axis; ``units`` maps outputs
    to the unit to draw them in.  Axes are labelled with the model's labels and units.
    """
    import matplotlib.pyplot as plt

    if not isinstance(results, Mapping):
        results = {results.regimen or results.model: results}
    units = dict(units or {})
    names = [f"{n}[{units[n]}]" if n in units else n for n in names]
    first = next(iter(results.values()))
    for name in names:
        first.unit(name)  # unknown names and units fail before any drawing
    panels = 1 if overlay else len(names)
    if axes is None:
        cols = min(3, panels)
        rows = math.ceil(panels / cols)
        _, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 3.4 * rows), sharex=True,
                               squeeze=False)
    flat = np.asarray(axes).ravel()
    t_unit = time_unit if isinstance(time_unit, str) else \
        format_unit(time_unit if time_unit is not None else first.time_unit)
    for k, name in enumerate(names):
        ax = flat[0 if overlay else k]
        for label, res in results.items():
            values = res[name]
            line = f"{label}: {res.label(name)}" if overlay and len(results) > 1 else \
                res.label(name) if overlay else label
            ax.plot(res.time.to(t_unit).magnitude, values.magnitude, label=line)
        if not overlay:
            ax.set_ylabel(_wrapped(first.label(name)))
        if split_output(name)[0] in log:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
    if overlay:
        shown = {format_unit(first.unit(n)) or "1" for n in names}
        flat[0].set_ylabel(f"[{shown.pop()}]" if len(shown) == 1 else "value (units in legend)")
    for ax in flat[panels:]:
        ax.set_visible(False)
    for ax in flat[max(0, panels - min(3, panels)):panels]:
        # the last panel of each column: its own tick labels, hidden by sharex when a row
        # below it is empty
        ax.set_xlabel(f"time [{t_unit}]")
        ax.xaxis.set_tick_params(labelbottom=True)
    if len(results) > 1 or overlay:
        flat[0].legend(fontsize=8)
    flat[0].figure.tight_layout()
    return axes


def _wrapped(text: str, width: int = 34) -> str:
    """An axis label on at most two lines."""
    lines = textwrap.wrap(text, width)
    return "\n".join(lines[:2]) + ("..." if len(lines) > 2 else "")


def _zero_position(low: float, high: float) -> float:
    """Where dose 0 is drawn on a log axis: left of the lowest dose by a fifth of the span
    (at least half a decade), beyond an axis break."""
    return low / 10 ** max(0.5, 0.2 * math.log10(high / low))


def plot_exposure_response(er, ax=None):
    """Points, the chosen curve and its ED50 on a log x axis; the point without drug (dose
    0) is drawn at the left beyond an axis break, with the curve's value there.  The warnings
    are listed in the legend.  Returns the Axes."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FixedLocator, LogFormatterSciNotation, NullFormatter

    from .analysis.dose_response import CURVES

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.6))
    x, y = er.x.magnitude, er.y.magnitude
    positive = x > 0
    if not positive.any():  # nothing to draw on a log axis
        raise ValidationError(f"{er.x_label}: no positive values to draw on a log axis")
    ax.plot(x[positive], y[positive], "o", color="tab:blue", label="simulated", zorder=3)
    low, high = x[positive].min(), x[positive].max()
    zero = _zero_position(low, high)
    has_zero = (~positive).any()
    if has_zero:
        ax.plot(np.full((~positive).sum(), zero), y[~positive], "o", color="tab:blue",
                zorder=3)
    fit = er.fit
    if fit is not None:
        grid = np.geomspace(low, high, 300)
        curve = fit.predict(grid * er.x.units).to(er.y.units).magnitude
        ax.plot(grid, curve, color="tab:red", label=f"{CURVES[fit.model]} fit", zorder=2)
        if has_zero:  # the curve between dose 0 and the lowest dose, across the break
            at_zero = fit.predict(0 * er.x.units).to(er.y.units).magnitude
            ax.plot([zero, low], [at_zero, curve[0]], ":", color="tab:red", zorder=2)
            ax.plot([zero], [at_zero], "_", color="tab:red", markersize=14, mew=2, zorder=2)
        ed50 = getattr(fit, "ed50", None)
        if ed50 is not None and low <= ed50.to(er.x.units).magnitude <= high:
            e50 = ed50.to(er.x.units).magnitude
            mid = fit.predict(ed50).to(er.y.units).magnitude
            ax.axvline(e50, color="tab:red", ls="--", lw=1)
            right_half = e50 > np.sqrt(low * high)
            ax.annotate(f"ED50 = {e50:.3g} {format_unit(er.x.units)}", (e50, mid),
                        xytext=(-8 if right_half else 8, 0), textcoords="offset points",
                        ha="right" if right_half else "left", fontsize=9, color="tab:red")
    else:  # why not, shortened to its first clause if long (all of it is printed)
        text = er.no_fit if len(er.no_fit) <= 96 else er.no_fit.split(": ")[0]
        ax.plot([], [], " ", label=textwrap.fill(text, 48))
    for note in er.warnings:  # in the legend, where loc="best" keeps it off the points
        # the clause before the colon; the whole line is in the printed summary
        ax.plot([], [], " ", label=textwrap.fill(f"warning: {note.split(': ')[0]}", 48))
    ax.set_xscale("log")
    if has_zero:
        left = zero / 10 ** 0.15
        ax.set_xlim(left, high * 10 ** 0.15)
        # decade ticks right of the break only, and "0" at dose 0
        decades = [10.0 ** k for k in range(math.floor(math.log10(low)),
                                            math.ceil(math.log10(high)) + 1)
                   if low / 10 ** 0.15 <= 10.0 ** k <= high * 10 ** 0.15]
        minor = [m * d for d in [10.0 ** k for k in range(math.floor(math.log10(low)) - 1,
                                                          math.ceil(math.log10(high)) + 1)]
                 for m in range(2, 10) if low / 10 ** 0.15 <= m * d <= high * 10 ** 0.15]
        ax.xaxis.set_major_locator(FixedLocator([zero, *decades]))
        fmt = LogFormatterSciNotation()
        ax.xaxis.set_major_formatter(
            lambda v, pos: "0" if np.isclose(v, zero) else fmt(v, pos))
        ax.xaxis.set_minor_locator(FixedLocator(minor))
        ax.xaxis.set_minor_formatter(NullFormatter())
        # the axis break: "//" on the x axis between 0 and the lowest dose
        ax.annotate("//", (math.sqrt(zero * low), 0), xycoords=ax.get_xaxis_transform(),
                    ha="center", va="center", fontsize=10, annotation_clip=False,
                    bbox=dict(boxstyle="square,pad=0.05", fc="white", ec="none"))
    ax.set_xlabel(f"{er.x_label} [{_unit_text(er.x.units)}]")
    unit = _unit_text(er.y.units)
    words = getattr(er, "y_words", "")
    ax.set_ylabel(f"{words}\n{er.y_label} [{unit}]" if words else f"{er.y_label} [{unit}]",
                  fontsize=9 if words else None)
    if er.description:
        ax.set_title(textwrap.fill(er.description, 80), fontsize=8)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="best")
    ax.figure.tight_layout()
    return ax


def plot_exposure_responses(ers, axes=None):
    """One panel per metric of a sweep (:class:`ExposureResponses`), the regimen as the
    figure's title; returns the array of Axes."""
    import matplotlib.pyplot as plt

    curves = list(ers)
    if axes is None:
        cols = min(2, len(curves))
        rows = math.ceil(len(curves) / cols)
        _, axes = plt.subplots(rows, cols, figsize=(6.4 * cols, 4.6 * rows), squeeze=False)
    flat = np.asarray(axes).ravel()
    for ax, er in zip(flat, curves):
        plot_exposure_response(er, ax=ax)
        ax.set_title("")
    for ax in flat[len(curves):]:
        ax.set_visible(False)
    fig = flat[0].figure
    title = getattr(ers, "description", "") or curves[0].description
    if title:  # about 13 characters of 9-point text to an inch
        fig.suptitle(textwrap.fill(title, int(13 * fig.get_figwidth())), fontsize=9)
    fig.tight_layout()
    return axes


def plot_kaplan_meier(curves: Mapping, *, published: Mapping | None = None, ax=None,
                      note: str | None = None, title: str | None = None):
    """Kaplan-Meier curves (time in months) with shaded confidence bands; a dotted line at
    each simulated median and a marker at each published median.  Returns the Axes."""
    import matplotlib.pyplot as plt

    if ax is None:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        # room under the axis for the numbers at risk: 44 points, then 11 a line
        fig.subplots_adjust(bottom=(44 + 11 * (len(curves) + 1) + 8) / 72 / 4.5)
    published = dict(published or {})
    for label, km in curves.items():
        (line,) = ax.step(km.time, km.survival, where="post", label=f"{label} (n={km.n}): "
                          f"median {km.median:.2f} mo ({km.median_lower:.2f}-"
                          f"{km.median_upper:.2f})")
        ax.fill_between(km.time, km.lower, km.upper, step="post", alpha=0.2,
                        color=line.get_color(), linewidth=0)
        if math.isfinite(km.median):
            ax.plot([km.median, km.median], [0, 0.5], ":", color=line.get_color())
        if published.get(label) is not None:
            ax.plot([published[label]], [0.5], "D", color=line.get_color(), markersize=6,
                    markeredgecolor="black",
                    label=f"{label}: published median {published[label]:g} mo")
    ax.axhline(0.5, color="grey", linewidth=0.5)
    ax.set_xlabel("time (months)")
    ax.set_ylabel("progression-free survival")
    ax.set_ylim(0, 1.02)
    ax.set_xlim(left=0)
    ax.legend(fontsize=8, loc="upper right")
    if note:
        ax.text(0.02, 0.04, note, transform=ax.transAxes, fontsize=8, va="bottom")
    _numbers_at_risk(ax, curves)
    if title:
        import textwrap

        ax.set_title("\n".join(textwrap.wrap(title, 70)), fontsize=10)
    return ax


def _numbers_at_risk(ax, curves: Mapping) -> None:
    """The table under a Kaplan-Meier figure: patients at risk per arm at each x tick,
    placed in points below the axis so it keeps its place whatever the figure's size."""
    from matplotlib.transforms import ScaledTranslation, blended_transform_factory

    ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
    ax.set_xticks(ticks)  # fixed, so the table stays under its ticks
    fig = ax.figure

    def row(dy_points, x_in_data, dx_points=0.0):
        base = blended_transform_factory(ax.transData if x_in_data else ax.transAxes,
                                         ax.transAxes)
        return base + ScaledTranslation(dx_points / 72, -dy_points / 72, fig.dpi_scale_trans)

    # below the tick labels and the axis label (about 40 points), one line of 11 points each
    ax.text(0.0, 0, "at risk", transform=row(44, False), fontsize=8, ha="left", va="top",
            fontweight="bold")
    for i, (label, km) in enumerate(curves.items(), start=1):
        # right-aligned clear of the first column of numbers, centred on the axis' start
        ax.text(0.0, 0, label, transform=row(44 + 11 * i, False, -14), fontsize=8,
                ha="right", va="top")
        for t, n in zip(ticks, km.at_risk(ticks)):
            ax.text(t, 0, str(int(n)), transform=row(44 + 11 * i, True), fontsize=8,
                    ha="center", va="top")


def save_figure(fig, path) -> None:
    """Save to ``path`` atomically (a temporary name, then rename), then close it."""
    import matplotlib.pyplot as plt

    from .io.atomic import write_atomically

    try:
        write_atomically(path, lambda tmp: fig.savefig(tmp, dpi=120))
    finally:
        plt.close(fig)

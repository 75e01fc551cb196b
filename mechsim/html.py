"""Readable HTML summaries of models, regimens and results, for notebooks.

Jupyter shows an object through its ``_repr_html_``; :class:`~mechsim.model.Model`,
:class:`~mechsim.dosing.Regimen`, :class:`~mechsim.result.Result` and
:class:`~mechsim.batch.BatchResult` return what these functions build.  Every piece of text
(names, labels, sources, the regimen) is escaped: model files are data, and a label must not
become markup.
"""

from __future__ import annotations

from html import escape

import numpy as np

from .units import format_quantity, format_unit

__all__ = ["batch_html", "model_html", "regimen_html", "result_html"]

#: Rows shown per table before "... and N more"
MAX_ROWS = 30
_STYLE = "border-collapse:collapse;font-size:90%"
_CELL = "padding:1px 8px;text-align:left;border-bottom:1px solid #ddd"


def _table(header: list[str], rows: list[list[str]]) -> str:
    """A small table; cells are already escaped."""
    head = "".join(f'<th style="{_CELL}">{h}</th>' for h in header)
    body = "".join("<tr>" + "".join(f'<td style="{_CELL}">{c}</td>' for c in row) + "</tr>"
                   for row in rows[:MAX_ROWS])
    more = f"<p>... and {len(rows) - MAX_ROWS} more</p>" if len(rows) > MAX_ROWS else ""
    return f'<table style="{_STYLE}"><tr>{head}</tr>{body}</table>{more}'


def _number(value: float) -> str:
    return f"{value:.4g}" if np.isfinite(value) else str(value)


def model_html(model) -> str:
    """Name and description, then the species (the default outputs marked), the rules, the
    parameters with their sources and the routes."""
    outputs = set(model.default_outputs)
    species = [[escape(s.name) + (" *" if s.name in outputs else ""),
                escape(model.labels.get(s.name, "")), escape(format_unit(s.unit) or "1"),
                escape(s.compartment or "")] for s in model.species]
    rules = [[escape(r.name) + (" *" if r.name in outputs else ""),
              escape(model.labels.get(r.name, "")),
              escape(format_unit(model.rule_units[r.name]) or "1"), escape(r.expr.text)]
             for r in model.rules]
    params = [[escape(p.name), escape(format_quantity(p.value)) if p.is_set else "(not set)",
               escape(p.source or ""), escape(p.note or "")] for p in model.parameters]
    routes = ", ".join(f"{escape(r.name)} &rarr; {escape(r.target)}" for r in model.routes)
    return (f"<div><b>Model {escape(model.name)}</b>: {escape(model.description)}<br>"
            f"{len(model.species)} species, {len(model.reactions)} reactions, "
            f"{len(model.rules)} rules, {len(model.parameters)} parameters; routes: "
            f"{routes or 'none'}; time unit {escape(format_unit(model.time_unit))}"
            f"<details><summary>species (* shown by default)</summary>"
            f"{_table(['name', 'label', 'unit', 'compartment'], species)}</details>"
            f"<details><summary>rules</summary>"
            f"{_table(['name', 'label', 'unit', 'expression'], rules)}</details>"
            f"<details><summary>parameters</summary>"
            f"{_table(['name', 'value', 'source', 'note'], params)}</details></div>")


def regimen_html(regimen, days: float = 84.0) -> str:
    """The regimen's text and its doses in the first ``days`` days."""
    doses = regimen.administrations(days)
    rows = [[_number(a.time), escape(format_quantity(a.dose.amount)), escape(a.dose.route),
             escape(f"over {_number(a.dose.infusion_duration_days() * 24)} h")
             if a.dose.is_infusion else "bolus"] for a in doses]
    return (f"<div><b>Regimen</b> <code>{escape(str(regimen))}</code><br>"
            f"{len(doses)} doses in the first {days:g} days"
            f"{_table(['day', 'dose', 'route', 'given'], rows) if rows else ''}</div>")


def result_html(result) -> str:
    """What was run, then each default output's unit, first, lowest, highest and last value,
    and the solver's diagnostics."""
    rows = []
    for name in result.outputs or result.names:
        values = result[name].magnitude
        finite = values[np.isfinite(values)]
        low, high = (finite.min(), finite.max()) if finite.size else (np.nan, np.nan)
        rows.append([escape(name), escape(result.labels.get(name, "")),
                     escape(format_unit(result.unit(name)) or "1"),
                     *(_number(v) for v in (values[0], low, high, values[-1]))])
    t = result.time.magnitude
    d = result.diagnostics
    return (f"<div><b>Result</b> of model {escape(result.model)} under "
            f"<code>{escape(result.regimen or 'no doses')}</code><br>"
            f"{t.size} times from {_number(t[0])} to {_number(t[-1])} "
            f"{escape(format_unit(result.time_unit))}; method {escape(d.method)}, "
            f"{d.steps} steps, largest mass-balance residual "
            f"{d.max_conservation_residual:.1e}"
            f"{_table(['output', 'label', 'unit', 'first', 'lowest', 'highest', 'last'], rows)}"
            f"<p>all outputs: <code>{escape(', '.join(result.names))}</code></p></div>")


def batch_html(batch) -> str:
    """Runs, times, method, fallbacks and failures, and the outputs that can be read."""
    cm = batch.compiled
    t = batch.time.magnitude
    regimens = list(dict.fromkeys(batch.regimens))  # in the order of the runs
    shown = regimens[:5]
    more = f" and {len(regimens) - 5} more" if len(regimens) > 5 else ""
    values = batch.parameter_values
    varied = [name for k, name in enumerate(cm.parameter_names)
              if len(values) and np.ptp(values[:, k]) > 0]
    return (f"<div><b>BatchResult</b> of model {escape(cm.name)}: {len(batch)} runs x "
            f"{t.size} times ({_number(t[0])} to {_number(t[-1])} "
            f"{escape(format_unit(cm.time_unit))}); method {escape(batch.method)}; "
            f"{len(batch.fallbacks)} runs finished by a fallback method, "
            f"{len(batch.failures)} unfinished<br>regimens: "
            f"{', '.join(f'<code>{escape(r)}</code>' for r in shown)}{more}<br>"
            f"parameters that differ between runs: "
            f"<code>{escape(', '.join(varied)) or 'none'}</code><br>"
            f"outputs (<code>batch[name]</code>, runs x times): "
            f"<code>{escape(', '.join(cm.default_outputs or cm.state_names))}</code></div>")

"""The segment arrays of a fit's runs without rebuilding each subject's dose plan.

In a fit only the estimated parameters change between evaluations of a subject, and none of
them may move a dose in time (:meth:`Sensitivities.plan` refuses a lag that depends on
one).  So which doses fall before a subject's end, their times, states and kinds, and hence
the segments of its run and where each dose's jump or input lands in the segment arrays,
are the same at every evaluation.  A :class:`DoseTemplate` records that layout once, from
the plan the general path builds; :func:`segment_arrays` then computes only the values that
depend on the parameters, for many subjects at once, with the same IEEE operations as
:func:`~mechsim.doseplan.planned_doses` and :meth:`Sensitivities.plan`, so the runs are bit
for bit those of the general path.  :func:`usable` says which runs a template fits.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..doseplan import BODY_SURFACE, BODY_WEIGHT, DosePlan, invalid_rows, per_row, planned_doses
from .gradients import Sensitivities

__all__ = ["DoseTemplate", "dose_template", "segment_arrays", "usable"]


@dataclass(frozen=True, eq=False)
class DoseTemplate:
    """What stays fixed of one subject's dosing in a fit (see the module docstring)."""

    starts: np.ndarray        # the segments of the run
    ends: np.ndarray
    is_dose: np.ndarray
    # the doses before the end, one entry each: the event's amount and conversions, the
    # infusion duration (NaN for a bolus), the state and the route (index in cm.routes)
    amount: np.ndarray
    mw_power: np.ndarray
    per_weight: np.ndarray
    per_surface: np.ndarray
    duration: np.ndarray
    state: np.ndarray
    route: np.ndarray
    # the lag of every route the subject's events take: with these lags the same doses
    # fall before the end at the same times
    lag_routes: np.ndarray
    lags: np.ndarray
    # (segment, augmented state, dose, component) of each term of the rates and the jumps,
    # in the order DosePlan.segments adds them; component 0 is the state's own value, j + 1
    # its sensitivity to p_j
    inputs: np.ndarray
    jumps: np.ndarray


def dose_template(sens: Sensitivities, events, p: np.ndarray, until: float) -> DoseTemplate:
    """The template of a subject with these dose events and end, made at parameters ``p``
    (which :func:`~mechsim.doseplan.check_fixed_values` accepts)."""
    cm, n = sens.compiled, sens.n
    routes = list(cm.routes)
    doses = planned_doses(cm, events, p, until)
    # every sensitivity row (scaled all ones), so the layout has a place for each term
    every = np.ones(sens.k)
    boluses, infusions, bolus_doses, infusion_doses = [], [], [], []
    for d, dose in enumerate(doses):
        rows = list(sens.dose_rows(dose.state, 0.0, every))
        if dose.event.duration is not None:
            end = dose.time + dose.event.duration
            infusions.extend((dose.time, end, column, v) for column, v in rows)
            infusion_doses.extend([d] * len(rows))
        else:
            boluses.extend((dose.time, column, v) for column, v in rows)
            bolus_doses.extend([d] * len(rows))
    plan = DosePlan.of(boluses, infusions)
    starts, ends, is_dose, inputs, jumps = plan.segment_layout(until)

    def terms(layout, doses_of_rows):
        segment, column, row = layout
        return np.stack([segment, column, np.asarray(doses_of_rows, dtype=np.int64)[row],
                         column // n]).astype(np.int64)

    # the lags as usable() computes them (for columns), so that they compare equal
    lag_routes = np.array(sorted({routes.index(e.route) for e in events}), dtype=np.int64)
    events_of = [d.event for d in doses]
    return DoseTemplate(
        starts=starts, ends=ends, is_dose=is_dose,
        amount=np.array([e.amount for e in events_of], dtype=float),
        mw_power=np.array([e.mw_power for e in events_of], dtype=np.int64),
        per_weight=np.array([e.per_body_weight for e in events_of], dtype=bool),
        per_surface=np.array([e.per_body_surface for e in events_of], dtype=bool),
        duration=np.array([np.nan if e.duration is None else e.duration for e in events_of]),
        state=np.array([d.state for d in doses], dtype=np.int64),
        route=np.array([routes.index(e.route) for e in events_of], dtype=np.int64),
        lag_routes=lag_routes,
        lags=_factors(cm, np.asarray(p, dtype=float)[:, None])[lag_routes, 1, 0],
        inputs=terms(inputs, infusion_doses), jumps=terms(jumps, bolus_doses))


def _route_table(cm, columns: np.ndarray, function, size: int) -> np.ndarray:
    """``function(route, columns)`` (``size`` values) of every route stacked: (routes,
    size, rows)."""
    n_rows = columns.shape[1]
    return np.array([per_row(function(route, columns), size, n_rows) for route in cm.routes]
                    ).reshape(len(cm.routes), size, n_rows)


def _factors(cm, columns):
    """(F, lag, MW) of every route: (routes, 3, rows)."""
    return _route_table(cm, columns, cm.route_values, 3)


def _gradients(sens: Sensitivities, columns):
    """Sensitivities.route_gradient_function of every route: (routes, 3 k, rows)."""
    return _route_table(sens.compiled, columns,
                        lambda route, c: sens.route_gradient_function(route)(c), 3 * sens.k)


def usable(sens: Sensitivities, templates, matrix: np.ndarray) -> np.ndarray:
    """Which rows of ``matrix`` (one subject's parameters each, with its template) the
    template fits: valid parameters (else the general path raises its error), the route
    lags it was made with, and no estimated parameter moving a lag."""
    cm = sens.compiled
    ok = ~invalid_rows(cm, matrix)
    columns = np.ascontiguousarray(matrix.T)
    with np.errstate(all="ignore"):
        lags = _factors(cm, columns)[:, 1]                    # (routes, rows)
        d_lag = _gradients(sens, columns)[:, :sens.k]         # (routes, k, rows)
    for i, t in enumerate(templates):
        ok[i] &= np.array_equal(lags[t.lag_routes, i], t.lags) and \
            not np.any(d_lag[t.lag_routes, :, i] != 0)
    return ok


def segment_arrays(sens: Sensitivities, templates, matrix: np.ndarray,
                   scales: np.ndarray):
    """(offsets, starts, ends, rates, jumps) of the runs of subjects with these templates at
    these parameters (rows of ``matrix``, which :func:`usable` accepts) and scales (rows
    of ``scales``), as :func:`mechsim.solvers.ndf.run_segments` takes them."""
    from ..solvers.ndf import segment_offsets

    n_segments = [t.starts.size for t in templates]
    offsets = segment_offsets(n_segments)
    values, keep = _dose_values(sens, templates, matrix, scales)
    first_dose = np.cumsum([0] + [t.amount.size for t in templates])
    width = sens.n * (sens.k + 1)
    arrays = []
    for field in ("inputs", "jumps"):
        terms = np.concatenate([getattr(t, field) for t in templates], axis=1)
        sizes = [getattr(t, field).shape[1] for t in templates]
        segment = terms[0] + np.repeat(offsets[:-1], sizes)
        dose = terms[2] + np.repeat(first_dose[:-1], sizes)
        # the general path leaves out a sensitivity row whose value is zero: so do we, so
        # that the sums are the same operations
        kept = keep[dose, terms[3]]
        out = np.zeros((int(offsets[-1]), width))
        np.add.at(out, (segment[kept], terms[1][kept]), values[dose[kept], terms[3][kept]])
        arrays.append(out)
    starts = np.concatenate([t.starts for t in templates])
    ends = np.concatenate([t.ends for t in templates])
    return offsets, starts, ends, arrays[0], arrays[1]


def _dose_values(sens: Sensitivities, templates, matrix: np.ndarray, scales: np.ndarray):
    """(values, kept), both (doses, k + 1): each dose's jump or input on its state, then
    ``m_j`` times its derivative (Sensitivities.plan's values), and which of them the plan
    has a row for."""
    cm, k = sens.compiled, sens.k
    n_rows = matrix.shape[0]
    columns = np.ascontiguousarray(matrix.T)
    row = np.repeat(np.arange(n_rows), [t.amount.size for t in templates])
    amount, mw_power, per_weight, per_surface, duration, state, route = (
        np.concatenate([getattr(t, name) for t in templates])
        for name in ("amount", "mw_power", "per_weight", "per_surface", "duration", "state",
                     "route"))
    with np.errstate(all="ignore"):
        factors = _factors(cm, columns)
        gradients = _gradients(sens, columns)
        volumes = per_row(cm.volumes(columns), sens.n, n_rows)
        log_volume = per_row(sens.volume_gradient_function()(columns), sens.n * k,
                             n_rows).reshape(sens.n, k, n_rows)
    f, mw = factors[route, 0, row], factors[route, 2, row]
    # planned_doses' arithmetic, dose by dose in the same order of operations
    a = np.where(mw_power == -1, amount / mw, np.where(mw_power == 1, amount * mw, amount))
    for flag, name in ((per_weight, BODY_WEIGHT), (per_surface, BODY_SURFACE)):
        if name in cm.parameter_names:
            a = np.where(flag, a * matrix[row, cm.parameter_names.index(name)], a)
    a = a * f
    volume = volumes[state, row]
    infused = ~np.isnan(duration)
    value = np.where(infused, (a / np.where(infused, duration, 1.0)) / volume, a / volume)
    # Sensitivities._route_gradient and plan: d ln(amount / V) / dp_j, times m_j
    d_log_amount = gradients[route, k:2 * k, row] + \
        mw_power[:, None] * gradients[route, 2 * k:, row]
    for flag, name in ((per_weight, BODY_WEIGHT), (per_surface, BODY_SURFACE)):
        if name in sens.estimated:
            j = sens.estimated.index(name)
            d_log_amount[:, j] = np.where(flag, d_log_amount[:, j] +
                                          1.0 / matrix[row, sens.columns[j]],
                                          d_log_amount[:, j])
    scaled = (d_log_amount - log_volume[state, :, row]) * scales[row]
    values = np.concatenate([value[:, None], value[:, None] * scaled], axis=1)
    kept = np.concatenate([np.ones((value.size, 1), dtype=bool), scaled != 0], axis=1)
    return values, kept

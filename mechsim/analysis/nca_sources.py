"""Profiles for NCA from where mechsim keeps them: a simulated :class:`~mechsim.result.Result`
or a subject of a :class:`~mechsim.dataset.Dataset`.

Each adapter collects the samples (with which were taken just before a dose at the same
time), the nominal doses from the regimen, and calls :func:`mechsim.analysis.nca.nca_profile`.
A dose route named ``iv`` (or ``intravenous``) is intravascular, a bolus or an infusion; any
other route (``oral``, ``sc``) is extravascular, so CL and Vz are reported as CL/F and Vz/F.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..dosing import Regimen
from ..errors import ValidationError
from ..units import format_unit, ureg
from .nca import NCADose, ProfileNCA, is_concentration, nca_profile

__all__ = ["INTRAVASCULAR_ROUTES", "doses_of", "nca_of_result", "nca_of_subject"]

#: Route names taken as intravascular; every other route is extravascular.
INTRAVASCULAR_ROUTES = frozenset({"iv", "intravenous"})


def doses_of(regimen: Regimen, until_days: float, time_unit, route: str | None = None,
             ) -> list[NCADose]:
    """The regimen's doses before ``until_days`` as :class:`NCADose` objects on a clock in
    ``time_unit``; only those by ``route`` when it is given."""
    admins = regimen.administrations(until_days) if regimen.sequences else ()
    if route is not None:
        routes = sorted({a.dose.route for a in admins})
        admins = [a for a in admins if a.dose.route == route]
        if not admins:
            raise ValidationError(f"no dose by route {route!r} (routes dosed: "
                                  f"{', '.join(routes) or 'none'})")
    out = []
    for a in admins:
        dose = a.dose
        intravascular = dose.route in INTRAVASCULAR_ROUTES
        kind = ("infusion" if dose.is_infusion else "bolus") if intravascular else \
            "extravascular"
        duration = dose.infusion_duration_days()
        out.append(NCADose(ureg.Quantity(a.time, ureg.day).to(time_unit), dose.amount, kind,
                           ureg.Quantity(duration, ureg.day).to(time_unit)
                           if duration is not None else None))
    return out


def _check_output(unit, output: str) -> None:
    if not is_concentration(unit):
        raise ValidationError(f"{output} is in {format_unit(unit) or 'dimensionless units'}, "
                              "not a concentration; NCA needs a mass or amount per volume "
                              "(e.g. mg/L or nM)")


def nca_of_result(result, output: str, *, route: str | None = None) -> ProfileNCA:
    """NCA of one output of a simulation, times from its first dose in the model's time unit.

    The output grid and the value just before each dose are the samples.  Where a dose
    that enters continuously (an infusion, an oral dose) or the end of the last full
    interval falls between output times, the value there is interpolated (the simulated
    concentration is continuous there) by the AUC's own rule: log-linear on a fall, linear
    otherwise.  A bolus not on the grid gets its C0
    back-extrapolated, as for data.

    Parameters
    ----------
    result
        A :class:`~mechsim.result.Result`.
    output
        A state or observable whose unit is a concentration.
    route
        Only the doses by this route count (a regimen that also doses another drug);
        default all doses.
    """
    unit = result.unit(output)
    _check_output(unit, output)
    tu = result.time_unit
    regimen = Regimen.parse(result.regimen) if result.regimen else Regimen.none()
    end_days = float(result.time_days[-1])
    doses = doses_of(regimen, end_days, tu, route)
    t_days, y = result.time_days, result[output].to(unit).magnitude
    pre_days, pre_y = result.before_dose(output)
    pre_days = pre_days.to(ureg.day).magnitude
    pre_y = pre_y.to(unit).magnitude
    # points to add by interpolation (continuous dose times, the last interval's end)
    extra = [d.time.to(ureg.day).magnitude for d in doses if d.kind != "bolus"]
    if len(doses) >= 2:
        a, b = (d.time.to(ureg.day).magnitude for d in doses[-2:])
        extra.append(b + (b - a))
    extra = np.array([x for x in extra if t_days[0] <= x <= end_days
                      and not np.isclose(t_days, x, rtol=1e-12, atol=1e-12).any()
                      and not np.isclose(pre_days, x, rtol=1e-12, atol=1e-12).any()])
    times = np.concatenate([t_days, pre_days, extra])
    values = np.concatenate([y, pre_y, _interpolate(extra, t_days, y)])
    before = np.concatenate([np.zeros(t_days.size, bool), np.ones(pre_days.size, bool),
                             np.zeros(extra.size, bool)])
    order = np.lexsort((~before, times))  # at a dose time the value before it comes first
    profile = nca_profile(ureg.Quantity(times[order], ureg.day).to(tu),
                          ureg.Quantity(values[order], unit), doses, before_dose=before[order])
    routes = sorted({a.dose.route for a in regimen.administrations(end_days)}) \
        if regimen.sequences else []
    if route is None and len(routes) > 1:
        # which doses made this output is the model's business, not the regimen's
        whole = replace(profile.whole, cl=profile.whole.cl * math.nan,
                        vz=profile.whole.vz * math.nan,
                        notes=(*profile.whole.notes, f"CL, Vz: doses by several routes "
                               f"({', '.join(routes)}); choose the route of this drug"))
        return replace(profile, whole=whole)
    return profile


def _interpolate(x: np.ndarray, t: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Values at ``x`` by the rule the AUC uses (log-linear where the output falls, both
    values positive; linear elsewhere), so an added point does not change the area."""
    right = np.clip(np.searchsorted(t, x, side="right"), 1, t.size - 1)
    t1, t2, y1, y2 = t[right - 1], t[right], y[right - 1], y[right]
    w = (x - t1) / (t2 - t1)
    down = (y1 > y2) & (y2 > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        log = y1 * np.power(np.where(down, y2 / y1, 1.0), w)
    return np.where(down, log, y1 + w * (y2 - y1))


def nca_of_subject(subject, output: str, time_unit=None) -> ProfileNCA:
    """NCA of one subject's observations of ``output`` (times in the dataset's unit, or
    ``time_unit``), doses from the subject's records."""
    rows = np.array([o == output for o in subject.outputs], dtype=bool)
    if not rows.any():
        raise ValidationError(f"subject {subject.id} has no observations of {output}")
    unit = subject.value_units.get(output, ureg.dimensionless)
    _check_output(unit, output)
    tu = time_unit or subject.times.units
    times = subject.times[rows].to(tu)
    values = ureg.Quantity(subject.values[rows], unit)
    doses = doses_of(subject.regimen, math.inf, tu)
    return nca_profile(times, values, doses, before_dose=subject.before_dose[rows])

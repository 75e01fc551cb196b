"""Non-compartmental analysis (NCA) of one concentration-time profile.

The method is the standard one (as in Phoenix WinNonlin and PKNCA; the two numerical rules
are in :mod:`.nca_rules`, and ``docs/nca.md`` has the formulas and a worked example):

* **AUC and AUMC** by the linear-up/log-down trapezoidal rule: a segment whose concentration
  falls (both values > 0) is integrated as an exponential, ``(C1 - C2) dt / ln(C1/C2)``, any
  other segment linearly, ``(C1 + C2) dt / 2``.  The log rule is exact on a mono-exponential
  decline, the linear rule on a straight rise.
* **Terminal phase** by best fit: log-linear least squares over the last k >= 3 positive
  samples strictly after Cmax (Cmax itself excluded), for every k; the fit with the largest
  adjusted R^2 wins, and among fits within 1e-4 of that value the one with the most points
  (Phoenix's rule).  Only fits with a falling slope (lambda_z > 0) compete.
* **Extrapolation**: AUCinf = AUClast + Clast/lambda_z (observed Clast), % extrapolated,
  AUMCinf = AUMClast + Clast*Tlast/lambda_z + Clast/lambda_z^2.
* **Dose-based**: CL = Dose/AUCinf and Vz = Dose/(lambda_z AUCinf) for intravascular doses;
  CL/F and Vz/F for extravascular ones (the nominal dose, bioavailability unknown).  With
  several doses the dose is their total, which is exact for linear kinetics (superposition:
  the whole profile's AUC from the first dose to infinity is total dose / CL).
* **Dosing intervals**: each interval from a dose to the next (the last one to the last
  dose plus the preceding interval, when sampled there) gives AUCtau, Cmax, Tmax (since its
  dose), Cmin, Ctrough (just before the next dose) and Cavg = AUCtau/tau.

Samples at a dose time may be taken before the dose (a trough) or after it (``before_dose``
says which).  An IV bolus jumps at its dose: its starting value C0 is a sample after the
dose, else back-extrapolated log-linearly from the first two samples after it (Phoenix's
rule; the first sample if they do not fall).  An infusion or an extravascular dose is
continuous at its dose, so any sample at the dose time starts its interval; before the first
dose with no sample the concentration is taken as 0.  What cannot be estimated is NaN and
the result's ``notes`` say why: too few samples after Cmax, a non-declining terminal phase,
an interval without a sample at its dose, a dose whose unit cannot meet the concentration's.

Inputs and outputs are pint Quantities: times in the unit of the time given, concentrations
in the unit of those given, AUC in their product, CL in L per time unit (per kg or per m2
when the dose is per body weight or surface area), Vz in L.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pint

from ..errors import UnitError, ValidationError
from ..units import dimension_text, format_unit, parse_quantity, ureg
from .nca_results import (
    CONCENTRATIONS,
    KINDS,
    IntervalNCA,
    NCADose,
    NCAResult,
    ProfileNCA,
    is_concentration,
)
from .nca_rules import auc_segments, best_fit_lambda_z

# the result types are defined in nca_results and offered here with the functions
__all__ = ["KINDS", "IntervalNCA", "NCADose", "NCAResult", "ProfileNCA", "is_concentration",
           "nca", "nca_profile"]


# ---- one profile -----------------------------------------------------------------------------
@dataclass(frozen=True)
class _Piece:
    """The samples from one dose to the next (or to the end) with their boundary values.

    ``t``, ``c``: points in time order including derived boundary values; ``observed``:
    which are samples; ``has_start``, ``has_end``: the value at the dose and at the next
    dose are known (else ``reason`` says what is missing); ``note``: an assumption made.
    """

    start: float
    end: float | None
    t: np.ndarray
    c: np.ndarray
    observed: np.ndarray
    has_start: bool
    has_end: bool
    reason: str = ""
    c0: float = math.nan
    note: str = ""


def _same(a, b) -> np.ndarray:
    # dose times computed in days and converted may differ from a file's times in the last bit
    return np.isclose(a, b, rtol=1e-9, atol=1e-12)


def _piece(t, c, pre, dose_t: float, kind: str | None, next_t: float | None,
           next_kind: str | None, first: bool, tu: str, cu: str) -> _Piece:
    at_start = _same(t, dose_t)
    inside = (t > dose_t) & ~at_start
    if next_t is not None:
        at_end = _same(t, next_t)
        inside &= (t < next_t) & ~at_end
    ti, ci = t[inside], c[inside]
    pts_t, pts_c, obs = [], [], []
    has_start, note, c0 = False, "", math.nan
    reason = ""
    where = f"the dose at {dose_t:g} {tu}"
    if kind == "bolus":
        post = np.flatnonzero(at_start & ~pre)
        if post.size:
            pts_t.append(dose_t)
            pts_c.append(c[post[0]])
            obs.append(True)
            has_start, c0 = True, float(c[post[0]])
        elif ti.size >= 2:
            c1, c2 = ci[0], ci[1]
            if c1 > c2 > 0 and ti[1] > ti[0]:
                c0 = float(c1 * math.exp(math.log(c1 / c2) / (ti[1] - ti[0]) * (ti[0] - dose_t)))
                note = (f"C0 at {where} back-extrapolated from the samples at {ti[0]:g} and "
                        f"{ti[1]:g} {tu}")
            else:
                c0 = float(c1)
                note = (f"C0 at {where}: the first two samples after it do not fall; the first "
                        f"({c1:g} {cu}) is used")
            pts_t.append(dose_t)
            pts_c.append(c0)
            obs.append(False)
            has_start = True
        else:
            reason = (f"no sample at {where} (an IV bolus needs one just after it, or two after "
                      "it to back-extrapolate C0)")
    else:
        here = np.flatnonzero(at_start)
        if here.size:
            # continuous at the dose: the value before it starts the interval, and any
            # sample taken after it at the same time is the same concentration
            for i in here:
                pts_t.append(dose_t)
                pts_c.append(c[i])
                obs.append(True)
            has_start = True
        elif first and not (t < dose_t).any():
            pts_t.append(dose_t)
            pts_c.append(0.0)
            obs.append(False)
            has_start = True
            note = f"C = 0 assumed at {where} (no sample before it)"
        elif kind is not None:
            reason = f"no sample at {where}"
    pts_t += ti.tolist()
    pts_c += ci.tolist()
    obs += [True] * ti.size
    has_end = next_t is None
    if next_t is not None:
        ends = np.flatnonzero(at_end & pre) if next_kind == "bolus" else np.flatnonzero(at_end)
        if ends.size:
            pts_t.append(next_t)
            pts_c.append(c[ends[0]])
            obs.append(True)
            has_end = True
        elif not reason:
            reason = f"no sample at the next dose ({next_t:g} {tu}), where the interval ends"
    return _Piece(dose_t, next_t, np.array(pts_t, dtype=float), np.array(pts_c, dtype=float),
                  np.array(obs, dtype=bool), has_start, has_end, reason, c0, note)


def _q(value, unit) -> pint.Quantity:
    return ureg.Quantity(float(value), unit)


def _nan(unit) -> pint.Quantity:
    return ureg.Quantity(math.nan, unit)


def _as_array(q, what: str, dims: Sequence, expected: str) -> tuple[np.ndarray, pint.Unit]:
    if not isinstance(q, pint.Quantity):
        raise UnitError(f"NCA: {what} must be a Quantity array with a unit, got "
                        f"{type(q).__name__}")
    if q.dimensionality not in dims:
        raise UnitError(f"NCA: {what} are in {format_unit(q.units) or 'dimensionless'} "
                        f"({dimension_text(q.dimensionality)}); expected {expected}")
    values = np.atleast_1d(np.asarray(q.magnitude, dtype=float))
    if values.ndim != 1:
        raise ValidationError(f"NCA: {what} must be one-dimensional")
    if not np.all(np.isfinite(values)):
        raise ValidationError(f"NCA: {what} must be finite numbers")
    return values, q.units


def _dose_units(total: pint.Quantity, auc_unit, time_unit) -> tuple:
    """Units for CL and Vz from the dose: L per time unit, per kg or m2 for a dose per
    body size; None when the dose and the concentrations do not meet (mass vs moles)."""
    probe = (1 * total.units) / (1 * auc_unit)
    per = f"1/{time_unit}"
    for extra in ("", "/kg", "/m**2"):
        cl = ureg.Unit(f"L*{per}{extra}")
        if probe.dimensionality == (1 * cl).dimensionality:
            return cl, ureg.Unit(f"L{extra}")
    return None, None


def nca_profile(time: pint.Quantity, conc: pint.Quantity, doses: Sequence[NCADose] = (), *,
                before_dose: Sequence[bool] | None = None) -> ProfileNCA:
    """NCA of a profile with any number of doses: the whole profile and each interval.

    Parameters
    ----------
    time, conc
        Sample times (any time unit) and concentrations (mass or amount per volume), in
        time order.
    doses
        The doses (:class:`NCADose`), on the same clock as ``time``.  Without doses the
        profile is analysed from its first sample and nothing dose-based is reported.
    before_dose
        For each sample, True if it was taken before a dose given at the same time (a
        trough); default False (a sample at a dose time follows the dose).

    Returns
    -------
    ProfileNCA
        ``whole`` (times from the first dose) and ``intervals``.
    """
    t, tu = _as_array(time, "times", [ureg.s.dimensionality], "a time")
    c, cu = _as_array(conc, "concentrations", CONCENTRATIONS,
                      "a concentration (mass or amount per volume, e.g. mg/L or nM)")
    if t.size != c.size:
        raise ValidationError(f"NCA: {t.size} times but {c.size} concentrations")
    if t.size == 0:
        raise ValidationError("NCA: no samples")
    if np.any(np.diff(t) < 0):
        raise ValidationError("NCA: times must be in increasing order")
    pre = np.zeros(t.size, dtype=bool) if before_dose is None else \
        np.asarray(before_dose, dtype=bool)
    if pre.shape != t.shape:
        raise ValidationError("NCA: before_dose needs one entry per sample")
    doses = sorted(doses, key=lambda d: d.time.to(tu).magnitude)
    for d in doses:
        if not isinstance(d, NCADose):
            raise ValidationError(f"NCA: doses must be NCADose objects, got {d!r}")
    dose_t = [float(d.time.to(tu).magnitude) for d in doses]
    notes: list[str] = []
    origin = dose_t[0] if doses else float(t[0])
    before_first = int(np.sum((t < origin) & ~_same(t, origin)))
    if before_first:
        notes.append(f"{before_first} sample{'s' * (before_first != 1)} before the first dose "
                     "not used")
    tus, cus = format_unit(tu), format_unit(cu)
    kinds = [d.kind for d in doses] or [None]
    starts = dose_t or [origin]
    pieces = [_piece(t, c, pre, a, kinds[k], starts[k + 1] if k + 1 < len(starts) else None,
                     kinds[k + 1] if k + 1 < len(starts) else None, k == 0, tus, cus)
              for k, a in enumerate(starts)]
    piece_notes = [p.note for p in pieces if p.note]
    notes += piece_notes[:2]
    if len(piece_notes) > 2:  # one per dose would bury the other notes
        notes.append(f"and {len(piece_notes) - 2} more doses alike")
    whole = _whole(pieces, t, c, doses, origin, tu, cu, notes)
    intervals = tuple(_interval(k, p, pieces, doses, origin, tu, cu)
                      for k, p in enumerate(pieces)) if doses else ()
    return ProfileNCA(whole, intervals, _q(origin, tu))


def _whole(pieces, t, c, doses, origin, tu, cu, notes) -> NCAResult:
    auc_u, time_u = cu * tu, tu
    used = (t > origin) | _same(t, origin)
    n_samples = int(used.sum())
    # Clast, Tlast: the last positive sample (a fact of the data, whatever else is missing)
    positive = np.flatnonzero(used & (c > 0))
    clast = _q(c[positive[-1]], cu) if positive.size else _nan(cu)
    tlast_abs = float(t[positive[-1]]) if positive.size else math.nan
    tlast = _q(tlast_abs - origin, tu)
    if not positive.size:
        notes.append("no positive concentration after the first dose")
    broken = next((p.reason for k, p in enumerate(pieces)
                   if not p.has_start or (not p.has_end and k + 1 < len(pieces))), "")
    if broken:
        notes.append(f"AUC, Cmax not computable: {broken}")
    # the profile as one series: pieces joined (duplicate times at dose boundaries integrate to
    # nothing); derived points (C0, a 0 at the first dose) take part in the areas only
    tt = np.concatenate([p.t for p in pieces]) - origin
    cc = np.concatenate([p.c for p in pieces])
    oo = np.concatenate([p.observed for p in pieces])
    cmax = tmax = None
    auclast = aumclast = math.nan
    if not broken and positive.size:
        keep = tt <= tlast_abs - origin + 1e-12 * max(1.0, abs(tlast_abs))
        auc, aumc = auc_segments(tt[keep], cc[keep])
        auclast, aumclast = float(auc.sum()), float(aumc.sum())
        obs_c = np.where(oo, cc, -np.inf)
        i = int(np.argmax(obs_c))
        cmax, tmax = _q(cc[i], cu), _q(tt[i], tu)
    elif not broken:
        # no drug seen: the areas and the peak are 0 (a run without the drug, a placebo)
        auclast = aumclast = 0.0
        cmax = _q(0.0, cu)
    # terminal phase: samples of the last piece after its largest sample
    last = pieces[-1]
    lt, lc = last.t[last.observed], last.c[last.observed]
    fit, why = None, "lambda_z not estimable: no sample after the last dose"
    if lt.size:
        after = np.arange(lt.size) > int(np.argmax(lc))
        take = after & (lc > 0)
        fit, why = best_fit_lambda_z(lt[take], lc[take])
    if fit is None:
        notes.append(why)
    lam = fit.lambda_z if fit else math.nan
    c_last = clast.magnitude
    aucinf = auclast + c_last / lam if fit else math.nan
    t_last = tlast.magnitude
    aumcinf = aumclast + c_last * t_last / lam + c_last / lam ** 2 if fit else math.nan
    pct = 100 * (c_last / lam) / aucinf if fit and aucinf > 0 else math.nan
    mrt = math.nan
    if len(doses) == 1 and math.isfinite(aucinf) and aucinf > 0:
        mrt = aumcinf / aucinf
        if doses[0].kind == "infusion" and doses[0].duration is not None:
            mrt -= doses[0].duration.to(tu).magnitude / 2
    c0 = pieces[0].c0 if doses and doses[0].kind == "bolus" else math.nan
    total, extravascular, cl, vz = _clearance(doses, aucinf, lam, auc_u, tu, notes)
    return NCAResult(
        cmax=cmax if cmax is not None else _nan(cu),
        tmax=tmax if tmax is not None else _nan(tu), clast=clast, tlast=tlast,
        auclast=_q(auclast, auc_u), aumclast=_q(aumclast, auc_u * time_u),
        lambda_z=_q(lam, 1 / tu), lambda_z_points=fit.points if fit else 0,
        lambda_z_adj_r2=fit.adj_r2 if fit else math.nan,
        lambda_z_range=(_q(fit.first - origin, tu), _q(fit.last - origin, tu)) if fit else
        (_nan(tu), _nan(tu)),
        half_life=_q(math.log(2) / lam, tu), aucinf=_q(aucinf, auc_u),
        auc_pct_extrapolated=_q(pct, ureg.percent),
        aumcinf=_q(aumcinf, auc_u * time_u), mrt=_q(mrt, tu), c0=_q(c0, cu), cl=cl, vz=vz,
        dose=total, extravascular=extravascular, n_samples=n_samples, n_doses=len(doses),
        notes=tuple(dict.fromkeys(notes)))


def _clearance(doses, aucinf, lam, auc_u, tu, notes):
    """Total dose, extravascular or not, CL and Vz (NaN with a note when not possible)."""
    fallback = ureg.Unit(f"L/{tu}"), ureg.L
    if not doses:
        notes.append("CL, Vz: no dose")
        return None, False, _nan(fallback[0]), _nan(fallback[1])
    extravascular = all(d.kind == "extravascular" for d in doses)
    mixed = not extravascular and any(d.kind == "extravascular" for d in doses)
    amounts = [d.amount for d in doses]
    total = None
    if all(a is not None for a in amounts):
        try:
            total = sum(amounts[1:], amounts[0].to(amounts[0].units))
        except pint.DimensionalityError:
            notes.append("CL, Vz: the doses are in units that do not add up ("
                         f"{', '.join(sorted({format_unit(a.units) for a in amounts}))})")
            return None, extravascular, _nan(fallback[0]), _nan(fallback[1])
    if total is None:
        notes.append("CL, Vz: the dose amount is not known")
        return None, extravascular, _nan(fallback[0]), _nan(fallback[1])
    cl_u, vz_u = _dose_units(total, auc_u, tu)
    if cl_u is None:
        notes.append(f"CL, Vz: the dose is in {format_unit(total.units)} and the "
                     f"concentrations in {format_unit(auc_u / tu)}: give both as mass or both "
                     "as amount of substance")
        return total, extravascular, _nan(fallback[0]), _nan(fallback[1])
    if mixed:
        notes.append("CL, Vz: doses both intravascular and extravascular; no single CL")
        return total, extravascular, _nan(cl_u), _nan(vz_u)
    if not math.isfinite(aucinf) or aucinf <= 0:
        return total, extravascular, _nan(cl_u), _nan(vz_u)
    auc = ureg.Quantity(aucinf, auc_u)
    cl = (total / auc).to(cl_u)
    vz = (total / (auc * ureg.Quantity(lam, 1 / tu))).to(vz_u)
    return total, extravascular, cl, vz


def _interval(k, piece, pieces, doses, origin, tu, cu) -> IntervalNCA:
    auc_u = cu * tu
    dose = doses[k]
    start = piece.start
    notes = []
    to_end = piece.end is None
    t, c, obs = piece.t, piece.c, piece.observed
    if piece.end is not None:
        tau = piece.end - start
    else:
        # the last dose: one more interval as long as the one before, if sampled at its end
        tau = pieces[k - 1].end - pieces[k - 1].start if k > 0 else math.nan
        end = start + tau
        hit = np.flatnonzero(_same(t, end))
        if math.isfinite(tau) and hit.size:
            keep = np.arange(t.size) <= hit[0]
            t, c, obs = t[keep], c[keep], obs[keep]
            to_end = False
        else:
            tau = (t[-1] - start) if t.size else math.nan
    ok = piece.has_start and (piece.has_end or piece.end is None) and t.size >= 2
    if not ok:
        notes.append(piece.reason or "fewer than 2 values in the interval")
    n_obs = int(obs.sum())
    nan_c, nan_t, nan_a = _nan(cu), _nan(tu), _nan(auc_u)
    if not ok:
        return IntervalNCA(k + 1, _q(start - origin, tu), _q(tau, tu), to_end, dose.amount,
                           nan_c, nan_t, nan_c, nan_c, nan_a, nan_c, n_obs, tuple(notes))
    auc = float(auc_segments(t, c)[0].sum())
    oc = np.where(obs, c, np.nan)
    i = int(np.nanargmax(oc))
    cmin = float(np.nanmin(oc))
    ctrough = float(c[-1]) if not to_end else math.nan
    if to_end:
        notes.append("last interval: to the last sample")
    cavg = auc / tau if tau > 0 and not to_end else math.nan
    return IntervalNCA(k + 1, _q(start - origin, tu), _q(tau, tu), to_end, dose.amount,
                       _q(c[i], cu), _q(t[i] - start, tu), _q(cmin, cu), _q(ctrough, cu),
                       _q(auc, auc_u), _q(cavg, cu), n_obs, tuple(notes))


def nca(time: pint.Quantity, conc: pint.Quantity, *, dose=None, kind: str = "extravascular",
        duration=None) -> NCAResult:
    """NCA of a single-dose profile, the dose given at time 0.

    Parameters
    ----------
    time, conc
        Sample times since the dose and concentrations, as Quantity arrays.
    dose
        The nominal dose (``"100 mg"`` or a Quantity), for CL and Vz; None for none.
    kind
        ``"bolus"`` (IV bolus), ``"infusion"`` (IV, give ``duration``) or
        ``"extravascular"`` (CL/F and Vz/F).
    duration
        Infusion time (Quantity or text).

    Examples
    --------
    >>> import numpy as np
    >>> t = ureg.Quantity(np.arange(0.0, 25.0), "h")
    >>> r = nca(t, ureg.Quantity(10 * np.exp(-0.1 * t.magnitude), "mg/L"), dose="100 mg",
    ...         kind="bolus")
    >>> round(r.half_life.magnitude, 4), round(r.cl.to("L/h").magnitude, 4)
    (6.9315, 1.0)
    """
    amount = parse_quantity(dose, what="dose") if dose is not None else None
    span = parse_quantity(duration, what="infusion duration") if duration is not None else None
    # the dose sits at 0 on the samples' clock; a clock that is not a time fails below
    unit = time.units if isinstance(time, pint.Quantity) and \
        time.dimensionality == ureg.h.dimensionality else ureg.h
    return nca_profile(time, conc, [NCADose(ureg.Quantity(0.0, unit), amount, kind,
                                            span)]).whole

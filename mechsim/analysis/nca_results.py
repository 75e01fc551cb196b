"""What non-compartmental analysis takes and gives: the dose record (:class:`NCADose`) and
the frozen results (:class:`NCAResult` for a whole profile, :class:`IntervalNCA` per dosing
interval, :class:`ProfileNCA` for both), each with its table row.  The computation is in
:mod:`mechsim.analysis.nca`."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pint

from ..errors import UnitError, ValidationError
from ..units import format_quantity, ureg

__all__ = ["CONCENTRATIONS", "KINDS", "IntervalNCA", "NCADose", "NCAResult", "ProfileNCA",
           "is_concentration"]

#: How a dose enters: an IV bolus (jumps), an IV infusion, or extravascular (oral, sc, ...).
KINDS = ("bolus", "infusion", "extravascular")
#: The dimensions NCA accepts: mass or amount of substance per volume.
CONCENTRATIONS = ((ureg.g / ureg.L).dimensionality, (ureg.mol / ureg.L).dimensionality)


def is_concentration(unit) -> bool:
    """True for a mass or an amount of substance per volume (mg/L, nM)."""
    return (1 * ureg.Unit(unit)).dimensionality in CONCENTRATIONS


@dataclass(frozen=True)
class NCADose:
    """One dose as NCA sees it: when (a time Quantity on the profile's clock), how much
    (nominal: before bioavailability; None if unknown), how (:data:`KINDS`), and for an
    infusion how long."""

    time: pint.Quantity
    amount: pint.Quantity | None
    kind: str = "extravascular"
    duration: pint.Quantity | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValidationError(f"dose kind must be one of {', '.join(KINDS)}, got "
                                  f"{self.kind!r}")
        for name in ("time", "duration"):
            q = getattr(self, name)
            if q is not None and (not isinstance(q, pint.Quantity)
                                  or q.dimensionality != ureg.s.dimensionality):
                raise UnitError(f"dose {name} must be a time Quantity, got {q!r}")


@dataclass(frozen=True)
class NCAResult:
    """NCA of a whole profile (from the first dose).  Quantities; NaN where not estimable,
    with the reason in ``notes``.

    Attributes
    ----------
    cmax, tmax
        Largest sampled concentration and its first time (since the first dose).
    clast, tlast
        Last positive concentration and its time.
    auclast, aumclast
        Areas from the first dose to Tlast (linear-up/log-down).
    lambda_z, lambda_z_points, lambda_z_adj_r2, lambda_z_range
        Terminal rate constant, the number of points of its best fit, that fit's adjusted
        R^2, and the first and last time it used.
    half_life
        ``ln 2 / lambda_z``.
    aucinf, auc_pct_extrapolated, aumcinf
        Extrapolated to infinity from the observed Clast; the extrapolated share of AUCinf.
    mrt
        Mean residence time ``AUMCinf/AUCinf`` (minus half the infusion time), single dose
        only.
    c0
        Concentration at an IV bolus dose (sampled or back-extrapolated); NaN otherwise.
    cl, vz
        ``Dose/AUCinf`` and ``Dose/(lambda_z AUCinf)``; CL/F and Vz/F when ``extravascular``.
    dose
        The total nominal dose (None without doses).
    notes
        Why anything is NaN, and assumptions made (e.g. C = 0 before the first dose).
    """

    cmax: pint.Quantity
    tmax: pint.Quantity
    clast: pint.Quantity
    tlast: pint.Quantity
    auclast: pint.Quantity
    aumclast: pint.Quantity
    lambda_z: pint.Quantity
    lambda_z_points: int
    lambda_z_adj_r2: float
    lambda_z_range: tuple[pint.Quantity, pint.Quantity]
    half_life: pint.Quantity
    aucinf: pint.Quantity
    auc_pct_extrapolated: pint.Quantity
    aumcinf: pint.Quantity
    mrt: pint.Quantity
    c0: pint.Quantity
    cl: pint.Quantity
    vz: pint.Quantity
    dose: pint.Quantity | None
    extravascular: bool
    n_samples: int
    n_doses: int
    notes: tuple[str, ...] = ()

    @property
    def cl_label(self) -> str:
        return "CL/F" if self.extravascular else "CL"

    @property
    def vz_label(self) -> str:
        return "Vz/F" if self.extravascular else "Vz"

    def as_row(self) -> dict[str, object]:
        """Column label -> value (Quantity, number or text), in reporting order."""
        return {
            "samples": self.n_samples, "doses": self.n_doses,
            "Cmax": self.cmax, "Tmax": self.tmax, "Clast": self.clast, "Tlast": self.tlast,
            "AUClast": self.auclast, "lambda_z": self.lambda_z,
            "lambda_z_points": self.lambda_z_points,
            "lambda_z_adj_r2": self.lambda_z_adj_r2,
            "lambda_z_from": self.lambda_z_range[0], "lambda_z_to": self.lambda_z_range[1],
            "half_life": self.half_life, "AUCinf": self.aucinf,
            "AUC_pct_extrapolated": self.auc_pct_extrapolated, "AUMClast": self.aumclast,
            "AUMCinf": self.aumcinf, "MRT": self.mrt, "C0": self.c0, "dose": self.dose,
            self.cl_label: self.cl, self.vz_label: self.vz, "note": "; ".join(self.notes)}


@dataclass(frozen=True)
class IntervalNCA:
    """NCA of one dosing interval.  Times ``start`` (since the first dose) and ``tau`` (its
    length); ``tmax`` since this interval's dose.  ``to_end``: the last interval, cut at the
    last sample rather than a full tau (its AUC is to that sample).  NaN where the interval
    lacks the samples (``notes``)."""

    number: int
    start: pint.Quantity
    tau: pint.Quantity
    to_end: bool
    dose: pint.Quantity | None
    cmax: pint.Quantity
    tmax: pint.Quantity
    cmin: pint.Quantity
    ctrough: pint.Quantity
    auctau: pint.Quantity
    cavg: pint.Quantity
    n_samples: int
    notes: tuple[str, ...] = ()

    def as_row(self) -> dict[str, object]:
        return {"dose_number": self.number, "start": self.start, "tau": self.tau,
                "to_end": "yes" if self.to_end else "no", "dose": self.dose,
                "samples": self.n_samples, "Cmax": self.cmax, "Tmax": self.tmax,
                "Cmin": self.cmin, "Ctrough": self.ctrough, "AUCtau": self.auctau,
                "Cavg": self.cavg, "note": "; ".join(self.notes)}


@dataclass(frozen=True)
class ProfileNCA:
    """The whole profile's NCA, one :class:`IntervalNCA` per dose, and ``origin``: the time
    of the first dose on the clock of the samples (NCA times are counted from it)."""

    whole: NCAResult
    intervals: tuple[IntervalNCA, ...] = field(default=())
    origin: pint.Quantity | None = None

    def interval_at(self, time: pint.Quantity) -> IntervalNCA:
        """The interval whose dose is given at ``time`` (on the samples' clock)."""
        origin = self.origin if self.origin is not None else 0 * time
        for iv in self.intervals:
            a = (iv.start + origin).to(time.units).magnitude
            if math.isclose(a, time.magnitude, rel_tol=1e-9, abs_tol=1e-9):
                return iv
        doses = ", ".join(format_quantity((iv.start + origin).to(time.units))
                          for iv in self.intervals)
        raise ValidationError(f"no dose at {format_quantity(time)} (doses at: "
                              f"{doses or 'none'})")

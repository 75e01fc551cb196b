"""The package's single pint registry and the conversions at its edges.

Inside the solver every number is a plain float in a *coherent* unit system whose base units
are day, nmol, dm (so volumes are in litres, concentrations in nM) and g.  Because the system
is coherent, a dimensionally consistent formula evaluated on canonical magnitudes yields the
canonical magnitude of its result, with no hidden conversion factors.
"""

from __future__ import annotations

import re
import tokenize
from collections.abc import Iterable
from functools import cache

import numpy as np
import pint

from .errors import UnitError, ValidationError

__all__ = [
    "UNDECLARED",
    "Quantity",
    "as_days",
    "canonical_unit",
    "convertible",
    "dimension_text",
    "format_quantity",
    "is_undeclared",
    "parse_quantity",
    "parse_unit",
    "readable_unit",
    "split_output",
    "times_in_days",
    "to_canonical",
    "ureg",
]

ureg = pint.UnitRegistry(autoconvert_offset_to_baseunit=True)
# Cells and receptor sites are counts: dimensionless, but worth writing down.
ureg.define("cell = [] = cells")
ureg.define("site = [] = sites")
ureg.define("@alias week = wk = wks")
# A value whose unit its source does not declare (most published SBML models leave units
# out): a base dimension of its own, so that it never cancels or converts, which the
# dimension checks accept anywhere (see is_undeclared and docs/sbml.md).  Its canonical unit
# is itself: the number is used as written.
ureg.define("undeclared = [undeclared]")
Quantity = ureg.Quantity
pint.set_application_registry(ureg)

# Base unit chosen for each of pint's base dimensions (the solver's coherent system).
CANONICAL_BASE = {
    "[time]": ureg.day,
    "[substance]": ureg.nmol,
    "[length]": ureg.dm,
    "[mass]": ureg.g,
    "[current]": ureg.A,
    "[temperature]": ureg.K,
    "[luminosity]": ureg.cd,
    "[undeclared]": ureg.undeclared,
}

#: The dimension of values whose unit is not declared (see ``undeclared`` above)
UNDECLARED = "[undeclared]"


def is_undeclared(q) -> bool:
    """True if ``q`` (a Quantity, Unit or dimensionality) involves a value of undeclared
    unit: dimension checks skip it."""
    return UNDECLARED in (q.dimensionality if hasattr(q, "dimensionality") else q)

# Units are written by people: accept µ and μ, and "uM" style prefixes pint already knows.
_MICRO = re.compile("[µμ]")
_LITRE = re.compile(r"\b([munpfdc]?)l\b")
# Doses per body surface area are written "mg/m2" in the clinic; pint reads "m**2".
_AREA_WRITTEN = re.compile(r"(?<![A-Za-z])([kcm]?m)2\b")
_AREA_PINT = re.compile(r"(?<![A-Za-z])([kcm]?m)\*\*2\b")


#: What pint raises for text it cannot read: its own errors (UndefinedUnitError is also an
#: AttributeError), and from its tokenizer and parser TokenError, AssertionError (a
#: dangling operator: "mg/"), ValueError ("") and ZeroDivisionError ("1/0 L").  Anything else
#: is a bug and keeps its traceback.
_PINT_TEXT_ERRORS = (pint.PintError, AttributeError, tokenize.TokenError, AssertionError,
                     ValueError, ArithmeticError, TypeError, SyntaxError)


def _clean(text: str) -> str:
    return _AREA_WRITTEN.sub(r"\1**2", _MICRO.sub("u", text.strip()))


def parse_quantity(text: str | float | int | pint.Quantity, *, what: str = "value",
                   where: str | None = None) -> pint.Quantity:
    """Read ``"10 mg/kg"``, ``"1.2 nM"`` or a bare number into a pint Quantity.

    Raises :class:`UnitError` naming ``what`` and ``where`` when the text is not one
    quantity (an array of values is refused too: give one value).
    """
    if isinstance(text, pint.Quantity):
        shape = np.shape(text.magnitude)
        if shape != ():
            raise UnitError(f"{what} must be a single value, got an array of shape {shape} "
                            "(for one value per run, use simulate_many(parameters=...))",
                            where)
        if not isinstance(text.magnitude, (int, float, np.integer, np.floating, np.ndarray)):
            raise UnitError(f"{what} must be a real number with a unit, got {text!r}", where)
        return text
    if isinstance(text, (bool, np.bool_)):
        raise UnitError(f"{what} must be a quantity, got {text!r}", where)
    if isinstance(text, (int, float, np.integer, np.floating)):
        return Quantity(float(text), ureg.dimensionless)
    if not isinstance(text, str):
        raise UnitError(f"{what} must be a quantity such as '10 mg', got {text!r}", where)
    try:
        q = ureg.Quantity(_clean(text))
    except _PINT_TEXT_ERRORS as exc:
        raise UnitError(f"{what}: cannot read {text!r} as a quantity ({_short(exc)})",
                        where) from None
    if not isinstance(q, pint.Quantity):
        q = Quantity(float(q), ureg.dimensionless)
    return q


def parse_unit(text: str, *, what: str = "unit", where: str | None = None) -> pint.Unit:
    """Read a unit such as ``"nM"`` or ``"1/day"``; ``""``, ``"1"`` and ``"dimensionless"``
    all mean dimensionless."""
    if not isinstance(text, str):
        raise UnitError(f"{what} must be a unit name such as 'nM', got {text!r}", where)
    if text.strip() in ("", "1", "dimensionless"):
        return ureg.dimensionless
    try:
        q = ureg.Quantity(_clean(text))
    except _PINT_TEXT_ERRORS as exc:
        raise UnitError(f"{what}: unknown unit {text!r} ({_short(exc)})", where) from None
    if not isinstance(q, pint.Quantity) or q.magnitude != 1:
        raise UnitError(f"{what}: {text!r} is not a unit (it has a number in it)", where)
    return q.units


def _short(exc: Exception) -> str:
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


@cache
def _canonical_for(dims: tuple) -> pint.Unit:
    unit = ureg.dimensionless
    for name, power in dims:
        unit = unit * CANONICAL_BASE[name] ** power
    return unit


def canonical_unit(q: pint.Quantity | pint.Unit) -> pint.Unit:
    """The coherent canonical unit with the dimension of ``q``."""
    dims = q.dimensionality
    return _canonical_for(tuple(sorted(dims.items())))


def to_canonical(q: pint.Quantity) -> float:
    """Magnitude of ``q`` in its canonical unit (plain float for the solver)."""
    return float(q.to(canonical_unit(q)).magnitude)


def dimension_text(dims) -> str:
    """Readable dimension, e.g. ``[substance] / [time]``; ``dimensionless`` for none."""
    text = str(dims)
    return "dimensionless" if text in ("", "dimensionless") else text


def format_quantity(q: pint.Quantity) -> str:
    """Compact text that :func:`parse_quantity` reads back: ``'10 mg/kg'``."""
    mag = float(q.magnitude)
    mag_text = str(int(mag)) if mag.is_integer() and abs(mag) < 1e15 else repr(mag)
    unit = format_unit(q.units)
    return mag_text if unit == "" else f"{mag_text} {unit}"


def format_unit(u: pint.Unit) -> str:
    """Compact unit text without spaces (``'mg/kg'``, ``'1/d'``); empty if dimensionless."""
    if u == ureg.dimensionless:
        return ""
    # pint's symbol for litre is "l"; pharmacologists write "L" (and "mL", "uL").
    return _AREA_PINT.sub(r"\g<1>2", _LITRE.sub(r"\1L", f"{u:~C}".replace("µ", "u")))


def as_days(value, what: str) -> float:
    """A time given as a Quantity or text (``"52 weeks"``) in days; bare numbers rejected."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UnitError(f"`{what}` must be a time with a unit (e.g. '{value} day'), "
                        f"got {value!r}")
    q = parse_quantity(value, what=f"`{what}`")
    if q.dimensionality != ureg.day.dimensionality:
        raise UnitError(f"`{what}` must be a time, got {value!r} "
                        f"({dimension_text(q.dimensionality)})")
    days = to_canonical(q)
    if not np.isfinite(days):
        raise ValidationError(f"`{what}` must be a finite time, got {value!r}")
    return days


def times_in_days(values, what: str) -> np.ndarray:
    """Times (a Quantity array, a text, or a sequence of texts/Quantities) in days."""
    if isinstance(values, pint.Quantity):
        if values.dimensionality != ureg.day.dimensionality:
            raise UnitError(f"`{what}` must be times, got {dimension_text(values.dimensionality)}")
        days = np.atleast_1d(values.to(ureg.day).magnitude).astype(float)
    elif isinstance(values, str):
        days = np.array([as_days(values, what)])
    else:
        days = np.array([as_days(v, what) for v in values], dtype=float)
    if not np.all(np.isfinite(days)):
        raise ValidationError(f"`{what}` must be finite times")
    return days


# ---- units a person would write -----------------------------------------------------------
#: The unit pharmacologists write for the common kinds of derived quantity; ``{t}`` is the
#: time unit the expression itself uses (day when it uses none or several).
_PREFERRED = {
    "mass/volume": "mg/L", "substance/volume": "nM", "substance": "nmol", "mass": "mg",
    "volume": "L", "time": "{t}", "1/time": "1/{t}", "volume/time": "L/{t}",
    "substance/time": "nmol/{t}", "mass/time": "mg/{t}", "substance/volume/time": "nM/{t}",
    "mass/volume/time": "mg/L/{t}", "mass*time/volume": "mg*{t}/L",
    "substance*time/volume": "nM*{t}", "volume/substance": "1/nM", "mass/substance": "kg/mol",
    "area": "m**2", "dimensionless": "dimensionless",
}
_TIME_WORDS = ("second", "minute", "hour", "day", "week")


@cache
def _preferred_by_dimension() -> dict:
    out = {}
    for text in _PREFERRED.values():
        probe = ureg.Quantity(1.0, text.replace("{t}", "day"))
        out[probe.dimensionality] = text
    return out


def _is_simple(unit: pint.Unit) -> bool:
    """At most one unit above and one below the line, of different kinds: ``nM``,
    ``L/h``, ``1/day``, ``m**2``; not ``g*nM/mol`` or ``nM/M/s``."""
    items = dict(unit._units)
    above = [u for u, e in items.items() if e > 0]
    below = [u for u, e in items.items() if e < 0]
    if len(above) > 1 or len(below) > 1:
        return False
    if above and below:
        return ureg.Unit(above[0]).dimensionality != ureg.Unit(below[0]).dimensionality
    return True


def readable_unit(unit: pint.Unit, hints: Iterable = ()) -> tuple[pint.Unit, bool]:
    """The unit a person would write for a quantity inferred in ``unit`` (a product of the
    units of the names in an expression, which are ``hints``), and whether it could be made
    simple (at most one unit above the line and one below).

    A simple unit written in the model (one of the ``hints``) is kept as it is (``L/h``,
    ``nM``); any other becomes the unit written for its kind of quantity (``C*MW`` in
    ``nM*kg/mol`` is ``mg/L``, ``KD*kon`` in ``nM/M/s`` is ``1/s``: the time unit is the one
    the expression's own units use, ``koff/kon`` is ``nM``, not ``M``).  A kind without a
    usual unit is written in nmol, mg, L and that time unit (``L*nM/day**2`` is
    ``nmol/day**2``); if that is still compound it is returned as it is, with False.
    """
    hints = [ureg.Unit(u) for u in hints]
    if _is_simple(unit) and unit in hints:
        return unit, True
    times = {name for u in hints for name in dict(u._units)
             if ureg.Unit(name).dimensionality == ureg.day.dimensionality}
    words = [w for w in _TIME_WORDS if w in times]
    t = words[0] if len(words) == 1 else "day"
    dims = ureg.Quantity(1.0, unit).dimensionality
    text = _preferred_by_dimension().get(dims)
    if text is not None:
        return ureg.Unit(text.replace("{t}", t)), True
    if _is_simple(unit):
        return unit, True
    composed = _composed(dims, t)
    return (composed, True) if _is_simple(composed) else (unit, False)


#: the unit each base dimension is written in when a derived unit has no usual name
_BASE_WRITTEN = {"[substance]": "nmol", "[mass]": "mg"}


def _composed(dims, time_unit: str) -> pint.Unit:
    """A unit of dimension ``dims`` made of nmol, mg, L (m for lengths that are not
    volumes) and ``time_unit``."""
    unit = ureg.dimensionless
    for dim, exponent in dict(dims).items():
        if dim == "[length]" and float(exponent / 3).is_integer():
            unit = unit * ureg.L ** (exponent / 3)
        elif dim == "[length]":
            unit = unit * ureg.m ** exponent
        elif dim == "[time]":
            unit = unit * ureg.Unit(time_unit) ** exponent
        else:
            unit = unit * ureg.Unit(_BASE_WRITTEN.get(dim, str(CANONICAL_BASE[dim]))) ** exponent
    return unit


_OUTPUT = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*(?:\[(.*)\])?\s*")


def split_output(text: str) -> tuple[str, pint.Unit | None]:
    """``"C_mass[ng/mL]"`` -> (``"C_mass"``, ng/mL); ``"C_mass"`` -> (``"C_mass"``, None).

    The unit asks for an output in that unit; whether it fits the output is checked by the
    caller, which knows the output's own unit (see :func:`convertible`)."""
    match = _OUTPUT.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise ValidationError(f"cannot read the output {text!r}: expected a name, optionally "
                              "with a unit in brackets, e.g. C_mass or C_mass[ng/mL]")
    name, unit = match.groups()
    if unit is None:
        return name, None
    if not unit.strip():
        raise ValidationError(f"output {text!r}: the brackets hold no unit (e.g. "
                              f"{name}[ng/mL])")
    return name, parse_unit(unit.strip(), what=f"output {name} unit")


def convertible(name: str, unit: pint.Unit, wanted: pint.Unit | None) -> pint.Unit:
    """``wanted`` if an output of ``unit`` can be shown in it (else a UnitError that says
    what the output is), or ``unit`` when nothing was asked for."""
    if wanted is None:
        return unit
    if (1 * wanted).dimensionality != (1 * unit).dimensionality:
        raise UnitError(f"output {name} is in {format_unit(unit) or 'dimensionless units'} "
                        f"({dimension_text((1 * unit).dimensionality)}); it cannot be shown "
                        f"in {format_unit(wanted) or 'dimensionless units'}")
    return wanted

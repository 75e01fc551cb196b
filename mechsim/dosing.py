"""Dosing regimens: frozen dose objects, a one-line text grammar, and the list of administrations.

A regimen is written on one line.  Keywords are case-insensitive; unit symbols keep their case
(``nM`` is not ``nm``); routes are folded to lower case.  Nothing in the text is ever evaluated::

    regimen  := "none" | sequence (";" sequence)*        ';' runs sequences in parallel
    sequence := block ("then" block)*                    'then' starts when the previous span ends
    block    := "wait" TIME
              | dose [infusion] [timing]
              | [infusion] timing                        after 'then': reuse the previous dose
    dose     := NUMBER UNIT ROUTE                        10 mg/kg iv | 4 mg oral | 100 nmol sc
    infusion := "over" TIME | "at" NUMBER UNIT           over 1 h | at 100 mg/h (a rate)
    timing   := repeat ["x" INT | "for" TIME]            every 7 days x 4 | BID x 14 | QW for 1 year
              | [FREQ] "on days" DAYLIST [cycles]        on day 1 | BID on days 1-5 of 7-day cycles
              | "at" TIME                                at 12 h (one dose, offset from block start)
    repeat   := "every" TIME | FREQ
    cycles   := "of" INT["-"]"day cycle(s)" ["x" INT]
    FREQ     := a word of FREQUENCIES (QD, daily, BID, twice daily, TID, QID, QW, weekly, QOD,
                every other day, every other week, ...) | Q<N>H | Q<N>D | Q<N>W
    DAYLIST  := ITEM ("," ITEM)*     ITEM := INT | INT "-" INT      1,8,15,22 | 1-21

``at`` followed by a time is a timing, followed by amount/time it is an infusion rate.  ``x4``
and ``x 4``, ``28-day``/``28 day`` and ``cycle``/``cycles`` are all accepted; ``wk`` means week.
After ``then`` an omitted dose reuses the previous dose of the same sequence (with its infusion,
unless a new ``over``/``at`` is given).

A frequency word means an exact interval (BID every 12 h, QW every 7 days, Q3W every 21 days)
and is kept as written, so ``str()`` gives ``100 mg oral BID x 14`` back; equality compares the
written form (``BID`` is not ``every 12 h``, as ``every 7 d`` is not ``every 1 week``).  Before
``on days`` it gives that many doses on each listed day (BID: at the start and 12 h later).
Routes are the model's; a clinical synonym (``po`` for ``oral``, :data:`ROUTE_SYNONYMS`) is
resolved when the regimen meets the model, in :meth:`mechsim.compile.CompiledModel.route`.

Spans (how long a block lasts before the next one starts): ``every T x N`` spans N*T,
``every T for D`` spans D (doses at k*T strictly before D), cycles span count*cycle length
(cycle day 1 is the block start), a day list without cycles (``on days 1,8,15``) spans through
its last day, ``at T`` spans T, a bare dose spans 0, ``wait D`` spans D.
Without ``x``/``for`` a block repeats forever and nothing may follow it with ``then``.
Cycle days must be listed in increasing order without repeats; anything else is rejected
(a repeated or unsorted day is more likely a typo than a wish).

Examples::

    10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycles x 1 then on days 1,15 of 28-day cycles
    4 mg oral on days 1-21 of 28-day cycles; 40 mg oral on days 1,8,15,22 of 28-day cycles
    100 mg iv every 7 days x 3 then wait 14 days then 50 mg iv at 25 mg/h every 14 days x 2
    10 mg/kg iv over 1 h QW x 8 then Q2W
    1250 mg/m2 po BID on days 1-14 of 21-day cycles
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields
from fractions import Fraction
from itertools import count, groupby, pairwise
from typing import NamedTuple

import pint

from .errors import RegimenError, UnitError
from .units import (
    Quantity,
    dimension_text,
    format_quantity,
    parse_quantity,
    parse_unit,
    to_canonical,
    ureg,
)

__all__ = ["FREQUENCIES", "ROUTE_SYNONYMS", "Administration", "Block", "Cycles", "Dose", "Every",
           "Once", "Regimen", "Wait", "reserved_word", "route_synonyms"]

_TIME, _MASS, _SUBSTANCE = (ureg.day.dimensionality, ureg.gram.dimensionality,
                            ureg.mol.dimensionality)
_AREA = (ureg.m ** 2).dimensionality
# Structural words: never a unit or a route, so blocks can be cut apart without ambiguity.
_KEYWORDS = frozenset({"none", "wait", "then", "over", "at", "every", "for", "x", "on", "of"})
_ROUTE = re.compile(r"[a-z_][a-z0-9_]*")

#: Frequency words as prescriptions write them, each an exact dosing interval (magnitude,
#: unit).  The keys are the spelling ``str()`` writes back (abbreviations in capitals, words in
#: lower case); reading folds case.  ``Q<N>H``, ``Q<N>D`` and ``Q<N>W`` (every N hours, days,
#: weeks) come on top.
FREQUENCIES: dict[str, tuple[int, str]] = {
    "QD": (1, "d"), "daily": (1, "d"), "once daily": (1, "d"),
    "BID": (12, "h"), "twice daily": (12, "h"),
    "TID": (8, "h"), "three times daily": (8, "h"),
    "QID": (6, "h"), "four times daily": (6, "h"),
    "QW": (1, "week"), "weekly": (1, "week"),
    "QOD": (2, "d"), "every other day": (2, "d"), "every other week": (2, "week"),
}
_FREQUENCY_NAMES = {name.lower(): name for name in FREQUENCIES}
# longest first, so 'every other day' is tried before a plain 'every TIME'
_FREQUENCY_PHRASES = sorted((tuple(low.split()) for low in _FREQUENCY_NAMES), key=len,
                            reverse=True)
_Q_FORM = re.compile(r"q(\d+)([hdw]?)", re.IGNORECASE)  # unit letter optional: 'q24' is reported
_Q_UNITS = {"h": "h", "d": "d", "w": "week"}
# Words a frequency starts with; reserved so that no route can take their name.
_FREQUENCY_STARTS = frozenset(phrase[0] for phrase in _FREQUENCY_PHRASES)

#: Names of one route of administration that clinicians use interchangeably.  A model's
#: ``[routes]`` name one of them; a dose written with another finds it (``po`` doses a model's
#: ``oral`` route) when the model has no route of the written name itself.  'sq' and 'subq'
#: are left out: they are on the ISMP list of error-prone abbreviations.
ROUTE_SYNONYMS: tuple[frozenset[str], ...] = (
    frozenset({"oral", "po"}),
    frozenset({"iv", "intravenous"}),
    frozenset({"sc", "subcut", "subcutaneous"}),
    frozenset({"im", "intramuscular"}),
)
_UNIT_ALIASES = {"wk": "week", "wks": "week"}  # common clinical abbreviation pint lacks
#: Most doses one run may have before `until` (hourly dosing for 11 years): a run with more
#: would take hours, so it is refused at once rather than left to hang.
MAX_DOSES_PER_RUN = 100_000
_SECONDS_PER_DAY = 86400


def _exact_days(q: pint.Quantity) -> Fraction:
    """A time in days as an exact fraction, from the decimal value the user wrote: 1 min is
    exactly 1/1440 day, so 1440 doses every 1 min end exactly at day 1, with no rounding
    carried from dose to dose."""
    seconds = ureg.Quantity(1.0, q.units).to(ureg.second).magnitude
    return Fraction(repr(float(q.magnitude))) * Fraction(repr(float(seconds))) / _SECONDS_PER_DAY


# --------------------------------------------------------------------------- value helpers
def _quantity(value, what: str) -> pint.Quantity:
    """A finite Quantity with a float magnitude, so equality and hashing are exact."""
    if isinstance(value, str):  # convenience for callers: Dose("10 mg", "iv")
        try:
            value = parse_quantity(value, what=what)
        except UnitError as exc:
            raise RegimenError(exc.message) from None
    if not isinstance(value, pint.Quantity):
        raise RegimenError(f"{what} must be a quantity such as '10 mg', got {value!r}")
    try:
        mag = float(value.magnitude)
    except (TypeError, ValueError):
        raise RegimenError(f"{what} must be a single number with a unit, got {value!r}") from None
    if not math.isfinite(mag):
        raise RegimenError(f"{what} must be finite, got {value!r}")
    return Quantity(mag, value.units)


def _fmt(q: pint.Quantity) -> str:
    text = format_quantity(q)  # pint's symbol for year is 'a': spell it out for readers
    return text[:-2] + " year" if text.endswith(" a") else text


def _time(value, what: str, *, zero_ok: bool = False) -> pint.Quantity:
    q = _quantity(value, what)
    if q.dimensionality != _TIME:
        raise RegimenError(f"{what} must be a time (h, d, week), got {_fmt(q)!r} "
                           f"({dimension_text(q.dimensionality)})")
    if q.magnitude < 0 or (q.magnitude == 0 and not zero_ok):
        raise RegimenError(f"{what} must be {'>= 0' if zero_ok else '> 0'}, got {_fmt(q)!r}")
    return q


def _positive_int(n, what: str) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise RegimenError(f"{what} must be a whole number >= 1, got {n!r}")
    return n


def _per_body_weight(q: pint.Quantity) -> bool:
    """mg/kg (dimensionless, with a mass unit in the denominator) or nmol/kg."""
    if q.dimensionality == _SUBSTANCE / _MASS:
        return True
    return q.dimensionless and any(
        power < 0 and ureg.Unit(name).dimensionality == _MASS for name, power in q.unit_items())


def _per_body_surface(q: pint.Quantity) -> bool:
    """mg/m2 or nmol/m2: an amount per square metre of body surface area."""
    return q.dimensionality in (_MASS / _AREA, _SUBSTANCE / _AREA)


def _frequency(text: str) -> tuple[str, pint.Quantity]:
    """A frequency word or phrase (any case) -> (its spelling in ``str()``, its interval)."""
    low = " ".join(text.lower().split())
    if low in _FREQUENCY_NAMES:
        name = _FREQUENCY_NAMES[low]
        magnitude, unit = FREQUENCIES[name]
        return name, Quantity(float(magnitude), parse_unit(unit))
    m = _Q_FORM.fullmatch(low)
    if m is None:
        raise RegimenError(f"unknown frequency {text!r}; known: {', '.join(FREQUENCIES)}, "
                           "Q<N>H, Q<N>D, Q<N>W")
    n, letter = int(m.group(1)), m.group(2)
    if not letter:
        raise RegimenError(f"frequency {text!r} needs a time unit: 'q{n}h' (hours), 'q{n}d' "
                           f"(days) or 'q{n}w' (weeks)")
    if n == 0:
        raise RegimenError(f"frequency {text!r}: the dosing interval must be > 0, "
                           f"got 0 {_Q_UNITS[letter]}")
    return f"Q{n}{letter.upper()}", Quantity(float(n), parse_unit(_Q_UNITS[letter]))


def _checked_frequency(frequency, interval, what: str) -> tuple[str, pint.Quantity]:
    """A block's frequency and the interval it means; an interval given too must agree."""
    if not isinstance(frequency, str):
        raise RegimenError(f"a frequency must be text such as 'BID', got {frequency!r}")
    name, meant = _frequency(frequency)
    if interval is not None and _exact_days(_time(interval, what)) != _exact_days(meant):
        raise RegimenError(f"frequency {name!r} means every {_fmt(meant)}, not every "
                           f"{_fmt(_time(interval, what))}")
    return name, meant


def _starts_frequency(low: str) -> bool:
    return (low in _FREQUENCY_STARTS and low != "every") or _Q_FORM.fullmatch(low) is not None


def reserved_word(word: str) -> bool:
    """True for a word of the regimen grammar (keyword, frequency, ``x4``), which cannot name
    a route: ``100 mg bid`` must not read as a dose by a route called 'bid'."""
    low = word.lower()
    return (low in _KEYWORDS or _starts_frequency(low)
            or re.fullmatch(r"x\d+", low) is not None)


def route_synonyms(route: str) -> tuple[str, ...]:
    """The other names of ``route`` in :data:`ROUTE_SYNONYMS`, sorted (none if it has none)."""
    group = next((g for g in ROUTE_SYNONYMS if route in g), frozenset())
    return tuple(sorted(group - {route}))


def _check_dose(dose) -> None:
    if not isinstance(dose, Dose):
        raise RegimenError(f"a dosing block needs a Dose, got {dose!r}")


class _ByValue:
    """Equality and hash on the written value: ``10 mg`` equals ``10.0 mg`` but not ``0.01 g``
    (pint's own ``==`` converts units, so its hashes could disagree with ``==``)."""

    def _key(self):
        return (type(self), *(_value_key(getattr(self, f.name)) for f in fields(self)))

    def __eq__(self, other):
        return self._key() == other._key() if isinstance(other, _ByValue) else NotImplemented

    def __hash__(self):
        return hash(self._key())


def _value_key(value):
    return (float(value.magnitude), value.units) if isinstance(value, pint.Quantity) else value


# --------------------------------------------------------------------------- objects
@dataclass(frozen=True, eq=False)
class Dose(_ByValue):
    """One dose: an amount given by a route, as a bolus or an infusion.

    Parameters
    ----------
    amount
        A mass (mg), an amount of substance (nmol), per body weight (mg/kg, nmol/kg) or per
        body surface area (mg/m2, nmol/m2); > 0.
    route
        Lower-case name such as ``'iv'``, ``'sc'``, ``'oral'``; the model decides what it feeds.
    duration, rate
        At most one: infusion time (> 0), or infusion rate in the amount's unit per time
        (mg/h for mg, mg/kg/h for mg/kg, mg/m2/h for mg/m2).  Neither means an
        instantaneous bolus.
    """

    amount: pint.Quantity
    route: str
    duration: pint.Quantity | None = None
    rate: pint.Quantity | None = None

    def __post_init__(self):
        amount = _quantity(self.amount, "dose amount")
        dims = amount.dimensionality
        if dims not in (_MASS, _SUBSTANCE) and not _per_body_weight(amount) \
                and not _per_body_surface(amount):
            raise RegimenError(
                "dose amount must be a mass (mg), an amount (nmol), per body weight (mg/kg) or "
                f"per body surface area (mg/m2), got {_fmt(amount)!r} ({dimension_text(dims)})")
        if amount.magnitude <= 0:
            raise RegimenError(f"dose amount must be > 0, got {_fmt(amount)!r}")
        # a grammar word ('every', 'bid', 'x4') as a route could not be read back
        if (not isinstance(self.route, str) or not _ROUTE.fullmatch(self.route)
                or reserved_word(self.route)):
            raise RegimenError("route must be a lower-case name such as 'iv', 'sc' or 'oral' "
                               f"(not a keyword or frequency), got {self.route!r}")
        object.__setattr__(self, "amount", amount)
        if self.duration is not None and self.rate is not None:
            raise RegimenError(f"dose '{_fmt(amount)} {self.route}': give an infusion duration "
                               "('over 1 h') or a rate ('at 10 mg/h'), not both")
        if self.duration is not None:
            object.__setattr__(self, "duration", _time(self.duration, "infusion duration"))
        if self.rate is not None:
            rate = _quantity(self.rate, "infusion rate")
            # checked here, not in the model, so discontinuities never need the body weight
            if (amount / rate).dimensionality != _TIME:
                raise RegimenError(
                    f"infusion rate {_fmt(rate)!r} does not match dose amount {_fmt(amount)!r}: "
                    f"expected {_fmt(amount).partition(' ')[2]}/h or similar")
            if rate.magnitude <= 0:
                raise RegimenError(f"infusion rate must be > 0, got {_fmt(rate)!r}")
            object.__setattr__(self, "rate", rate)
            if not 0 < self.infusion_duration_days() < math.inf:
                raise RegimenError(f"infusion of {_fmt(amount)} at {_fmt(rate)} has no finite "
                                   "positive duration")

    @property
    def is_infusion(self) -> bool:
        return self.duration is not None or self.rate is not None

    @property
    def per_body_weight(self) -> bool:
        return _per_body_weight(self.amount)

    @property
    def per_body_surface(self) -> bool:
        return _per_body_surface(self.amount)

    def infusion_duration_days(self) -> float | None:
        """Infusion length in days (amount / rate for a rate); ``None`` for a bolus."""
        if self.duration is not None:
            return to_canonical(self.duration)
        if self.rate is not None:
            return float((self.amount / self.rate).to(ureg.day).magnitude)
        return None

    def __str__(self) -> str:
        infusion = (f" over {_fmt(self.duration)}" if self.duration is not None
                    else f" at {_fmt(self.rate)}" if self.rate is not None else "")
        return f"{_fmt(self.amount)} {self.route}{infusion}"


@dataclass(frozen=True)
class Administration:
    """A dose given at ``time`` (days from the start of the simulation)."""

    time: float
    dose: Dose


@dataclass(frozen=True, eq=False)
class Once(_ByValue):
    """A single dose, ``at`` a time after the block start (spans ``at``; 0 when omitted)."""

    dose: Dose
    at: pint.Quantity | None = None

    def __post_init__(self):
        _check_dose(self.dose)
        if self.at is not None:
            object.__setattr__(self, "at", _time(self.at, "'at' time", zero_ok=True))

    def span_days(self) -> Fraction:
        return Fraction(0) if self.at is None else _exact_days(self.at)

    def offsets_days(self):
        yield self.span_days()

    def count_before(self, horizon: Fraction) -> int:
        """How many offsets lie strictly before ``horizon`` days (exact arithmetic)."""
        return int(self.span_days() < horizon)

    def offset(self, k: int) -> Fraction:
        """The k-th offset (0-based), as :meth:`offsets_days` yields it."""
        return self.span_days()

    def timing_text(self) -> str:
        return "" if self.at is None else f"at {_fmt(self.at)}"


@dataclass(frozen=True, eq=False)
class Every(_ByValue):
    """Doses every ``interval``: ``count`` times, for ``length``, or (neither) forever.

    Parameters
    ----------
    dose
        The :class:`Dose` given each time.
    interval
        The time between doses (> 0).  May be omitted when ``frequency`` is given.
    count, length
        At most one: the number of doses (``x 14``), or how long the block lasts
        (``for 2 weeks``; doses at k*interval strictly before it).  Neither: forever.
    frequency
        A frequency word as prescriptions write it (``'BID'``, ``'daily'``, ``'Q3W'``, ...;
        see :data:`FREQUENCIES`), kept so that ``str()`` writes it back.  It fixes the
        interval (BID: 12 h); an ``interval`` given too must be the same time.  Equality
        compares the written form, so ``BID x 14`` is not equal to ``every 12 h x 14``,
        just as ``every 7 d`` is not equal to ``every 1 week``.
    """

    dose: Dose
    interval: pint.Quantity | None = None
    count: int | None = None
    length: pint.Quantity | None = None
    frequency: str | None = None

    def __post_init__(self):
        _check_dose(self.dose)
        if self.frequency is not None:
            name, interval = _checked_frequency(self.frequency, self.interval,
                                                "dosing interval")
            object.__setattr__(self, "frequency", name)
            # the word's own interval, so equal words always give equal (and hashable) blocks
            object.__setattr__(self, "interval", interval)
        elif self.interval is None:
            raise RegimenError("'every' needs a dosing interval such as '7 d' or a frequency "
                               "such as 'BID'")
        object.__setattr__(self, "interval", _time(self.interval, "dosing interval"))
        if self.count is not None and self.length is not None:
            raise RegimenError("'every' takes a count ('x 4') or a length ('for 8 weeks'), "
                               "not both")
        if self.count is not None:
            _positive_int(self.count, "dose count after 'x'")
        if self.length is not None:
            object.__setattr__(self, "length", _time(self.length, "'for' time"))

    def n_doses(self) -> float:
        """Number of doses (``inf`` when open-ended)."""
        if self.length is not None:  # doses at k*T < D, exactly
            return max(1, math.ceil(_exact_days(self.length) / _exact_days(self.interval)))
        return math.inf if self.count is None else self.count

    def span_days(self) -> Fraction | float:
        if self.length is not None:
            return _exact_days(self.length)
        n = self.n_doses()
        return math.inf if math.isinf(n) else n * _exact_days(self.interval)

    def offsets_days(self):
        step, n = _exact_days(self.interval), self.n_doses()
        return (k * step for k in (count() if math.isinf(n) else range(n)))

    def count_before(self, horizon: Fraction | float) -> int | float:
        if horizon <= 0 or math.isinf(horizon):
            return 0 if horizon <= 0 else self.n_doses()
        within = math.ceil(horizon / _exact_days(self.interval))  # k*step < horizon: k < within
        return int(min(self.n_doses(), within))

    def offset(self, k: int) -> Fraction:
        return k * _exact_days(self.interval)

    def timing_text(self) -> str:
        tail = (f" x {self.count}" if self.count is not None
                else f" for {_fmt(self.length)}" if self.length is not None else "")
        return f"{self.frequency or f'every {_fmt(self.interval)}'}{tail}"


@dataclass(frozen=True, eq=False)
class Cycles(_ByValue):
    """Doses on ``days`` (1-based) of ``cycle_days``-day cycles, ``count`` cycles or forever.

    Parameters
    ----------
    dose
        The :class:`Dose` given each time.
    days
        Day numbers, increasing without repeats; day 1 is the block start.
    cycle_days
        The cycle length in days, at least the last day.  ``None``: no cycle, the days are
        given once (``on days 1,8,15``) and the block spans through the last of them, as one
        cycle of that many days would.
    count
        Number of cycles (``x 4``); ``None`` repeats forever.  Needs ``cycle_days``.
    frequency
        A frequency word giving a whole number of doses a day (``'BID'``: at the start of
        each listed day and 12 h later; QD, daily, BID, TID, QID, Q<N>H with N dividing 24);
        ``None`` is one dose at the start of each listed day.
    """

    dose: Dose
    days: tuple[int, ...]
    cycle_days: int | None = None
    count: int | None = None
    frequency: str | None = None

    def __post_init__(self):
        _check_dose(self.dose)
        days = tuple(_positive_int(d, "cycle day") for d in self.days)
        if not days or any(a >= b for a, b in pairwise(days)):
            raise RegimenError("cycle days must be listed in increasing order without repeats, "
                               f"got {','.join(map(str, days)) or 'none'}")
        object.__setattr__(self, "days", days)
        if self.cycle_days is None:
            if self.count is not None:
                raise RegimenError(f"'x {self.count}' repeats cycles, and a plain day list has "
                                   "none: give the cycle length, as in "
                                   f"'on days ... of 28-day cycles x {self.count}'")
        else:
            _positive_int(self.cycle_days, "cycle length")
            if days[-1] > self.cycle_days:
                raise RegimenError(f"day {days[-1]} is outside the {self.cycle_days}-day cycle "
                                   f"(days run 1..{self.cycle_days})")
        if self.count is not None:
            _positive_int(self.count, "cycle count after 'x'")
        if self.frequency is not None:
            name, interval = _checked_frequency(self.frequency, None, "dosing interval")
            per_day = 1 / _exact_days(interval)
            if per_day.denominator != 1:
                raise RegimenError(f"{name!r} on cycle days must give a whole number of doses "
                                   "a day (QD, daily, BID, TID, QID, Q<N>H with N dividing 24); "
                                   f"{name} is every {_fmt(interval)}")
            object.__setattr__(self, "frequency", name)

    @property
    def _per_day(self) -> int:
        """Doses on each listed day, 1 / interval apart (1 without a frequency)."""
        if self.frequency is None:
            return 1
        return int(1 / _exact_days(_frequency(self.frequency)[1]))

    @property
    def _length(self) -> int:
        """Days from one cycle start to the next (a plain day list: through its last day)."""
        return self.days[-1] if self.cycle_days is None else self.cycle_days

    @property
    def _cycles(self) -> int | None:
        """Number of cycles; ``None`` for forever."""
        return 1 if self.cycle_days is None else self.count

    def span_days(self) -> Fraction | float:
        n = self._cycles
        return math.inf if n is None else Fraction(n * self._length)

    def offsets_days(self):
        length, n, per_day = self._length, self._cycles, self._per_day
        within_day = [Fraction(j, per_day) for j in range(per_day)]
        for cycle in count():
            if n is not None and cycle >= n:
                return
            for day in self.days:
                yield from (cycle * length + day - 1 + t for t in within_day)

    def count_before(self, horizon: Fraction | float) -> int | float:
        n, per_cycle = self._cycles, len(self.days) * self._per_day
        if horizon <= 0 or math.isinf(horizon):
            return 0 if horizon <= 0 else math.inf if n is None else n * per_cycle
        full, rest = divmod(horizon, self._length)
        if n is not None and full >= n:
            return n * per_cycle
        # doses (day - 1) + j/per_day < rest: j < (rest - day + 1) * per_day
        per_day = self._per_day
        within = sum(min(per_day, max(0, math.ceil((rest - day + 1) * per_day)))
                     for day in self.days)
        return int(full) * per_cycle + within

    def offset(self, k: int) -> Fraction:
        per_day = self._per_day
        cycle, i = divmod(k, len(self.days) * per_day)
        day, j = divmod(i, per_day)
        return Fraction(cycle * self._length + self.days[day] - 1) + Fraction(j, per_day)

    def timing_text(self) -> str:
        items = []  # runs of >= 3 consecutive days read better as 'a-b'
        for _, pairs in groupby(enumerate(self.days), key=lambda p: p[1] - p[0]):
            run = [day for _, day in pairs]
            items += [f"{run[0]}-{run[-1]}"] if len(run) >= 3 else map(str, run)
        head = f"{self.frequency} " if self.frequency is not None else ""
        text = f"{head}on {'day' if len(self.days) == 1 else 'days'} {','.join(items)}"
        if self.cycle_days is None:
            return text
        tail = "" if self.count is None else f" x {self.count}"
        return f"{text} of {self.cycle_days}-day cycles{tail}"


@dataclass(frozen=True, eq=False)
class Wait(_ByValue):
    """A pause of ``duration`` before the next block of the sequence."""

    duration: pint.Quantity
    dose = None  # not a field: lets every block be asked for its .dose

    def __post_init__(self):
        object.__setattr__(self, "duration", _time(self.duration, "wait time"))

    def span_days(self) -> Fraction:
        return _exact_days(self.duration)

    def offsets_days(self):
        return iter(())

    def count_before(self, horizon: Fraction) -> int:
        return 0

    def offset(self, k: int) -> Fraction:
        raise IndexError("a wait has no doses")

    def timing_text(self) -> str:
        return f"wait {_fmt(self.duration)}"


Block = Once | Every | Cycles | Wait


@dataclass(frozen=True, eq=False, repr=False)
class Regimen(_ByValue):
    """Parallel sequences of blocks; each sequence runs its blocks one after another.

    Parameters
    ----------
    sequences
        Tuple of non-empty tuples of blocks (:class:`Once`, :class:`Every`, :class:`Cycles`,
        :class:`Wait`).  Only the last block of a sequence may be open-ended.

    Examples
    --------
    >>> r = Regimen.parse("100 mg iv every 7 days x 3 then 50 mg iv every 14 days x 2")
    >>> [a.time for a in r.administrations(100)]
    [0.0, 7.0, 14.0, 21.0, 35.0]
    """

    sequences: tuple[tuple[Block, ...], ...] = ()
    #: dosing rules that react to the simulated patient (:mod:`mechsim.dose_rules`)
    rules: tuple = ()

    def __post_init__(self):
        from .dose_rules import DoseRule

        rules = tuple(self.rules)
        if not all(isinstance(r, DoseRule) for r in rules):
            raise RegimenError(f"regimen rules must be DoseRule objects, got {rules!r}")
        if rules and not self.sequences:
            raise RegimenError("dosing rules need scheduled doses to act on")
        object.__setattr__(self, "rules", rules)
        seqs = tuple(tuple(seq) for seq in self.sequences)
        for seq in seqs:
            if not seq:
                raise RegimenError("a regimen sequence needs at least one block")
            for i, block in enumerate(seq):
                if not isinstance(block, Block):
                    raise RegimenError(f"not a dosing block: {block!r}")
                if i + 1 < len(seq) and math.isinf(block.span_days()):
                    raise RegimenError(f"{_block_text(block, None)!r} repeats forever, so nothing "
                                       "can follow it with 'then'; add 'x N' or 'for TIME'")
        object.__setattr__(self, "sequences", seqs)

    @classmethod
    def none(cls) -> Regimen:
        """The empty regimen (no doses)."""
        return cls(())

    @classmethod
    def parse(cls, text: str) -> Regimen:
        """Read the one-line grammar of the module docstring; raises :class:`RegimenError`."""
        if not isinstance(text, str):
            raise RegimenError(f"a regimen must be text, got {text!r}")
        if text.strip().lower() in ("", "none"):
            return cls.none()
        from .dose_rules import parse_rules, split_rules

        schedule, rules = split_rules(text)
        try:
            return cls(tuple(_read_sequence(schedule, part)
                             for part in _split(_tokens(schedule), ";")),
                       parse_rules(rules) if rules else ())
        except RegimenError as exc:
            raise RegimenError(f"regimen {text!r}: {exc.message}") from None

    def combine(self, other: Regimen) -> Regimen:
        """Both regimens run in parallel (same as ``self & other``)."""
        if not isinstance(other, Regimen):
            raise RegimenError(f"can only combine a Regimen with a Regimen, got {other!r}")
        return Regimen(self.sequences + other.sequences, self.rules + other.rules)

    def __and__(self, other):
        return self.combine(other) if isinstance(other, Regimen) else NotImplemented

    def administrations(self, until: float) -> tuple[Administration, ...]:
        """Every dose with ``0 <= time < until`` (days), sorted by time.

        A dose at exactly ``until`` is left out: it could not affect the simulated interval.
        Ties keep the order of the text (sequence by sequence, block by block).
        """
        until = float(until)
        if math.isnan(until):
            raise RegimenError("administrations: 'until' must be a number of days, got nan")
        self._check_dose_count(until)
        found = []
        for seq in self.sequences:
            start = Fraction(0)  # exact: block starts and offsets carry no rounding
            for block in seq:
                for offset in block.offsets_days():
                    # a time is rounded once, to a float; a dose that lands on `until` is
                    # left out (offsets ascend, so nothing later fits either)
                    time = float(start + offset)
                    if time >= until:
                        break
                    found.append(Administration(time, block.dose))
                start += block.span_days()
                if start >= until:
                    break
        return tuple(sorted(found, key=lambda a: a.time))  # stable sort: ties keep text order

    def _check_dose_count(self, until: float) -> None:
        """Refuse, before generating any, more than MAX_DOSES_PER_RUN doses."""
        total = self.count_before(until)
        if total > MAX_DOSES_PER_RUN:
            raise RegimenError(f"regimen {_shorten(str(self))!r} gives {total:,} doses before "
                               f"day {until:g}, more than the {MAX_DOSES_PER_RUN:,} one run may "
                               "have; shorten the run or lengthen the interval")

    def count_before(self, until: float) -> int | float:
        """Number of doses with ``0 <= time < until`` (days), counted without listing them
        (``inf`` for an open-ended regimen and an infinite ``until``)."""
        if math.isinf(until):
            return sum(b.count_before(math.inf) for seq in self.sequences for b in seq)
        total = 0
        for seq in self.sequences:
            start = Fraction(0)
            for block in seq:
                if start >= until:
                    break
                n = block.count_before(Fraction(until) - start)
                # as in administrations: a time rounded onto `until` does not count
                while n > 0 and float(start + block.offset(n - 1)) >= until:
                    n -= 1
                total += n
                start += block.span_days()
        return total

    def __str__(self) -> str:
        schedule = "; ".join(map(_sequence_text, self.sequences)) or "none"
        return ", ".join([schedule, *(rule.text for rule in self.rules)])

    def __repr__(self) -> str:
        return f"Regimen.parse({str(self)!r})"

    def _repr_html_(self) -> str:
        from .html import regimen_html

        return regimen_html(self)


def _shorten(text: str) -> str:
    return text if len(text) <= 80 else f"{text[:70]}..."


def _block_text(block: Block, previous: Dose | None) -> str:
    timing = block.timing_text()
    if isinstance(block, Wait) or (block.dose == previous and timing):
        return timing  # 'then every 7 d' reuses the previous dose, exactly as parse() does
    return f"{block.dose} {timing}".rstrip()


def _sequence_text(seq) -> str:
    parts, previous = [], None
    for block in seq:
        parts.append(_block_text(block, previous))
        previous = block.dose or previous
    return " then ".join(parts)


# --------------------------------------------------------------------------- text reader
class _Tok(NamedTuple):
    kind: str  # 'num', 'word' or 'op'
    text: str
    low: str
    start: int
    end: int


_TOKEN = re.compile(r"(?P<ws>\s+)|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
                    r"|(?P<word>[^\W\d]\w*)|(?P<op>\*\*|[;,\-/*^])")


def _tokens(text: str) -> list[_Tok]:
    toks, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise RegimenError(f"unexpected character {text[pos]!r} at {text[pos:pos + 20]!r}")
        word = m.group()
        if m.lastgroup == "word" and re.fullmatch(r"[xX]\d+", word):  # 'x4' means 'x 4'
            toks += [_Tok("word", "x", "x", pos, pos + 1),
                     _Tok("num", word[1:], word[1:], pos + 1, m.end())]
        elif m.lastgroup != "ws":
            toks.append(_Tok(m.lastgroup, word, word.lower(), pos, m.end()))
        pos = m.end()
    return toks


def _split(toks: list[_Tok], sep: str) -> list[list[_Tok]]:
    parts = [[]]
    for t in toks:
        if t.low == sep:
            parts.append([])
        else:
            parts[-1].append(t)
    if not all(parts):
        raise RegimenError(f"empty block: {sep!r} needs a block on both sides")
    return parts


class _Cursor:
    """Position in one block's tokens, with the text kept for quoting in messages."""

    def __init__(self, text: str, toks: list[_Tok]):
        self.text, self.toks, self.i = text, toks, 0

    def peek(self, kind: str | None = None, *texts: str) -> _Tok | None:
        t = self.toks[self.i] if self.i < len(self.toks) else None
        if t is None or (kind and t.kind != kind) or (texts and t.low not in texts):
            return None
        return t

    def take(self) -> _Tok:
        self.i += 1
        return self.toks[self.i - 1]

    def accept(self, kind: str, *texts: str) -> _Tok | None:
        return self.take() if self.peek(kind, *texts) else None

    def expect(self, what: str, *words: str) -> _Tok:
        if self.peek("word", *words) is None:
            raise RegimenError(f"expected {what}, got {self.got()}")
        return self.take()

    def route_next(self) -> bool:
        word = self.peek("word")
        return word is not None and not reserved_word(word.low)

    def since(self, i0: int) -> str:
        return self.text[self.toks[i0].start:self.toks[self.i - 1].end] if self.i > i0 else ""

    def got(self) -> str:
        """The unread rest of the block, quoted, for error messages."""
        if self.peek() is None:
            return "nothing"
        return repr(self.text[self.toks[self.i].start:self.toks[-1].end])


def _unit_text(c: _Cursor) -> str:
    """Unit words joined by '/', '*' and '**'/'^' powers; stops before a route or keyword."""
    parts = []
    while c.route_next():
        parts.append(_UNIT_ALIASES.get(c.peek().text, c.take().text))
        if c.peek("op", "**", "^") and c.i + 1 < len(c.toks) and c.toks[c.i + 1].kind == "num":
            c.take()
            parts += ["**", c.take().text]
        if not (c.peek("op", "/", "*") and c.i + 1 < len(c.toks)):
            break
        c.i += 1
        if not c.route_next():  # '/' not followed by a unit word: leave it for the error report
            c.i -= 1
            break
        parts.append(c.toks[c.i - 1].text)
    return "".join(parts)


def _read_quantity(c: _Cursor, what: str, example: str, *, before_route=False) -> pint.Quantity:
    i0 = c.i
    sign = -1.0 if c.accept("op", "-") else 1.0  # so '-10 mg' is reported as 'must be > 0'
    if c.peek("num") is None:
        raise RegimenError(f"expected {what} such as {example!r}, got {c.got()}")
    value = sign * float(c.take().text)
    j0 = c.i
    unit = _unit_text(c)
    try:
        if not unit:
            raise UnitError("no unit")
        return Quantity(value, parse_unit(unit))
    except UnitError:
        # '10 iv': the only word was the route, so the unit (not the route) is what is missing
        if not unit or (before_route and c.i == j0 + 1 and not c.route_next()):
            raise RegimenError(f"{what} {c.since(i0)!r} needs a unit, e.g. {example!r}") from None
        raise RegimenError(f"unknown unit {unit!r} in {what} {c.since(i0)!r}") from None


def _read_int(c: _Cursor, what: str) -> int:
    if c.peek("num") is None or not c.peek().text.isdigit():
        raise RegimenError(f"expected a whole number for {what}, got {c.got()}")
    return int(c.take().text)


def _read_cycles(c: _Cursor, dose: Dose, frequency: str | None) -> Cycles:
    c.expect("'days' after 'on'", "days", "day")
    days = []
    while True:
        first = last = _read_int(c, "a cycle day")
        if c.accept("op", "-"):
            last = _read_int(c, f"the end of the day range '{first}-'")
            if last < first:
                raise RegimenError(f"day range '{first}-{last}' runs backwards")
        days += range(first, last + 1)
        if not c.accept("op", ","):
            break
    if c.peek() is None:  # 'on day 1', 'on days 1,8,15': the days once, no cycle
        return Cycles(dose, tuple(days), None, None, frequency)
    if c.accept("word", "x"):  # refused by Cycles, which says why
        return Cycles(dose, tuple(days), None, _read_int(c, "the cycle count after 'x'"),
                      frequency)
    c.expect("'of' (as in 'of 28-day cycles') or the end of the block after the days", "of")
    length = _read_int(c, "the cycle length")
    c.accept("op", "-")
    c.expect("'day' after the cycle length (as in '28-day cycles')", "day", "days")
    c.expect("'cycles' (as in '28-day cycles')", "cycle", "cycles")
    n = _read_int(c, "the cycle count after 'x'") if c.accept("word", "x") else None
    return Cycles(dose, tuple(days), length, n, frequency)


def _read_frequency(c: _Cursor) -> tuple[str, pint.Quantity] | None:
    """A frequency word or phrase at the cursor (taken), or None (nothing taken)."""
    words = [t.low if t.kind == "word" else None for t in c.toks[c.i:]]
    for phrase in _FREQUENCY_PHRASES:
        if tuple(words[:len(phrase)]) == phrase:
            c.i += len(phrase)
            return _frequency(" ".join(phrase))
    first = words[0] if words else None
    if first in _FREQUENCY_STARTS:  # 'twice' without 'daily', 'every other month'
        if first == "every" and words[1:2] != ["other"]:
            return None  # 'every 7 d': an interval, read by the caller
        known = [" ".join(p) for p in _FREQUENCY_PHRASES if p[0] == first]
        raise RegimenError(f"expected a frequency such as {' or '.join(map(repr, known))}, "
                           f"got {c.got()}")
    if first is not None and _Q_FORM.fullmatch(first):
        token = c.take()
        glued = c.peek()  # 'Q2.5H' is read as 'Q2', '.5', 'H': say what is wrong with it
        if glued is not None and glued.start == token.end:
            raise RegimenError(f"frequency {c.text[token.start:].split()[0]!r}: Q<N>H, Q<N>D "
                               "and Q<N>W take a whole number N; write an interval such as "
                               "'every 2.5 h' instead")
        return _frequency(token.text)
    return None


def _read_repeat(c: _Cursor, dose: Dose) -> Every | Cycles | None:
    """The timings that repeat a dose: a frequency word or ``every TIME``, then ``x N`` or
    ``for TIME``; a frequency word may instead lead ``on days ...``."""
    i0 = c.i
    frequency = _read_frequency(c)
    if frequency is None:
        if not c.accept("word", "every"):
            return None
        interval = _read_quantity(c, "a dosing interval", "every 7 d")
    else:
        if c.accept("word", "on"):  # 'BID on days 1-14 of 21-day cycles'
            return _read_cycles(c, dose, frequency[0])
        interval = frequency[1]
    first = c.since(i0)
    if c.peek("word", "every") or _read_frequency(_Cursor(c.text, c.toks[c.i:])):
        raise RegimenError(f"two frequencies, {first!r} and {c.got()}: give one")
    n = _read_int(c, "the dose count after 'x'") if c.accept("word", "x") else None
    length = (_read_quantity(c, "a time after 'for'", "for 8 weeks")
              if n is None and c.accept("word", "for") else None)
    return Every(dose, interval, n, length, frequency and frequency[0])


def _read_block(c: _Cursor, previous: Dose | None) -> Block:
    block = _read_block_head(c, previous)
    if c.peek():
        raise RegimenError(f"unexpected {c.got()} after {c.since(0)!r}; expected a dose, "
                           "then 'over'/'at' infusion, then 'every'/frequency/'on days'/'at' "
                           "timing")
    return block


def _read_block_head(c: _Cursor, previous: Dose | None) -> Block:
    if c.accept("word", "wait"):
        return Wait(_read_quantity(c, "a wait time", "wait 7 d"))
    amount = route = duration = rate = None
    if c.peek("num") or c.peek("op", "-"):
        amount = _read_quantity(c, "dose amount", "10 mg iv", before_route=True)
        if not c.route_next():
            frequency = c.peek("word") and _starts_frequency(c.peek().low)
            hint = " (the route comes before the frequency: '100 mg oral BID')" if frequency \
                else ""
            raise RegimenError(f"expected a route such as 'iv' or 'oral' after "
                               f"{c.since(0)!r}, got {c.got()}{hint}")
        route = c.take().low
    if c.accept("word", "over"):
        duration = _read_quantity(c, "an infusion time", "over 1 h")
    elif c.peek("word", "at"):
        i0 = c.i
        c.take()  # look ahead: a time belongs to the timing below, anything else is a rate
        rate = _read_quantity(c, "a time or rate after 'at'", "at 12 h")
        if rate.dimensionality == _TIME:
            c.i, rate = i0, None
    if amount is not None:
        dose = Dose(amount, route, duration, rate)
    elif previous is None:
        raise RegimenError(f"expected a dose such as '10 mg iv' (or 'wait 7 d') at {c.got()}")
    elif duration is not None or rate is not None:
        dose = Dose(previous.amount, previous.route, duration, rate)
    else:
        dose = previous
    repeat = _read_repeat(c, dose)
    if repeat is not None:
        return repeat
    if c.accept("word", "on"):
        return _read_cycles(c, dose, None)
    if c.accept("word", "at"):
        return Once(dose, _read_quantity(c, "a time after 'at'", "at 12 h"))
    if amount is None:
        raise RegimenError("a block after 'then' without a dose needs a timing such as "
                           f"'every 7 d' or 'daily', got {c.got()}")
    return Once(dose)


def _read_sequence(text: str, toks: list[_Tok]) -> tuple[Block, ...]:
    blocks, previous = [], None
    for part in _split(toks, "then"):
        blocks.append(_read_block(_Cursor(text, part), previous))
        previous = blocks[-1].dose or previous
    return tuple(blocks)

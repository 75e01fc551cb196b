"""Expected behaviour declared in a model file: ``[[expect]]`` entries, as frozen data.

An :class:`Expectation` says what must hold of a model, in the model's own terms: which
input is varied (a dose, a parameter, or a list of regimens), over which range (with
units), which outputs are looked at (expressions in the rate-law language) and when, and
the comparison (``increases``, ``decreases``, ``never_increases``, ``never_decreases``,
``unchanged``, ``conserved``, ``within`` bounds).  Other parameters may be drawn from
ranges (``given``), the same in both runs of a comparison.  :mod:`mechsim.behaviour`
tests them with Hypothesis; this module only holds them (:mod:`mechsim.io.expect_table`
reads and checks them).  The format is in docs/model-format.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import pint

from .expr import Expr
from .units import ureg

__all__ = ["DOSE", "EFFECTS", "Expectation", "Range", "with_dose"]

#: The comparisons, each read as "as the varied input rises, the output ...".
EFFECTS = ("increases", "decreases", "never_increases", "never_decreases", "unchanged",
           "conserved", "within")
#: Effects that need two runs at different values of the varied input; the others look at
#: one run at a time (the varied input, if any, drawn once).
PAIRED = frozenset(EFFECTS) - {"conserved", "within"}
#: The placeholder of the varied dose in a ``vary = "dose"`` regimen.
DOSE = "DOSE"
#: Ranges whose ends are both positive and at least this ratio apart are sampled on a log
#: scale (a rate constant over 0.01-10 1/day), others uniformly (a dose from 0).
LOG_RATIO = 10.0


def with_dose(text: str, dose: pint.Quantity) -> str:
    """Regimen text with the placeholder DOSE replaced by ``dose``, written exactly."""
    from .units import format_unit

    return text.replace(DOSE, f"{float(dose.magnitude)!r} {format_unit(dose.units)}")


@dataclass(frozen=True)
class Range:
    """A closed interval of a quantity: ``low <= x <= high``."""

    low: pint.Quantity
    high: pint.Quantity

    @property
    def log(self) -> bool:
        low, high = self.low.magnitude, self.high.to(self.low.units).magnitude
        return low > 0 and high / low >= LOG_RATIO

    def at(self, u: float) -> pint.Quantity:
        """The point a fraction ``u`` (0-1) of the way along (log scale where :attr:`log`)."""
        low, high = self.low.magnitude, self.high.to(self.low.units).magnitude
        value = low * (high / low) ** u if self.log else low + (high - low) * u
        return ureg.Quantity(min(max(value, low), high), self.low.units)

    def __str__(self) -> str:
        from .units import format_quantity

        return f"{format_quantity(self.low)} to {format_quantity(self.high)}"


@dataclass(frozen=True)
class Expectation:
    """One ``[[expect]]`` entry (see the module docstring).

    Attributes
    ----------
    vary
        ``"dose"`` (``regimen`` holds ``DOSE``), ``"regimen"`` (``regimens``, in rising
        order), a parameter name, or None (``conserved`` and ``within`` only).
    over
        The range of the varied dose or parameter.
    outputs
        Expressions of states, rules and parameters, each compared on its own.
    at
        Times (Quantities) at which the outputs are compared.
    given
        Other parameters: a :class:`Range` (drawn) or a Quantity (fixed).
    between
        The bounds of ``within``, in the outputs' dimension.
    tolerance
        Relative: a strict change must exceed it, a ``never_`` or ``unchanged`` comparison
        may differ by it, both relative to the larger magnitude of the two values.
    violated
        A known violation: the reason the model does not meet the expectation.  It is
        still tested; a counterexample is then the documented behaviour, not a failure.
    """

    name: str
    effect: str
    outputs: tuple[Expr, ...]
    at: tuple[pint.Quantity, ...]
    vary: str | None = None
    over: Range | None = None
    regimen: str | None = None
    regimens: tuple[str, ...] = ()
    given: Mapping[str, Range | pint.Quantity] = field(default_factory=dict)
    between: Range | None = None
    tolerance: float = 1e-6
    violated: str | None = None
    where: str | None = field(default=None, compare=False)

    @property
    def paired(self) -> bool:
        return self.effect in PAIRED

    @property
    def drawn(self) -> tuple[str, ...]:
        """The ``given`` parameters drawn from ranges, in file order."""
        return tuple(n for n, v in self.given.items() if isinstance(v, Range))

    def names(self) -> frozenset[str]:
        """Every name the outputs use (``t`` is the time)."""
        return frozenset().union(*(e.names for e in self.outputs))

    def __str__(self) -> str:
        return self.name

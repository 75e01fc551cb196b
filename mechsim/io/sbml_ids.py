"""What an SBML import returns besides the Model: each SBML id's mechsim name and unit.

Tools that compare mechsim's results with another simulator's (the SBML Test Suite's
runner, ``tools/sbml_suite.py``) need to know, for each SBML id, which mechsim species, rule
or parameter holds its value, in which unit SBML states it, and, for species, whether that
value is an amount or a concentration.  :meth:`SBMLImport.values` does the conversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import pint

from ..model import Model
from ..units import canonical_unit, is_undeclared, ureg

__all__ = ["SBMLImport", "SBMLSymbol", "in_sbml_unit"]


@dataclass(frozen=True)
class SBMLSymbol:
    """One SBML id of an imported model.

    ``kind``: "species", "parameter", "compartment", "speciesReference" or "reaction".
    ``name``: the mechsim species, rule or parameter holding the value the id stands for in
    SBML formulas (for a species: its concentration, or its amount when
    ``hasOnlySubstanceUnits``); None when only ``constant`` holds it.  ``unit``: that value's
    unit as SBML declares it (or as SBML's defaults give it), as a Quantity (``0.001 mole``
    for a millimole), None when undeclared: then the value is the number as written.
    ``concentration``: a species whose symbol means a concentration.  ``compartment``: a
    species' compartment id.  ``amount``: the mechsim name holding the species' amount when
    that is a different name (species in a compartment whose size changes).  ``constant``:
    the value, in ``unit``, of an id that no mechsim name holds (a compartment used by no
    formula).
    """

    sbml_id: str
    kind: str
    name: str | None
    unit: pint.Quantity | None = None
    concentration: bool = False
    compartment: str | None = None
    amount: str | None = None
    constant: float | None = None


@dataclass(frozen=True)
class SBMLImport:
    """An imported SBML model: ``model``, ``symbols`` (SBML id -> :class:`SBMLSymbol`) and
    ``undeclared`` (the SBML elements whose units were not declared, listed in the one
    :class:`~mechsim.errors.UnitWarning` of the import; empty when all units are known)."""

    model: Model
    symbols: Mapping[str, SBMLSymbol]
    undeclared: tuple[str, ...] = ()
    where: str | None = field(default=None, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "symbols", MappingProxyType(dict(self.symbols)))

    def values(self, result, sbml_id: str, kind: str | None = None) -> np.ndarray:
        """The values of ``sbml_id`` over a result's times, in its SBML unit (numbers as
        written when undeclared).  For a species, ``kind`` "amount" or "concentration"
        asks for one or the other (default: what the id means in SBML formulas)."""
        sym = self.symbols[sbml_id]
        values = self._raw(result, sym)
        if sym.kind != "species" or kind is None or \
                (kind == "concentration") == sym.concentration:
            return values
        size = self.values(result, sym.compartment) if sym.compartment in self.symbols \
            else np.nan
        return values * size if kind == "amount" else values / size

    def _raw(self, result, sym: SBMLSymbol) -> np.ndarray:
        n = len(result.time_days)
        if sym.name is None:
            return np.full(n, np.nan if sym.constant is None else sym.constant)
        if sym.name in result.state_names:
            row = result.states[result.state_names.index(sym.name)]
        elif sym.name in result.observable_names:
            row = result.observables[result.observable_names.index(sym.name)]
        elif sym.name in self.model.parameters_by_name:
            value = self.model.parameters_by_name[sym.name].value
            return np.full(n, _in_unit(float(value.to(canonical_unit(value)).magnitude),
                                       value.units, sym.unit))
        else:
            raise KeyError(f"{sym.sbml_id}: {sym.name} is not in the result")
        unit = self.model.unit_of(sym.name)
        return _in_unit(np.asarray(row, dtype=float), unit, sym.unit)


def _in_unit(canonical, unit: pint.Unit, wanted: pint.Quantity | None):
    """Canonical magnitudes of a value reported in ``unit``, expressed in ``wanted`` (an
    SBML unit: a scale factor times a unit)."""
    if wanted is None or is_undeclared(unit) or is_undeclared(wanted):
        return canonical
    base = ureg.Quantity(1.0, canonical_unit(ureg.Quantity(1.0, unit)))
    return canonical * (base.to(wanted.units).magnitude / wanted.magnitude)


def in_sbml_unit(value: pint.Quantity, wanted: pint.Quantity | None) -> float:
    """A quantity's number in an SBML unit (as written when undeclared)."""
    if wanted is None or is_undeclared(value):
        return float(value.magnitude)
    return float(value.to(wanted.units).magnitude / wanted.magnitude)

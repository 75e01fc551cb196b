"""SBML import, units: SBML unit references as pint quantities, SBML's defaults, and the
decision to use a model's numbers as written when some units are left out (see
``docs/sbml.md``, "Units left out").  A mixin of the importer in :mod:`.sbml_import`."""

from __future__ import annotations

import math

import pint

from ..units import (
    canonical_unit,
    format_quantity,
    is_undeclared,
    parse_unit,
    ureg,
)
from .sbml_common import nice_unit

__all__ = ["UnitsMixin"]


class UnitsMixin:
    # ---- units -------------------------------------------------------------------------------
    def plan_units(self) -> None:
        """Find the values whose units SBML leaves undeclared (after its defaults: species
        take the model's substanceUnits, compartments its volume, area or length units);
        with any, the model's numbers are used as written (see :func:`read_sbml`)."""
        sm = self.sm
        missing = []
        model_sub = sm.getSubstanceUnits() if sm.isSetSubstanceUnits() else ""
        if not sm.isSetTimeUnits() and not self.from_mechsim:
            missing.append("model timeUnits")
        for i in range(sm.getNumCompartments()):
            c = sm.getCompartment(i)
            if not c.isSetUnits() and not self.default_size_units(c):
                dims = c.getSpatialDimensionsAsDouble() if c.isSetSpatialDimensions() else 3.0
                if dims != 0:
                    missing.append(f"compartment '{c.getId()}'")
        for i in range(sm.getNumSpecies()):
            s = sm.getSpecies(i)
            if not (s.isSetSubstanceUnits() or model_sub):
                missing.append(f"species '{s.getId()}'")
        for i in range(sm.getNumParameters()):
            p = sm.getParameter(i)
            rule = self.rules_by_var.get(p.getId())
            if not p.isSetUnits() and not (rule is not None and rule.isAssignment()) and \
                    p.getId() not in self.ias:
                missing.append(f"parameter '{p.getId()}'")
        for i in range(sm.getNumReactions()):
            kl = sm.getReaction(i).getKineticLaw()
            for k in range(kl.getNumLocalParameters() if kl is not None else 0):
                lp = kl.getLocalParameter(k)
                if not lp.isSetUnits():
                    missing.append(f"local parameter '{lp.getId()}' of reaction "
                                   f"'{sm.getReaction(i).getId()}'")
        if self.force_as_written:
            missing.append(self.force_as_written)
        if missing and self.strict_units:
            raise self.error(f"{missing[0]} has no units; with strict_units=True every "
                             "parameter, species and compartment needs units "
                             "(units=\"dimensionless\" for pure numbers)")
        self.as_written = bool(missing)
        self.undeclared = missing

    def default_size_units(self, c) -> str:
        sm = self.sm
        dims = c.getSpatialDimensionsAsDouble() if c.isSetSpatialDimensions() else 3.0
        attr = {3: "VolumeUnits", 2: "AreaUnits", 1: "LengthUnits"}.get(dims)
        if attr is None or not getattr(sm, f"isSet{attr}")():
            return ""
        return getattr(sm, f"get{attr}")()

    def unit_quantity(self, uid: str, what: str) -> pint.Quantity:
        """An SBML unit reference as a pint Quantity (scale factor times unit).  When the
        model's numbers are used as written, a unit that would change them (mole, second)
        is undeclared too; only units whose numbers equal mechsim's canonical ones stay."""
        if not uid:
            if self.as_written:
                return ureg.Quantity(1.0, "undeclared")
            raise self.error(f"{what} has no units; mechsim checks the dimension of every "
                             "expression, so every parameter, species and compartment needs "
                             "units (units=\"dimensionless\" for pure numbers)")
        q = self.declared_quantity(uid, what)
        if self.force_as_written and not is_undeclared(q):  # nothing is checked
            self.rescaled.add(f"{what} ('{uid}')")
            return ureg.Quantity(1.0, "undeclared")
        if self.as_written and not is_undeclared(q) and \
                not math.isclose(float(q.to(canonical_unit(q)).magnitude), 1.0,
                                 rel_tol=1e-12):
            self.rescaled.add(f"{what} ('{uid}')")
            return ureg.Quantity(1.0, "undeclared")
        return q

    def declared_quantity(self, uid: str, what: str) -> pint.Quantity:
        L = self.L
        ud = self.sm.getUnitDefinition(uid)
        if ud is None:
            kind = L.UnitKind_forName(uid)
            if kind == L.UNIT_KIND_INVALID:
                raise self.error(f"{what}: unknown units '{uid}'")
            return self.kind_quantity(kind, 1.0, 0, 1.0, what)
        return self.definition_quantity(ud, what)

    def definition_quantity(self, ud, what: str) -> pint.Quantity:
        """A libsbml UnitDefinition (declared or derived) as a Quantity."""
        q = ureg.Quantity(1.0)
        for k in range(ud.getNumUnits()):
            u = ud.getUnit(k)
            q = q * self.kind_quantity(u.getKind(), u.getExponentAsDouble(), u.getScale(),
                                       u.getMultiplier(), what)
        return q

    def unit_number(self, value: float, uid: str, what: str) -> str:
        """A number with ``sbml:units`` as a quoted quantity, which the unit parser reads
        and the expression uses in canonical units (``"5 second"``)."""
        q = self.declared_quantity(uid, f"{what}: number with units")
        given = ureg.Quantity(value * float(q.magnitude), q.units)
        return f'"{format_quantity(given)}"'

    def sbml_unit(self, q: pint.Quantity) -> pint.Quantity | None:
        """The unit of an SBML value for the id map (None when undeclared, and when the
        model's numbers are used as written: values are then the numbers as written)."""
        return None if is_undeclared(q) or self.as_written else q

    def kind_quantity(self, kind, exponent, scale, multiplier, what) -> pint.Quantity:
        name = self.L.UnitKind_toString(kind)
        factor = multiplier * 10.0 ** scale
        if name in ("dimensionless", "item"):
            base = ureg.Quantity(factor)
        elif name == "avogadro":
            base = ureg.Quantity(factor * 6.02214076e23)
        else:
            try:
                base = ureg.Quantity(factor, name)
            except pint.UndefinedUnitError:
                raise self.error(f"{what}: SBML unit kind '{name}' is not supported") from None
        return base ** exponent

    @staticmethod
    def nice_unit(q: pint.Quantity) -> pint.Unit:
        return nice_unit(q)

    def display_unit(self, q: pint.Quantity, info: dict, what: str) -> pint.Unit:
        """The annotated mechsim unit if it has the dimension of ``q``, else a canonical one."""
        text = info.get("unit")
        if text is not None:
            unit = ureg.dimensionless if text == "1" else parse_unit(text, what=what,
                                                                     where=self.where)
            if (1 * unit).dimensionality == q.dimensionality:
                return unit
        return self.nice_unit(q)

    def quantity(self, value: float, q: pint.Quantity, unit: pint.Unit) -> pint.Quantity:
        """``value`` in the SBML unit ``q``, expressed in ``unit``."""
        if math.isnan(value):
            return ureg.Quantity(math.nan, unit)
        if value == 0:
            return ureg.Quantity(0.0, unit)
        out = float(ureg.Quantity(value * q.magnitude, q.units).to(unit).magnitude)
        if out != value:  # converted: drop the conversion noise (148, not 147.99999999999997)
            out = float(f"{out:.15g}")
        return ureg.Quantity(out, unit)


"""SBML import, initial values SBML computes at t = 0 from anything (initial assignments
that use species, rules or time): evaluated as numbers, in dependency order.  A mixin of the
importer in :mod:`.sbml_import`."""

from __future__ import annotations

import dataclasses
import math

from ..expr import TIME, Expr
from ..model import Parameter, Species
from ..units import (
    canonical_unit,
    to_canonical,
    ureg,
)

__all__ = ["InitialValuesMixin"]


class InitialValuesMixin:
    def finish_initial_values(self, species: list[Species]) -> list[Species]:
        """Initial values SBML computes at t = 0 from anything (initial assignments that
        use species, rules or time): computed here, as numbers, in dependency order."""
        species = species + self.rr_species_late
        fixed = self.fixed_names()
        for s in species:  # initial values that are not fixed for a run
            if isinstance(s.initial, Expr) and not s.initial.names <= fixed:
                self.deferred[s.name] = ("species", s.initial.text, s.unit)
        for r in list(self.rules):  # initial assignments to parameters of varying values
            if r.name in self.ia_rules and not r.expr.names <= fixed:
                self.rules.remove(r)
                unit = ureg.undeclared if self.as_written or r.unit is None else r.unit
                self.deferred[r.name] = ("parameter", r.expr.text, unit)
                self.parameters.append(Parameter(r.name, ureg.Quantity(0.0, unit),
                                                 where=self.where))
        for c in self.comp_volume.values():
            if c and isinstance(c[0], Expr) and not c[0].names <= fixed:
                raise self.error(f"a compartment size is computed from values that change "
                                 f"during a run ({c[0].text!r}); not supported")
        if not self.deferred:
            return species
        values = self.initial_environment(species)
        pending = dict(self.deferred)
        while pending:
            progress = False
            for name, (_, text, _) in list(pending.items()):
                try:
                    values[name] = Expr(text).evaluate(values)
                except KeyError:
                    continue
                except (ArithmeticError, ValueError) as exc:
                    raise self.error(f"initial value of {name}: {text!r} cannot be computed "
                                     f"at t = 0 ({exc})") from None
                del pending[name]
                progress = True
                self.settle_rules(values)
            if not progress:
                raise self.error(f"initial values of {', '.join(sorted(pending))} depend on "
                                 "each other in a cycle or on unknown values")

        def quantity(name, unit):
            v = values[name]
            if not math.isfinite(v):
                raise self.error(f"initial value of {name} is {v} at t = 0")
            return ureg.Quantity(v, canonical_unit(ureg.Quantity(1.0, unit))).to(unit)

        out = []
        for sp in species:
            out.append(dataclasses.replace(sp, initial=quantity(sp.name, sp.unit))
                       if sp.name in self.deferred else sp)
        self.parameters = [dataclasses.replace(p, value=quantity(p.name, p.value.units))
                           if p.name in self.deferred else p for p in self.parameters]
        return out

    def initial_environment(self, species: list[Species]) -> dict[str, float]:
        """Canonical values at t = 0 of everything known without the deferred ones."""
        values: dict[str, float] = {TIME: 0.0}
        for p in self.parameters:
            if p.name not in self.deferred:
                values[p.name] = to_canonical(p.value)
        for s in species:
            if s.name not in self.deferred and not isinstance(s.initial, Expr):
                values[s.name] = to_canonical(s.initial)
        self.pending_species = {s.name: s.initial for s in species
                                if s.name not in self.deferred and isinstance(s.initial, Expr)}
        self.settle_rules(values)
        return values

    def settle_rules(self, values: dict[str, float]) -> None:
        """Evaluate every rule (and expression initial value) whose names are known."""
        progress = True
        while progress:
            progress = False
            for r in self.rules:
                if r.name not in values and r.expr.names <= values.keys():
                    values[r.name] = self.safe_value(r.expr, values)
                    progress = True
            for name, initial in list(self.pending_species.items()):
                if initial.names <= values.keys():
                    values[name] = self.safe_value(initial, values)
                    del self.pending_species[name]
                    progress = True

    @staticmethod
    def safe_value(expr: Expr, values) -> float:
        try:
            return float(expr.evaluate(values))
        except (ArithmeticError, ValueError):
            return math.nan


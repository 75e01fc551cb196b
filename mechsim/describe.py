"""A model described for people: species, parameters with their sources, reactions, rules,
routes and conservation laws (what ``mechsim show`` prints)."""

from __future__ import annotations

from .compile import compile_model
from .expr import Expr
from .model import Model
from .units import format_quantity, format_unit

__all__ = ["describe_model"]


def _value_text(value) -> str:
    return str(value) if isinstance(value, Expr) else format_quantity(value)


def describe_model(model: Model) -> str:
    """The model as text, one section per kind of element."""
    lines = [f"model {model.name}: {model.description}", f"  file: {model.source}"]
    if model.parameter_sets:
        lines.append(f"  parameter sets applied: {', '.join(model.parameter_sets)}")
    lines.append("\nspecies:")
    for s in model.species:
        where = f"in {s.compartment}" if s.compartment else "amount"
        initial = s.initial if isinstance(s.initial, Expr) else format_quantity(s.initial)
        lines.append(f"  {s.name:<22} [{format_unit(s.unit) or '1'}] {where}, initial "
                     f"{initial}")
    lines.append("\nparameters:")
    for p in model.parameters:
        origin = p.source or p.note or "no source given"
        lines.append(f"  {p.name:<18} {p.value.magnitude:<12.6g} "
                     f"{format_unit(p.value.units) or '1':<10} {origin}")
    lines.append("\nreactions:")
    for r in model.reactions:
        lines.append(f"  {r.name:<26} {r.equation:<34} rate = {r.rate}")
    if model.rules:
        lines.append("\nobservables (rules):")
        for r in model.rules:
            unit = format_unit(model.rule_units[r.name]) or "1"
            lines.append(f"  {r.name:<18} = {r.expr}   [{unit}]")
    if model.routes:
        lines.append("\ndosing routes:")
        for r in model.routes:
            extra = "".join(f", {k} {v}" for k, v in (("bioavailability", r.bioavailability),
                                                       ("lag", r.lag)) if v is not None)
            lines.append(f"  {r.name:<6} -> {r.target}"
                         f"{f' (drug {r.drug})' if r.drug else ''}{extra}")
    if model.events:
        lines.append("\nevents (SBML semantics; see docs/model-format.md):")
        for e in model.events:
            sets = ", ".join(f"{target} = {_value_text(value)}"
                             for target, value in e.assignments)
            extra = "".join(f", {k} {_value_text(v)}" for k, v in
                            (("delay", e.delay), ("priority", e.priority)) if v is not None)
            flags = [text for flag, text in ((not e.persistent, "not persistent"),
                                             (not e.initial_value, "may fire at t = 0"),
                                             (not e.from_trigger_time,
                                              "values at execution")) if flag]
            note = f" ({', '.join(flags)})" if flags else ""
            lines.append(f"  {e.name:<18} when {e.trigger}: {sets}{extra}{note}")
    laws = compile_model(model).conservation_laws
    lines.append("\nconservation laws (constant without doses):")
    lines.extend(f"  {law}" for law in laws)
    if not laws:
        lines.append("  none")
    if model.expectations:
        lines.append("\nexpected behaviour ([[expect]], tested by mechsim check):")
        lines.extend(f"  {e.effect:<16} {e.name}" + (" (known violation)" if e.violated else "")
                     for e in model.expectations)
    return "\n".join(lines)

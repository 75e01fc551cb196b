"""SBML import, events: triggers, delays, priorities and assignments to mechsim
:class:`~mechsim.model.Event`; events of equal priority (random order in SBML) are refused,
and an event that changes a compartment's size keeps the amounts in it.  A mixin of the
importer in :mod:`.sbml_import`."""

from __future__ import annotations

import re

from ..expr import Expr
from ..model import Event, Model

__all__ = ["EventsMixin"]


class EventsMixin:
    def read_events(self) -> list[Event]:
        sm = self.sm
        out = []
        names: set[str] = set()
        self.refuse_random_order()
        for i in range(sm.getNumEvents()):
            ev = sm.getEvent(i)
            eid = ev.getId() if ev.isSetId() else f"event_{i + 1}"
            what = f"event '{eid}'"
            name = re.sub(r"\W", "_", eid)
            while name in names:
                name += "_"
            names.add(name)
            trig = ev.getTrigger()
            if trig is None or not trig.isSetMath():
                continue  # SBML L3V2: an event without a trigger never fires
            trigger = Expr(self.condition(trig.getMath(), f"trigger of {eid}"),
                           f"{self.where}: {what} trigger", condition=True)
            delay = None
            if ev.isSetDelay() and ev.getDelay().isSetMath():
                delay = self.expr(self.formula(ev.getDelay().getMath(), f"delay of {eid}"),
                                  f"{what} delay")
                if self.as_written:  # a number as written, in the model's time
                    delay = self.expr(f'({delay.text})*"1 day/undeclared"', f"{what} delay")
            priority = None
            if ev.isSetPriority() and ev.getPriority().isSetMath():
                priority = self.expr(self.formula(ev.getPriority().getMath(),
                                                  f"priority of {eid}"), f"{what} priority")
            assignments = []
            for k in range(ev.getNumEventAssignments()):
                ea = ev.getEventAssignment(k)
                target = ea.getVariable()
                if not ea.isSetMath():
                    continue
                text = self.formula(ea.getMath(), f"eventAssignment to {target} in {eid}")
                assignments.append(self.event_assignment(target, text, what))
            assignments = self.size_change_rescaling(ev, assignments)
            out.append(Event(name, trigger, tuple(assignments), delay, priority,
                             trig.getPersistent() if trig.isSetPersistent() else True,
                             trig.getInitialValue() if trig.isSetInitialValue() else True,
                             ev.getUseValuesFromTriggerTime()
                             if ev.isSetUseValuesFromTriggerTime() else True, self.where))
        return out

    def refuse_random_order(self) -> None:
        """SBML executes simultaneous events of equal priority in a random order; mechsim's
        order is fixed (the file's), so a model whose events share a priority is refused
        rather than given one of its possible answers."""
        sm = self.sm
        seen: dict[str, str] = {}
        for i in range(sm.getNumEvents()):
            ev = sm.getEvent(i)
            if not (ev.isSetPriority() and ev.getPriority().isSetMath()):
                continue
            key = self.math.formula(ev.getPriority().getMath())
            if key in seen:
                raise self.error(f"events '{seen[key]}' and '{ev.getId()}' have the same "
                                 f"priority ({key}); SBML executes such events in a random "
                                 "order when they fall due together, mechsim in a fixed one")
            seen[key] = ev.getId()

    def refuse_equal_priorities(self, model: Model) -> None:
        """Like :meth:`refuse_random_order`, for priorities written differently that are
        equal (a parameter and a number): fixed priorities are compared by value."""
        events = [e for e in model.events if e.priority is not None]
        if len(events) < 2:
            return
        fixed = self.fixed_names()
        self.pending_species = {}
        values = self.initial_environment(list(model.species))
        seen: dict[float, str] = {}
        for e in events:
            if not e.priority.names <= fixed:
                continue
            v = self.safe_value(e.priority, values)
            if v in seen:
                raise self.error(f"events '{seen[v]}' and '{e.name}' have the same priority "
                                 f"({v:g}); SBML executes such events in a random order when "
                                 "they fall due together, mechsim in a fixed one")
            seen[v] = e.name

    def size_change_rescaling(self, ev, assignments) -> list[tuple[str, Expr]]:
        """An event that changes a compartment's size keeps the amounts of the species in
        it (SBML), and a concentration it assigns is one in the old size.  Species whose
        state is a concentration (a rate rule on it) are therefore rescaled by old size /
        new size (their assigned value too), computed with the event's other values."""
        sm = self.sm
        out = list(assignments)
        for k in range(ev.getNumEventAssignments()):
            ea = ev.getEventAssignment(k)
            cid = ea.getVariable()
            if cid not in self.compartment_ids or not ea.isSetMath():
                continue
            size = self.names[cid]
            new = next(v for t, v in assignments if t == size)
            for i in range(sm.getNumSpecies()):
                s = sm.getSpecies(i)
                rule = self.rules_by_var.get(s.getId())
                name = self.names[s.getId()]
                if s.getCompartment() != cid or s.getHasOnlySubstanceUnits() or \
                        rule is None or not rule.isRate():
                    continue
                where = f"event '{ev.getId()}': {name} in a changed size"
                given = [n for n, (t, _) in enumerate(out) if t == name]
                if given:
                    value = out[given[0]][1]
                    out[given[0]] = (name, self.expr(f"({value.text})*{size}/({new.text})",
                                                     where))
                else:
                    out.append((name, self.expr(f"{name}*{size}/({new.text})", where)))
        return out

    def event_assignment(self, target: str, text: str, what: str) -> tuple[str, Expr]:
        sm = self.sm
        if target in self.compartment_ids:
            return self.names[target], self.expr(text, f"{what} assignment to {target}")
        if target in self.species_refs:
            self.needed_refs.add(target)
            return self.names[target], self.expr(text, f"{what} assignment to {target}")
        s = sm.getSpecies(target)
        if s is not None and target in self.amount_states:
            cid = s.getCompartment()
            self.needed_compartments.add(cid)
            return self.amount_states[target], self.expr(f"({text})*{self.names[cid]}",
                                                         f"{what} assignment to {target}")
        if target not in self.names:
            raise self.error(f"{what}: assigns unknown id '{target}'")
        return self.names[target], self.expr(text, f"{what} assignment to {target}")


"""Dosing rules that react to the patient: skip, hold, reduce or add doses on a condition
evaluated on the simulated state.

A regimen's text may end with rules, each after a comma (see ``docs/regimens.md``)::

    10 mg/kg iv every 7 days x 8, skip if NK < 0.2 * baseline(NK)
    10 mg/kg iv every 7 days x 8, reduce to 50% after C > "100 mg/L"
    10 mg/kg iv every 14 days x 6, add 5 mg/kg iv when Cfree < "1 nM"

============================  =========================================================
``skip if COND``              a scheduled dose is not given when COND holds just before it
``hold while COND``           a scheduled dose is not given while COND holds; it is given
                              when COND stops holding (found by root finding), unless the
                              next scheduled dose comes first (then it is dropped)
``reduce to P% if COND``      that dose is given at P % when COND holds just before it
``reduce to P% after COND``   from the first dose at which COND holds, every dose at P %
``add DOSE when COND``        DOSE is given whenever COND turns from false to true
============================  =========================================================

COND is a condition of the model's expression language (comparisons of states, parameters,
observables and ``t``; ``and``/``or``/``not``; quoted quantities ``"1 nM"``), with one
addition: ``baseline(X)`` is the value of species X at t = 0, before any dose.  Rules act on
every scheduled dose of the regimen; when several apply, a skip or hold wins, and of several
reductions the smallest fraction is given.  Nothing in a rule is evaluated as code: the
condition is read by :class:`~mechsim.expr.Expr`.

A run watches each rule's condition as an event of the model (:func:`rule_events`), so the
solvers stop where it changes (exactly, as at any event), and the event driver
(:mod:`mechsim.solvers.events`) makes the decisions and logs them
(:class:`DoseDecision`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from .errors import MechsimError, RegimenError
from .expr import Expr

__all__ = ["DoseDecision", "DoseRule", "parse_rules", "rule_events", "split_rules",
           "with_rule_events"]

#: The actions, and how a rule's text starts
_ACTIONS = ("skip", "hold", "reduce", "add")
# a rule starts after a comma with one of the action words (a day list's commas are
# followed by digits, so they never start one)
_RULE_START = re.compile(r",\s*(?=(?:skip|hold|reduce|add)\b)", re.IGNORECASE)
_BASELINE = re.compile(r"\bbaseline\s*\(\s*([^\W\d]\w*)\s*\)")
#: A rule's event is named so that it cannot clash with a model's event (not an identifier)
EVENT_PREFIX = "dose rule "


@dataclass(frozen=True)
class DoseRule:
    """One rule: ``action`` ("skip", "hold", "reduce" or "add"), the ``condition`` text,
    for "reduce" the ``fraction`` given (0 < fraction < 1) and whether it holds from the
    first time on (``sticky``, written ``after``), for "add" the ``dose`` given (a
    :class:`~mechsim.dosing.Dose`)."""

    action: str
    condition: str
    fraction: float | None = None
    sticky: bool = False
    dose: object | None = None

    def __post_init__(self):
        if self.action not in _ACTIONS:
            raise RegimenError(f"unknown dosing rule {self.action!r} (expected one of "
                               f"{', '.join(_ACTIONS)})")
        _check_condition(self.condition, self.text)
        if self.action == "reduce" and not (self.fraction is not None
                                            and 0.0 < self.fraction < 1.0):
            raise RegimenError(f"rule {self.text!r}: reduce to a percentage between 0 and "
                               "100 (exclusive)")

    @property
    def text(self) -> str:
        """The rule as written in a regimen (parsing it gives the same rule)."""
        if self.action == "skip":
            return f"skip if {self.condition}"
        if self.action == "hold":
            return f"hold while {self.condition}"
        if self.action == "reduce":
            return (f"reduce to {self.fraction * 100:g}% "
                    f"{'after' if self.sticky else 'if'} {self.condition}")
        return f"add {self.dose} when {self.condition}"

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class DoseDecision:
    """What happened to a dose of an adaptive regimen: at ``day``, ``action`` is "given",
    "skipped", "held", "reduced", "given late" (a held dose, when its condition stopped
    holding), "dropped" (a held dose the next scheduled one replaced) or "added"; the
    ``fraction`` of the dose given (0 when not given); ``rule`` the rule that decided it
    (empty for a dose given as planned)."""

    day: float
    action: str
    fraction: float
    rule: str = ""


def split_rules(text: str) -> tuple[str, str]:
    """(schedule text, rules text) of a regimen's text; rules text empty when it has none."""
    found = _RULE_START.search(text)
    if found is None:
        return text, ""
    return text[:found.start()], text[found.end():]


def parse_rules(text: str) -> tuple[DoseRule, ...]:
    """Rules separated by commas (each starting with skip, hold, reduce or add)."""
    rules = []
    for part in _RULE_START.split("," + text)[1:]:
        rules.append(_parse_rule(part.strip()))
    return tuple(rules)


_REDUCE = re.compile(r"reduce\s+to\s+(\d+(?:\.\d*)?|\.\d+)\s*%\s+(if|after)\s+(.+)$",
                     re.IGNORECASE | re.DOTALL)
_ADD = re.compile(r"add\s+(.+?)\s+when\s+(.+)$", re.IGNORECASE | re.DOTALL)


def _parse_rule(text: str) -> DoseRule:
    low = text.lower()
    for action, lead in (("skip", "skip if "), ("hold", "hold while ")):
        if low.startswith(action):
            if not low.startswith(lead) or not text[len(lead):].strip():
                raise RegimenError(f"rule {text!r}: expected '{lead}CONDITION'")
            return DoseRule(action, _tidy(text[len(lead):]))
    if low.startswith("reduce"):
        found = _REDUCE.match(text)
        if found is None:
            raise RegimenError(f"rule {text!r}: expected 'reduce to P% if CONDITION' or "
                               "'reduce to P% after CONDITION'")
        return DoseRule("reduce", _tidy(found.group(3)), float(found.group(1)) / 100.0,
                        sticky=found.group(2).lower() == "after")
    found = _ADD.match(text)
    if found is None:
        raise RegimenError(f"rule {text!r}: expected 'add DOSE ROUTE when CONDITION' "
                           "(for example 'add 5 mg/kg iv when C < \"1 nM\"')")
    from .dosing import Once, Regimen

    dose_text = found.group(1)
    try:
        regimen = Regimen.parse(dose_text)
    except RegimenError as exc:
        raise RegimenError(f"rule {text!r}: {exc.message}") from None
    blocks = [b for seq in regimen.sequences for b in seq]
    if len(blocks) != 1 or not isinstance(blocks[0], Once) or blocks[0].at is not None:
        raise RegimenError(f"rule {text!r}: 'add' gives one dose (amount, route, optional "
                           f"'over TIME'), not a schedule: {dose_text!r}")
    return DoseRule("add", _tidy(found.group(2)), dose=blocks[0].dose)


def _tidy(condition: str) -> str:
    return " ".join(condition.split())


def _check_condition(condition: str, rule: str) -> None:
    """The condition parses as one (names are checked against a model when it runs)."""
    try:
        Expr(_BASELINE.sub(r"\1", condition), where=None, condition=True)
    except MechsimError as exc:
        raise RegimenError(f"rule {rule!r}: {exc.message}") from None


# --------------------------------------------------------------------------- on a model
def rule_events(model, rules: tuple[DoseRule, ...]) -> tuple:
    """An event per rule that the run watches: its trigger is the condition (for a hold,
    its end: ``not`` the condition); the driver acts on it, no assignment is made."""
    from .model import Event

    events = []
    for k, rule in enumerate(rules):
        text = _with_baselines(model, rule.condition, rule.text)
        if rule.action == "hold":
            text = f"not ({text})"
        try:
            trigger = Expr(text, where=f"regimen rule {rule.text!r}", condition=True)
        except MechsimError as exc:
            raise RegimenError(f"rule {rule.text!r}: {exc.message}") from None
        events.append(Event(name=f"{EVENT_PREFIX}{k + 1}", trigger=trigger, assignments=(),
                            where=f"regimen rule {rule.text!r}"))
    return tuple(events)


def with_rule_events(model, rules: tuple[DoseRule, ...]):
    """The model with its rules' events after its own (a validated Model: a condition
    naming an unknown output or comparing unlike dimensions is refused here)."""
    if not rules:
        return model
    return replace(model, events=tuple(model.events) + rule_events(model, rules))


def _with_baselines(model, condition: str, rule: str) -> str:
    """``baseline(X)`` replaced by species X's initial value (an expression or quantity)."""
    def initial(found: re.Match) -> str:
        name = found.group(1)
        species = model.species_by_name.get(name)
        if species is None:
            raise RegimenError(f"rule {rule!r}: baseline({name}) needs a species of model "
                               f"{model.name} (species: {', '.join(model.species_by_name)})")
        value = species.initial
        if isinstance(value, Expr):
            return f"({value.text})"
        return f'"{value.magnitude!r} {value.units}"'
    return _BASELINE.sub(initial, condition)

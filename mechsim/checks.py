"""Check a model file: it loads, its units agree, it compiles, a short run balances, and
it behaves as its ``[[expect]]`` entries say (:mod:`mechsim.behaviour`).

:func:`check_model` is what ``mechsim check`` prints; it returns a frozen report rather than
raising for a model that fails a check, so that tools can read which check failed.  A name
that is neither a built-in model nor a file is an error (raised), not a failed check.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .compile import compile_model
from .errors import MechsimError
from .io import load_model
from .io.common import resolve
from .model import Model
from .simulation import simulate

__all__ = ["CheckReport", "CheckStep", "check_model"]

#: A short run must keep every conservation law (mass balance) to this relative residual.
MASS_BALANCE_LIMIT = 1e-6


@dataclass(frozen=True)
class CheckStep:
    """One check: whether it passed, and the line that says what was found."""

    ok: bool
    text: str

    def __str__(self) -> str:
        return f"{'ok  ' if self.ok else 'FAIL'} {self.text}"


@dataclass(frozen=True)
class CheckReport:
    """The checks of one model, in the order they ran (a failed structural check ends the
    list), and one :class:`~mechsim.behaviour.Verdict` per ``[[expect]]`` entry."""

    model: str
    steps: tuple[CheckStep, ...]
    expectations: tuple = ()

    @property
    def ok(self) -> bool:
        return all(step.ok for step in self.steps) and all(v.ok for v in self.expectations)

    @property
    def falsified(self) -> tuple:
        """The expectations that failed (declared violations excluded)."""
        return tuple(v for v in self.expectations if not v.ok)

    def __str__(self) -> str:
        lines = [str(step) for step in self.steps] + [str(v) for v in self.expectations]
        if self.expectations:
            held = sum(v.ok for v in self.expectations)
            lines.append(f"expectations: {held} of {len(self.expectations)} as declared"
                         + (f"; {len(self.falsified)} falsified" if self.falsified else ""))
        return "\n".join(lines)


def check_model(model: Model | str | Path, *, thorough: bool = False,
                examples: int | None = None) -> CheckReport:
    """Load and unit-check ``model`` (a Model, a built-in name or a file), compile it, find
    its conservation laws, run it for two days with a small dose through every route, and
    test its expectations with Hypothesis: ``examples`` generated inputs each (default
    :data:`~mechsim.behaviour.DEFAULT_EXAMPLES`, or ``THOROUGH_EXAMPLES`` with
    ``thorough``)."""
    from .behaviour import DEFAULT_EXAMPLES, THOROUGH_EXAMPLES, check_expectations

    steps: list[CheckStep] = []
    if isinstance(model, Model):
        name = model.name
    else:
        name = str(model)
        path = resolve(model, "models")  # an unknown name is an error, not a failed check
        try:
            model = load_model(path)
        except MechsimError as exc:
            return CheckReport(name, (CheckStep(False, f"load and unit check: {exc}"),))
    steps.append(CheckStep(True, f"load and unit check: {len(model.species)} species, "
                                 f"{len(model.reactions)} reactions, {len(model.parameters)} "
                                 "parameters"))
    cm = compile_model(model)
    laws = ", ".join(map(str, cm.conservation_laws)) or "none"
    steps.append(CheckStep(True, f"compiled; conservation laws: {laws}"))
    regimen = "; ".join(f"1 {_test_dose_unit(info)} {route}"
                        for route, info in cm.routes.items()) or None
    try:
        res = simulate(model, regimen, until="2 day")
    except MechsimError as exc:
        steps.append(CheckStep(False, f"short simulation ({regimen or 'no doses'}): {exc}"))
        return CheckReport(model.name, tuple(steps))
    worst = res.diagnostics.max_conservation_residual
    steps.append(CheckStep(worst < MASS_BALANCE_LIMIT,
                           f"2-day simulation with {regimen or 'no doses'}: "
                           f"{res.diagnostics.steps} steps, mass-balance residual {worst:.1e}"))
    if examples is None:
        examples = THOROUGH_EXAMPLES if thorough else DEFAULT_EXAMPLES
    verdicts = check_expectations(model, examples=examples)
    return CheckReport(model.name, tuple(steps), verdicts)


def _test_dose_unit(route) -> str:
    """A unit a small test dose can be given in by this route without extra parameters."""
    if route.molecular_weight is None:
        return "nmol" if route.amount_kind == "substance" else "mg"
    return "mg"

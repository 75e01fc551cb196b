"""Testing a model's declared expectations (``[[expect]]``) with Hypothesis.

For each :class:`~mechsim.expectation.Expectation`, Hypothesis draws the varied input (two
values ``a < b`` at least 2 % of the range apart, or two regimens of the list in order) and
every ``given`` range, simulates the model at each, and compares the outputs at the
declared times.  A falsified expectation is shrunk to the smallest counterexample
Hypothesis finds, reported with its inputs in units and the two values compared.  The
search is deterministic (``derandomize``): the same model and budget give the same report.
A run the solver cannot finish falsifies the expectation too, with the solver's message.

``conserved`` compares each output at the ``at`` times with its value at time 0 (after any
dose at 0) in one run; ``within`` checks each against the ``between`` bounds, one run at a
time.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import pint

from .errors import MechsimError, NumericalWarning, SolverError
from .expectation import DOSE, Expectation, with_dose
from .expr import TIME
from .model import Model
from .units import canonical_unit, format_quantity, format_unit, ureg

__all__ = ["DEFAULT_EXAMPLES", "THOROUGH_EXAMPLES", "Verdict", "check_expectation",
           "check_expectations"]

#: Generated examples per expectation: ``mechsim check`` by default, and with --thorough.
DEFAULT_EXAMPLES = 8
THOROUGH_EXAMPLES = 200
#: The two values of a paired comparison are at least this fraction of the range apart,
#: so that a strict change is not asked of two nearly equal inputs.
GAP = 0.02
#: Tighter than simulate's default, so that solver error stays far below the tolerances.
RTOL = 1e-9

_WORDS = {"increases": "rise", "decreases": "fall", "never_increases": "not rise",
          "never_decreases": "not fall", "unchanged": "stay the same",
          "conserved": "stay at its value at time 0"}


@dataclass(frozen=True)
class Verdict:
    """What testing one expectation found.

    ``held`` is True when no counterexample was found in ``examples`` runs; otherwise
    ``counterexample`` holds the lines of the smallest one.  ``ok`` is what counts: an
    expectation that held, or a declared violation that was (as documented) falsified."""

    expectation: Expectation
    held: bool
    examples: int
    counterexample: tuple[str, ...] = ()
    shrunk: bool = False
    #: the entry cannot be tested on this model (a dose in mg/kg and no WT, say):
    #: ``counterexample`` holds the reason
    invalid: bool = False

    @property
    def ok(self) -> bool:
        return not self.invalid and (self.held or self.expectation.violated is not None)

    @property
    def status(self) -> str:
        if self.invalid:
            return "CANNOT BE TESTED"
        if self.expectation.violated is None:
            return "held" if self.held else "FALSIFIED"
        return "known violation, not reproduced" if self.held else "known violation"

    def __str__(self) -> str:
        e = self.expectation
        where = f" ({e.where})" if e.where else ""
        lines = [f"{'ok  ' if self.ok else 'FAIL'} expect {e.name!r}{where}: {self.status}, "
                 f"{self.examples} examples"]
        if self.invalid:
            lines.append(f"       {self.counterexample[0]}")
            return "\n".join(lines)
        if not self.held:
            found = "smallest counterexample found" if self.shrunk else \
                "counterexample, at the ends of the range"
            lines.append(f"       {found}:")
            *inputs, expected = self.counterexample
            lines += [f"         {line}" for line in inputs]
            lines.append(f"       {expected}")
        if e.violated is not None:
            lines.append(f"       declared: {e.violated}")
        return "\n".join(lines)


def check_expectations(model: Model, *, examples: int = DEFAULT_EXAMPLES
                       ) -> tuple[Verdict, ...]:
    """Test every expectation of ``model``."""
    return tuple(check_expectation(model, e, examples=examples) for e in model.expectations)


def check_expectation(model: Model, expectation: Expectation, *,
                      examples: int = DEFAULT_EXAMPLES) -> Verdict:
    """Test one expectation with ``examples`` generated inputs (plus the range ends)."""
    from hypothesis import HealthCheck, Phase, Verbosity, given, settings
    from hypothesis import strategies as st

    probe = _Probe(model, expectation)
    problem = probe.invalid()
    if problem is not None:
        return Verdict(expectation, False, 1, (problem,), invalid=True)
    draws = probe.draws
    counted = {"n": 0}

    def test(us):
        counted["n"] += 1
        failure = probe.falsifies(tuple(us))
        if failure is not None:
            raise _Falsified(failure)

    strategy = st.tuples(*[st.floats(0.0, 1.0, allow_nan=False)] * draws) if draws \
        else st.just(())
    test = settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    phases=(Phase.generate, Phase.shrink),
                    suppress_health_check=list(HealthCheck), verbosity=Verbosity.quiet,
                    report_multiple_bugs=False)(given(strategy)(test))
    try:
        test()
    except _Falsified as exc:
        return Verdict(expectation, False, counted["n"], exc.lines, shrunk=True)
    # then the widest comparison, the two ends of the range (given ranges at their middles):
    # a counterexample there is reported as it is, there is nothing to shrink it towards
    counted["n"] += 1
    failure = probe.falsifies(probe.ends())
    if failure is not None:
        return Verdict(expectation, False, counted["n"], failure)
    return Verdict(expectation, True, counted["n"])


class _Falsified(AssertionError):
    def __init__(self, lines: tuple[str, ...]):
        super().__init__("\n".join(lines))
        self.lines = lines


class _Probe:
    """One expectation against one model: the inputs a draw stands for, the runs, and the
    comparison."""

    def __init__(self, model: Model, e: Expectation):
        self.model, self.e = model, e
        self.until = max(t.to("day").magnitude for t in e.at)
        self.times = np.array([0.0, *(t.to("day").magnitude for t in e.at)])
        self.varied = 0 if e.vary is None else 2 if e.paired else 1
        self.draws = self.varied + len(e.drawn)
        self.fixed = {n: v for n, v in e.given.items() if n not in e.drawn}
        self._runs: dict = {}

    def ends(self) -> tuple[float, ...]:
        ends = (0.0, 1.0) if self.varied == 2 else (1.0,) * self.varied  # one run: the top
        return ends + (0.5,) * len(self.e.drawn)

    def invalid(self) -> str | None:
        """Why the entry cannot be run on this model at all (its widest inputs meet an error
        that is not the solver's: a dose unit the model cannot take, a parameter value it
        refuses), else None."""
        values, drawn = self.inputs(self.ends())
        for label, regimen, overrides in (self.run_of(v, drawn) for v in values):
            try:
                self.outputs(regimen, overrides)
            except SolverError:
                return None  # the search reports it, with the smallest such draw
            except MechsimError as exc:
                return f"{label or 'the run'}: {exc}"
        return None

    # ---- inputs --------------------------------------------------------------------------
    def inputs(self, us: tuple[float, ...]):
        """(the varied input's values, {drawn parameter: Quantity})."""
        e = self.e
        drawn = {n: e.given[n].at(u) for n, u in zip(e.drawn, us[self.varied:])}
        if e.vary == "regimen" and self.varied == 1:
            return (e.regimens[min(int(us[0] * len(e.regimens)), len(e.regimens) - 1)],), drawn
        if e.vary == "regimen":
            n = len(e.regimens)
            i = min(int(us[0] * (n - 1)), n - 2)
            j = i + 1 + min(int(us[1] * (n - 1 - i)), n - 2 - i)
            return (e.regimens[i], e.regimens[j]), drawn
        if e.vary is None:
            return (None,), drawn
        if self.varied == 1:
            return (e.over.at(us[0]),), drawn
        a = us[0] * (1 - GAP)
        b = a + GAP + us[1] * (1 - GAP - a)
        return (e.over.at(a), e.over.at(b)), drawn

    def run_of(self, value, drawn):
        """(label, regimen text or None, overrides) of one run."""
        e = self.e
        overrides = {**self.fixed, **drawn}
        if e.vary == "regimen":
            return f"regimen {value}", value, overrides
        if e.vary == "dose":
            return f"dose {_short(value)}", _dose_regimen(e.regimen, value), overrides
        if e.vary is not None:
            overrides[e.vary] = value
            return f"{e.vary} = {_short(value)}", e.regimen, overrides
        return "", e.regimen, overrides

    # ---- runs ----------------------------------------------------------------------------
    def outputs(self, regimen, overrides) -> np.ndarray:
        """(outputs, times) canonical values, times 0 and ``at`` (each run once: the ends
        are run by :meth:`invalid` and again at the end of the search)."""
        key = (regimen, tuple(sorted((k, str(v)) for k, v in overrides.items())))
        if key not in self._runs:
            self._runs[key] = self._simulate(regimen, overrides)
        return self._runs[key]

    def _simulate(self, regimen, overrides) -> np.ndarray:
        from .runspec import grid_index
        from .simulation import simulate

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = simulate(self.model, regimen or None, until=ureg.Quantity(self.until, "day"),
                           times=ureg.Quantity(self.times, "day"), overrides=overrides,
                           rtol=RTOL)
        # a run that broke a conservation law of the model is not evidence either way (a
        # fallback method can step across a blow-up); other warnings the comparison judges
        drift = [w for w in caught if issubclass(w.category, NumericalWarning)
                 and "conservation law" in str(w.message)]
        if drift:
            raise SolverError(f"numerically unreliable: {drift[0].message}")
        rows = grid_index(res.time.to("day").magnitude, self.times)
        env = {}
        for name in self.e.names():
            if name == TIME:
                env[name] = self.times  # canonical: days
            elif name in res:
                q = res[name]
                env[name] = np.asarray(q.to(canonical_unit(q)).magnitude)[rows]
            else:
                q = overrides.get(name, self.model.parameters_by_name[name].value)
                q = q if isinstance(q, pint.Quantity) else ureg.Quantity(q)
                env[name] = np.full(rows.size, q.to(canonical_unit(q)).magnitude)
        return np.array([[_value(expr, {n: v[k] for n, v in env.items()})
                          for k in range(rows.size)] for expr in self.e.outputs], dtype=float)

    def falsifies(self, us: tuple[float, ...]) -> tuple[str, ...] | None:
        """None if the expectation holds at this draw, else the lines that show why not."""
        values, drawn = self.inputs(us)
        runs = [self.run_of(v, drawn) for v in values]
        head = [f"{n} = {_short(q)}" for n, q in drawn.items()]
        results = []
        for label, regimen, overrides in runs:
            try:
                results.append(self.outputs(regimen, overrides))
            except MechsimError as exc:
                return (*head, f"{label or 'the run'}: could not be simulated: {exc}")
        e = self.e
        for k, expr in enumerate(e.outputs):
            for j, t in enumerate(e.at, start=1):
                if e.paired:
                    fa, fb = results[0][k, j], results[1][k, j]
                    if _holds(e.effect, fa, fb, e.tolerance):
                        continue
                    return (*head,
                            f"{runs[0][0]}:  {self.shown(expr, t, fa)}",
                            f"{runs[1][0]}:  {self.shown(expr, t, fb)}",
                            f"expected {expr} to {_WORDS[e.effect]} ({self.changed()})")
                where = [runs[0][0]] if runs[0][0] else []
                if e.effect == "within":
                    value = results[0][k, j]
                    if _inside(value, self.bounds(expr), e.tolerance):
                        continue
                    low, high = (_short(q) for q in (e.between.low, e.between.high))
                    return (*head, *where, self.shown(expr, t, value),
                            f"expected {expr} to stay within [{low}, {high}]")
                f0, ft = results[0][k, 0], results[0][k, j]
                if _holds("unchanged", f0, ft, e.tolerance):
                    continue
                return (*head, *where, f"{self.shown(expr, 0 * t, f0)}",
                        f"{self.shown(expr, t, ft)}",
                        f"expected {expr} to {_WORDS[e.effect]} (within {e.tolerance:g} "
                        "relative)")
        return None

    def bounds(self, expr) -> tuple[float, float]:
        """The ``between`` bounds in the canonical unit of ``expr``'s values."""
        unit = canonical_unit(self._unit(expr))
        return tuple(float(q.to(unit).magnitude) for q in (self.e.between.low,
                                                              self.e.between.high))

    def changed(self) -> str:
        e = self.e
        if e.effect in ("increases", "decreases"):
            return f"by more than {e.tolerance:g} relative"
        return f"within {e.tolerance:g} relative"

    def shown(self, expr, t, value: float) -> str:
        """``"M at 24 week = 17.2 g/L"``: in the output's own unit when it is one name."""
        unit = self._unit(expr)
        q = ureg.Quantity(value, canonical_unit(unit)).to(unit)
        when = format_quantity(t.to(self.e.at[-1].units)) if t.magnitude else "0"
        return f"{expr} at {when} = {q.magnitude:.6g} {format_unit(q.units)}".rstrip()

    def _unit(self, expr) -> pint.Unit:
        """The output's unit: its own when it is one name, else canonical."""
        name = expr.text.strip()
        if name in expr.names and len(expr.names) == 1 and name != TIME:
            return self.model.unit_of(name)
        return canonical_unit(expr.dimension({n: self.model.unit_of(n) for n in expr.names}))


def _value(expr, env) -> float:
    """The output's value; NaN where it has none (R/N with N = 0), which no comparison
    accepts."""
    try:
        return float(expr.evaluate(env))
    except (ArithmeticError, ValueError):
        return math.nan


def _short(q: pint.Quantity) -> str:
    return f"{q.magnitude:.4g} {format_unit(q.units)}".rstrip()


def _inside(value: float, bounds: tuple[float, float], tolerance: float) -> bool:
    """Within [low, high], each end widened by ``tolerance`` of its own magnitude (a wide
    upper bound must not loosen the lower one), or of the other end's where it is 0 (an
    occupancy of -1e-296 is solver noise around a bound of 0, not a fraction below it)."""
    low, high = bounds
    below = tolerance * (abs(low) or abs(high))
    above = tolerance * (abs(high) or abs(low))
    return math.isfinite(value) and low - below <= value <= high + above


def _holds(effect: str, fa: float, fb: float, tolerance: float) -> bool:
    if not (math.isfinite(fa) and math.isfinite(fb)):
        return False
    allowed = tolerance * max(abs(fa), abs(fb))
    if effect == "increases":
        return fb - fa > allowed
    if effect == "decreases":
        return fa - fb > allowed
    if effect == "never_increases":
        return fb - fa <= allowed
    if effect == "never_decreases":
        return fa - fb <= allowed
    return abs(fb - fa) <= allowed  # unchanged


def _dose_regimen(template: str, dose: pint.Quantity) -> str | None:
    """The regimen with the drawn dose; a zero dose drops the parts that give it (the
    reader made sure those parts give no other dose)."""
    if dose.magnitude == 0:
        parts = [p for p in template.split(";") if DOSE not in p]
        return ";".join(parts).strip() or None
    return with_dose(template, dose)

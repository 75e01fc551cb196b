"""The contract between mechsim and an ODE method: what a solver is given and returns.

The numbered contract is in the docstring of :mod:`mechsim.solvers`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..compile import CompiledModel
from ..doseplan import DosePlan
from ..optional import require

__all__ = ["Problem", "Solver", "Trajectory", "states_involved"]


@dataclass(frozen=True, eq=False)
class Problem:
    """One run in solver terms: canonical floats only."""

    compiled: CompiledModel
    parameters: np.ndarray      # (n_parameters,)
    plan: DosePlan
    grid: np.ndarray            # output times, days; grid[-1] is the end of the run
    initial: np.ndarray         # state at t = 0, before any dose
    rtol: float
    atol: np.ndarray            # (n_states,)

    @property
    def until(self) -> float:
        return float(self.grid[-1])

    @classmethod
    def build(cls, compiled: CompiledModel, parameters: np.ndarray, plan: DosePlan,
              grid: np.ndarray, rtol: float, atol: np.ndarray) -> Problem:
        """A problem starting from the model's initial state for these parameters."""
        p = np.ascontiguousarray(parameters, dtype=float)
        if not p.flags.writeable:  # compiled code takes writeable arrays only
            p = p.copy()
        return cls(compiled=compiled, parameters=p, plan=plan, grid=grid,
                   initial=np.asarray(compiled.initial_state(p), dtype=float), rtol=rtol,
                   atol=atol)


@dataclass(frozen=True, eq=False)
class Trajectory:
    """What a solver returns for one run (see the contract, points 2-7)."""

    states: np.ndarray           # (n_states, n_times), canonical; NaN after `reached`
    pre_dose_days: np.ndarray    # (n_doses,) dose times reached
    pre_dose_states: np.ndarray  # (n_doses, n_states): the state just before each
    steps: int
    rhs_evaluations: int
    jacobian_evaluations: int
    method: str
    reached: float               # the time the solver got to (the end of the run if complete)
    complete: bool = True
    #: (method, detail) of the methods that failed before ``method`` finished the run
    failed_methods: tuple[tuple[str, str], ...] = field(default=())
    #: (day, event name) of every event executed, in order
    events: tuple[tuple[float, str], ...] = field(default=())
    #: what the regimen's dosing rules did to each dose (mechsim.dose_rules.DoseDecision)
    doses: tuple = field(default=())

    @property
    def counters(self) -> tuple[int, int, int]:
        return self.steps, self.rhs_evaluations, self.jacobian_evaluations


class Solver:
    """Base of the registered methods (see the module docstring for the contract)."""

    name: str = ""
    stiff: bool = True
    requires: str | None = None

    def available(self) -> bool:
        """Whether the optional package the method needs is installed."""
        if self.requires is None:
            return True
        try:
            require(self.requires, f"method {self.name!r}")
        except ImportError:
            return False
        return True

    def solve(self, problem: Problem) -> Trajectory:  # pragma: no cover - abstract
        raise NotImplementedError


def states_involved(problem: Problem, u: np.ndarray, y: np.ndarray, t: float) -> list[str]:
    """States that are not finite, else the three changing fastest relative to their size:
    where a failing solver was struggling."""
    cm = problem.compiled
    with np.errstate(all="ignore"):
        dy = np.asarray(cm.rhs("scalar")(t, y, problem.parameters), dtype=float) + u
    bad = [cm.state_names[i] for i in np.flatnonzero(~np.isfinite(dy) | ~np.isfinite(y))]
    if not bad:
        scale = np.abs(dy) / np.maximum(np.abs(y), 1e-12)
        bad = [cm.state_names[i] for i in np.argsort(scale)[::-1][:3]]
    return bad

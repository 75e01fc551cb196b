"""The run specification: the one front door through which every run is prepared.

``simulate``, ``simulate_many``, sensitivity analyses, dose-response sweeps, SBML export and
fitting all describe their runs the same way: a model (with parameter files and overrides
layered on), a regimen, an end time, the output times, tolerances and a method.
:meth:`RunSpec.build` checks all of it once, with the users' units, and keeps it as plain
canonical numbers; afterwards only parameter vectors and regimens vary from run to run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from .compile import CompiledModel, compile_for
from .doseplan import DosePlan, as_regimen, dose_events, dose_plan
from .dosing import Regimen
from .errors import ValidationError
from .io.prepare import prepare_model
from .model import Model
from .solvers import DEFAULT_METHOD, Problem, choose_method
from .units import as_days, times_in_days, to_canonical, ureg

__all__ = ["MAX_OUTPUT_POINTS", "RunSpec", "SolverSettings", "default_atol", "grid_index",
           "output_grid"]

#: Output times per run: a million points of a 20-state model is 160 MB already; more is
#: a typo in `every` (seconds for days), not a request.
MAX_OUTPUT_POINTS = 1_000_000


@dataclass(frozen=True, eq=False)
class RunSpec:
    """Everything the runs of one call share, validated once; build with :meth:`build`.

    Attributes
    ----------
    model
        The model with parameter files and overrides applied.
    compiled
        Its compiled form.
    parameters
        The canonical parameter vector of ``model`` (read-only).
    regimen
        The regimen of every run unless a run names its own.
    until
        End of every run, days.
    times, every
        Requested output times (days) or spacing (days); both None: the default grid.
    rtol, atol
        Tolerances; ``atol`` has one value per state, in canonical units.
    atol_given
        ``atol`` as the caller gave it (None, one number or one per state), for reports.
    method
        A registered solver method (``"auto"`` already resolved).
    """

    model: Model
    compiled: CompiledModel
    parameters: np.ndarray
    regimen: Regimen
    until: float
    times: np.ndarray | None
    every: float | None
    rtol: float
    atol: np.ndarray
    atol_given: float | tuple[float, ...] | None
    method: str

    @classmethod
    def build(cls, model: Model | str, regimen: Regimen | str | None = None, *, until,
              params=None, overrides: Mapping | None = None, times=None, every=None,
              rtol: float = 1e-8, atol: float | Sequence[float] | None = None,
              method: str = DEFAULT_METHOD) -> RunSpec:
        """Check every option of a set of runs and keep it in canonical numbers.

        ``model`` is a Model, built-in name or path; ``params`` parameter files (applied in
        order) and ``overrides`` ``{name: value}`` (applied last); ``until`` and ``times`` /
        ``every`` carry units; ``atol`` None means 1e-12 of each state's own unit, a number
        or one per state is taken in canonical units.
        """
        model = prepare_model(model, params, overrides)
        regimen = as_regimen(regimen)
        compiled = compile_for(model, regimen)
        parameters = compiled.parameter_vector(model.parameters_by_name)
        parameters.flags.writeable = False
        end = as_days(until, "until")
        if not end > 0:
            raise ValidationError(f"`until` must be after 0, got {until!r}")
        if times is not None and every is not None:
            raise ValidationError("give either `times` or `every`, not both")
        step = None
        if every is not None:
            step = as_days(every, "every")
            if not step > 0:
                raise ValidationError(f"`every` must be positive, got {every!r}")
            if end / step > MAX_OUTPUT_POINTS:
                raise ValidationError(f"`every` = {every!r} over {end:g} days asks for "
                                      f"{end / step:.3g} output points (at most "
                                      f"{MAX_OUTPUT_POINTS:,}); choose a coarser spacing")
        requested = None
        if times is not None:
            requested = times_in_days(times, "times")
            if requested.size > MAX_OUTPUT_POINTS:
                raise ValidationError(f"`times` has {requested.size:,} output times (at most "
                                      f"{MAX_OUTPUT_POINTS:,})")
        if isinstance(rtol, bool) or not isinstance(rtol, (int, float)) or not rtol > 0:
            raise ValidationError(f"`rtol` must be a positive number, got {rtol!r}")
        atol_given = None if atol is None else (
            float(atol) if np.ndim(atol) == 0 else tuple(float(a) for a in atol))
        check_added_doses(compiled, regimen, end)
        return cls(model=model, compiled=compiled, parameters=parameters,
                   regimen=regimen, until=end, times=requested, every=step,
                   rtol=float(rtol), atol=default_atol(compiled, atol),
                   atol_given=atol_given, method=choose_method(method))

    def with_regimen(self, regimen: Regimen | str | None) -> RunSpec:
        """The same runs under another regimen (compiled again when its dosing rules
        differ: the rules' conditions are watched as events)."""
        regimen = as_regimen(regimen)
        if regimen.rules == self.compiled.dose_rules:
            return replace(self, regimen=regimen)
        compiled = compile_for(self.model, regimen)
        check_added_doses(compiled, regimen, self.until)
        return replace(self, regimen=regimen, compiled=compiled)

    def events(self, regimen: Regimen | None = None):
        """The regimen's doses up to ``until`` with their units converted (once per
        regimen, whatever the parameter values)."""
        return dose_events(self.compiled, self.regimen if regimen is None else regimen,
                           self.until)

    def plan(self, parameters: np.ndarray | None = None, regimen=None) -> DosePlan:
        """The dose plan of one run: the spec's (or ``regimen``'s) doses for a parameter
        vector (default: the spec's); ``regimen`` may be converted events already."""
        p = self.parameters if parameters is None else parameters
        doses = self.regimen if regimen is None else regimen
        return dose_plan(self.compiled, doses, p, self.until)

    def grid(self, breaks: np.ndarray) -> np.ndarray:
        """Output times, days: the requested ones or the default grid around ``breaks``."""
        return output_grid(breaks, self.until, self.times, self.every)

    def problem(self, parameters: np.ndarray, plan: DosePlan, grid: np.ndarray) -> Problem:
        """One run in solver terms."""
        return Problem.build(self.compiled, parameters, plan, grid, self.rtol, self.atol)

    def solver_settings(self) -> SolverSettings:
        """What a worker needs to integrate and report runs of this spec (no Model: it
        travels to other processes with every chunk)."""
        return SolverSettings(self.compiled, self.rtol, self.atol, self.atol_given,
                              self.method)


@dataclass(frozen=True, eq=False)
class SolverSettings:
    """The part of a RunSpec that a worker needs: compiled model, tolerances, method."""

    compiled: CompiledModel
    rtol: float
    atol: np.ndarray
    atol_given: float | tuple[float, ...] | None
    method: str

    def problem(self, parameters: np.ndarray, plan: DosePlan, grid: np.ndarray) -> Problem:
        return Problem.build(self.compiled, parameters, plan, grid, self.rtol, self.atol)


def check_added_doses(compiled: CompiledModel, regimen: Regimen, until: float) -> None:
    """The doses of a regimen's ``add`` rules converted once before any run, so that an
    unknown route or a unit without its conversion is refused at once, not when (or if)
    the rule first fires."""
    from .dosing import Once

    for rule in regimen.rules:
        if rule.action == "add":
            dose_events(compiled, Regimen(((Once(rule.dose),),)), until)


def default_atol(cm: CompiledModel, atol) -> np.ndarray:
    """Absolute tolerance per state in canonical units; None gives 1e-12 of each state's own
    unit (pg/mL is 1e-9 of the canonical g/L, so its atol is 1e-21 g/L)."""
    n = len(cm.state_names)
    if atol is None:
        atol = 1e-12 * np.array([to_canonical(ureg.Quantity(1.0, u)) for u in cm.state_units])
    if np.ndim(atol) == 0:
        atol_arr = np.full(n, float(atol))
    elif len(atol) == n:
        atol_arr = np.array(atol, dtype=float)
    else:
        raise ValidationError(f"`atol` needs one value or {n} (one per state), got {len(atol)}")
    if not np.all(atol_arr > 0):
        raise ValidationError("`rtol` and `atol` must be positive")
    atol_arr.flags.writeable = False
    return atol_arr


def output_grid(breaks: np.ndarray, until: float, times=None, every=None) -> np.ndarray:
    """Output times in days: ``times`` (days), a spacing ``every`` (days), or by default
    1001 even times plus every discontinuity in ``breaks`` (sorted dose and infusion edges,
    0 and until)."""
    if times is not None:
        grid = np.asarray(times, dtype=float)
    elif every is not None:
        grid = np.append(np.arange(0.0, until, every), until)
    else:
        grid = np.union1d(np.linspace(0.0, until, 1001), breaks)
    # Snap output times that are a rounding error away from a dose or infusion edge onto it
    # (linspace gives 63.00000000000001 for a dose at 63): LSODA rejects such tiny steps.
    if breaks.size:
        nearest = breaks[np.clip(np.searchsorted(breaks, grid), 1, breaks.size) - 1]
        after = breaks[np.clip(np.searchsorted(breaks, grid), 0, breaks.size - 1)]
        for edge in (nearest, after):
            close = np.abs(grid - edge) <= 1e-9 * max(until, 1.0)
            grid = np.where(close, edge, grid)
    grid = np.unique(grid)
    if grid.size == 0 or grid[0] < 0 or grid[-1] > until * (1 + 1e-12):
        raise ValidationError(f"output times must lie in [0, {until:g}] day")
    return grid


def grid_index(grid: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Positions in ``grid`` (from :func:`output_grid`) of requested ``times``: the nearest
    point, since a time a rounding error from a dose was snapped onto the dose."""
    times = np.asarray(times, dtype=float)
    right = np.clip(np.searchsorted(grid, times), 0, grid.size - 1)
    left = np.clip(right - 1, 0, grid.size - 1)
    return np.where(np.abs(grid[left] - times) < np.abs(grid[right] - times), left, right)

"""Frozen simulation results that carry units."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from difflib import get_close_matches
from pathlib import Path

import numpy as np
import pint

from .accuracy import conservation_residuals, warn_if_inaccurate
from .errors import UnitError, ValidationError
from .io.result_files import write_csv
from .optional import require
from .units import (
    canonical_unit,
    convertible,
    format_unit,
    parse_unit,
    split_output,
    ureg,
)

__all__ = ["Diagnostics", "Result", "build_result"]


@dataclass(frozen=True)
class Diagnostics:
    """How the solver got there.

    Attributes
    ----------
    method, rtol, atol
        Solver settings used.
    steps, rhs_evaluations, jacobian_evaluations
        Totals over all segments.
    segments
        Number of intervals integrated between discontinuities (doses, infusion ends).
    conservation_residuals
        For each conservation law of the stoichiometry (text -> value): the largest
        deviation over the run of ``law(t) - law(0) - dosed(t)``, relative to the largest of
        ``|law|`` and the dosed amount.  With accumulator states this is the mass balance.
    failed_methods
        (method, error message) of every method that failed on this run before ``method``
        finished it (automatic fallback between stiff methods; a NumericalWarning says so).
    """

    method: str
    rtol: float
    atol: float | tuple[float, ...]
    steps: int
    rhs_evaluations: int
    jacobian_evaluations: int
    segments: int
    conservation_residuals: Mapping[str, float] = field(default_factory=dict)
    #: (method, error) of each stiff method that failed before ``method`` succeeded
    failed_methods: tuple[tuple[str, str], ...] = ()

    @property
    def max_conservation_residual(self) -> float:
        return max(self.conservation_residuals.values(), default=0.0)


def _frozen(a: np.ndarray) -> np.ndarray:
    a = np.array(a, dtype=float)
    a.flags.writeable = False
    return a


@dataclass(frozen=True, eq=False)
class Result:
    """Time course of every state and observable.

    ``res["C"]`` is a pint Quantity array in the unit the model declares; ``res.time`` is in
    the model's time unit.  Values are right-continuous: at a dose time they include the
    dose; :meth:`before_dose` gives the value just before.

    Attributes
    ----------
    model
        Model name.
    names
        States then observables.
    diagnostics
        :class:`Diagnostics` of the run.
    """

    model: str
    time_days: np.ndarray
    time_unit: pint.Unit
    state_names: tuple[str, ...]
    state_units: tuple[pint.Unit, ...]
    states: np.ndarray           # canonical, (n_states, n_times)
    observable_names: tuple[str, ...]
    observable_units: tuple[pint.Unit, ...]
    observables: np.ndarray      # canonical, (n_obs, n_times)
    diagnostics: Diagnostics
    pre_dose_days: np.ndarray = field(default_factory=lambda: np.empty(0))
    pre_dose_states: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    pre_dose_observables: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))
    regimen: str = ""
    #: the outputs shown unless others are asked for (the model's default outputs)
    outputs: tuple[str, ...] = ()
    #: name -> what it is in words, for the states and rules the model labels
    labels: Mapping[str, str] = field(default_factory=dict)
    #: (day, event name) of every event executed, in order (models with [[event]])
    events: tuple[tuple[float, str], ...] = ()
    #: what an adaptive regimen's rules did to each dose, in order
    #: (:class:`mechsim.dose_rules.DoseDecision`; empty for a regimen without rules)
    doses: tuple = ()

    def __post_init__(self):
        for name in ("time_days", "states", "observables", "pre_dose_days", "pre_dose_states",
                     "pre_dose_observables"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))

    @property
    def names(self) -> tuple[str, ...]:
        return self.state_names + self.observable_names

    def __contains__(self, name: str) -> bool:
        return name in self.names

    @property
    def time(self) -> pint.Quantity:
        return ureg.Quantity(self.time_days, ureg.day).to(self.time_unit)

    def unit(self, name: str) -> pint.Unit:
        """Reporting unit of a state or observable (``"C_mass[ng/mL]"``: ng/mL)."""
        return self._locate(name)[2]

    def _locate(self, name: str):
        """(table, row, unit) of an output; ``NAME[unit]`` asks for another unit."""
        bare, wanted = split_output(name)
        if bare in self.state_names:
            i = self.state_names.index(bare)
            return self.states, i, convertible(bare, self.state_units[i], wanted)
        if bare in self.observable_names:
            i = self.observable_names.index(bare)
            return self.observables, i, convertible(bare, self.observable_units[i], wanted)
        close = get_close_matches(bare, self.names, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise ValidationError(f"no output named {bare!r} ({hint}available: "
                              f"{', '.join(self.names)})")

    def __getitem__(self, name: str) -> pint.Quantity:
        """An output over time: ``res["C_mass"]`` in the model's unit, ``res["C_mass[ng/mL]"]``
        in ng/mL."""
        table, i, unit = self._locate(name)
        return _report(table[i], unit)

    def label(self, name: str) -> str:
        """What an output is, in words, with its unit: ``"isatuximab in plasma [mg/L]"``
        (the name when the model gives no label; no unit when it is dimensionless)."""
        bare, _ = split_output(name)
        unit = format_unit(self.unit(name))
        return f"{self.labels.get(bare, bare)}{f' [{unit}]' if unit else ''}"

    def event_times(self, name: str | None = None) -> pint.Quantity:
        """When events (or the event ``name``) executed, in the model's time unit."""
        days = [t for t, executed in self.events if name is None or executed == name]
        return ureg.Quantity(np.array(days, dtype=float), ureg.day).to(self.time_unit)

    def dose_table(self) -> list[dict]:
        """The doses of an adaptive regimen, one row each: time (in the model's time
        unit), what happened ("given", "skipped", "held", "reduced", "given late",
        "dropped", "added"), the fraction of the planned dose given, and the rule that
        decided it."""
        factor = (1 * ureg.day).to(self.time_unit).magnitude
        unit = format_unit(self.time_unit)
        return [{f"time[{unit}]": d.day * factor, "action": d.action,
                 "fraction": d.fraction, "rule": d.rule} for d in self.doses]

    def in_time_unit(self, unit) -> Result:
        """The same result reported with time in ``unit`` (``"h"``, ``"week"``)."""
        parsed = parse_unit(unit, what="time unit") if isinstance(unit, str) else unit
        if (1 * parsed).dimensionality != ureg.day.dimensionality:
            raise UnitError(f"the time unit must be a time, got {unit!r}")
        return dataclasses.replace(self, time_unit=parsed)

    def _pre_dose(self, name: str) -> np.ndarray:
        """Canonical values of an output just before each dose."""
        if not self.pre_dose_days.size:
            return np.empty(0)
        name, _ = split_output(name)
        if name in self.state_names:
            return self.pre_dose_states[:, self.state_names.index(name)]
        return self.pre_dose_observables[:, self.observable_names.index(name)]

    def before_dose(self, name: str) -> tuple[pint.Quantity, pint.Quantity]:
        """(dose times, value just before each dose) for a state or observable."""
        unit = self.unit(name)
        times = ureg.Quantity(self.pre_dose_days, ureg.day).to(self.time_unit)
        return times, _report(self._pre_dose(name), unit)

    def series(self, name: str) -> tuple[np.ndarray, pint.Quantity]:
        """(time in days, values) with the value just before each dose inserted before its
        jump, so integrals and threshold times see the discontinuities exactly.  Times repeat
        at dose times (left limit first)."""
        table, i, unit = self._locate(name)
        t, y = self.time_days, table[i]
        inside = (self.pre_dose_days > t[0]) & (self.pre_dose_days <= t[-1])
        if inside.any():
            t_pre, y_pre = self.pre_dose_days[inside], self._pre_dose(name)[inside]
            # sort by time; at equal times the pre-dose point (flag 0) comes first
            keys = np.concatenate([t, t_pre])
            first = np.concatenate([np.ones_like(t), np.zeros_like(t_pre)])
            order = np.lexsort((first, keys))
            t = keys[order]
            y = np.concatenate([y, y_pre])[order]
        return t, _report(y, unit)

    def to_csv(self, path: str | Path, names: list[str] | None = None) -> Path:
        """Write time and outputs (default: :attr:`outputs`) with units in the header, e.g.
        ``C [nM]``; ``NAME[unit]`` writes an output in that unit."""
        return write_csv(self, Path(path), list(names or self.outputs or self.names))

    def to_dataframe(self, names: list[str] | None = None, *, bare_names: bool = False):
        """A pandas DataFrame (needs pandas): a time column, then one column per output
        (default: :attr:`outputs`; ``NAME[unit]`` gives an output in that unit).

        Columns are named ``"name [unit]"`` as in the CSV files, or just ``"name"`` with
        ``bare_names=True``; either way ``df.attrs["units"]`` maps each column to its unit
        and ``df.attrs["labels"]`` to its label.

        Examples
        --------
        >>> import mechsim
        >>> res = mechsim.simulate("one_compartment", "100 mg iv", until="1 day",
        ...                        every="12 h")
        >>> res.to_dataframe(["C_mass[ug/mL]"]).round(2)
           time [d]  C_mass [ug/mL]
        0       0.0           10.00
        1       0.5            7.07
        2       1.0            5.00
        >>> df = res.to_dataframe(["C_mass"], bare_names=True)
        >>> list(df.columns), df.attrs["units"]
        (['time', 'C_mass'], {'time': 'd', 'C_mass': 'mg/L'})
        """
        pd = require("pandas", "Result.to_dataframe")
        names = list(names or self.outputs or self.names)
        columns = {"time": (self.time.magnitude, format_unit(self.time_unit), "time")}
        for n in names:
            bare = split_output(n)[0]
            columns[bare] = (self[n].magnitude, format_unit(self.unit(n)) or "1",
                             self.labels.get(bare, bare))
        titles = {k: k if bare_names else f"{k} [{unit}]" for k, (_, unit, _) in
                  columns.items()}
        frame = pd.DataFrame({titles[k]: v for k, (v, _, _) in columns.items()})
        frame.attrs["units"] = {titles[k]: unit for k, (_, unit, _) in columns.items()}
        frame.attrs["labels"] = {titles[k]: label for k, (_, _, label) in columns.items()}
        return frame

    def _repr_html_(self) -> str:
        from .html import result_html

        return result_html(self)

    def __repr__(self) -> str:
        t = self.time.magnitude
        return (f"<Result {self.model}: {len(t)} times {t[0]:g}..{t[-1]:g} "
                f"{format_unit(self.time_unit)}, {len(self.names)} outputs>")


def _report(canonical: np.ndarray, unit: pint.Unit) -> pint.Quantity:
    return ureg.Quantity(canonical, canonical_unit(1 * unit)).to(unit)


def build_result(cm, parameters: np.ndarray, plan, grid: np.ndarray, trajectory, *,
                 rtol: float, atol: np.ndarray, atol_given=None, regimen: str = "") -> Result:
    """A :class:`Result` from a solver's :class:`~mechsim.solvers.Trajectory`: observables,
    diagnostics, mass balance, and the numerical-honesty warnings."""
    n = len(cm.state_names)
    y_initial = np.asarray(cm.initial_state(parameters), dtype=float)
    out = trajectory.states
    # an event that sets a state moves amounts the dose plan does not book: the
    # conservation laws do not hold across it, so they are not checked
    moved = {e.name for e in cm.events if any(k == "state" for k, _, _ in e.assignments)}
    changed = any(d.action != "given" for d in trajectory.doses)
    if changed or moved & {name for _, name in trajectory.events}:
        # nor does a dose that a rule changed: the plan books the doses as scheduled
        residuals = {}
    else:
        residuals = conservation_residuals(cm, parameters, plan, grid, out, y_initial, atol)
    warn_if_inaccurate(cm, out, residuals, rtol, atol)
    pre_t = np.asarray(trajectory.pre_dose_days, dtype=float)
    pre_states = np.asarray(trajectory.pre_dose_states, dtype=float).reshape(len(pre_t), n)
    pre_obs = cm.observables(pre_t, pre_states.T, parameters).T \
        if cm.observable_names and pre_t.size else np.empty((len(pre_t), 0))
    diagnostics = Diagnostics(
        method=trajectory.method, rtol=rtol,
        atol=atol_given if isinstance(atol_given, float) else tuple(float(x) for x in atol),
        steps=trajectory.steps, rhs_evaluations=trajectory.rhs_evaluations,
        jacobian_evaluations=trajectory.jacobian_evaluations,
        segments=len(plan.breakpoints(float(grid[-1]))) - 1,
        conservation_residuals=residuals, failed_methods=trajectory.failed_methods)
    return Result(
        model=cm.name, time_days=grid, time_unit=cm.time_unit,
        state_names=cm.state_names, state_units=cm.state_units, states=out,
        observable_names=cm.observable_names, observable_units=cm.observable_units,
        observables=cm.observables(grid, out, parameters) if cm.observable_names else
        np.empty((0, len(grid))),
        diagnostics=diagnostics, pre_dose_days=pre_t, pre_dose_states=pre_states,
        pre_dose_observables=pre_obs, regimen=regimen,
        outputs=cm.default_outputs or cm.state_names + cm.observable_names,
        labels=dict(cm.labels), events=tuple(trajectory.events),
        doses=tuple(trajectory.doses))

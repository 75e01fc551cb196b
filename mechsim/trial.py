"""Virtual clinical trials: arms of virtual patients, per-patient endpoints, summaries.

A :class:`Trial` gives each arm a regimen and a size, draws that many patients from a
:class:`~mechsim.population.Population`, simulates them together
(:func:`~mechsim.batch.simulate_many`) and computes, per patient, the endpoints of its
disease (:class:`~mechsim.analysis.endpoints.Endpoints`; by default myeloma's, on serum
M-protein):

* best response up to progression (or the end of follow-up), and the response rates the
  endpoints define (for myeloma PR >= 50 % and VGPR >= 90 % fall from baseline);
* progression-free survival: the endpoints' event time (for myeloma the first rise >= 25 %
  and >= 5 g/L above the running nadir), censored at the data cut-off.  ``follow_up`` is
  the time from the first enrolment to the cut-off; with ``accrual``, patients enter
  uniformly over that period, so each is followed for ``follow_up - entry``
  (administrative censoring as in a real trial's analysis).  ``competing`` events
  (:class:`~mechsim.analysis.competing.CompetingEvent`: death without progression,
  progression by criteria other than the marker) end PFS too; each patient's first event
  is recorded.

:class:`TrialResult` summarises the arms (response rates with exact CIs, Kaplan-Meier medians
with CIs, Cox hazard ratios against the control arm), writes the patient table and the
summary as CSV and draws the Kaplan-Meier figure.

Arms are randomised: each draws its own patients from a seed derived from the trial seed and
the arm's position.  ``paired=True`` gives every arm the same patients instead (a twin
design: a per-patient comparison of treatments).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pint

from .analysis.competing import CompetingEvent, first_event_times
from .analysis.endpoints import Endpoints, MyelomaIMWG
from .analysis.survival import HazardRatio, KaplanMeier, hazard_ratio, kaplan_meier, proportion
from .dosing import Regimen
from .errors import SolverError, ValidationError
from .io.atomic import write_atomically
from .population import Population
from .units import as_days, format_quantity, format_unit, parse_quantity, ureg

__all__ = ["Arm", "Published", "Trial", "TrialArm", "TrialResult", "run_trial"]

DAYS_PER_MONTH = float(ureg.Quantity(1, "month").to("day").magnitude)  # 365.25 / 12
PROGRESSION = "progression"  # the first event is the endpoints' own (marker) progression
CENSORED = "censored"


@dataclass(frozen=True)
class Arm:
    """One arm of a scenario or a trial: a regimen, optionally overrides of its own, and in
    a trial the number of virtual patients."""

    name: str
    label: str
    regimen: Regimen
    size: int | None = None
    overrides: tuple[tuple[str, str], ...] = ()


#: The same class, by the name the trial API has always used.
TrialArm = Arm


@dataclass(frozen=True)
class Published:
    """Published results to show next to the simulated ones (any may be missing).
    ``rates`` maps a key of the endpoints' rates (``"orr"``, ``"vgpr"``) to per-arm
    values."""

    median_pfs_months: tuple[tuple[str, float], ...] = ()
    rates: tuple[tuple[str, tuple[tuple[str, float], ...]], ...] = ()
    hazard_ratio: float | None = None
    source: str = ""

    def rate(self, key: str, arm: str) -> float | None:
        return dict(dict(self.rates).get(key, ())).get(arm)


@dataclass(frozen=True)
class Trial:
    """A virtual trial (see the module docstring).  ``control`` names the reference arm of
    the hazard ratios (default: the last arm)."""

    model: str
    population: Population
    arms: tuple[Arm, ...]
    follow_up: pint.Quantity | str = "24 month"
    accrual: pint.Quantity | str | None = None
    assess_every: pint.Quantity | str = "1 day"
    control: str | None = None
    params: tuple[str, ...] = ()
    overrides: tuple[tuple[str, str], ...] = ()
    seed: int | None = None
    paired: bool = False
    endpoints: Endpoints = field(default_factory=MyelomaIMWG)
    rtol: float = 1e-6
    published: Published = field(default_factory=Published)
    competing: tuple[CompetingEvent, ...] = ()

    def __post_init__(self):
        # times are read once, here: text or Quantities in, Quantities kept
        for name in ("follow_up", "accrual", "assess_every"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, _positive_time(value, name))
        if not self.arms:
            raise ValidationError("a trial needs at least one arm")
        names = [a.name for a in self.arms]
        if len(set(names)) != len(names):
            raise ValidationError("trial arms need distinct names")
        for arm in self.arms:
            if isinstance(arm.size, bool) or not isinstance(arm.size, int) or arm.size < 1:
                raise ValidationError(f"arm {arm.name}: size must be a positive integer, "
                                      f"got {arm.size!r}")
        if self.control is not None and self.control not in names:
            raise ValidationError(f"control arm {self.control!r} is not an arm (arms: "
                                  f"{', '.join(names)})")
        if self.accrual is not None and not self.accrual < self.follow_up:
            raise ValidationError(f"accrual ({format_quantity(self.accrual)}) must be shorter "
                                  f"than the follow-up ({format_quantity(self.follow_up)})")
        if not 0 < self.rtol < 1:
            raise ValidationError(f"rtol must lie in (0, 1), got {self.rtol!r}")
        events = [e.name for e in self.competing]
        if len(set(events)) != len(events) or PROGRESSION in events or CENSORED in events:
            raise ValidationError("competing events need distinct names other than "
                                  f"{PROGRESSION!r} and {CENSORED!r}")

    @property
    def control_arm(self) -> str:
        return self.control or self.arms[-1].name

    def arm_seed(self, index: int) -> int:
        """The seed of arm ``index``'s patients (the same for every arm when paired)."""
        seed = self.seed if self.seed is not None else self.population.seed
        if seed is None:
            raise ValidationError("a trial needs a seed (in the population file or the "
                                  "trial) so that it can be rerun")
        if self.paired:
            return int(seed)
        return int(np.random.SeedSequence([int(seed), index]).generate_state(1)[0])


@dataclass(frozen=True, eq=False)
class TrialResult:
    """Per-patient endpoints of every arm (arrays in arm order) and their summaries."""

    trial: Trial
    arm: np.ndarray = field(repr=False)             # arm name per patient
    patient: np.ndarray = field(repr=False)         # index within the arm
    columns: Mapping[str, np.ndarray] = field(repr=False)   # covariates, sampled parameters
    column_units: Mapping[str, str] = field(repr=False)
    best_reduction: np.ndarray = field(repr=False)
    pfs_days: np.ndarray = field(repr=False)        # progression or censoring time
    progressed: np.ndarray = field(repr=False)
    # what ended PFS: PROGRESSION, a competing event's name, or CENSORED
    first_event: np.ndarray = field(repr=False, default=None)
    solver_fallbacks: int = 0
    # patients whose simulation stopped (every solver failed) after they had progressed
    solver_stops_after_progression: int = 0

    def __repr__(self) -> str:
        sizes = ", ".join(f"{a.name}: {a.size}" for a in self.trial.arms)
        return f"TrialResult({self.trial.model}; {sizes})"

    def _rows(self, arm: str) -> np.ndarray:
        if arm not in {a.name for a in self.trial.arms}:
            raise KeyError(f"no arm {arm!r} (arms: "
                           f"{', '.join(a.name for a in self.trial.arms)})")
        return self.arm == arm

    def response(self, arm: str) -> np.ndarray:
        """Best response category of each patient of ``arm``."""
        category = self.trial.endpoints.category
        return np.array([category(r) for r in self.best_reduction[self._rows(arm)]])

    def rate(self, arm: str, at_least=None, alpha: float = 0.05) -> tuple[float, float, float]:
        """Share of ``arm`` with best response at least ``at_least`` (default: the first
        rate of the endpoints, for myeloma PR), with exact CI."""
        endpoints = self.trial.endpoints
        at_least = endpoints.rates[0][2] if at_least is None else at_least
        cats = [endpoints.category(r) for r in self.best_reduction[self._rows(arm)]]
        hits = sum(c.at_least(at_least) for c in cats)
        return proportion(hits, len(cats), alpha=alpha)

    def kaplan_meier(self, arm: str, alpha: float = 0.05) -> KaplanMeier:
        """PFS curve of ``arm`` with times in months."""
        rows = self._rows(arm)
        return kaplan_meier(self.pfs_days[rows] / DAYS_PER_MONTH, self.progressed[rows],
                            alpha=alpha)

    def hazard_ratio(self, arm: str, control: str | None = None,
                     alpha: float = 0.05) -> HazardRatio:
        """Cox PFS hazard ratio of ``arm`` against ``control`` (default: the trial's)."""
        control = control or self.trial.control_arm
        rows = self._rows(arm) | self._rows(control)
        return hazard_ratio(self.pfs_days[rows], self.progressed[rows],
                            self.arm[rows] == arm, alpha=alpha)

    def summary(self, alpha: float = 0.05) -> list[dict]:
        """One row per (arm, endpoint): simulated value, CI and the published value."""
        pub = self.trial.published
        level = f"{round(100 * (1 - alpha))} % CI"
        rows = []
        for a in self.trial.arms:
            km = self.kaplan_meier(a.name, alpha)
            rows += [
                _row(a, "patients", len(self.response(a.name)), None, None, "", None, level),
                _row(a, "PFS events", km.events, None, None, "", None, level),
            ]
            if self.trial.competing:
                first = self.first_event[self._rows(a.name)]
                marker = f"progression ({self.trial.endpoints.marker} rise)"
                rows += [_row(a, f"  of which {marker if name == PROGRESSION else name}",
                              int(np.sum(first == name)), None, None, "", None, level)
                         for name in (PROGRESSION, *(e.name for e in self.trial.competing))]
            rows += [
                _row(a, "median PFS", km.median, km.median_lower, km.median_upper, "month",
                     dict(pub.median_pfs_months).get(a.name), level),
            ]
            rows += [_row(a, label, *self.rate(a.name, category, alpha), "",
                          pub.rate(key, a.name), level)
                     for label, key, category in self.trial.endpoints.rates]
            if a.name != self.trial.control_arm:
                hr = self.hazard_ratio(a.name, alpha=alpha)
                rows.append(_row(a, f"PFS hazard ratio vs {self.trial.control_arm}", hr.value,
                                 hr.lower, hr.upper, "", pub.hazard_ratio, level))
        return rows

    def summary_text(self, alpha: float = 0.05) -> str:
        """The summary as aligned lines: value [CI] unit | published value."""
        lines = []
        for row in self.summary(alpha):
            low, high = row[next(k for k in row if k.startswith("lower"))], \
                row[next(k for k in row if k.startswith("upper"))]
            ci = f" [{_shown(low, 3)}, {_shown(high, 3)}]" if low and high else ""
            pub = f" | {float(row['published']):.4g}" if row["published"] else ""
            lines.append(f"  {row['arm']:8s} {row['endpoint']:40s} "
                         f"{_shown(row['simulated'], 4)}{ci} {row['unit']}{pub}".rstrip())
        return "\n".join(lines)

    def write_patients(self, path: str | Path) -> None:
        """One row per virtual patient: arm, covariates, sampled parameters, endpoints."""
        names = list(self.columns)
        cats = [self.trial.endpoints.category(r) for r in self.best_reduction]

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as fh:
                writer = csv.writer(fh)
                writer.writerow(["arm", "patient"] +
                                [f"{n} [{self.column_units[n]}]" if self.column_units[n]
                                 else n for n in names] +
                                ["best_reduction", "best_response", "pfs [month]",
                                 "progressed", "pfs_event"])
                for i in range(self.arm.size):
                    writer.writerow([self.arm[i], int(self.patient[i])] +
                                    [_cell(self.columns[n][i]) for n in names] +
                                    [repr(float(self.best_reduction[i])), str(cats[i]),
                                     repr(float(self.pfs_days[i] / DAYS_PER_MONTH)),
                                     int(self.progressed[i]), str(self.first_event[i])])

        write_atomically(path, write)

    def write_summary(self, path: str | Path, alpha: float = 0.05) -> None:
        rows = self.summary(alpha)

        def write(tmp: Path) -> None:
            with tmp.open("w", newline="") as fh:
                writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
                writer.writeheader()
                writer.writerows(rows)

        write_atomically(path, write)

    def plot_km(self, ax=None, *, alpha: float = 0.05, title: str | None = None):
        """Kaplan-Meier PFS curves with confidence bands, medians and, if known, the
        published medians; returns the axes."""
        from .plotting import plot_kaplan_meier

        curves = {a.label: self.kaplan_meier(a.name, alpha) for a in self.trial.arms}
        published = {a.label: dict(self.trial.published.median_pfs_months).get(a.name)
                     for a in self.trial.arms}
        text = None
        if len(self.trial.arms) > 1:
            parts = []
            for a in self.trial.arms:
                if a.name != self.trial.control_arm:
                    hr = self.hazard_ratio(a.name, alpha=alpha)
                    parts.append(f"HR {a.label} vs "
                                 f"{self._label(self.trial.control_arm)}: {hr.value:.2f} "
                                 f"({hr.lower:.2f}-{hr.upper:.2f})")
            if self.trial.published.hazard_ratio is not None:
                parts.append(f"published HR {self.trial.published.hazard_ratio:g}")
            text = "\n".join(parts)
        return plot_kaplan_meier(curves, published=published, ax=ax, note=text,
                                 title=title or self.trial.model)

    def _label(self, name: str) -> str:
        return next(a.label for a in self.trial.arms if a.name == name)


def _row(arm: Arm, endpoint: str, value, lower, upper, unit: str, published, level):
    def num(x):
        if x is None:
            return ""
        # counts stay integers ("2000", not "2000.0")
        return str(int(x)) if isinstance(x, int | np.integer) else repr(float(x))

    return {"arm": arm.label, "endpoint": endpoint, "simulated": num(value),
            f"lower ({level})": num(lower), f"upper ({level})": num(upper), "unit": unit,
            "published": num(published)}


def _shown(text: str, digits: int) -> str:
    """A summary value as printed: a median PFS that the curve never reaches is infinite."""
    value = float(text)
    return "not reached" if value == math.inf else f"{value:.{digits}g}"


def _cell(value) -> str:
    if isinstance(value, str | np.str_):
        return str(value)
    return str(int(value)) if isinstance(value, int | np.integer) else repr(float(value))


def _positive_time(value, what: str) -> pint.Quantity:
    days = as_days(value, what)
    if not days > 0:
        raise ValidationError(f"{what} must be a positive time such as '24 months', got "
                              f"{value!r}")
    return value if isinstance(value, pint.Quantity) else parse_quantity(value, what=what)


def run_trial(trial: Trial, *, executor=None, workers: int | None = None,
              chunk_size: int | None = None) -> TrialResult:
    """Simulate every arm of ``trial`` and compute each patient's endpoints.

    ``executor``, ``workers`` and ``chunk_size`` go to :func:`mechsim.simulate_many`; the
    result does not depend on them.
    """
    from .batch import simulate_many
    from .io import prepare_model

    base = prepare_model(trial.model, list(trial.params) or None, dict(trial.overrides))
    endpoints = trial.endpoints
    arms, patients, best, pfs, events, firsts = [], [], [], [], [], []
    columns: dict[str, list] = {}
    units: dict[str, str] = {}
    fallbacks = stops = 0
    for index, arm in enumerate(trial.arms):
        model = base.with_parameters(dict(arm.overrides)) if arm.overrides else base
        people = trial.population.sample(model, arm.size, seed=trial.arm_seed(index))
        batch = simulate_many(model, arm.regimen, parameters=people.quantities(),
                              until=trial.follow_up, every=trial.assess_every,
                              rtol=trial.rtol, executor=executor, workers=workers,
                              chunk_size=chunk_size, partial=True)
        fallbacks += len(batch.fallbacks)
        t = batch.time_days
        try:
            marker = batch[endpoints.marker].to(endpoints.unit).magnitude
        except KeyError as exc:
            raise ValidationError(f"trial marker: {exc.args[0]}") from None
        except pint.DimensionalityError:
            raise ValidationError(f"trial marker {endpoints.marker!r} must be in units of "
                                  f"{endpoints.unit} for the {endpoints.name} endpoints"
                                  ) from None
        # the first PFS event: the marker's progression or an earlier competing event
        first_time = endpoints.progression_times(t, marker)
        first = np.full(arm.size, PROGRESSION, dtype=object)
        for k, competing in enumerate(trial.competing):
            times = _competing_times(trial, index, competing, k, batch, arm.size)
            earlier = times < first_time
            first[earlier] = competing.name
            first_time = np.where(earlier, times, first_time)
        censor = np.full(arm.size, t[-1])
        if trial.accrual is not None:
            entry = np.random.default_rng([trial.arm_seed(index), 1]).uniform(
                0.0, as_days(trial.accrual, "accrual"), arm.size)
            censor = censor - entry
        # A run no solver could finish is usable only if the patient progressed, or reached
        # their data cut-off, before it stopped (a tumour growing unchecked long after
        # progression can outgrow the solver); otherwise PFS would be unknown, and that is
        # an error, not a censoring.
        for run, reached, message in batch.failures:
            if not min(first_time[run], censor[run]) < reached:
                raise SolverError(f"arm {arm.name}, patient {run}: the simulation stopped at "
                                  f"day {reached:.1f} before the patient progressed: "
                                  f"{message}")
        stops += len(batch.failures)
        event = first_time <= censor
        time = np.where(event, first_time, censor)
        first[~event] = CENSORED
        firsts.append(first.astype(str))
        arms.append(np.full(arm.size, arm.name))
        patients.append(np.arange(arm.size))
        best.append(endpoints.best_response(t, marker, time))
        pfs.append(time)
        events.append(event)
        for name in people.covariates:
            column = people.covariate(name)
            columns.setdefault(name, []).append(
                column if isinstance(column, np.ndarray) else column.magnitude)
            units[name] = "" if isinstance(column, np.ndarray) else format_unit(column.units)
        for name, q in people.quantities().items():
            if name in people.covariates:
                continue
            columns.setdefault(name, []).append(q.magnitude)
            units[name] = format_unit(q.units)
    merged = {name: np.concatenate(parts) for name, parts in columns.items()}
    return TrialResult(trial=trial, arm=np.concatenate(arms), patient=np.concatenate(patients),
                       columns=merged, column_units=units, best_reduction=np.concatenate(best),
                       pfs_days=np.concatenate(pfs), progressed=np.concatenate(events),
                       first_event=np.concatenate(firsts),
                       solver_fallbacks=fallbacks, solver_stops_after_progression=stops)


def _competing_times(trial: Trial, index: int, event: CompetingEvent, k: int, batch,
                     size: int) -> np.ndarray:
    """Time of competing event ``k`` for each patient of arm ``index`` (days, inf if none).
    The draws depend on the arm's seed and the event's position only, so paired arms share
    them and adding an event does not change the patients."""
    draws = np.random.default_rng([trial.arm_seed(index), 2, k]).exponential(size=size)
    scale = None
    if event.scale_with is not None:
        try:
            values = np.asarray(batch[event.scale_with].magnitude, dtype=float)
        except KeyError as exc:
            raise ValidationError(f"competing event {event.name!r}: {exc.args[0]}") from None
        with np.errstate(divide="ignore", invalid="ignore"):
            scale = values / values[:, :1]
        if not np.all(np.isfinite(scale[:, 0])):
            raise ValidationError(f"competing event {event.name!r}: {event.scale_with} must "
                                  "be positive at time 0 to scale a hazard")
    return first_event_times(batch.time_days, event.per_day, draws, scale)

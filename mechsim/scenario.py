"""Scenario files: one TOML file that reproduces a result, and the folder it writes.

A scenario names a model, parameter files and overrides, one or more arms (each a regimen,
optionally with its own overrides), the outputs to tabulate and plot, metrics, an optional
dose-response sweep and a seed.  :func:`run_scenario` writes, into a new folder:

* ``<arm>.csv``: the time course of each arm (units in the header);
* ``<arm>_doses.csv``: for an arm whose regimen has dosing rules, what they did to each
  dose (time, action, fraction given, rule);
* ``metrics.csv``: every metric for every arm (arm, metric, value, unit);
* ``timecourse.png``: one panel per output, one line per arm;
* ``dose_response.csv`` / ``dose_response.png`` if the scenario has a sweep (the long table
  and the figure of ``mechsim dose-response``);
* ``provenance.json``: mechsim version, SHA-256 of the scenario, model and parameter files,
  the scenario text, the command line and the time.

The folder is assembled under a temporary name and renamed at the end, so a failed run
leaves nothing behind.  The format is documented in docs/scenarios.md.
"""

from __future__ import annotations

import csv
import hashlib
import json
import platform
import re
import sys
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import pint

from .analysis import Metric
from .analysis.competing import CompetingEvent
from .analysis.dose_response import check_fit_model, dose_range
from .analysis.endpoints import ENDPOINTS, MyelomaIMWG
from .dosing import Regimen
from .errors import MechsimError, ParseError
from .io.atomic import atomic_folder, check_new_folder
from .io.common import resolve
from .io.population_file import load_population
from .io.toml_source import TomlSource
from .trial import Arm, Published, Trial, TrialResult
from .units import format_unit, parse_quantity, parse_unit, ureg

__all__ = ["Arm", "DoseResponseSweep", "Scenario", "ScenarioRun", "read_scenario",
           "run_scenario"]

_SCENARIO_KEYS = {"name", "description", "model", "params", "until", "every", "seed",
                  "outputs", "log", "time_unit"}
_DR_KEYS = {"regimen", "doses", "n", "metric", "background", "fit_model"}
_TRIAL_KEYS = {"population", "size", "follow_up", "accrual", "assess_every", "control", "marker",
               "paired", "rtol", "published", "endpoints", "competing"}
_PUBLISHED_KEYS = {"source", "median_pfs", "hazard_ratio"}  # and the endpoints' rate keys


@dataclass(frozen=True)
class DoseResponseSweep:
    """The ``[dose_response]`` table: a regimen with ``{dose}``, the doses, one metric, an
    optional background regimen given in every run and the curve to fit (``fit_model``:
    auto, linear, emax or sigmoid)."""

    regimen: str
    doses: pint.Quantity
    metric: Metric
    background: str | None = None
    fit_model: str = "auto"


@dataclass(frozen=True)
class Scenario:
    """A parsed scenario file (see the module docstring); times are Quantities, read once."""

    name: str
    model: str
    arms: tuple[Arm, ...]
    until: pint.Quantity
    outputs: tuple[str, ...]
    description: str = ""
    params: tuple[str, ...] = ()
    every: pint.Quantity | None = None
    seed: int | None = None
    log: tuple[str, ...] = ()
    time_unit: pint.Unit | None = None
    overrides: tuple[tuple[str, str], ...] = ()
    metrics: tuple[tuple[str, Metric], ...] = ()
    dose_response: DoseResponseSweep | None = None
    trial: Trial | None = None
    text: str = field(default="", repr=False, compare=False)
    path: str | None = field(default=None, compare=False)


def _strings(value, what: str, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ParseError(f"{what} must be a list of text values", where)
    return tuple(value)


def _overrides(raw, where: str) -> tuple[tuple[str, str], ...]:
    if not isinstance(raw, dict):
        raise ParseError("overrides must be a table of NAME = \"QUANTITY\"", where)
    for name, value in raw.items():
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise ParseError(f"override {name} must be a quantity such as \"70 kg\"", where)
    return tuple((k, str(v)) for k, v in raw.items())


#: A scenario's name becomes the default output folder NAME_run: a plain name, never a path.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")


def read_scenario(path: str | Path) -> Scenario:
    """Read and check a scenario file (regimens, metrics and ranges are parsed here);
    ``path`` may also be the name of a built-in scenario (``"icaria_mm"``)."""
    path = resolve(path, "scenarios")
    src = TomlSource.read(path)
    data = src.data
    unknown = sorted(set(data) - {"scenario", "overrides", "arms", "metrics", "dose_response",
                                  "trial"})
    if unknown:
        raise ParseError(f"unknown table [{unknown[0]}] (allowed: arms, dose_response, "
                         "metrics, overrides, scenario, trial)", src.where((unknown[0],)))
    head = data.get("scenario")
    if not isinstance(head, dict):
        raise ParseError("a scenario needs a [scenario] table", src.path)
    bad = sorted(set(head) - _SCENARIO_KEYS)
    if bad:
        raise ParseError(f"[scenario]: unknown key {bad[0]!r} (allowed: "
                         f"{', '.join(sorted(_SCENARIO_KEYS))})",
                         src.where(("scenario",), bad[0]))
    for key in ("model", "until", "outputs"):
        if key not in head:
            raise ParseError(f"[scenario]: {key!r} is required", src.where(("scenario",)))
    model = head["model"]
    if not isinstance(model, str):
        raise ParseError("scenario.model must be a model name or path",
                         src.where(("scenario",), "model"))
    if model.endswith(".toml"):  # a path is relative to the scenario file
        model = str(path.parent / model)
    params = tuple(str(path.parent / p) if p.endswith(".toml") else p
                   for p in _strings(head.get("params", []), "scenario.params",
                                     src.where(("scenario",), "params")))
    arms_raw = data.get("arms")
    if not isinstance(arms_raw, dict) or not arms_raw:
        raise ParseError("a scenario needs at least one [arms.NAME] table with a regimen",
                         src.path)
    arms = []
    for name, raw in arms_raw.items():
        where = src.entry_where("arms", name)
        if not isinstance(raw, dict) or set(raw) - {"label", "regimen", "overrides"}:
            raise ParseError(f"arms.{name}: allowed keys are label, regimen, overrides", where)
        if not name.isidentifier():
            raise ParseError(f"arm name {name!r} must be an identifier (it names a file)", where)
        try:
            regimen = Regimen.parse(raw.get("regimen", "none"))
        except MechsimError as exc:
            raise type(exc)(f"arms.{name}: {exc.message}",
                            src.where(("arms", name), "regimen")) from None
        arms.append(Arm(name, str(raw.get("label", name)), regimen,
                        overrides=_overrides(raw.get("overrides", {}), where)))
    metrics = []
    for name, text in data.get("metrics", {}).items():
        where = src.where(("metrics",), name)
        try:
            metrics.append((name, Metric.parse(text)))
        except MechsimError as exc:
            raise type(exc)(exc.message, where) from None
    sweep = data.get("dose_response", {})
    if sweep:
        where = src.where(("dose_response",))
        missing = sorted({"regimen", "doses", "metric"} - set(sweep))
        extra = sorted(set(sweep) - _DR_KEYS)
        if missing or extra:
            problem = f"missing {missing[0]}" if missing else f"unknown key {extra[0]}"
            raise ParseError("[dose_response] needs regimen, doses and metric (optional: n, "
                             f"background, fit_model); {problem}", where)
        try:
            Regimen.parse(sweep["regimen"].replace("{dose}", "1 mg"))
            Regimen.parse(sweep.get("background", ""))
            sweep = DoseResponseSweep(regimen=sweep["regimen"],
                                      doses=dose_range(sweep["doses"], int(sweep.get("n", 12))),
                                      metric=Metric.parse(sweep["metric"]),
                                      background=sweep.get("background"),
                                      fit_model=check_fit_model(sweep.get("fit_model",
                                                                          "auto")))
        except MechsimError as exc:
            raise type(exc)(f"[dose_response]: {exc.message}", where) from None
    name = head.get("name", re.sub(r"[^A-Za-z0-9_.-]", "_", path.stem).lstrip("._-") or
                    "scenario")
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ParseError(f"scenario.name must be a plain name of letters, digits, '_', '-' "
                         f"and '.' (it names the output folder), got {name!r}",
                         src.where(("scenario",), "name"))
    seed = head.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise ParseError("scenario.seed must be an integer", src.where(("scenario",), "seed"))
    overrides = _overrides(data.get("overrides", {}), src.where(("overrides",)))
    trial = _trial(src, data["trial"], path, model, params, overrides, arms, seed) \
        if "trial" in data else None
    every = head.get("every")
    return Scenario(
        name=name, model=model, arms=tuple(arms),
        until=_time(head["until"], "scenario.until", src.where(("scenario",), "until")),
        outputs=_strings(head["outputs"], "scenario.outputs", src.where(("scenario",),
                                                                         "outputs")),
        description=str(head.get("description", "")), params=params,
        every=None if every is None else
        _time(every, "scenario.every", src.where(("scenario",), "every")), seed=seed,
        log=_strings(head.get("log", []), "scenario.log", src.where(("scenario",), "log")),
        time_unit=_time_unit(head.get("time_unit"), src.where(("scenario",), "time_unit")),
        overrides=overrides, metrics=tuple(metrics), dose_response=sweep or None,
        trial=trial,
        text=src.text, path=str(path))


def _time(raw, what: str, where: str) -> pint.Quantity:
    """A positive time such as ``"24 months"``, read once (errors name the file and line)."""
    q = parse_quantity(raw, what=what, where=where) if isinstance(raw, str) else None
    if q is None or q.dimensionality != ureg.day.dimensionality or not q.magnitude > 0:
        raise ParseError(f"{what} must be a positive time such as \"24 months\", got {raw!r}",
                         where)
    return q


def _trial(src: TomlSource, raw, path: Path, model: str, params, overrides, arms,
           seed) -> Trial:
    """The [trial] table: a virtual trial over the scenario's arms (docs/scenarios.md)."""
    where = src.where(("trial",))
    if not isinstance(raw, dict):
        raise ParseError("[trial] must be a table", where)
    extra = sorted(set(raw) - _TRIAL_KEYS)
    if extra:
        raise ParseError(f"[trial]: unknown key {extra[0]!r} (allowed: "
                         f"{', '.join(sorted(_TRIAL_KEYS))})", src.where(("trial",), extra[0]))
    if not isinstance(raw.get("population"), str):
        raise ParseError("[trial]: population (a population file or built-in name) is "
                         "required", where)
    pop = raw["population"]
    population = load_population(str(path.parent / pop) if pop.endswith(".toml") else pop)
    size = raw.get("size")
    names = [a.name for a in arms]
    if isinstance(size, dict):
        missing = sorted(set(names) - set(size))
        unknown = sorted(set(size) - set(names))
        if missing or unknown:
            raise ParseError(f"[trial] size: give one size per arm ({', '.join(names)}); "
                             f"{'missing ' + missing[0] if missing else 'unknown ' + unknown[0]}",
                             src.where(("trial",), "size"))
        sizes = size
    else:
        sizes = dict.fromkeys(names, size)
    for name, n in sizes.items():
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ParseError(f"[trial] size of arm {name} must be a positive integer, got "
                             f"{n!r}", src.where(("trial",), "size"))
    for key in ("follow_up", "accrual", "assess_every", "control", "marker", "endpoints"):
        if key in raw and not isinstance(raw[key], str):
            raise ParseError(f"[trial] {key} must be text", src.where(("trial",), key))
    kind = raw.get("endpoints", MyelomaIMWG.name)
    if kind not in ENDPOINTS:
        raise ParseError(f"[trial] endpoints {kind!r} are not known (known: "
                         f"{', '.join(sorted(ENDPOINTS))})", src.where(("trial",), "endpoints"))
    endpoints = ENDPOINTS[kind](**({"marker": raw["marker"]} if "marker" in raw else {}))
    if "paired" in raw and not isinstance(raw["paired"], bool):
        raise ParseError("[trial] paired must be true or false", src.where(("trial",), "paired"))
    rtol = raw.get("rtol", 1e-6)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float)):
        raise ParseError("[trial] rtol must be a number", src.where(("trial",), "rtol"))
    published = _published(src, raw.get("published", {}), names, endpoints)
    competing = _competing(src, raw.get("competing", []))
    times = {key: _time(raw[key], f"[trial] {key}", src.where(("trial",), key))
             for key in ("follow_up", "accrual", "assess_every") if key in raw}
    try:
        return Trial(model=model, population=population,
                     arms=tuple(replace(a, size=sizes[a.name]) for a in arms),
                     follow_up=times.get("follow_up", "24 month"),
                     accrual=times.get("accrual"),
                     assess_every=times.get("assess_every", "1 day"),
                     control=raw.get("control"), params=params, overrides=overrides,
                     seed=seed, paired=raw.get("paired", False), endpoints=endpoints,
                     rtol=float(rtol), published=published, competing=competing)
    except MechsimError as exc:
        raise type(exc)(f"[trial]: {exc.message}", exc.where or where) from None


_COMPETING_KEYS = {"name", "rate", "scale_with", "source", "note"}


def _competing(src: TomlSource, raw) -> tuple[CompetingEvent, ...]:
    """[[trial.competing]]: events other than the marker's progression that end PFS."""
    if not isinstance(raw, list):
        raise ParseError("[[trial.competing]] must be an array of tables (one per event)",
                         src.where(("trial",), "competing"))
    events = []
    for i, entry in enumerate(raw):
        table = src.item(("trial", "competing"), i)
        where = src.where(table)
        if not isinstance(entry, dict):
            raise ParseError("[[trial.competing]] entries must be tables", where)
        extra = sorted(set(entry) - _COMPETING_KEYS)
        if extra:
            raise ParseError(f"[[trial.competing]]: unknown key {extra[0]!r} (allowed: "
                             f"{', '.join(sorted(_COMPETING_KEYS))})", src.where(table, extra[0]))
        for key in _COMPETING_KEYS:
            if key in entry and not isinstance(entry[key], str):
                raise ParseError(f"[[trial.competing]] {key} must be text",
                                 src.where(table, key))
        if "name" not in entry or "rate" not in entry:
            raise ParseError("[[trial.competing]] needs a name and a rate (a hazard such as "
                             "\"0.01 1/month\")", where)
        try:
            events.append(CompetingEvent(entry["name"], entry["rate"], entry.get("scale_with"),
                                         entry.get("source", ""), entry.get("note", "")))
        except MechsimError as exc:
            key = "rate" if "rate must" in exc.message else None  # point at the bad line
            raise ParseError(f"[[trial.competing]]: {exc.message}",
                             src.where(table, key) if key else where) from None
    return tuple(events)


def _published(src: TomlSource, raw, arms: list[str], endpoints) -> Published:
    where = src.where(("trial", "published"))
    if not isinstance(raw, dict):
        raise ParseError("[trial.published] must be a table", where)
    rate_keys = [key for _, key, _ in endpoints.rates]
    allowed = _PUBLISHED_KEYS | set(rate_keys)
    extra = sorted(set(raw) - allowed)
    if extra:
        raise ParseError(f"[trial.published]: unknown key {extra[0]!r} (allowed: "
                         f"{', '.join(sorted(allowed))})", where)

    def per_arm(key, read):
        table = raw.get(key, {})
        if not isinstance(table, dict) or set(table) - set(arms):
            raise ParseError(f"[trial.published] {key} must be a table arm = value with arms "
                             f"from {', '.join(arms)}", where)
        return tuple((arm, read(key, v)) for arm, v in table.items())

    def rate(key, v):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0 <= v <= 1:
            raise ParseError(f"[trial.published] {key}: rates are numbers in [0, 1], got "
                             f"{v!r}", where)
        return float(v)

    def months(key, v):
        q = parse_quantity(v, what=f"[trial.published] {key}", where=where)
        if q.dimensionality != ureg.day.dimensionality:
            raise ParseError(f"[trial.published] {key}: a time such as \"11.5 month\" is "
                             f"expected, got {v!r}", where)
        return float(q.to("month").magnitude)

    hr = raw.get("hazard_ratio")
    if hr is not None and (isinstance(hr, bool) or not isinstance(hr, (int, float)) or
                           not hr > 0):
        raise ParseError("[trial.published] hazard_ratio must be a positive number", where)
    return Published(median_pfs_months=per_arm("median_pfs", months),
                     rates=tuple((key, per_arm(key, rate)) for key in rate_keys),
                     hazard_ratio=None if hr is None else float(hr),
                     source=str(raw.get("source", "")))


def _time_unit(text, where: str) -> pint.Unit | None:
    if text is None:
        return None
    unit = parse_unit(text, what="scenario.time_unit", where=where)
    if (1 * unit).dimensionality != ureg.day.dimensionality:
        raise ParseError(f"scenario.time_unit must be a time unit, got {text!r}", where)
    return unit


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class ScenarioRun:
    """What :func:`run_scenario` wrote: the folder (also what ``os.fspath`` gives), the
    files in it, and the virtual trial's result if the scenario has one."""

    folder: Path
    files: tuple[Path, ...]
    trial: TrialResult | None = None
    #: the sweep's curves (ExposureResponses) if the scenario has one
    dose_response: object = None

    def __fspath__(self) -> str:
        return str(self.folder)


def run_scenario(scenario: Scenario | str | Path, out: str | Path, *, progress: bool = False,
                 command: list[str] | None = None, workers: int | None = None,
                 executor=None, trial_size: int | None = None) -> ScenarioRun:
    """Run every arm, the sweep and the trial, and write the output folder (a
    :class:`ScenarioRun`: the folder, its files and the trial's result).

    ``workers`` and ``executor`` (a ``concurrent.futures`` pool or a Dask client) spread the
    virtual trial's patients; ``trial_size`` replaces every arm's size (a quick look before
    the full run).  The results do not depend on ``workers`` or ``executor``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from tqdm import tqdm

    from .analysis import dose_response
    from .io import prepare_model
    from .plotting import plot_timecourse, save_figure
    from .simulation import simulate

    if not isinstance(scenario, Scenario):
        scenario = read_scenario(scenario)
    out = check_new_folder(out)  # before minutes of simulation, not after
    if scenario.trial is not None:
        from .analysis.survival import require_lifelines

        require_lifelines()  # before minutes of simulation, not after
    base = prepare_model(scenario.model, list(scenario.params) or None,
                         dict(scenario.overrides))
    results = {}
    for arm in tqdm(scenario.arms, desc=scenario.name, unit="arm", disable=not progress,
                    leave=False):
        model = base.with_parameters(dict(arm.overrides)) if arm.overrides else base
        results[arm] = simulate(model, arm.regimen, until=scenario.until,
                                every=scenario.every)
    first = next(iter(results.values()))
    for name in scenario.outputs:
        first.unit(name)  # unknown outputs fail before anything is written
    trial = None
    if scenario.trial is not None:
        from .trial import run_trial

        spec = scenario.trial
        if trial_size is not None:
            spec = replace(spec, arms=tuple(replace(a, size=trial_size) for a in spec.arms))
        trial = run_trial(spec, workers=workers, executor=executor)

    with atomic_folder(out) as tmp:
        for arm, res in results.items():
            res.to_csv(tmp / f"{arm.name}.csv", list(scenario.outputs))
            if res.doses:
                _write_doses(res, tmp / f"{arm.name}_doses.csv")
        with (tmp / "metrics.csv").open("w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["arm", "metric", "expression", "value", "unit"])
            for arm, res in results.items():
                for name, metric in scenario.metrics:
                    value = metric(res)
                    writer.writerow([arm.label, name, str(metric), repr(float(value.magnitude)),
                                     format_unit(value.units) or "1"])
        axes = plot_timecourse({arm.label: r for arm, r in results.items()}, scenario.outputs,
                               log=scenario.log, time_unit=scenario.time_unit)
        fig = axes.ravel()[0].figure
        fig.suptitle(scenario.description or scenario.name, fontsize=10)
        fig.tight_layout()
        save_figure(fig, tmp / "timecourse.png")
        curves = None
        if scenario.dose_response is not None:
            sweep = scenario.dose_response
            # the same long table and figure as `mechsim dose-response`
            curves = dose_response(base, sweep.regimen, sweep.doses, [sweep.metric],
                                   background=sweep.background, until=scenario.until,
                                   every=scenario.every, progress=progress, workers=workers,
                                   executor=executor, fit_model=sweep.fit_model)
            curves.to_csv(tmp / "dose_response.csv")
            save_figure(curves.plot().ravel()[0].figure, tmp / "dose_response.png")
        if trial is not None:
            trial.write_patients(tmp / "trial_patients.csv")
            trial.write_summary(tmp / "trial_summary.csv")
            ax = trial.plot_km(title=scenario.description or scenario.name)
            ax.figure.tight_layout()
            save_figure(ax.figure, tmp / "km.png")
        _write_provenance(scenario, base, tmp / "provenance.json", command, trial)
    return ScenarioRun(folder=out, files=tuple(sorted(out.iterdir())), trial=trial,
                       dose_response=curves)


def _write_doses(res, path: Path) -> None:
    rows = res.dose_table()
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _write_provenance(scenario: Scenario, model, path: Path, command, trial=None) -> None:
    from . import __version__

    files = {}
    if scenario.path:
        files["scenario"] = {"path": scenario.path, "sha256": _sha256(Path(scenario.path))}
    if model.source:
        files["model"] = {"path": model.source, "sha256": _sha256(Path(model.source))}
    model_dir = Path(model.source).parent if model.source else Path()
    # a model's own parameter sets: paths relative to the model file, or built-in names
    param_files = [model_dir / p if p.endswith(".toml") else resolve(p, "params")
                   for p in model.parameter_sets]
    param_files += [resolve(p, "params") for p in scenario.params]
    files["params"] = [{"path": str(p), "sha256": _sha256(p)} for p in param_files]
    if scenario.trial is not None and scenario.trial.population.path:
        pop = Path(scenario.trial.population.path)
        files["population"] = {"path": str(pop), "sha256": _sha256(pop)}
    record = {
        "mechsim_version": __version__,
        "python": platform.python_version(),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": command if command is not None else sys.argv,
        "seed": scenario.seed,
        "trial": None if trial is None else {
            "arm_sizes": {a.name: a.size for a in trial.trial.arms},
            "arm_seeds": {a.name: trial.trial.arm_seed(i)
                          for i, a in enumerate(trial.trial.arms)},
            "solver_fallbacks": trial.solver_fallbacks,
            "solver_stops_after_progression": trial.solver_stops_after_progression},
        "files": files,
        "scenario_text": scenario.text,
    }
    path.write_text(json.dumps(record, indent=2) + "\n")

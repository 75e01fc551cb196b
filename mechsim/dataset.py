"""Pharmacometric datasets: NONMEM-style event tables as subjects with regimens and data.

:func:`read_dataset` reads a CSV with one row per event (``ID``, ``TIME``, ``AMT``,
``RATE`` or ``DUR``, ``CMT``, ``EVID``, ``MDV``, ``DV``, ``ADDL``, ``II`` and any covariate
columns) into a frozen :class:`Dataset`: per subject, a :class:`~mechsim.dosing.Regimen`
built from its dose records, its observations as Quantities, and its covariates.

Record types follow NONMEM: ``EVID`` 0 is an observation (unless ``MDV`` is 1), 1 a dose, 2
another event (read for its covariates only); 3 and 4 (resets) are refused.  Without
``EVID``, a row with ``AMT`` > 0 is a dose and any other row an observation unless ``MDV``
is 1, as NM-TRAN derives it.  ``EVID`` 101 (rxode2's code for a dose, used by nlmixr2
datasets) is read as a dose.  A dose is a bolus, an infusion at ``RATE`` (amount per time)
or over ``DUR``; ``ADDL`` more doses follow every ``II``.  An observation at the time of a
dose is the value just before the dose if its row comes first, as in NONMEM.

A covariate is a column other than the standard ones whose value is the same on every row
of a subject; a column whose name is a parameter of the model sets that parameter for each
subject (:meth:`Dataset.parameter_values`).  Columns that change within a subject are kept
(``Dataset.varying``) but are not covariates.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pint

from .dosing import Dose, Every, Once, Regimen, Wait
from .errors import ParseError, RegimenError, UnitError, ValidationError
from .io.common import resolve
from .io.dataset_file import STANDARD_COLUMNS, DataTable, read_table, write_table
from .units import dimension_text, format_quantity, format_unit, parse_unit, ureg

__all__ = ["Dataset", "Subject", "read_dataset"]

_DOSE_EVIDS = {1.0, 101.0}


@dataclass(frozen=True, eq=False)
class Subject:
    """One subject of a dataset.

    Attributes
    ----------
    id
        The subject's ``ID`` as written (``"12"``).
    regimen
        Every dose of the subject, at its time (a Regimen; ``str()`` shows it).
    times
        Observation times (in the dataset's time unit), a Quantity, in file order.
    values
        Observed values, plain numbers in the unit of their output
        (``Dataset.value_units``); :meth:`observed` gives Quantities.
    outputs
        The model output each observation measures.
    before_dose
        For each observation: recorded at a dose time, before the dose row.
    covariates
        ``{name: value}`` (Quantity when the column has a unit, float or text otherwise).
    lines
        File line of each observation (for residual tables and messages).
    """

    id: str
    regimen: Regimen
    times: pint.Quantity
    values: np.ndarray
    outputs: tuple[str, ...]
    before_dose: np.ndarray
    covariates: Mapping[str, object]
    lines: tuple[int, ...]
    value_units: Mapping[str, pint.Unit] = field(default_factory=dict)

    def __post_init__(self):
        times = np.array(self.times.magnitude, dtype=float)
        times.flags.writeable = False
        object.__setattr__(self, "times", ureg.Quantity(times, self.times.units))
        for name, kind in (("values", float), ("before_dose", bool)):
            array = np.array(getattr(self, name), dtype=kind)
            array.flags.writeable = False
            object.__setattr__(self, name, array)
        if not (len(self.outputs) == self.values.size == times.size == self.before_dose.size):
            raise ValidationError(f"subject {self.id}: times, values, outputs and before_dose "
                                  "need one entry per observation")

    def observed(self, output: str) -> tuple[pint.Quantity, pint.Quantity]:
        """(times, values) of one output's observations, as Quantities."""
        rows = np.array([o == output for o in self.outputs], dtype=bool)
        return self.times[rows], ureg.Quantity(self.values[rows],
                                               self.value_units.get(output, ureg.dimensionless))

    @property
    def times_days(self) -> np.ndarray:
        return self.times.to(ureg.day).magnitude

    def __repr__(self) -> str:
        return (f"Subject({self.id}: {len(self.regimen.administrations(math.inf))} doses, "
                f"{len(self.outputs)} observations)")


@dataclass(frozen=True, eq=False)
class Dataset:
    """Subjects with regimens, observations and covariates (see the module docstring)."""

    subjects: tuple[Subject, ...]
    path: str | None = None
    sha256: str | None = None
    time_unit: pint.Unit = ureg.hour
    value_units: Mapping[str, pint.Unit] = field(default_factory=dict)
    covariate_names: tuple[str, ...] = ()
    varying: tuple[str, ...] = ()
    table: DataTable | None = field(default=None, repr=False)

    def __post_init__(self):
        if not self.subjects:
            raise ValidationError("a dataset needs at least one subject", self.path)

    @property
    def n_subjects(self) -> int:
        return len(self.subjects)

    @property
    def n_observations(self) -> int:
        return sum(len(s.outputs) for s in self.subjects)

    @property
    def outputs(self) -> tuple[str, ...]:
        """The model outputs observed, in order of first appearance."""
        return tuple(dict.fromkeys(o for s in self.subjects for o in s.outputs))

    def subject(self, id) -> Subject:
        for s in self.subjects:
            if s.id == str(id):
                return s
        raise KeyError(f"no subject {id!r} in the dataset")

    def last_time_days(self) -> float:
        """The last dose or observation time of any subject, days."""
        last = 0.0
        for s in self.subjects:
            doses = s.regimen.administrations(math.inf) if s.regimen.sequences else ()
            last = max([last, *s.times_days, *(a.time for a in doses)])
        return last

    def __repr__(self) -> str:
        return (f"Dataset({Path(self.path).name if self.path else 'in memory'}: "
                f"{self.n_subjects} subjects, {self.n_observations} observations of "
                f"{', '.join(self.outputs) or 'nothing'})")

    # ---- the model side --------------------------------------------------------------------
    def parameter_values(self, model) -> tuple[dict[str, pint.Quantity], ...]:
        """Per subject, the covariates that are parameters of ``model``, as overrides
        (their dimension checked against the parameter's)."""
        known = model.parameters_by_name
        used = [c for c in self.covariate_names if c in known]
        for name in self.varying:
            if name in known:
                raise ValidationError(f"column {name} sets a parameter of model "
                                      f"{model.name} but changes within a subject; "
                                      "time-varying covariates are not supported", self.path)
        out = []
        for s in self.subjects:
            values = {}
            for name in used:
                value = s.covariates[name]
                q = value if isinstance(value, pint.Quantity) else \
                    ureg.Quantity(float(value)) if not isinstance(value, str) else None
                if q is None:
                    raise ValidationError(f"column {name} holds text ({value!r}) but sets the "
                                          f"parameter {name} of model {model.name}", self.path)
                expected = known[name].value
                if q.dimensionality != expected.dimensionality:
                    raise UnitError(f"column {name} sets parameter {name}, which has the "
                                    f"dimension of {format_quantity(expected)} "
                                    f"({dimension_text(expected.dimensionality)}); give the "
                                    f"column a unit, e.g. '{name} [{format_unit(expected.units)}]'",
                                    self.path)
                values[name] = q
            out.append(values)
        return tuple(out)

    def simulate(self, model, *, params=None, overrides: Mapping | None = None, until=None,
                 every=None, rtol: float = 1e-8, atol=None, method: str = "auto",
                 workers: int | None = None, executor=None):
        """Simulate every subject under its own regimen and covariates; returns one
        :class:`~mechsim.result.Result` per subject (each with its own output grid: the
        default grid, or ``every``), up to ``until`` (default: the last dose or observation
        of the dataset, and at least a day)."""
        from .batch import measure_many
        from .runspec import RunSpec

        end = until if until is not None else \
            ureg.Quantity(max(self.last_time_days(), 1.0), ureg.day)
        spec = RunSpec.build(model, until=end, params=params, overrides=overrides,
                             every=every, rtol=rtol, atol=atol, method=method)
        matrix = self.parameter_matrix(spec)
        return tuple(measure_many(spec, matrix, _whole_result, [s.regimen for s in
                                                               self.subjects],
                                  workers=workers, executor=executor,
                                  labels=[f"subject {s.id}" for s in self.subjects]))

    def parameter_matrix(self, spec) -> np.ndarray:
        """One canonical parameter vector per subject: the spec's, with each subject's
        covariates that are parameters."""
        from .units import to_canonical

        names = spec.compiled.parameter_names
        matrix = np.tile(spec.parameters, (self.n_subjects, 1))
        for i, values in enumerate(self.parameter_values(spec.model)):
            for name, q in values.items():
                unit = spec.compiled.parameter_units[names.index(name)]
                matrix[i, names.index(name)] = to_canonical(q.to(unit))
        return matrix

    def to_csv(self, path: str | Path) -> Path:
        """Write the dataset back as an event table with units in the header (every record
        as read; a dataset built in memory has none and cannot be written)."""
        if self.table is None:
            raise ValidationError("this dataset was not read from a file; nothing to write")
        t = self.table
        return write_table(path, t.columns, t.units, [values for _, values in t.rows])


def _whole_result(result):
    return result


def read_dataset(path: str | Path, *, units: Mapping[str, str] | None = None,
                 route: str | Mapping | None = None, observe: str | Mapping | None = None,
                 dv_units: Mapping[str, str] | None = None) -> Dataset:
    """Read a NONMEM-style event table (see the module docstring).

    Parameters
    ----------
    path
        The CSV file, or the name of a built-in dataset (``"pheno"``).
    units
        Units of columns whose header has none: ``{"TIME": "h", "AMT": "mg",
        "DV": "mg/L"}``.  ``TIME`` needs one; ``AMT`` if there are doses; ``DV`` if there are
        observations.  ``RATE`` defaults to AMT's unit per TIME's, ``DUR`` and ``II`` to
        TIME's.
    route
        The model route of every dose (``"iv"``), or ``{CMT: route}``.
    observe
        The model output every observation measures (``"C_mass"``), or ``{CMT: output}``.
    dv_units
        ``{output: unit}`` where outputs are measured in different units (a PK and a PD
        output in one file); the others take ``DV``'s unit.
    """
    table = read_table(resolve(path, "data"), units)
    return _Builder(table, route, observe, dv_units or {}).dataset()


class _Builder:
    def __init__(self, table: DataTable, route, observe, dv_units):
        self.t = table
        self.route, self.observe = route, observe
        self.dv_units = {o: parse_unit(u, what=f"unit of {o} observations")
                         for o, u in dv_units.items()}
        cols = set(table.columns)
        for required in ("ID", "TIME"):
            if required not in cols:
                raise ParseError(f"the dataset needs a {required} column (columns: "
                                 f"{', '.join(table.columns)})", f"{table.path}:1")
        if "AMT" not in cols and "DV" not in cols:
            raise ParseError("the dataset needs an AMT column (doses) or a DV column "
                             "(observations)", f"{table.path}:1")
        for name in ("SS",):
            bad = next((line for line, v in table.rows if v.get(name)), None)
            if bad is not None:
                raise ParseError("column SS: steady-state doses are not "
                                 "supported; give the doses that lead to steady state",
                                 f"{table.path}:{bad}")
        self.time_unit = self.unit("TIME", ureg.day.dimensionality, "a time, e.g. 'TIME [h]'")

    def where(self, line: int) -> str:
        return self.t.where(line)

    def unit(self, column: str, dims, expected: str, *, default=None) -> pint.Unit | None:
        unit = self.t.units.get(column) or default
        if unit is None:
            raise ParseError(f"column {column} needs a unit: write it in the header "
                             f"('{column} [unit]') or give it (--units {column}=... on the "
                             f"command line, units={{'{column}': ...}} in Python); expected "
                             f"{expected}", self.t.path)
        if dims is not None and (1 * unit).dimensionality != dims:
            raise UnitError(f"column {column} is in {format_unit(unit)} "
                            f"({dimension_text((1 * unit).dimensionality)}); expected "
                            f"{expected}", self.t.path)
        return unit

    def name_for(self, mapping, cmt, what: str, line: int, column_hint: str) -> str:
        if isinstance(mapping, str):
            return mapping
        if mapping is None:
            target = "model route" if column_hint == "route" else "model output"
            raise ValidationError(f"{'an' if what[0] in 'aeiou' else 'a'} {what} record, but "
                                  f"no {target} for it: give {column_hint}=\"NAME\" or "
                                  f"{{CMT: NAME}} (--{column_hint} on the command line)",
                                  self.where(line))
        if cmt is None:
            raise ParseError(f"column CMT: a {what} needs a compartment number "
                             f"to be mapped by {column_hint}", f"{self.t.path}:{line}")
        key = int(cmt) if float(cmt).is_integer() else cmt
        if key not in mapping:
            raise ValidationError(f"column CMT: {what} into compartment {key:g}, which "
                                  f"{column_hint} does not map (mapped: "
                                  f"{', '.join(map(str, mapping)) or 'none'})",
                                  self.where(line))
        return str(mapping[key])

    def kind(self, line: int, v) -> str:
        """'dose', 'observation' or 'other' for one row."""
        evid, mdv, amt = v.get("EVID"), v.get("MDV"), v.get("AMT")
        if evid is None:
            if amt is not None and amt > 0:
                return "dose"
            return "other" if mdv == 1 else "observation"
        if evid in _DOSE_EVIDS:
            return "dose"
        if evid == 0:
            return "other" if mdv == 1 else "observation"
        if evid == 2:
            return "other"
        if evid in (3.0, 4.0):
            raise ParseError(f"column EVID: {evid:g} (a reset) is not supported",
                             f"{self.t.path}:{line}")
        raise ParseError(f"column EVID: {evid:g} is not an event type (0 "
                         "observation, 1 dose, 2 other)", f"{self.t.path}:{line}")

    def dataset(self) -> Dataset:
        t = self.t
        groups: dict[str, list] = {}
        order: list[str] = []
        last_id = None
        for line, v in t.rows:
            if v["ID"] is None:
                raise ParseError("column ID is missing", f"{t.path}:{line}")
            sid = f"{v['ID']:g}"
            if sid != last_id and sid in groups:
                raise ParseError(f"column ID: subject {sid} appears again after "
                                 "other subjects; a subject's rows must be together (NONMEM "
                                 "would read a new subject here)", f"{t.path}:{line}")
            if sid not in groups:
                groups[sid] = []
                order.append(sid)
            groups[sid].append((line, v))
            last_id = sid
        kinds = {line: self.kind(line, v) for line, v in t.rows}
        doses = any(k == "dose" for k in kinds.values())
        self.amount_unit = self.unit("AMT", None, "a mass or amount, e.g. 'AMT [mg]'") \
            if doses else None
        # each observed output's unit: its own (dv_units) or DV's, needed then
        outputs = dict.fromkeys(self.name_for(self.observe, v.get("CMT"), "observation", line,
                                              "observe")
                                for line, v in t.rows if kinds[line] == "observation")
        unknown = sorted(set(self.dv_units) - set(outputs))
        if unknown:
            raise ValidationError(f"dv_units names {unknown[0]!r}, which no observation "
                                  f"measures (outputs: {', '.join(outputs) or 'none'})", t.path)
        self.value_units = {o: self.dv_units.get(o) or self.unit(
            "DV", None, "the unit of the measurements, e.g. 'DV [mg/L]'") for o in outputs}
        covariates, varying = self.covariate_columns(groups)
        subjects = tuple(self.subject(sid, groups[sid], kinds, covariates) for sid in order)
        digest = hashlib.sha256(t.text.encode("utf-8")).hexdigest()
        return Dataset(subjects=subjects, path=t.path, sha256=digest, time_unit=self.time_unit,
                       value_units=self.value_units, covariate_names=tuple(covariates),
                       varying=tuple(varying), table=t)

    def covariate_columns(self, groups) -> tuple[list[str], list[str]]:
        others = [c for c in self.t.columns if c not in STANDARD_COLUMNS]
        constant, varying = [], []
        for name in others:
            if all(len({v[name] for _, v in rows}) == 1 for rows in groups.values()):
                constant.append(name)
            else:
                varying.append(name)
        return constant, varying

    def subject(self, sid: str, rows, kinds, covariates) -> Subject:
        t = self.t
        sequences, obs = [], []
        previous_time = 0.0
        dose_lines_at: dict[float, list[int]] = {}
        for line, v in rows:
            time = v["TIME"]
            if time is None or time < 0:
                raise ParseError(f"column TIME must be a time >= 0, got "
                                 f"{time!r}", f"{t.path}:{line}")
            if time < previous_time:
                raise ParseError(f"column TIME goes back ({time:g} after "
                                 f"{previous_time:g}); rows of a subject must be in time order",
                                 f"{t.path}:{line}")
            previous_time = time
            if kinds[line] == "dose":
                sequences.append(self.dose(line, v))
                dose_lines_at.setdefault(time, []).append(line)
            elif kinds[line] == "observation":
                if v.get("DV") is None:
                    raise ParseError("column DV: an observation record without "
                                     "a value (mark it MDV = 1 to skip it)", f"{t.path}:{line}")
                output = self.name_for(self.observe, v.get("CMT"), "observation", line,
                                       "observe")
                obs.append((line, time, v["DV"], output))
        before = [any(d > line for d in dose_lines_at.get(time, ())) for line, time, _, _
                  in obs]
        first = rows[0][1]
        cov = {}
        for name in covariates:
            value = first[name]
            unit = t.units.get(name)
            cov[name] = ureg.Quantity(value, unit) if unit is not None and \
                not isinstance(value, str) and value is not None else value
        outputs = tuple(o[3] for o in obs)
        return Subject(
            id=sid, regimen=Regimen(tuple(sequences)),
            times=ureg.Quantity([o[1] for o in obs], self.time_unit),
            values=np.array([o[2] for o in obs], dtype=float), outputs=outputs,
            before_dose=np.array(before, dtype=bool), covariates=cov,
            lines=tuple(o[0] for o in obs),
            value_units={o: self.value_units[o] for o in dict.fromkeys(outputs)})

    def dose(self, line: int, v) -> tuple:
        t = self.t
        amt = v.get("AMT")
        if amt is None or not amt > 0:
            raise ParseError(f"column AMT: a dose record needs an amount > 0, got "
                             f"{amt!r}", f"{t.path}:{line}")
        route = self.name_for(self.route, v.get("CMT"), "dose", line, "route")
        rate, duration = v.get("RATE"), v.get("DUR")
        if rate and duration:
            raise ParseError("columns RATE and DUR: give an infusion by its rate or by its "
                             "duration, not both", self.where(line))
        try:
            kwargs = {}
            if rate is not None and rate != 0:
                if rate < 0:
                    raise ParseError(f"column RATE: {rate:g} (a rate or duration "
                                     "set by the model) is not supported; give RATE or DUR",
                                     f"{t.path}:{line}")
                unit = self.unit("RATE", None, "an amount per time",
                                 default=self.amount_unit / self.time_unit)
                kwargs["rate"] = ureg.Quantity(rate, unit)
            if duration is not None and duration != 0:
                unit = self.unit("DUR", ureg.day.dimensionality, "a time",
                                 default=self.time_unit)
                kwargs["duration"] = ureg.Quantity(duration, unit)
            dose = Dose(ureg.Quantity(amt, self.amount_unit), route, **kwargs)
        except (RegimenError, UnitError) as exc:
            raise type(exc)(exc.message, self.where(line)) from None
        start = ureg.Quantity(v["TIME"], self.time_unit)
        addl = v.get("ADDL") or 0
        if addl:
            if not float(addl).is_integer() or addl < 0:
                raise ParseError(f"column ADDL must be a whole number >= 0, got "
                                 f"{addl:g}", f"{t.path}:{line}")
            ii = v.get("II")
            if ii is None or not ii > 0:
                raise ParseError(f"column II: ADDL = {addl:g} more doses need an "
                                 "interval II > 0", f"{t.path}:{line}")
            interval = ureg.Quantity(ii, self.unit("II", ureg.day.dimensionality, "a time",
                                                   default=self.time_unit))
            block = Every(dose, interval, count=int(addl) + 1)
            return (Wait(start), block) if start.magnitude > 0 else (block,)
        return (Once(dose, at=start),)

"""The ``nca`` subcommand: non-compartmental analysis of a simulated profile or of observed
data, printed as a table and written as CSV with ``name [unit]`` headers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pint

from ..errors import ValidationError
from .common import check_suffix, parse_sets, wrote

#: Columns printed for a table of subjects (the CSV has every column).
_BRIEF = ("samples", "doses", "Cmax", "Tmax", "Clast", "Tlast", "AUClast", "lambda_z_points",
          "half_life", "AUCinf", "AUC_pct_extrapolated")
_INTERVAL_BRIEF = ("dose_number", "start", "tau", "samples", "Cmax", "Tmax", "Cmin", "Ctrough",
                   "AUCtau", "Cavg")


def _cell(value) -> str:
    """A value for the printed table: 4 significant digits, '-' for not estimable."""
    if isinstance(value, pint.Quantity):
        value = value.magnitude
    if value is None:
        return "-"
    if isinstance(value, (float, np.floating)):
        return "-" if math.isnan(value) else f"{value:.4g}"
    return str(value)


def _units(rows: list[dict]) -> dict[str, pint.Unit]:
    """Each Quantity column's unit: the first row's (the others are converted to it)."""
    units = {}
    for row in rows:
        for name, value in row.items():
            if isinstance(value, pint.Quantity) and name not in units:
                units[name] = value.units
    return units


def _unit_text(unit) -> str:
    from ..units import format_unit

    return format_unit(unit) or "1"


def _table(rows: list[dict], columns) -> str:
    """Aligned text, units in a second header line."""
    units = _units(rows)
    head = [list(columns), [f"[{_unit_text(units[c])}]" if c in units else "" for c in columns]]
    body = [[_cell(_in(row.get(c), units.get(c))) for c in columns] for row in rows]
    widths = [max(len(r[k]) for r in head + body) for k in range(len(columns))]
    return "\n".join("  " + "  ".join(v.rjust(w) for v, w in zip(r, widths)).rstrip()
                     for r in head + body)


def _in(value, unit):
    return value.to(unit) if isinstance(value, pint.Quantity) and unit is not None else value


def _csv_text(rows: list[dict]) -> str:
    """CSV with ``name [unit]`` headers; NaN written as ``nan``, a missing value empty."""
    import csv
    import io

    columns = list(dict.fromkeys(c for row in rows for c in row))
    units = _units(rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([f"{c} [{_unit_text(units[c])}]" if c in units else c for c in columns])
    for row in rows:
        cells = []
        for c in columns:
            v = _in(row.get(c), units.get(c))
            if isinstance(v, pint.Quantity):
                v = float(v.magnitude)
            cells.append("" if v is None else repr(float(v)) if isinstance(
                v, (float, np.floating)) else str(v))
        writer.writerow(cells)
    return out.getvalue()


def _vertical(row: dict) -> str:
    lines = []
    for name, value in row.items():
        if name == "note":
            continue
        unit = _unit_text(value.units) if isinstance(value, pint.Quantity) else ""
        lines.append(f"  {name:<22}{_cell(value):>12}  {unit}".rstrip())
    return "\n".join(lines)


def _dose_grid(regimen, until_days: float, every_days: float) -> np.ndarray:
    """Output times every ``every_days`` plus each dose and infusion end, so NCA sees each
    dose's jump and start (a user sampling a patient would sample there too)."""
    grid = np.append(np.arange(0.0, until_days, every_days), until_days)
    marks = []
    for a in regimen.administrations(until_days) if regimen.sequences else ():
        marks.append(a.time)
        duration = a.dose.infusion_duration_days()
        if duration is not None and a.time + duration < until_days:
            marks.append(a.time + duration)
    return np.unique(np.concatenate([grid, marks]))


def _simulated(args):
    from ..analysis.nca import is_concentration
    from ..analysis.nca_sources import nca_of_result
    from ..dosing import Regimen
    from ..io import prepare_model
    from ..simulation import simulate
    from ..units import as_days, convertible, format_unit, split_output, ureg

    for flag, value in (("--units", args.units), ("--observe", args.observe)):
        if value is not None:
            raise ValidationError(f"{flag} is for observed data (--data); a simulation's "
                                  "outputs carry their units")
    if args.until is None or args.output is None:
        raise ValidationError("to simulate, give --until (e.g. \"10 days\") and --output (a "
                              "concentration, e.g. C_mass)")
    model = prepare_model(args.model, args.params, parse_sets(args.set))
    units = {s.name: s.unit for s in model.species} | {r.name: r.unit for r in model.rules}
    name, wanted = split_output(args.output)  # C_mass[ng/mL]: in ng/mL
    if name not in units:
        raise ValidationError(f"no output named {name!r} in model {model.name} "
                              f"(outputs: {', '.join(units)})")
    # checked before the run where the unit is declared (a rule may leave it to inference)
    unit = units[name]
    if unit is not None:
        unit = convertible(name, unit, wanted)
    if unit is not None and not is_concentration(unit):
        raise ValidationError(f"{name} is in {format_unit(unit) or 'dimensionless units'}"
                              ", not a concentration; NCA needs a mass or amount per volume "
                              "(e.g. mg/L or nM)")
    regimen = Regimen.parse(args.regimen or "")
    times = None
    if args.every is not None:
        step, end = as_days(args.every, "--every"), as_days(args.until, "--until")
        if not step > 0:
            raise ValidationError(f"--every must be positive, got {args.every!r}")
        times = ureg.Quantity(_dose_grid(regimen, end, step), ureg.day)
    res = simulate(model, regimen, until=args.until, times=times)
    profile = nca_of_result(res, args.output, route=args.route)
    title = (f"NCA of {name} [{format_unit(res.unit(args.output))}], {res.model}: "
             f"{res.regimen or 'no doses'} (times in {format_unit(res.time_unit)} from the "
             "first dose)")
    return title, [(None, profile)]


def _observed(args):
    from ..analysis.nca_sources import nca_of_subject
    from ..dataset import read_dataset
    from .estimation import _mapping, _units

    for flag, value in (("--regimen", args.regimen), ("--until", args.until),
                        ("--every", args.every), ("--params", args.params),
                        ("--set", args.set or None)):
        if value is not None:
            raise ValidationError(f"{flag} is for a simulation (a MODEL); observed data "
                                  "bring their own doses and times")
    observe = _mapping(args.observe, "observe") or "DV"
    data = read_dataset(args.data, units=_units(args.units), route=_mapping(args.route, "route"),
                        observe=observe)
    if not data.outputs:
        raise ValidationError(f"{args.data}: no observations (no DV values); NCA needs "
                              "measured concentrations")
    output = args.output
    if output is None:
        if len(data.outputs) > 1:
            raise ValidationError(f"the data observe {', '.join(data.outputs)}: choose one "
                                  "with --output")
        output = data.outputs[0]
    elif output not in data.outputs:
        raise ValidationError(f"no observations of {output!r} in the data (observed: "
                              f"{', '.join(data.outputs)})")
    profiles = [(s.id, nca_of_subject(s, output)) for s in data.subjects
                if output in s.outputs]
    from ..units import format_unit

    title = (f"NCA of {output} [{format_unit(data.value_units[output])}] in "
             f"{Path(data.path).name}: {len(profiles)} subjects, times in "
             f"{format_unit(data.time_unit)} from each subject's first dose")
    return title, profiles


def _print_notes(notes, limit: int = 12) -> None:
    """Notes as (who, text): the same text once, with everyone it applies to; at most
    ``limit`` lines (the CSV's note column has them all)."""
    grouped: dict[str, list] = {}
    for who, text in notes:
        grouped.setdefault(text, []).append(who)
    for k, (text, whos) in enumerate(grouped.items()):
        if k == limit:
            print(f"  ... {len(grouped) - limit} more notes (all are in the CSV, --out)")
            break
        named = [str(w) for w in whos if w is not None]
        if not named:
            print(f"  note: {text}")
            continue
        shown = ", ".join(named[:8]) + (f" and {len(named) - 8} more" if len(named) > 8 else "")
        print(f"  note ({shown}): {text}")


def _verdict(profiles) -> str:
    """What could be estimated, in one or two sentences (the data's limits said plainly)."""
    n = len(profiles)
    auc = sum(math.isfinite(p.whole.auclast.magnitude) for _, p in profiles)
    lam = sum(p.whole.lambda_z_points > 0 for _, p in profiles)
    inf = sum(math.isfinite(p.whole.aucinf.magnitude) for _, p in profiles)
    text = (f"estimable: AUClast and Cmax for {auc} of {n} profiles, lambda_z for {lam}, "
            f"AUCinf for {inf}")
    if n > 1 and auc == 0:
        samples = [p.whole.n_samples for _, p in profiles]
        doses = [p.whole.n_doses for _, p in profiles]
        text += (f".\nThese data are sparse ({min(samples)}-{max(samples)} samples per subject "
                 f"over {min(doses)}-{max(doses)} doses): no dosing interval has the samples "
                 "NCA needs (one at each dose and before the next), so only Clast and Tlast "
                 "are reported. A model fitted to all subjects at once (mechsim fit) is the "
                 "tool for such data.")
    return text


def cmd_nca(args) -> int:
    from ..io.atomic import write_text_atomically

    out = check_suffix(args.out, (".csv",), "--out")
    if (args.model is None) == (args.data is None):
        raise ValidationError("give a MODEL to simulate (with --regimen, --until, --output) or "
                              "--data DATASET, not both" if args.model else
                              "give a MODEL to simulate (with --regimen, --until, --output) "
                              "or --data DATASET (a NONMEM-style CSV or the built-in 'pheno')")
    title, profiles = _simulated(args) if args.model is not None else _observed(args)
    label = "ID" if args.data is not None else None
    rows = [({label: sid} if label else {}) | p.whole.as_row() for sid, p in profiles]
    interval_rows = [({label: sid} if label else {}) | iv.as_row()
                     for sid, p in profiles for iv in p.intervals]
    print(title)
    if label is None:
        print(_vertical(rows[0]))
        _print_notes([(None, n) for n in profiles[0][1].whole.notes])
    else:
        whole = profiles[0][1].whole
        print(_table(rows, (label, *_BRIEF, whole.cl_label, whole.vz_label)))
        _print_notes([(sid, n) for sid, p in profiles for n in p.whole.notes])
    if args.intervals:
        print("dosing intervals (Tmax from each interval's dose; '-': not estimable):")
        print(_table(interval_rows, ((label,) if label else ()) + _INTERVAL_BRIEF))
        _print_notes([((f"{row[label]} " if label else "") + f"dose {row['dose_number']}", n)
                      for row in interval_rows for n in row["note"].split("; ") if n])
    if label is not None:
        print(_verdict(profiles))
    if out is not None:
        write_text_atomically(out, _csv_text(interval_rows if args.intervals else rows))
        wrote(out)
    return 0

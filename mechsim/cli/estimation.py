"""The subcommands that meet data: fit (maximum likelihood) and vpc (visual predictive
check)."""

from __future__ import annotations

from pathlib import Path

from ..errors import ValidationError
from .common import (
    add_command,
    check_suffix,
    model_options,
    names_list,
    parse_sets,
    scale_options,
    wrote,
)


def _mapping(text: str | None, what: str):
    """``"iv"`` -> ``"iv"``; ``"1=oral,2=iv"`` -> ``{1: "oral", 2: "iv"}``."""
    if text is None or "=" not in text:
        return text
    out = {}
    for item in text.split(","):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValidationError(f"--{what} expects NAME or CMT=NAME,..., got {text!r}")
        try:
            out[int(key)] = value.strip()
        except ValueError:
            raise ValidationError(f"--{what}: {key!r} is not a compartment number") from None
    return out


def _units(text: str | None) -> dict[str, str]:
    out = {}
    for item in (text or "").split(","):
        if not item.strip():
            continue
        column, sep, unit = item.partition("=")
        if not sep or not column.strip():
            raise ValidationError(f"--units expects COLUMN=UNIT,..., got {text!r}")
        out[column.strip()] = unit.strip()
    return out


def _dataset(args, model):
    from ..dataset import read_dataset

    route = _mapping(args.route, "route")
    if route is None and len(model.routes) == 1:
        route = model.routes[0].name
    return read_dataset(args.data, units=_units(args.units), route=route,
                        observe=_mapping(args.observe, "observe"))


def _bounds(items) -> dict:
    from ..units import parse_quantity

    out = {}
    for item in items or []:
        name, sep, text = item.partition("=")
        low, dots, rest = text.partition("..")
        if not sep or not dots:
            raise ValidationError(f"--bounds expects NAME=LOW..HIGH UNIT, got {item!r}")
        high, _, unit = rest.strip().partition(" ")
        out[name.strip()] = tuple(parse_quantity(f"{v.strip()} {unit}".strip(),
                                                 what=f"--bounds {name}") for v in (low, high))
    return out


def cmd_fit(args) -> int:
    from ..estimation import fit
    from ..estimation.figures import write_diagnostics, write_individual_diagnostics
    from ..io import prepare_model
    from ..io.atomic import atomic_folder, check_new_folder

    out = check_new_folder(args.out)
    overrides = parse_sets(args.set)
    model = prepare_model(args.model, args.params, overrides)
    data = _dataset(args, model)
    estimate = names_list(args.estimate)
    if args.population is not None:
        return _population_fit(args, out, model, data, estimate)
    if not estimate:
        raise ValidationError("--estimate needs at least one parameter name (or give "
                              "--population FILE for a population fit)")
    from .common import executor_for

    with executor_for(args.scheduler) as executor:
        result = fit(model, data, estimate=estimate, error=args.error,
                     start=parse_sets(args.start), bounds=_bounds(args.bounds),
                     individual=args.individual, multistart=args.multistart, seed=args.seed,
                     workers=args.workers, executor=executor)
    print(result)
    with atomic_folder(out) as tmp:
        if args.individual:
            _write_individual(result, tmp / "individual_estimates.csv")
            write_individual_diagnostics(result, data, model, tmp)
        else:
            result.to_csv(tmp / "estimates.csv")
            result.to_params(tmp / "fitted_params.toml")
            _write_predictions(result, tmp / "predictions.csv")
            write_diagnostics(result, data, model, tmp)
    for path in sorted(out.iterdir()):
        wrote(path)
    return 0


def _population_fit(args, out, model, data, estimate) -> int:
    from ..estimation import fit
    from ..estimation.population_figures import write_population_diagnostics
    from ..io.atomic import atomic_folder

    if args.individual or args.multistart or args.start or args.bounds:
        raise ValidationError("--population takes its starts and scales from the population "
                              "file: --individual, --multistart, --start and --bounds are for "
                              "fits without one")
    from .common import executor_for

    with executor_for(args.scheduler) as executor:
        result = fit(model, data, population=args.population, estimate=estimate or (),
                     workers=args.workers, executor=executor)
    print(result)
    with atomic_folder(out) as tmp:
        result.to_population(tmp / "fitted_population.toml")
        result.write_tables(tmp)
        write_population_diagnostics(result, data, model, tmp,
                                     tmp / "fitted_population.toml", seed=args.seed)
    for path in sorted(out.iterdir()):
        wrote(path)
    return 0


def _write_predictions(result, path: Path) -> None:
    """Every observation with its prediction and weighted residual; one unit column, as
    outputs may have units of their own."""
    from ..io.atomic import write_text_atomically
    from ..units import format_unit

    units = {o: format_unit(u) or "1" for o, u in result.value_units.items()}
    rows = [f"ID,TIME [{format_unit(result.times.units)}],output,DV,PRED,unit,WRES"]
    for sid, t, o, y, f, w in zip(result.subject_ids, result.times.magnitude, result.outputs,
                                  result.observed, result.predicted,
                                  result.weighted_residuals):
        rows.append(f"{sid},{float(t)!r},{o},{float(y)!r},{float(f)!r},{units[o]},"
                    f"{float(w)!r}")
    write_text_atomically(path, "\n".join(rows) + "\n")


def _write_individual(result, path: Path) -> None:
    from ..io.atomic import write_text_atomically
    from ..units import format_unit

    rows = ["ID,parameter,estimate,standard_error,unit"]
    for sid, name, est, se in result.table():
        rows.append(f"{sid},{name},{float(est.magnitude)!r},{float(se.magnitude)!r},"
                    f"{format_unit(est.units) or '1'}")
    write_text_atomically(path, "\n".join(rows) + "\n")


def cmd_vpc(args) -> int:
    from ..estimation.vpc import vpc
    from ..io import prepare_model
    from ..plotting import save_figure

    plot = check_suffix(args.out, (".png", ".svg", ".pdf"), "--out")
    model = prepare_model(args.model, args.params, parse_sets(args.set))
    data = _dataset(args, model)
    check = vpc(model, data, params=args.params, population=args.population, n=args.n,
                seed=args.seed, bins=args.bins)
    ax = check.plot()
    ax.figure.tight_layout()
    save_figure(ax.figure, plot)
    outside = int(check.outside().sum())
    print(f"{check.replicates} replicates, {len(check.centers)} time bins: "
          f"{outside} of {check.outside().size} observed percentiles outside the simulated "
          f"{100 * check.ci:.0f} % intervals")
    wrote(plot)
    return 0


def _data_options(p) -> None:
    p.add_argument("data", help="dataset: a NONMEM-style CSV (ID, TIME, AMT, DV, ...)")
    p.add_argument("--units", default=None, metavar="COLUMN=UNIT,...",
                   help="units of columns whose header has none, e.g. TIME=h,AMT=mg,DV=mg/L")
    p.add_argument("--route", default=None, metavar="ROUTE|CMT=ROUTE,...",
                   help="model route of the doses (default: the model's only route)")
    p.add_argument("--observe", default=None, metavar="OUTPUT|CMT=OUTPUT,...",
                   help="model output the observations measure, e.g. C_mass")


def add_commands(sub) -> None:
    """Register the subcommands of this module."""
    p = add_command(sub, "fit", "fit parameters to a dataset by maximum likelihood: "
                                "estimates, intervals, fitted parameter file, figures",
                    cmd_fit)
    p.add_argument("model", help="built-in model name or model file")
    _data_options(p)
    p.add_argument("--estimate", default=None, metavar="NAME,...",
                   help="parameters to estimate, e.g. CL_per_kg,V_per_kg")
    p.add_argument("--population", default=None, metavar="FILE",
                   help="population file: a population (mixed-effects) fit by FOCEI of the "
                        "variability, [fixed] typical values and [error] it names")
    p.add_argument("--error", default="proportional",
                   choices=["additive", "proportional", "combined"],
                   help="residual error model (default proportional)")
    p.add_argument("--start", action="append", default=[], metavar="NAME=QUANTITY",
                   help="starting value (repeatable)")
    p.add_argument("--bounds", action="append", default=[], metavar="NAME=LOW..HIGH UNIT",
                   help='bounds, e.g. "CL_per_kg=0.001..0.1 L/h/kg" (repeatable)')
    p.add_argument("--individual", action="store_true", help="fit each subject on its own")
    p.add_argument("--multistart", type=int, default=0, metavar="N",
                   help="extra starts from a space-filling design (default 0)")
    p.add_argument("--seed", type=int, default=0, help="seed of the multistart design")
    scale_options(p)
    model_options(p)
    p.add_argument("--out", required=True, help="output folder (must not exist)")

    p = add_command(sub, "vpc", "visual predictive check: the dataset's design simulated "
                                "many times against its observations", cmd_vpc)
    p.add_argument("model", help="built-in model name or model file")
    _data_options(p)
    p.add_argument("--population", default=None,
                   help="population file: between-subject variability (default: none)")
    p.add_argument("--n", type=int, default=500, help="replicates (default 500)")
    p.add_argument("--bins", type=int, default=8, help="time bins (default 8)")
    p.add_argument("--seed", type=int, default=0, help="random seed (0)")
    model_options(p)
    p.add_argument("--out", required=True, help="figure file (.png, .svg or .pdf)")

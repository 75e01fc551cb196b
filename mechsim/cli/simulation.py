"""The subcommands that simulate, analyse and export: list, show, check, simulate,
dose-response, sensitivity, export, run."""

from __future__ import annotations

from pathlib import Path

from ..errors import ValidationError
from .common import (
    add_command,
    check_suffix,
    check_workers,
    executor_for,
    model_options,
    names_list,
    parse_sets,
    scale_options,
    wrote,
)


def cmd_list(args) -> int:
    # Only the files' headers are read (tomllib, no units, no sympy), so the listing takes
    # a fraction of a second; every built-in file is loaded in full by the test suite.
    import tomllib

    from ..io.builtin import builtin_dir, builtin_names

    def header(kind: str, name: str) -> dict:
        with (builtin_dir(kind) / f"{name}.toml").open("rb") as fh:
            return tomllib.load(fh)

    print("models:")
    for name in builtin_names("models"):
        print(f"  {name:<24} {header('models', name).get('model', {}).get('description', '')}")
    params = {name: header("params", name) for name in builtin_names("params")}
    populations = [n for n, data in params.items() if {"variability", "covariates"} & set(data)]
    for title, names in (("parameter sets:", [n for n in params if n not in populations]),
                         ("populations (for virtual trials):", populations)):
        print(title)
        for name in names:
            meta = params[name].get("meta", {})
            print(f"  {name:<24} [{meta.get('model') or 'any model'}] "
                  f"{meta.get('description', '')}")
    print("scenarios (mechsim run NAME):")
    for name in builtin_names("scenarios"):
        head = header("scenarios", name).get("scenario", {})
        print(f"  {name:<24} [{head.get('model', '')}] {head.get('description', '')}")
    return 0


def cmd_show(args) -> int:
    from ..describe import describe_model
    from ..io import prepare_model

    print(describe_model(prepare_model(args.model, args.params, parse_sets(args.set))))
    return 0


def cmd_check(args) -> int:
    from ..checks import check_model

    report = check_model(args.model, thorough=args.thorough)
    print(report)
    return 0 if report.ok else 1


#: Panels in one figure of ``mechsim simulate --plot`` (four rows of three)
MAX_PANELS = 12


def cmd_simulate(args) -> int:
    import textwrap

    from ..io.result_files import WRITERS, format_table, write_result
    from ..plotting import plot_timecourse, save_figure
    from ..simulation import simulate
    from ..units import format_unit

    out = check_suffix(args.out, tuple(WRITERS), "--out")
    plot = check_suffix(args.plot, (".png", ".svg", ".pdf"), "--plot")
    res = simulate(args.model, args.regimen, until=args.until, every=args.every,
                   params=args.params, overrides=parse_sets(args.set))
    if args.time_unit:
        res = res.in_time_unit(args.time_unit)
    names = names_list(args.output) or list(res.outputs)
    for name in names:
        res.unit(name)  # unknown names and units fail before anything is written
    if out is None:
        print(format_table(res, names))
    else:
        write_result(res, out, names)
        print(f"wrote {out}")
    for line in _dose_lines(res):
        print(line)
    if plot is not None:
        if len(names) > MAX_PANELS and not args.overlay:
            print(f"note: the figure shows the first {MAX_PANELS} of {len(names)} outputs; "
                  "choose them with --output")
        units = {format_unit(res.unit(n)) or "1" for n in names}
        if args.overlay and len(units) > 1:
            print(f"note: --overlay puts outputs in {len(units)} different units "
                  f"({', '.join(sorted(units))}) on one axis; their scales may differ a lot")
        axes = plot_timecourse(res, names if args.overlay else names[:MAX_PANELS],
                               overlay=args.overlay)
        fig = axes.ravel()[0].figure
        title = f"{res.model}: {res.regimen}" if res.regimen else f"{res.model}: no doses"
        fig.suptitle("\n".join(textwrap.wrap(title, 110)), fontsize=9)
        fig.tight_layout()
        save_figure(fig, plot)
        print(f"wrote {plot}")
    return 0


def _dose_lines(res) -> list[str]:
    """What an adaptive regimen's rules did, a dose a line (nothing without rules)."""
    if not res.doses:
        return []
    from ..units import format_unit

    unit = format_unit(res.time_unit)
    rows = res.dose_table()
    changed = sum(row["action"] != "given" for row in rows)
    lines = [f"doses: {len(rows)}, {changed} decided by the regimen's rules"]
    for row in rows:
        day = row[f"time[{unit}]"]
        share = "" if row["fraction"] in (0.0, 1.0) else f" {row['fraction']:.0%}"
        why = f"  ({row['rule']})" if row["rule"] else ""
        lines.append(f"  {unit} {day:<10.4g} {row['action']}{share}{why}")
    return lines


def cmd_dose_response(args) -> int:
    from ..analysis import dose_response
    from ..plotting import save_figure

    out = check_suffix(args.out, (".csv",), "--out")
    plot = check_suffix(args.plot, (".png", ".svg", ".pdf"), "--plot")
    sweep = dose_response(args.model, args.regimen, args.doses, args.metric, n=args.n,
                          until=args.until, background=args.background, params=args.params,
                          overrides=parse_sets(args.set), every=args.every,
                          progress=not args.quiet, fit_model=args.fit_model)
    # a curve that does not fit is a finding, not an error: stated, and the exit status is 0
    print(sweep.summary())
    if out is None:
        print("\t".join(sweep.header()))
        for metric, x, y, fitted, unit in sweep.rows():
            print(f"{metric}\t{x:.6g}\t{y:.6g}\t{fitted:.6g}\t{unit}")
    else:  # one long table, a row per metric and dose
        sweep.to_csv(out)
        wrote(out)
    if plot is not None:  # one figure, a panel per metric
        save_figure(sweep.plot().ravel()[0].figure, plot)
        wrote(plot)
    return 0


def _sensitivity(args, executor):
    from ..analysis import local_sensitivity, sobol_indices

    common = dict(until=args.until, params=args.params, overrides=parse_sets(args.set),
                  every=args.every, progress=not args.quiet, workers=args.workers,
                  executor=executor)
    if args.method == "local":
        return local_sensitivity(args.model, args.regimen, args.metric,
                                 names_list(args.parameters), relative_step=args.step, **common)
    ranges = {}
    for item in args.range or []:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValidationError(f"--range expects NAME=LOW..HIGH UNIT, got {item!r}")
        ranges[name.strip()] = text.strip()
    varied = names_list(args.vary)
    if bool(ranges) == bool(varied):
        raise ValidationError("--method sobol needs either --vary NAME,... or --range "
                              "NAME=LOW..HIGH UNIT (not both)")
    return sobol_indices(args.model, args.regimen, args.metric, ranges or varied, n=args.n,
                         seed=args.seed, factor=args.factor, scale=args.scale, **common)


def cmd_sensitivity(args) -> int:
    from ..plotting import save_figure

    out = check_suffix(args.out, (".csv",), "--out")
    plot = check_suffix(args.plot, (".png", ".svg", ".pdf"), "--plot")
    check_workers(args.workers)
    with executor_for(args.scheduler) as executor:
        results = _sensitivity(args, executor)
    for k, result in enumerate(results):
        print(result)
        suffix = "" if len(results) == 1 else f"_{k + 1}"
        if out is not None:
            path = out.with_name(f"{out.stem}{suffix}{out.suffix}")
            result.to_csv(path)
            wrote(path)
        if plot is not None:
            path = plot.with_name(f"{plot.stem}{suffix}{plot.suffix}")
            save_figure(result.plot().figure, path)
            print(f"wrote {path}")
    return 0


def cmd_export(args) -> int:
    from ..io.atomic import write_text_atomically
    from ..io.sbml import export_sbml, sbml_warnings, validate_sbml

    out = check_suffix(args.out, (".xml", ".sbml"), "-o/--out")
    text = export_sbml(args.model, args.regimen, until=args.until, params=args.params,
                       overrides=parse_sets(args.set))
    errors, warnings = validate_sbml(text), sbml_warnings(text)
    write_text_atomically(out, text)
    wrote(out)
    print(f"libsbml consistency check: {len(errors)} errors, {len(warnings)} warnings")
    for message in errors + warnings:
        print(f"  {message}")
    return 1 if errors else 0


def cmd_run(args) -> int:
    from ..scenario import read_scenario, run_scenario

    scenario = read_scenario(args.scenario)
    out = Path(args.out or f"{scenario.name}_run")
    if args.trial_size is not None and args.trial_size < 1:
        raise ValidationError(f"--trial-size must be a positive integer, got {args.trial_size}")
    check_workers(args.workers)
    with executor_for(args.scheduler) as executor:
        run = run_scenario(scenario, out, progress=not args.quiet, command=args.command_line,
                           workers=args.workers, executor=executor, trial_size=args.trial_size)
    for path in run.files:
        print(f"wrote {path}")
    if run.dose_response is not None:
        # the fit, its intervals and its warnings, as `mechsim dose-response` prints them
        print(f"\ndose-response sweep:\n{run.dose_response.summary()}")
    if run.trial is not None:
        print("\nvirtual trial (simulated [95 % CI] | published):")
        print(run.trial.summary_text())
    return 0




def metric_outputs(p) -> None:
    """The options that dose-response and sensitivity share: output spacing, parameters, and
    where the tables and figures go."""
    p.add_argument("--every", default=None, help='output spacing, e.g. "1 day"')
    model_options(p)
    p.add_argument("--out", default=None, help="write the table(s) to a .csv file")
    p.add_argument("--plot", default=None, help="save the figure(s) (.png, .svg or .pdf)")


def add_commands(sub) -> None:
    """Register the subcommands of this module."""
    add_command(sub, "list", "list built-in models and parameter sets", cmd_list)

    p = add_command(sub, "show", "show a model: species, parameters with sources, reactions, "
                          "observables, routes, conservation laws", cmd_show)
    p.add_argument("model", help="built-in model name or model file")
    model_options(p)

    p = add_command(sub, "check", "load and unit-check a model, find its conservation laws, "
                                  "run a short simulation and test its [[expect]] entries "
                                  "(exit 0 clean, 1 a check failed)", cmd_check)
    p.add_argument("model", help="built-in model name or model file")
    p.add_argument("--thorough", action="store_true",
                   help="test each expectation with many more generated examples (slower; "
                        "the report says how many)")

    p = add_command(sub, "simulate", "simulate a model under a dosing regimen", cmd_simulate)
    p.add_argument("model", help="built-in model name or model file")
    p.add_argument("--regimen", default=None,
                   help='dosing text, e.g. "10 mg/kg iv every 7 days x 4" (default: no doses)')
    p.add_argument("--until", required=True, help='end time with unit, e.g. "12 weeks"')
    p.add_argument("--every", default=None, help='output spacing, e.g. "1 day"')
    model_options(p)
    p.add_argument("--output", default=None,
                   help="comma-separated outputs, each optionally in a unit of your choice: "
                        '"C_mass[ng/mL],RO" (default: the outputs the model marks, else '
                        "every state and every rule that changes during the run)")
    p.add_argument("--time-unit", default=None, metavar="UNIT",
                   help='unit of the time column and axis, e.g. "h" or "week" (default: the '
                        "model's)")
    p.add_argument("--out", default=None, help="write a .csv or .json file instead of printing")
    p.add_argument("--plot", default=None, help="save a figure (.png, .svg or .pdf)")
    p.add_argument("--overlay", action="store_true",
                   help="draw every output on one set of axes instead of a panel each")

    p = add_command(sub, "dose-response", "sweep doses, compute metrics and fit a linear, Emax, "
                                          "sigmoid or asymmetric sigmoid Emax curve to each "
                                          "(docs/dose_response.md)",
                    cmd_dose_response)
    p.add_argument("model", help="built-in model name or model file")
    p.add_argument("--regimen", required=True,
                   help='regimen with {dose} where the amount goes, e.g. "{dose} iv every 14 days"')
    p.add_argument("--doses", required=True, help='dose range, e.g. "0.01..100 mg/kg"')
    p.add_argument("--n", type=int, default=25, help="number of log-spaced doses (default 25)")
    p.add_argument("--metric", action="append", required=True,
                   help='metric, e.g. "min(M)" or "auc(C_mass, 0 day, 28 day)" (repeatable)')
    p.add_argument("--until", required=True, help='length of each run, e.g. "24 weeks"')
    p.add_argument("--background", default=None,
                   help="regimen given in every run, e.g. a backbone therapy")
    # the names of mechsim.analysis.dose_response.FIT_MODELS, written out so that --help
    # does not import numpy
    p.add_argument("--model", dest="fit_model", default="auto",
                   choices=["auto", "linear", "emax", "sigmoid", "asymmetric"],
                   help="curve fitted to each metric: the one with the smallest AICc (auto, "
                        "default) or the one named")
    metric_outputs(p)

    p = add_command(sub, "sensitivity", "local sensitivity coefficients (tornado) or global Sobol "
                                 "indices of metrics (needs the sensitivity extra for sobol)",
             cmd_sensitivity)
    p.add_argument("model", help="built-in model name or model file")
    p.add_argument("--regimen", default=None, help="dosing text")
    p.add_argument("--until", required=True, help='length of each run, e.g. "12 weeks"')
    p.add_argument("--metric", action="append", required=True,
                   help='metric, e.g. "min(M)" (repeatable)')
    p.add_argument("--method", choices=["local", "sobol"], default="local")
    p.add_argument("--parameters", default=None,
                   help="local: comma-separated parameters (default: all non-zero)")
    p.add_argument("--step", type=float, default=1e-3, help="local: relative step (1e-3)")
    p.add_argument("--vary", default=None,
                   help="sobol: parameters varied over value/FACTOR..value*FACTOR")
    p.add_argument("--range", action="append", metavar="NAME=LOW..HIGH UNIT",
                   help='sobol: explicit range, e.g. "CL=0.1..0.4 L/day" (repeatable)')
    p.add_argument("--factor", type=float, default=2.0, help="sobol: range factor (2)")
    p.add_argument("--scale", choices=["log", "linear"], default="log",
                   help="sobol: sample uniformly in log p (default) or in p")
    p.add_argument("--n", type=int, default=256, help="sobol: base sample size, a power of 2")
    p.add_argument("--seed", type=int, default=0, help="sobol: random seed (0)")
    scale_options(p)
    metric_outputs(p)

    p = add_command(sub, "export", "write a model (and a regimen's doses, as events) as SBML "
                                   "Level 3 in canonical units (needs the sbml extra)",
                    cmd_export)
    p.add_argument("model", help="built-in model name or model file")
    p.add_argument("--format", choices=["sbml"], default="sbml", help="output format")
    p.add_argument("--regimen", default=None,
                   help="dosing text; its doses up to --until become SBML events")
    p.add_argument("--until", default=None, help='end of the dosing period (needed with '
                                                 '--regimen), e.g. "12 weeks"')
    model_options(p)
    p.add_argument("-o", "--out", required=True, help="output file (.xml or .sbml)")

    p = add_command(sub, "run", "run a scenario and write its output folder", cmd_run)
    p.add_argument("scenario", help="built-in scenario name (mechsim list) or scenario file "
                                    "(.toml)")
    p.add_argument("--out", default=None, help="output folder (must not exist; default "
                                               "NAME_run)")
    p.add_argument("--trial-size", type=int, default=None, metavar="N",
                   help="virtual patients per trial arm, replacing the scenario's sizes")
    scale_options(p)

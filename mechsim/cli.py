"""The ``mechsim`` command: one small function per subcommand.

A :class:`~mechsim.errors.MechsimError` becomes one line on stderr and exit status 2 (for
``check``, a failed check is exit status 1); anything else is a bug and keeps its traceback.
Files are written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from . import __version__
from .errors import MechsimError, ValidationError

ISA = ("10 mg/kg iv over 1 h on days 1,8,15,22 of 28-day cycle x 1 "
       "then on days 1,15 of 28-day cycles")
# One command per subcommand that works as written, from any directory, after a plain
# `pip install` (tests/test_cli.py runs each one); a few also say how to use a file of your own.
EXAMPLES = {
    "list": "mechsim list",
    "show": "mechsim show cd38_myeloma",
    "check": "mechsim check cd40_apc",
    "simulate": (f'mechsim simulate cd38_myeloma --regimen "{ISA}" --until "12 weeks" '
                 '--every "1 day" --output C_mass,RO,M --out isa.csv --plot isa.png'),
    "dose-response": ('mechsim dose-response cd40_apc --regimen "{dose} iv every 4 weeks x 3" '
                      '--doses "0.001..10 mg/kg" --n 12 --until "12 weeks" '
                      '--metric "pct_baseline(IL6, 12 weeks)" --plot il6.png'),
    "sensitivity": ('mechsim sensitivity cd40_apc --regimen "3 mg/kg iv every 4 weeks x 3" '
                    '--until "12 weeks" --every "1 day" --metric "value(IL6_rel, 12 weeks)" '
                    '--method sobol --vary R0,kdeg_R,CL,f_IL6 --n 64 --plot il6_sobol.png'),
    "run": "mechsim run icaria_mm --trial-size 200 --out icaria_run",
    "export": (f'mechsim export cd38_myeloma --format sbml --regimen "{ISA}" --until "12 weeks" '
               '-o cd38_icaria.xml'),
}
#: How to point a subcommand at your own file (PLACEHOLDERS in capitals, not commands to run).
YOUR_OWN = {
    "show": "mechsim show PATH/TO/MODEL.toml --params PATH/TO/PARAMS.toml",
    "check": "mechsim check PATH/TO/MODEL.toml",
    "simulate": 'mechsim simulate PATH/TO/MODEL.toml --regimen "..." --until "..."',
    "run": "mechsim run PATH/TO/SCENARIO.toml (format: docs/scenarios.md)",
}


class _Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _sub(sub, name: str, help_: str, func):
    epilog = f"example:\n  {EXAMPLES[name]}"
    if name in YOUR_OWN:
        epilog += f"\n\nwith your own file (the capitals are placeholders):\n  {YOUR_OWN[name]}"
    p = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def _model_options(p) -> None:
    p.add_argument("--params", action="append", metavar="FILE",
                   help="parameter file or built-in parameter set (repeatable, applied in order)")
    p.add_argument("--set", action="append", metavar="NAME=QUANTITY", default=[],
                   help='override one parameter, e.g. --set "WT=80 kg" (repeatable)')


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValidationError(f"--set expects NAME=QUANTITY (e.g. CL=0.3 L/day), got {item!r}")
        out[name.strip()] = value.strip()
    return out


def _check_suffix(path: str | None, allowed: tuple[str, ...], flag: str) -> Path | None:
    if path is None:
        return None
    p = Path(path)
    if p.suffix.lower() not in allowed:
        raise ValidationError(f"{flag} must end in {' or '.join(allowed)}, got {path!r}")
    if p.parent.exists() and not p.parent.is_dir():
        raise ValidationError(f"{flag}: {p.parent} is a file, not a folder")
    if not p.parent.exists():
        raise ValidationError(f"{flag}: folder {p.parent} does not exist")
    if p.is_dir():
        raise ValidationError(f"{flag}: {p} is a folder; give a file name")
    return p


def _wrote(path: Path) -> None:
    print(f"wrote {path}")


# ---- subcommands -------------------------------------------------------------------------
def cmd_list(args) -> int:
    from .io import builtin_names, load_model, load_params
    from .io.population_file import is_population, load_population
    from .scenario import read_scenario

    print("models:")
    for name in builtin_names("models"):
        print(f"  {name:<24} {load_model(name).description}")
    names = builtin_names("params")
    populations = [n for n in names if is_population(n)]
    print("parameter sets:")
    for name in names:
        if name not in populations:
            ps = load_params(name)
            print(f"  {name:<24} [{ps.model or 'any model'}] {ps.description}")
    print("populations (for virtual trials):")
    for name in populations:
        pop = load_population(name)
        print(f"  {name:<24} [{pop.model or 'any model'}] {pop.description}")
    print("scenarios (mechsim run NAME):")
    for name in builtin_names("scenarios"):
        scenario = read_scenario(name)
        print(f"  {name:<24} [{scenario.model}] {scenario.description}")
    return 0


def cmd_show(args) -> int:
    from .describe import describe_model
    from .io import prepare_model

    print(describe_model(prepare_model(args.model, args.params, _parse_sets(args.set))))
    return 0


def cmd_check(args) -> int:
    from .checks import check_model

    report = check_model(args.model)
    print(report)
    return 0 if report.ok else 1


def cmd_simulate(args) -> int:
    from .io.result_files import WRITERS, format_table, write_result
    from .plotting import plot_timecourse, save_figure
    from .simulation import simulate

    out = _check_suffix(args.out, tuple(WRITERS), "--out")
    plot = _check_suffix(args.plot, (".png", ".svg", ".pdf"), "--plot")
    res = simulate(args.model, args.regimen, until=args.until, every=args.every,
                   params=args.params, overrides=_parse_sets(args.set))
    names = [n.strip() for n in args.output.split(",")] if args.output else list(res.names)
    for name in names:
        res.unit(name)  # unknown names fail before anything is written
    if out is None:
        print(format_table(res, names))
    else:
        write_result(res, out, names)
        print(f"wrote {out}")
    if plot is not None:
        axes = plot_timecourse(res, names[:9])
        fig = axes.ravel()[0].figure
        fig.suptitle(f"{res.model}: {res.regimen}", fontsize=9)
        fig.tight_layout()
        save_figure(fig, plot)
        print(f"wrote {plot}")
    return 0


def cmd_dose_response(args) -> int:
    from .analysis import dose_response
    from .plotting import save_figure
    from .units import format_unit

    out = _check_suffix(args.out, (".csv",), "--out")
    plot = _check_suffix(args.plot, (".png", ".svg", ".pdf"), "--plot")
    curves = dose_response(args.model, args.regimen, args.doses, args.metric, n=args.n,
                           until=args.until, background=args.background, params=args.params,
                           overrides=_parse_sets(args.set), every=args.every,
                           progress=not args.quiet)
    for curve in curves:
        print(f"{curve.y_label}: {curve.fit or 'Hill fit did not converge'}")
        unit_x, unit_y = format_unit(curve.x.units), format_unit(curve.y.units) or "1"
        if out is None:
            print(f"  dose [{unit_x}]\t{curve.y_label} [{unit_y}]")
            for x, y in curve.table():
                print(f"  {x:.6g}\t{y:.6g}")
    if out is not None:
        for k, curve in enumerate(curves):
            path = out if len(curves) == 1 else out.with_name(f"{out.stem}_{k + 1}{out.suffix}")
            curve.to_csv(path)
            _wrote(path)
    if plot is not None:
        for k, curve in enumerate(curves):
            path = plot if len(curves) == 1 else \
                plot.with_name(f"{plot.stem}_{k + 1}{plot.suffix}")
            save_figure(curve.plot().figure, path)
            print(f"wrote {path}")
    return 0


def _names(text: str | None) -> list[str] | None:
    return [n.strip() for n in text.split(",") if n.strip()] if text else None


def _sensitivity(args, executor):
    from .analysis import local_sensitivity, sobol_indices

    common = dict(until=args.until, params=args.params, overrides=_parse_sets(args.set),
                  every=args.every, progress=not args.quiet, workers=args.workers,
                  executor=executor)
    if args.method == "local":
        return local_sensitivity(args.model, args.regimen, args.metric,
                                 _names(args.parameters), relative_step=args.step, **common)
    ranges = {}
    for item in args.range or []:
        name, sep, text = item.partition("=")
        if not sep:
            raise ValidationError(f"--range expects NAME=LOW..HIGH UNIT, got {item!r}")
        ranges[name.strip()] = text.strip()
    varied = _names(args.vary)
    if bool(ranges) == bool(varied):
        raise ValidationError("--method sobol needs either --vary NAME,... or --range "
                              "NAME=LOW..HIGH UNIT (not both)")
    return sobol_indices(args.model, args.regimen, args.metric, ranges or varied, n=args.n,
                         seed=args.seed, factor=args.factor, scale=args.scale, **common)


def cmd_sensitivity(args) -> int:
    from .plotting import save_figure

    out = _check_suffix(args.out, (".csv",), "--out")
    plot = _check_suffix(args.plot, (".png", ".svg", ".pdf"), "--plot")
    _check_workers(args.workers)
    with _executor(args.scheduler) as executor:
        results = _sensitivity(args, executor)
    for k, result in enumerate(results):
        print(result)
        suffix = "" if len(results) == 1 else f"_{k + 1}"
        if out is not None:
            path = out.with_name(f"{out.stem}{suffix}{out.suffix}")
            result.to_csv(path)
            _wrote(path)
        if plot is not None:
            path = plot.with_name(f"{plot.stem}{suffix}{plot.suffix}")
            save_figure(result.plot().figure, path)
            print(f"wrote {path}")
    return 0


def cmd_export(args) -> int:
    from .io.atomic import write_text_atomically
    from .io.sbml import export_sbml, sbml_warnings, validate_sbml

    out = _check_suffix(args.out, (".xml", ".sbml"), "-o/--out")
    text = export_sbml(args.model, args.regimen, until=args.until, params=args.params,
                       overrides=_parse_sets(args.set))
    errors, warnings = validate_sbml(text), sbml_warnings(text)
    write_text_atomically(out, text)
    _wrote(out)
    print(f"libsbml consistency check: {len(errors)} errors, {len(warnings)} warnings")
    for message in errors:
        print(f"  {message}")
    return 1 if errors else 0


def cmd_run(args) -> int:
    from .scenario import read_scenario, run_scenario

    scenario = read_scenario(args.scenario)
    out = Path(args.out or f"{scenario.name}_run")
    if args.trial_size is not None and args.trial_size < 1:
        raise ValidationError(f"--trial-size must be a positive integer, got {args.trial_size}")
    _check_workers(args.workers)
    with _executor(args.scheduler) as executor:
        run = run_scenario(scenario, out, progress=not args.quiet, command=args.command_line,
                           workers=args.workers, executor=executor, trial_size=args.trial_size)
    for path in run.files:
        print(f"wrote {path}")
    if run.trial is not None:
        print("\nvirtual trial (simulated [95 % CI] | published):")
        print(run.trial.summary_text())
    return 0


def _check_workers(workers) -> None:
    from .runner import positive

    positive("--workers", workers, 1)


@contextlib.contextmanager
def _executor(address: str | None):
    """A Dask client connected to ``address`` (``--scheduler``), or None."""
    if address is None:
        yield None
        return
    from .optional import require

    Client = require("distributed", "--scheduler (a Dask cluster)").Client
    try:
        client = Client(address, timeout="10s")
    except (OSError, TimeoutError, ValueError) as exc:
        raise ValidationError(f"cannot reach the Dask scheduler at {address!r}: "
                              f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
                              ) from None
    try:
        yield client
    finally:
        client.close()


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mechsim",
                     description="Simulate drug mechanisms written as unit-checked ODE models.",
                     epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mechsim {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    _sub(sub, "list", "list built-in models and parameter sets", cmd_list)

    p = _sub(sub, "show", "show a model: species, parameters with sources, reactions, "
                          "observables, routes, conservation laws", cmd_show)
    p.add_argument("model", help="built-in model name or model file")
    _model_options(p)

    p = _sub(sub, "check", "load and unit-check a model, find its conservation laws and run a "
                           "short simulation (exit 0 clean, 1 a check failed)", cmd_check)
    p.add_argument("model", help="built-in model name or model file")

    p = _sub(sub, "simulate", "simulate a model under a dosing regimen", cmd_simulate)
    p.add_argument("model", help="built-in model name or model file")
    p.add_argument("--regimen", default=None,
                   help='dosing text, e.g. "10 mg/kg iv every 7 days x 4" (default: no doses)')
    p.add_argument("--until", required=True, help='end time with unit, e.g. "12 weeks"')
    p.add_argument("--every", default=None, help='output spacing, e.g. "1 day"')
    _model_options(p)
    p.add_argument("--output", default=None, help="comma-separated outputs (default: all)")
    p.add_argument("--out", default=None, help="write a .csv or .json file instead of printing")
    p.add_argument("--plot", default=None, help="save a figure (.png, .svg or .pdf)")

    p = _sub(sub, "dose-response", "sweep doses, compute metrics and fit Emax/Hill curves",
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
    p.add_argument("--every", default=None, help='output spacing, e.g. "1 day"')
    _model_options(p)
    p.add_argument("--out", default=None, help="write the table(s) to a .csv file")
    p.add_argument("--plot", default=None, help="save the figure(s) (.png, .svg or .pdf)")

    p = _sub(sub, "sensitivity", "local sensitivity coefficients (tornado) or global Sobol "
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
    _scale_options(p)
    p.add_argument("--every", default=None, help='output spacing, e.g. "1 day"')
    _model_options(p)
    p.add_argument("--out", default=None, help="write the table(s) to a .csv file")
    p.add_argument("--plot", default=None, help="save the figure(s) (.png, .svg or .pdf)")

    p = _sub(sub, "export", "write a model (and a regimen's doses, as events) as SBML Level 3 "
                            "in canonical units (needs the sbml extra)", cmd_export)
    p.add_argument("model", help="built-in model name or model file")
    p.add_argument("--format", choices=["sbml"], default="sbml", help="output format")
    p.add_argument("--regimen", default=None,
                   help="dosing text; its doses up to --until become SBML events")
    p.add_argument("--until", default=None, help='end of the dosing period (needed with '
                                                 '--regimen), e.g. "12 weeks"')
    _model_options(p)
    p.add_argument("-o", "--out", required=True, help="output file (.xml or .sbml)")

    p = _sub(sub, "run", "run a scenario and write its output folder", cmd_run)
    p.add_argument("scenario", help="built-in scenario name (mechsim list) or scenario file "
                                    "(.toml)")
    p.add_argument("--out", default=None, help="output folder (must not exist; default "
                                               "NAME_run)")
    p.add_argument("--trial-size", type=int, default=None, metavar="N",
                   help="virtual patients per trial arm, replacing the scenario's sizes")
    _scale_options(p)
    return parser


def _scale_options(p) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="runs at the same time on this machine (default: the CPUs)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs the dask "
                        "extra); results are the same as on one machine")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    args = parser.parse_args(argv)
    args.command_line = ["mechsim", *argv]
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    if args.command in ("dose-response", "sensitivity"):
        args.metric = list(args.metric)
    # progress bars (on stderr) only when a person is watching the output
    args.quiet = getattr(args, "quiet", False) or not sys.stdout.isatty()
    try:
        return args.func(args)
    except MechsimError as exc:
        print(f"mechsim: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # Ctrl-C: partial files and folders were removed on the way
        # a progress bar may be mid-line on a terminal: end it first
        print(f"{chr(10) if sys.stderr.isatty() else ''}mechsim: interrupted; no partial "
              "output was left", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and closed: not an error
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (keeps interpreter exit quiet)
        return 0

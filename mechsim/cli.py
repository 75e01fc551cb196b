"""The ``mechsim`` command: one small function per subcommand.

A :class:`~mechsim.errors.MechsimError` becomes one line on stderr and exit status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from . import __version__
from .errors import MechsimError, ValidationError
from .io import builtin_names, load_model, load_params
from .units import format_unit

EXAMPLES = {
    "list": "mechsim list",
    "simulate": ('mechsim simulate one_compartment --regimen "100 mg iv every 1 day x 3" '
                 '--until "5 day" --every "12 h" --output C,C_mass --out conc.csv'),
}


def _cmd_list(args) -> int:
    print("models:")
    for name in builtin_names("models"):
        model = load_model(name)
        print(f"  {name:<24} {model.description}")
    print("parameter sets:")
    for name in builtin_names("params"):
        ps = load_params(name)
        target = f"[{ps.model}] " if ps.model else ""
        print(f"  {name:<24} {target}{ps.description}")
    return 0


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValidationError(f"--set expects NAME=QUANTITY (e.g. CL=0.3 L/day), got {item!r}")
        out[name.strip()] = value.strip()
    return out


def _cmd_simulate(args) -> int:
    from .simulate import simulate

    result = simulate(args.model, args.regimen, until=args.until, params=args.params or None,
                      overrides=_parse_sets(args.set), every=args.every)
    names = [n.strip() for n in args.output.split(",")] if args.output else list(result.names)
    for name in names:
        result.unit(name)  # unknown names fail before anything is written
    if args.out:
        out = Path(args.out)
        if out.suffix.lower() != ".csv":
            raise ValidationError(f"--out must end in .csv, got {args.out!r}")
        tmp = out.with_name(out.name + ".partial")
        result.to_csv(tmp, names)
        tmp.replace(out)  # never leave a half-written file under the final name
        print(f"wrote {out}")
    else:
        header = [f"time [{format_unit(result.time_unit)}]"] + \
            [f"{n} [{format_unit(result.unit(n)) or '1'}]" for n in names]
        print("\t".join(header))
        columns = [result.time.magnitude] + [result[n].magnitude for n in names]
        for row in zip(*columns):
            print("\t".join(f"{v:.6g}" for v in row))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mechsim", description="Simulate drug mechanisms written as unit-checked ODE models.",
        epilog="example: " + EXAMPLES["simulate"])
    parser.add_argument("--version", action="version", version=f"mechsim {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", help="list built-in models and parameter sets",
                       epilog="example: " + EXAMPLES["list"])
    p.set_defaults(func=_cmd_list)
    p = sub.add_parser("simulate", help="simulate a model under a dosing regimen",
                       epilog="example: " + EXAMPLES["simulate"],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help="built-in model name or model file (.toml)")
    p.add_argument("--regimen", default=None,
                   help='dosing text, e.g. "10 mg/kg iv every 7 days x 4"')
    p.add_argument("--until", required=True, help='end time with unit, e.g. "12 weeks"')
    p.add_argument("--every", default=None, help='output spacing, e.g. "1 day"')
    p.add_argument("--params", action="append", help="parameter file or built-in set (repeatable)")
    p.add_argument("--set", action="append", metavar="NAME=QUANTITY",
                   help='override one parameter, e.g. --set "CL=0.3 L/day" (repeatable)')
    p.add_argument("--output", default=None, help="comma-separated outputs (default: all)")
    p.add_argument("--out", default=None, help="write a CSV file instead of printing")
    p.set_defaults(func=_cmd_simulate)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except MechsimError as exc:
        print(f"mechsim: error: {exc}", file=sys.stderr)
        return 2

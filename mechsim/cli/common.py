"""Pieces every subcommand of the ``mechsim`` command uses: the argument parser that fails
in one line, shared options, output-path checks, and the example each ``--help`` ends with."""

from __future__ import annotations

import argparse
import contextlib
from pathlib import Path

from ..errors import ValidationError

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
    "fit": ("mechsim fit phenobarbital pheno --units TIME=h,AMT=mg,DV=mg/L,WGT=kg "
            "--observe C --estimate CL_per_kg,V_per_kg --error proportional --out pheno_fit"),
    "vpc": ("mechsim vpc phenobarbital pheno --units TIME=h,AMT=mg,DV=mg/L,WGT=kg "
            "--observe C --params phenobarbital_fit --n 200 --out pheno_vpc.png"),
    "nca": ('mechsim nca one_compartment --regimen "100 mg oral every 1 day x 7" '
            '--until "14 days" --output C_mass --set ka=10/day --intervals --out nca.csv'),
}
#: How to point a subcommand at your own file (PLACEHOLDERS in capitals, not commands to run).
YOUR_OWN = {
    "show": "mechsim show PATH/TO/MODEL.toml --params PATH/TO/PARAMS.toml",
    "check": "mechsim check PATH/TO/MODEL.toml",
    "simulate": 'mechsim simulate PATH/TO/MODEL.toml --regimen "..." --until "..."',
    "run": "mechsim run PATH/TO/SCENARIO.toml (format: docs/scenarios.md)",
    "fit": ("mechsim fit PATH/TO/MODEL.toml PATH/TO/DATA.csv --units TIME=h,AMT=mg,DV=mg/L "
            "--observe OUTPUT --estimate NAME,NAME --out FOLDER"),
    "vpc": ("mechsim vpc PATH/TO/MODEL.toml PATH/TO/DATA.csv --params FOLDER/fitted_params.toml "
            "--observe OUTPUT --out vpc.png"),
    "nca": "mechsim nca --data PATH/TO/DATA.csv --units TIME=h,AMT=mg,DV=mg/L --route oral",
}


class Parser(argparse.ArgumentParser):
    """argparse, but usage errors are one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def add_command(sub, name: str, help_: str, func):
    epilog = f"example:\n  {EXAMPLES[name]}"
    if name in YOUR_OWN:
        epilog += f"\n\nwith your own file (the capitals are placeholders):\n  {YOUR_OWN[name]}"
    p = sub.add_parser(name, help=help_, description=help_, epilog=epilog,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.set_defaults(func=func)
    return p


def model_options(p) -> None:
    p.add_argument("--params", action="append", metavar="FILE",
                   help="parameter file or built-in parameter set (repeatable, applied in order)")
    p.add_argument("--set", action="append", metavar="NAME=QUANTITY", default=[],
                   help='override one parameter, e.g. --set "WT=80 kg" (repeatable)')


def parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ValidationError(f"--set expects NAME=QUANTITY (e.g. CL=0.3 L/day), got {item!r}")
        out[name.strip()] = value.strip()
    return out


def check_suffix(path: str | None, allowed: tuple[str, ...], flag: str) -> Path | None:
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


def wrote(path: Path) -> None:
    print(f"wrote {path}")


# ---- subcommands -------------------------------------------------------------------------
def check_workers(workers) -> None:
    from ..runner import positive

    positive("--workers", workers, 1)


@contextlib.contextmanager
def executor_for(address: str | None):
    """A Dask client connected to ``address`` (``--scheduler``), or None."""
    if address is None:
        yield None
        return
    from ..optional import require

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


def scale_options(p) -> None:
    p.add_argument("--workers", type=int, default=None, metavar="N",
                   help="runs at the same time on this machine (default: the CPUs)")
    p.add_argument("--scheduler", default=None, metavar="ADDRESS",
                   help="run on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs the dask "
                        "extra); results are the same as on one machine")




def names_list(text: str | None) -> list[str] | None:
    """``"a, b"`` -> ``["a", "b"]``; None stays None."""
    return [n.strip() for n in text.split(",") if n.strip()] if text else None

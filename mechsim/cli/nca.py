"""The ``nca`` subcommand's options; the command itself is in :mod:`.nca_command`, which
imports numpy and pint (``mechsim --help`` must not)."""

from __future__ import annotations

from .common import add_command, model_options


def cmd_nca(args) -> int:
    from .nca_command import cmd_nca as run

    return run(args)


def add_commands(sub) -> None:
    """Register the subcommand of this module."""
    p = add_command(sub, "nca", "non-compartmental analysis (Cmax, AUC, half-life, CL, Vz, "
                                "dosing intervals) of a simulated profile or of observed "
                                "data", cmd_nca)
    p.add_argument("model", nargs="?", default=None,
                   help="built-in model name or model file to simulate (or give --data)")
    p.add_argument("--data", default=None, metavar="DATASET",
                   help="observed data instead: a NONMEM-style CSV (ID, TIME, AMT, DV, ...) "
                        "or a built-in dataset ('pheno'); one row per subject")
    p.add_argument("--regimen", default=None, help='dosing text, e.g. "100 mg oral every 12 h '
                                                   'x 6"')
    p.add_argument("--until", default=None, help='end of the simulation, e.g. "10 days"')
    p.add_argument("--every", default=None,
                   help='sampling interval, e.g. "1 h" (dose times are added); default: 1001 '
                        "times plus every dose")
    p.add_argument("--output", default=None,
                   help="the concentration to analyse, e.g. C_mass (with --data: which "
                        "observed output, when there are several)")
    model_options(p)
    p.add_argument("--units", default=None, metavar="COLUMN=UNIT,...",
                   help="with --data: units of columns whose header has none, e.g. "
                        "TIME=h,AMT=mg,DV=mg/L")
    p.add_argument("--route", default=None, metavar="ROUTE|CMT=ROUTE,...",
                   help="route of the drug's doses: with --data, of the dose records ('iv' "
                        "is intravenous; any other name, e.g. oral, is extravascular and "
                        "gives CL/F, Vz/F); with a MODEL, count only the doses by this route")
    p.add_argument("--observe", default=None, metavar="NAME|CMT=NAME,...",
                   help="with --data: a name for the observations (default DV), or names by "
                        "compartment")
    p.add_argument("--intervals", action="store_true",
                   help="also NCA of each dosing interval (AUCtau, Cmax, Cmin, Ctrough, Cavg); "
                        "--out then writes the interval table")
    p.add_argument("--out", default=None, help="write the table to a .csv file")

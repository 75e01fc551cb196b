"""The ``mechsim`` command: one small function per subcommand.

A :class:`~mechsim.errors.MechsimError` becomes one line on stderr and exit status 2 (for
``check``, a failed check is exit status 1); anything else is a bug and keeps its traceback.
Ctrl-C is one line and exit status 130.  Files are written under a temporary name and
renamed when complete.  The subcommands live in :mod:`.simulation` and :mod:`.estimation`,
what they share in :mod:`.common`.
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings

from .. import __version__
from ..errors import MechsimError
from . import estimation, nca, simulation
from .common import EXAMPLES, YOUR_OWN, Parser

__all__ = ["EXAMPLES", "YOUR_OWN", "build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="mechsim",
                    description="Simulate drug mechanisms written as unit-checked ODE models.",
                    epilog="examples:\n  " + "\n  ".join(EXAMPLES.values()),
                    formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"mechsim {__version__}")
    parser.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    parser.add_argument("--strict-units", action="store_true",
                        help="SBML model files: refuse values whose units are not declared "
                             "(default: use their numbers as written, with a warning)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    simulation.add_commands(sub)
    estimation.add_commands(sub)
    nca.add_commands(sub)
    return parser


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
    with warnings.catch_warnings():
        # a warning is one line, like an error, not Python's two (file, line, source)
        warnings.showwarning = _one_line_warning
        if not args.strict_units:
            return _run(args)
        from ..io.sbml_common import STRICT_UNITS  # pint: only when asked

        token = STRICT_UNITS.set(True)
        try:
            return _run(args)
        finally:
            STRICT_UNITS.reset(token)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"mechsim: warning: {' '.join(str(message).split())}",
          file=sys.stderr if file is None else file)


def _run(args) -> int:
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

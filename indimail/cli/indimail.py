"""The ``indimail`` command: administration subcommands on one home.

``indimail init | cdb NAME | tcprules [NAME] | showctl``, each with
``--home``.  A subcommand is an entry of ``SUBCOMMANDS``: a name mapped to
``(add_arguments(parser), run(args, out) -> exit code, help)``, so other
packages can add theirs with ``register``.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, TextIO

from indimail.config.control import ControlFileError
from indimail.config.home import Home

Run = Callable[[argparse.Namespace, TextIO], int]
AddArguments = Callable[[argparse.ArgumentParser], None]

SUBCOMMANDS: dict[str, tuple[AddArguments, Run, str]] = {}


def register(name: str, add_arguments: AddArguments, run: Run, help: str) -> None:
    """Add subcommand *name* to the ``indimail`` command."""
    SUBCOMMANDS[name] = (add_arguments, run, help)


def _home(args: argparse.Namespace) -> Home:
    return Home.from_env(args.home)


# ---------------------------------------------------------------- init

def _init_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--domain", help="set up DOMAIN as a virtual domain")
    parser.add_argument("--queue-count", type=int, default=None,
                        help="number of queues (default $QUEUE_COUNT, else 1)")


def _init(args: argparse.Namespace, out: TextIO) -> int:
    from indimail.config.init import init_home

    report: list[str] = []
    home = init_home(args.home, domain=args.domain, queue_count=args.queue_count, report=report)
    for line in report:
        print(line, file=out)
    print(f"{home.path}: {'initialised' if report else 'nothing to change'}", file=out)
    return 0


# ---------------------------------------------------------------- cdb

def _cdb_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="control file to compile to NAME.cdb")


def _cdb(args: argparse.Namespace, out: TextIO) -> int:
    from indimail.config.cdb import make_control_cdb

    target = make_control_cdb(_home(args).control, args.name)
    print(f"{target}: written", file=out)
    return 0


# ---------------------------------------------------------------- tcprules

def _tcprules_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default="tcp.smtp",
                        help="rules file in the home's tcp/ directory (default tcp.smtp)")


def _tcprules(args: argparse.Namespace, out: TextIO) -> int:
    from indimail.config.tcprules import compile_tcprules

    target = compile_tcprules(_home(args).tcp / args.name)
    print(f"{target}: written", file=out)
    return 0


# ---------------------------------------------------------------- showctl

def _showctl_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--service", default="smtpd",
                        help="whose variables/ directory to show (default smtpd)")


def _showctl(args: argparse.Namespace, out: TextIO) -> int:
    from indimail.config.showctl import showctl_lines

    for line in showctl_lines(_home(args), args.service):
        print(line, file=out)
    return 0


register("init", _init_arguments, _init, "create or complete a home directory")
register("cdb", _cdb_arguments, _cdb, "compile control/NAME to NAME.cdb (qmail-cdb)")
register("tcprules", _tcprules_arguments, _tcprules, "compile tcp/NAME to NAME.cdb")
register("showctl", _showctl_arguments, _showctl, "show control values and a service's environment")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="indimail", description="IndiMail administration")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (add_arguments, _run, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--home", default=None,
                         help="home directory (default $INDIMAIL_HOME, else ~/.indimail)")
        add_arguments(sub)
    return parser


def main(argv: list[str] | None = None, out: TextIO | None = None,
         err: TextIO | None = None) -> int:
    """Run one subcommand; errors go to *err* (stderr) and give exit code 1."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command][1](args, out)
    except ControlFileError as exc:
        print(f"indimail {args.command}: {exc}", file=err)
    except (OSError, ValueError) as exc:
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        print(f"indimail {args.command}: {where}{getattr(exc, 'strerror', None) or exc}", file=err)
    return 1


if __name__ == "__main__":
    sys.exit(main())

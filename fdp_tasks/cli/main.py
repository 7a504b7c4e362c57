"""The `fdp` entry point: builds the argument parser from the command modules and runs one."""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import NoReturn

from fdp_tasks import __version__
from fdp_tasks.errors import FdpError, configure_logging, error_text, os_error_text

INTERRUPTED = 130  # as a shell reports a command ended by SIGINT (128 + 2)

EXIT_CODES = """\
exit status (the same for every command):
  0    done: everything asked for is done, or was up to date
  1    failed: a task failed, or the command could not do its work (a remote that
       does not answer, a product that is not there)
  2    bad input: a command line, config, settings file or token file that cannot be used
  3    conflict: the remote holds other content under a name and version (pull, then
       write a new version); `fdp registry status`: the registry is not running
  130  interrupted (Ctrl-C)

`fdp status --exit-code` exits 0 when nothing would run, 1 when something would run
(will-run, remote-newer, local-only, staged), 2 when something would fail (will-fail), 3 on a
conflict; the highest applies."""


class Parser(argparse.ArgumentParser):
    """argparse, with its errors said as every other error of `fdp` is."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(2, error_text(message) + "\n")


# Each name is a module fdp_tasks.cli.cmd_<name> exposing add_parser(subparsers).
COMMANDS = [
    "init",
    "validate",
    "resolve",
    "pull",
    "run",
    "push",
    "status",
    "add",
    "unstage",
    "reset",
    "commit",
    "update",
    "list",
    "info",
    "prov",
    "reproduce",
    "remote",
    "registry",
    "verify",
    "gc",
    "delete",
    "sweep",
]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The parser of every command, or of the one named `only`: a command imports what
    it needs and no other command's modules, which costs a short command like `fdp pull`
    with nothing new a fifth of its time."""
    parser = Parser(
        prog="fdp",
        description="Reproducible FAIR Data Pipeline runs: register, pull, run and push what a "
        "config.yaml names, doing only what is out of date.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"fdp-tasks {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS if only is None else [only]:
        try:
            module = importlib.import_module(f"fdp_tasks.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fdp_tasks.cli.cmd_{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def named_command(argv: list[str]) -> str | None:
    """The command an argument list names, when it is one of COMMANDS and comes after
    nothing but `-v`/`--verbose`; None otherwise (help, a typo: the whole parser says it)."""
    for arg in argv:
        if arg in ("-v", "--verbose"):
            continue
        return arg if arg in COMMANDS else None
    return None


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns its exit status (see EXIT_CODES)."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser(named_command(argv)).parse_args(argv)
        configure_logging(args.verbose)
        return int(args.func(args) or 0)
    except FdpError as exc:
        print(error_text(str(exc)), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(error_text("interrupted"), file=sys.stderr)
        return INTERRUPTED
    except BrokenPipeError:  # `fdp status | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # a file that cannot be read or written, a full disk
        print(error_text(os_error_text(exc)), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

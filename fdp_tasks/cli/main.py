"""The `fdp` entry point: builds the argument parser from the command modules and runs one."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

from fdp_tasks import __version__
from fdp_tasks.errors import FdpError

# Each name is a module fdp_tasks.cli.cmd_<name> exposing add_parser(subparsers).
COMMANDS = [
    "init",
    "validate",
    "resolve",
    "pull",
    "run",
    "push",
    "status",
    "list",
    "info",
    "remote",
    "registry",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fdp",
        description="Reproducible FAIR Data Pipeline runs: register, pull, run and push what a "
        "config.yaml names, doing only what is out of date.",
    )
    parser.add_argument("--version", action="version", version=f"fdp-tasks {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"fdp_tasks.cli.cmd_{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"fdp_tasks.cli.cmd_{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s: %(message)s" if args.verbose else "%(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except FdpError as exc:
        print(f"fdp: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("fdp: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `fdp status | head`: the reader has seen enough
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())

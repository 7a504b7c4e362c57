"""`fdp validate CONFIG...`: check configs without touching the registry or the disk."""

from __future__ import annotations

import argparse
import sys

from fdp_tasks.config import load_config
from fdp_tasks.errors import ConfigError


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register the validate command."""
    parser = subparsers.add_parser(
        "validate",
        help="check config files for errors",
        description="Check each config file against the config schema and report every "
        "problem as '<file>: <key path>: <expected>'. Nothing is written.",
    )
    parser.add_argument("configs", nargs="+", metavar="CONFIG", help="config.yaml file(s)")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    """Validate every config given; exit 2 if any has a problem."""
    failed = False
    for file in args.configs:
        try:
            cfg = load_config(file, log_warnings=False)
        except ConfigError as exc:
            failed = True
            for line in exc.problems:
                print(line, file=sys.stderr)
            continue
        for warning in cfg.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        print(f"{file}: ok")
    return ConfigError.exit_code if failed else 0

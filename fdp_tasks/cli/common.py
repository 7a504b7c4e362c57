"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from pathlib import Path

from fdp_tasks.errors import FdpError


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        nargs="?",
        default="config.yaml",
        help="the project's config file (default: ./config.yaml)",
    )


def config_path(args: argparse.Namespace) -> Path:
    path = Path(args.config)
    if not path.is_file():
        raise FdpError(f"{args.config}: no such config file (create one with `fdp init`)")
    return path

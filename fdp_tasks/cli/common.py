"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
from pathlib import Path


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
        from fdp_tasks.project import config_not_found

        command = getattr(args, "command", None) or "run"
        raise config_not_found(args.config, Path.cwd().resolve(), f"fdp {command} {{}}")
    return path

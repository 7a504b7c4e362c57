"""Argument helpers shared by the command modules."""

from __future__ import annotations

import argparse
import os
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
        from fdp_tasks.cli.cmd_init import fdp_configs
        from fdp_tasks.project import project_root

        here = Path.cwd().resolve()
        root = project_root(here)
        found = [os.path.relpath(p, here) for p in fdp_configs(root, limit=500)[:5]]
        if found:
            command = getattr(args, "command", None) or "run"
            raise FdpError(
                f"{args.config}: no such config file; this project's FDP configs: "
                f"{', '.join(found)} (name one, e.g. `fdp {command} {found[0]}`)"
            )
        raise FdpError(f"{args.config}: no such config file (create one with `fdp init`)")
    return path

"""`fdp reset`: unstage everything."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reset",
        help="unstage everything staged with `fdp add` or `fdp commit`",
        description="Empty the staging list: the next push sends only the config's outputs.",
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project
    from fdp_tasks.staging import reset

    taken = reset(Project.find())
    print(f"unstaged {len(taken)} item(s)" if taken else "nothing was staged")
    return 0

"""`fdp unstage ID...`: take staged data products or code runs back."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "unstage",
        help="take staged data products or code runs back (the next push leaves them)",
        description="Take entries off the staging list. An id that names nothing staged "
        "changes nothing.",
    )
    parser.add_argument(
        "ids",
        nargs="+",
        metavar="ID",
        help="ns:name@version (ns:name for every staged version), or a code run's uuid",
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project
    from fdp_tasks.staging import unstage

    for entry in unstage(Project.find(), args.ids):
        print(f"unstaged {entry}")
    return 0

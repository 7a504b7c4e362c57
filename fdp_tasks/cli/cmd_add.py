"""`fdp add ID...`: stage data products or code runs for the next `fdp push`."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "add",
        help="stage data products (ns:name@version) or code runs (uuid) for the next push",
        description="Stage data products or code runs of the local registry, outside the "
        "config too: `fdp push` sends them (with their provenance) besides the config's own "
        "outputs. An id that names nothing stages nothing at all.",
    )
    parser.add_argument(
        "ids",
        nargs="+",
        metavar="ID",
        help="ns:name@version (ns:name for the newest version), or a code run's uuid",
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project
    from fdp_tasks.staging import stage

    new, old = stage(Project.find(), args.ids)
    for entry in new:
        print(f"staged {entry}")
    for entry in old:
        print(f"{entry} was staged already")
    return 0

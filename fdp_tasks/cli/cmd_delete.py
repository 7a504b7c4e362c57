"""`fdp delete ns:name@version [--remote NAME] [--yes]`: remove a data product version that
nothing else uses, with the provenance only it needs."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "delete",
        help="delete a data product version nothing else uses (--yes to do it)",
        description="Delete a data product version with the records and file only it needs, "
        "from the local registry or, with --remote, from a remote. A version a code run read "
        "is refused, naming the runs. Without --yes, says what would be deleted.",
    )
    parser.add_argument("product", metavar="NAMESPACE:NAME@VERSION")
    parser.add_argument(
        "--remote",
        metavar="NAME",
        nargs="?",
        const="",
        help="delete it on this remote (default: the project's remote) instead of locally",
    )
    parser.add_argument("--yes", action="store_true", help="delete, rather than only say what")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.project import Project
    from fdp_tasks.upkeep.delete import delete_local, delete_remote

    project = Project.find()
    if args.remote is not None:
        delete_remote(project, args.product, args.remote, print, args.yes)
    else:
        delete_local(project, args.product, print, args.yes)
    return 0

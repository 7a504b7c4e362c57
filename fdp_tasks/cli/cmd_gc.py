"""`fdp gc [--yes] [--older-than DAYS]`: what nothing references in the data store (job
folders, temporary outputs of killed runs, partial files, files no record names), listed;
deleted with --yes, under the project lock, once older than the retention period."""

from __future__ import annotations

import argparse


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "gc",
        help="list (--yes: delete) what nothing references in the data store",
        description="List the job folders, temporary outputs of killed runs, partial files "
        "and data-store files that no registry entry names. Only --yes deletes, and never "
        "anything younger than the retention period (gc_retention_days in "
        ".fdp/settings.yaml, default 7).",
    )
    parser.add_argument("--yes", action="store_true", help="delete what is listed")
    parser.add_argument(
        "--older-than",
        type=float,
        metavar="DAYS",
        help="the retention period for this command, in days (default: gc_retention_days)",
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.errors import BadInput
    from fdp_tasks.project import Project
    from fdp_tasks.upkeep.gc import collect

    if args.older_than is not None and not args.older_than >= 0:
        raise BadInput(f"--older-than {args.older_than:g}: expected a number of days, 0 or more")
    project = Project.find()
    done = collect(project, print, delete=args.yes, older_than=args.older_than)
    retention = project.gc_retention_days if args.older_than is None else args.older_than
    print(done.line(retention, deleting=args.yes))
    return 0

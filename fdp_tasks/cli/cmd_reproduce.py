"""`fdp reproduce ITEM|RUN [--remote NAME] [--keep] [--json]`: rebuild the code run that made
a data product (or a given run) from what was recorded, in a scratch registry and data store,
and compare every output bit for bit. Exits 0 only when all match."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "reproduce",
        help="rebuild the code run that made a data product and compare its outputs",
        description="Rebuild a recorded code run: its code at the recorded commit (a "
        "temporary git worktree), its config and script as recorded with this machine's "
        "paths, its inputs fetched by SHA-1 (from the local data store, else the remote), "
        "run against a scratch registry and data store that are then thrown away. Every "
        "output's SHA-1 is compared with the recorded one; exits 0 only when all match.",
    )
    parser.add_argument(
        "item",
        help="namespace:name@version (the newest version without @), or a code run's uuid",
    )
    parser.add_argument(
        "--remote",
        metavar="NAME",
        help="where to find the run and inputs that are not here (default: the default "
        "remote, asked only when something is missing)",
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the scratch folder, and print its path"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.entry import loopback_registry
    from fdp_tasks.project import Project
    from fdp_tasks.reproduce import reproduce

    project = Project.find()
    if args.json:
        # the script's own output goes to stderr, so that stdout is the JSON alone
        with contextlib.redirect_stdout(sys.stderr):
            outcome = reproduce(
                project, args.item, loopback_registry, args.remote, args.keep, say=_to_stderr
            )
        print(json.dumps(outcome.as_json(), indent=2))
    else:
        outcome = reproduce(project, args.item, loopback_registry, args.remote, args.keep)
        for line in outcome.lines():
            print(line)
    return 0 if outcome.reproduced else 1


def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr)

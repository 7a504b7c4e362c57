"""`fdp status [CONFIG]`: what `doit` would do for each item, and why; `--json` for scripts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from fdp_tasks.cli.common import add_config_argument, config_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show which items are up to date and which would run",
        description="For every register, pull, job and push item of the config: up to date, "
        "or what would happen and why. Reads the local registry, and the remote for push.",
    )
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.add_argument("--remote", metavar="NAME", help="the remote to compare with")
    parser.add_argument(
        "--no-remote", action="store_true", help="do not ask the remote whether outputs are pushed"
    )
    parser.add_argument(
        "--dirty",
        action="store_true",
        help="as `fdp run --dirty` would: uncommitted changes do not stop the job",
    )
    parser.set_defaults(func=handler)


def print_status(
    path: Path,
    tasks: list[str] | None = None,
    as_json: bool = False,
    remote: bool = True,
    remote_name: str | None = None,
    dirty: bool = False,
) -> int:
    from fdp_tasks.graph.status import collect

    rows = collect(
        path,
        remote=remote and (tasks is None or "push" in tasks or "pull" in tasks),
        remote_name=remote_name,
        dirty=dirty,
    )
    if tasks:
        rows = [r for r in rows if r["task"].split(":", 1)[0] in tasks]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        reason = f"  ({row['reason']})" if row.get("reason") else ""
        print(f"{row['state']:<12} {row['task']}{reason}")
    if not rows:
        print("nothing to do: the config registers, reads, runs and pushes nothing")
    return 0


def handler(args: argparse.Namespace) -> int:
    return print_status(
        config_path(args),
        as_json=args.json,
        remote=not args.no_remote,
        remote_name=args.remote,
        dirty=args.dirty,
    )

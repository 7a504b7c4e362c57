"""`fdp verify [CONFIG|--all] [--remote NAME] [--repair] [--jobs N]`: the data store's files
against what the local registry recorded (old runs included), and a remote's copies."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="check every file the local registry records against the data store",
        description="Hash every file the local registry records under the data store (old "
        "runs included) and report those missing or modified, and the store's files no "
        "record names (orphaned). Exits 1 when a file is missing or modified.",
    )
    parser.add_argument(
        "config",
        nargs="?",
        help="a config of the project (default: the project of the working directory); "
        "every file of the project's data store is verified either way",
    )
    parser.add_argument("--all", action="store_true", help="every file (the default)")
    parser.add_argument(
        "--remote",
        metavar="NAME",
        nargs="?",
        const="",
        help="also check that the remote holds each pushed data product with the same SHA-1",
    )
    parser.add_argument(
        "--repair",
        action="store_true",
        help="fetch a good copy of each missing or modified file from the remote",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=min(8, 4 * (os.cpu_count() or 1)),
        metavar="N",
        help="files hashed at once (default: min(8, 4 x cores))",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object: the counts, ok, and each problem found",
    )
    parser.set_defaults(func=handler)


def handler(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fdp_tasks.errors import BadInput
    from fdp_tasks.project import Project
    from fdp_tasks.upkeep.verify import verify

    if args.config and args.all:
        raise BadInput("verify: give a config or --all, not both")
    if args.jobs < 1:
        raise BadInput(f"--jobs {args.jobs}: expected 1 or more")
    if args.config:
        if not Path(args.config).is_file():
            from fdp_tasks.project import config_not_found

            raise config_not_found(args.config, Path.cwd().resolve(), "fdp verify {}")
        project = Project.find(Path(args.config))
    else:
        project = Project.find()
    said: list[str] = []
    outcome = verify(
        project,
        said.append if args.json else print,
        remote_name=args.remote or None,
        repair_files=args.repair,
        jobs=args.jobs,
        remote_wanted=args.remote is not None,
    )
    if args.json:
        print(json.dumps(_as_json(outcome, said), indent=2))
    else:
        print(outcome.line())
    return 0 if outcome.ok else 1


# what a problem line of `fdp verify` starts with, longest first
PROBLEM_KINDS = (
    "differs on remote",
    "not on remote",
    "unrepaired",
    "repaired",
    "modified",
    "missing",
    "orphaned",
)


def _as_json(outcome: Any, said: list[str]) -> dict[str, Any]:
    """The outcome of a verify for scripts: counts, `ok` (the exit status's meaning) and
    each problem line with its kind."""
    problems = []
    for line in said:
        kind = next((k for k in PROBLEM_KINDS if line.startswith(k)), "other")
        problems.append({"kind": kind, "line": line.strip()})
    counts = {
        key: getattr(outcome, key)
        for key in ("verified", "modified", "missing", "orphaned", "repaired")
    }
    if outcome.checked_remote:
        counts |= {
            "not_on_remote": outcome.not_on_remote,
            "differs_on_remote": outcome.differs_on_remote,
        }
    return {"ok": outcome.ok, **counts, "summary": outcome.line(), "problems": problems}

"""`fdp status [CONFIG]`: what `doit` would do for each item, and why; `--json` for scripts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fdp_tasks.cli.common import add_config_argument
from fdp_tasks.errors import ConfigError, OutOfSync


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
    parser.add_argument(
        "--exit-code",
        action="store_true",
        help="exit 1 when something would run, 2 when something would fail, 3 on a conflict "
        "(the highest applies); 0 when everything is up to date",
    )
    parser.set_defaults(func=handler)


# `--exit-code`: what a state means for a script asking "is there anything to do?". States not
# listed (up-to-date, pushed, and unknown: no remote asked) say nothing needs doing.
STATE_EXIT_CODES = {
    "will-run": 1,
    "remote-newer": 1,
    "local-only": 1,
    "staged": 1,
    "will-fail": ConfigError.exit_code,
    "conflict": OutOfSync.exit_code,
}


def exit_code(rows: list[dict[str, Any]]) -> int:
    """The gravest state's code, as `git diff --exit-code` says whether there are changes."""
    return max((STATE_EXIT_CODES.get(row["state"], 0) for row in rows), default=0)


def print_status(
    path: Path | None,
    tasks: list[str] | None = None,
    as_json: bool = False,
    remote: bool = True,
    remote_name: str | None = None,
    dirty: bool = False,
) -> list[dict[str, Any]]:
    """Print one line (or a JSON object) per task of the config, or of each config when
    `path` is a sweep file or None for the project's `configs:`; returns the rows."""
    rows = status_rows(
        path,
        remote=remote and (tasks is None or "push" in tasks or "pull" in tasks),
        remote_name=remote_name,
        dirty=dirty,
    )
    if tasks:
        # `job@sweep/a.yaml` is a job too, in a graph of many configs
        rows = [r for r in rows if r["task"].split(":", 1)[0].split("@", 1)[0] in tasks]
    if as_json:
        print(json.dumps(rows, indent=2))
        return rows
    for row in rows:
        reason = f"  ({row['reason']})" if row.get("reason") else ""
        staged = "  [staged]" if row.get("staged") and row["state"] != "staged" else ""
        print(f"{row['state']:<12} {row['task']}{staged}{reason}")
    if not rows:
        print("nothing to do: the config registers, reads, runs and pushes nothing")
    return rows


def status_rows(
    path: Path | None, remote: bool, remote_name: str | None, dirty: bool
) -> list[dict[str, Any]]:
    """The rows of one config; of many, each task named as in their one graph
    (`job@sweep/beta-0.1.yaml`), with the config's name in `config`."""
    from fdp_tasks.graph.many import configs_for, label_of, task_name
    from fdp_tasks.graph.status import collect
    from fdp_tasks.project import Project

    configs = configs_for(None if path is None else str(path), Path.cwd())
    if configs is None:
        one = path or Path("config.yaml")
        return collect(one, remote=remote, remote_name=remote_name, dirty=dirty)
    project = Project.find(configs[0].parent)
    rows = []
    for config in configs:
        label = label_of(project, config)
        for row in collect(config, remote=remote, remote_name=remote_name, dirty=dirty):
            rows.append({**row, "task": task_name(row["task"], label), "config": label})
    return rows


def handler(args: argparse.Namespace) -> int:
    from fdp_tasks.cli.doit_command import many_configs_path

    rows = print_status(
        many_configs_path(args),
        as_json=args.json,
        remote=not args.no_remote,
        remote_name=args.remote,
        dirty=args.dirty,
    )
    return exit_code(rows) if args.exit_code else 0

"""`fdp status [CONFIG]`: what `doit` would do for each item, and why; `--json` for scripts."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fdp_tasks.cli.common import add_config_argument, config_path


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "status",
        help="show which items are up to date and which would run",
        description="For every register, pull, run and push item of the config: up to date, "
        "or what would happen. Reads only the local registry (and the remote for push).",
    )
    add_config_argument(parser)
    parser.add_argument("--json", action="store_true", help="print a JSON list")
    parser.add_argument(
        "--no-remote", action="store_true", help="do not ask the remote whether outputs are pushed"
    )
    parser.set_defaults(func=handler)


def collect(path: Path, remote: bool = True) -> list[dict[str, Any]]:
    from fdp_tasks.graph.plan import Plan
    from fdp_tasks.graph.tasks import PushLedger, on_remote, pushable
    from fdp_tasks.job import past_runs
    from fdp_tasks.register import item_label, registered_product

    plan = Plan(path)
    rows: list[dict[str, Any]] = []
    for item in plan.registers:
        ok = registered_product(plan.store, plan.data, item)
        rows.append(
            {"task": f"register:{item_label(item)}", "state": "up-to-date" if ok else "will-run"}
        )
    reads_ok = True
    for read in plan.reads:
        ok = plan.read_present(read)
        reads_ok &= ok
        rows.append({"task": f"pull:{read.label}", "state": "up-to-date" if ok else "will-run"})
    if plan.has_script:
        runs = past_runs(plan.runs_log)
        state, why = "will-run", "never run"
        if not reads_ok:
            why = "inputs missing locally"
        elif runs:
            last = runs[-1]
            outputs = plan.outputs_of(last.get("code_runs") or [])
            if last.get("signature") != plan.run_signature():
                why = "script, inputs or outputs changed in the config"
            elif outputs is None or not all(plan.file_intact(o) for o in outputs):
                why = "an output of the last run is missing or modified"
            else:
                state, why = "up-to-date", ""
        rows.append({"task": "job", "state": state, "reason": why})
    ledger = PushLedger(plan.state_dir / "pushed.jsonl")
    for found in pushable(plan):
        if not remote:
            state = "unknown"
        else:
            try:
                state = "pushed" if on_remote(plan, found, ledger) else "local-only"
            except Exception as exc:  # an unreachable remote is a status, not a crash
                state = f"remote unreachable: {type(exc).__name__}"
        rows.append({"task": f"push:{found.ref}", "state": state, "hash": found.hash})
    return rows


def print_status(
    path: Path, tasks: list[str] | None = None, as_json: bool = False, remote: bool = True
) -> int:
    rows = collect(path, remote=remote and (tasks is None or "push" in tasks))
    if tasks:
        rows = [r for r in rows if r["task"].split(":", 1)[0] in tasks]
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for row in rows:
        reason = f"  ({row['reason']})" if row.get("reason") else ""
        print(f"{row['state']:<12} {row['task']}{reason}")
    if not rows:
        print("nothing to do: the config registers, reads and runs nothing")
    return 0


def handler(args: argparse.Namespace) -> int:
    return print_status(config_path(args), as_json=args.json, remote=not args.no_remote)

#!/usr/bin/env python
"""How the commands scale with the number of data products: full run, no-op, status, push, pull.

For each N, it makes a project whose config writes N small data products from one run of a
script using `fdp_tasks.api.Session` (bench_sync's producer), and times whole processes, as a
user would run them, side by side with an anchor in the same run:

| row | what runs | anchor |
|---|---|---|
| full run | `fdp run config.yaml` in a fresh project | - |
| no-op | `doit` once everything is up to date | plain `doit` on N file tasks |
| status | `fdp status config.yaml` (no remote) | `doit list --status` on those tasks |
| push, push again | `fdp push` to a registry server of its own (`registry serve`) | - |
| pull, pull again | `fdp pull` of `results/*` into a fresh project, from that server | no-op |

The anchor is a dodo.py of N tasks, each with a `file_dep` and a `target`, run once first so
that every task is up to date. Each row is the median of several repetitions (`--repeat`,
fewer at 10,000 and more), and the ratio is to the anchor's median, or, for status, to the
no-op's. The full run's row also says how long the script spent in the script API per
product (opening the session, every `write`, the finalise that records them). The push and
pull rows (one server per repetition, the producer's no-op measured in the same repetition)
say the requests per product (the server's access log), the server's CPU seconds, the peak
RSS of the command (GNU time's) beside the no-op's, and at N=1,000 the ratio to FAIR-CLI's
measured push (2,024 s) and pull (1,288 s).

    python benchmarks/bench_scale.py [--sizes 100,1000,10000] [--repeat 5] [--json out.json]
                                     [--only full,noop,status,sync] [--keep]

`--only noop,status` leaves out the full run's row (one `fdp run` still makes the project,
and its time is said in the notes): `--sizes 100000 --only noop,status` gives the 100,000
row. Runs are single from N=100,000.

The no-op and status are measured a few seconds after the run's last write to the local
registry, as a user's next command would be: a registry younger than the racy margin of
`graph/answers.py` is read again by every command, however unchanged.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml
from bench_sync import NAMESPACE, machine_info, make_producer

from fdp_tasks.stat_cache import RACY_MARGIN_NS

REPO = Path(__file__).resolve().parent.parent
SIZE = 256  # bytes per data product: the cost measured is per product, not per byte

# The producer's model, timing the script API around its own calls: the seconds (wall and
# CPU) between opening the session and the end of its finalise, the SQL statements sent
# (counted by a SQLAlchemy event the model sets, as the session imports SQLAlchemy anyway)
# and the script's peak RSS, written beside the model as JSON.
TIMED_MODEL = '''\
"""Reads the seed and writes every data product the config lists, SIZE bytes each."""
import json, os, resource, sys, time
from pathlib import Path

start = time.perf_counter()
from fdp_tasks.api import Session

size = int(sys.argv[1])
imported = time.perf_counter()
in_api = 0.0
cpu_start = time.process_time()
from sqlalchemy import event
from sqlalchemy.engine import Engine
statements = [0]
def count(*_):
    statements[0] += 1
event.listen(Engine, "before_cursor_execute", count)
fdp = Session()
opened = time.perf_counter()
in_api += opened - imported
in_api_cpu = time.process_time() - cpu_start
with open(fdp.read("inputs/seed")) as fh:
    seed = fh.read().strip()
for item in fdp.config["write"]:
    line = f"{item['data_product']},{seed}\\n"
    before, before_cpu = time.perf_counter(), time.process_time()
    path = fdp.write(item["data_product"])
    in_api += time.perf_counter() - before
    in_api_cpu += time.process_time() - before_cpu
    with open(path, "w") as out:
        out.write((line * (size // len(line) + 1))[:size])
before, before_cpu = time.perf_counter(), time.process_time()
fdp.finalise()
finalise = time.perf_counter() - before
in_api += finalise
in_api_cpu += time.process_time() - before_cpu
Path(os.environ["BENCH_API_TIMING"]).write_text(json.dumps({
    "import": imported - start, "api": in_api, "api_cpu": in_api_cpu, "finalise": finalise,
    "outputs": len(fdp.outputs), "statements": statements[0],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
'''

DODO = "from fdp_tasks.dodo import *  # noqa: F403\n"
TIMING_ENV = "BENCH_API_TIMING"

# N file tasks, each copying its source to its target: what doit itself costs per task.
ANCHOR_DODO = """\
import shutil
from pathlib import Path

N = {n}
HERE = Path(__file__).parent


def copy(src, dst):
    shutil.copyfile(src, dst)


def task_copy():
    for i in range(N):
        src, dst = HERE / "src" / f"{{i}}.txt", HERE / "out" / f"{{i}}.txt"
        yield {{
            "name": str(i),
            "file_dep": [src],
            "targets": [dst],
            "actions": [(copy, [src, dst])],
        }}
"""


@dataclass
class Row:
    what: str
    n: int
    seconds: float  # the median
    repetitions: int
    anchor: str = ""
    anchor_seconds: float | None = None
    samples: list[float] | None = None
    note: str = ""
    cpu_seconds: float | None = None  # the median CPU seconds, and the anchor's
    anchor_cpu_seconds: float | None = None

    @property
    def ratio(self) -> float | None:
        if self.anchor_seconds:
            return self.seconds / self.anchor_seconds
        return None

    @property
    def cpu_ratio(self) -> float | None:
        if self.cpu_seconds and self.anchor_cpu_seconds:
            return self.cpu_seconds / self.anchor_cpu_seconds
        return None


def environment(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["FDP_HOME"] = str(home)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])]
    )
    env["FDP_PROGRESS"] = "never"
    # bytecode cached, as an installed package has it: compiling every module again in every
    # process is not what a user's command costs (run from a copy of the tree)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float]:
    """Wall seconds of one whole process, and the CPU seconds (user + system) it and its
    children used: on a machine others share, CPU time says more than wall time. Its output
    is shown only when it fails."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} in {cwd} exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}{proc.stderr[-3000:]}"
        )
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return seconds, cpu


def run(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    return timed(argv, cwd, env)[0]


def fdp(*args: str) -> list[str]:
    return [sys.executable, "-m", "fdp_tasks.cli.main", *args]


def doit(*args: str) -> list[str]:
    return [sys.executable, "-m", "doit", *args]


def producer(base: Path, n: int) -> tuple[Path, dict[str, str]]:
    """bench_sync's producer with the timed model and the dodo.py `fdp init` would add, in a
    git repository with everything committed, as a real project is."""
    project = make_producer(base, n, SIZE)
    root = project.root
    (root / "model.py").write_text(TIMED_MODEL, encoding="utf-8")
    (root / "dodo.py").write_text(DODO, encoding="utf-8")
    config = yaml.safe_load(project.config.read_text(encoding="utf-8"))
    config["run_metadata"]["script"] = f"python3 ${{{{REPO_DIR}}}}/model.py {SIZE}"
    project.write_config(config)
    env = environment(project.home)
    # outside the repository, and named by the environment: a file the script line names
    # is part of what the job depends on
    env[TIMING_ENV] = str(base / "api-timing.json")
    git = {
        **env,
        "GIT_AUTHOR_NAME": "bench",
        "GIT_AUTHOR_EMAIL": "bench@example.org",
        "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.org",
    }
    for argv in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "bench"]):
        subprocess.run(argv, cwd=root, env=git, check=True, capture_output=True)
    return root, env


def anchor_project(base: Path, n: int) -> Path:
    root = base / "anchor"
    (root / "src").mkdir(parents=True)
    (root / "out").mkdir()
    for i in range(n):
        (root / "src" / f"{i}.txt").write_text(f"{i}\n" * 32, encoding="utf-8")
    (root / "dodo.py").write_text(ANCHOR_DODO.format(n=n), encoding="utf-8")
    return root


def full_runs(base: Path, n: int, times: int) -> tuple[Row, Path, dict[str, str]]:
    """`fdp run` in a fresh project each time; the script API's share from the model. The
    last project is kept for the no-op and status rows."""
    samples, cpus, api, api_cpu, rss, statements = [], [], [], [], [], []
    for i in range(times):
        if i:
            shutil.rmtree(base / f"full-{i - 1}", ignore_errors=True)
        root, env = producer(base / f"full-{i}", n)
        seconds, cpu = timed(fdp("run", "config.yaml"), root, env)
        samples.append(seconds)
        cpus.append(cpu)
        timing = json.loads((root.parent / "api-timing.json").read_text(encoding="utf-8"))
        if timing["outputs"] != n:
            raise RuntimeError(f"full run: the script wrote {timing['outputs']} of {n} outputs")
        api.append(timing["api"])
        api_cpu.append(timing["api_cpu"])
        rss.append(timing["peak_rss_mb"])
        statements.append(timing["statements"])
    per_product = statistics.median(api) / n * 1000
    cpu_per_product = statistics.median(api_cpu) / n * 1000
    row = Row(
        "full run (fdp run)",
        n,
        statistics.median(samples),
        times,
        samples=samples,
        note=(
            f"script API {per_product:.2f} ms/product ({cpu_per_product:.2f} ms CPU), "
            f"{statistics.median(statements) / n:.2f} SQL statements/product; "
            f"script peak RSS {max(rss):.0f} MB"
        ),
        cpu_seconds=statistics.median(cpus),
    )
    return row, root, env


ROWS = ("full", "noop", "status", "sync")


def settle(home: Path) -> None:
    """Wait until the local registry's files are older than the answers' racy margin."""
    found = [p.stat() for p in home.glob("registry.db*") if p.is_file()]
    newest = max((max(s.st_mtime_ns, s.st_ctime_ns) for s in found), default=0)
    wait = (newest + RACY_MARGIN_NS - time.time_ns()) / 1e9 + 0.2
    if wait > 0:
        time.sleep(wait)


def scale_rows(
    base: Path, n: int, repeat: int, full_times: int, only: tuple[str, ...] = ROWS
) -> list[Row]:
    full, root, env = full_runs(base, n, full_times)
    rows = []
    if "full" in only:
        rows.append(full)
    if "sync" in only:
        settle(Path(env["FDP_HOME"]))
        rows += sync_rows(base / "sync", n, root, env, full_times)
    if not {"noop", "status"} & set(only):
        return rows
    settle(Path(env["FDP_HOME"]))
    run(doit(), root, env)  # the first no-op may fill caches: not what is measured
    anchor = anchor_project(base, n)
    run(doit(), anchor, env)

    # side by side: each repetition runs the anchor and then ours
    pairs = [
        (
            timed(doit(), anchor, env),
            timed(doit(), root, env),
            timed(doit("list", "--status"), anchor, env),
            timed(fdp("status", "config.yaml"), root, env),
        )
        for _ in range(repeat)
    ]
    walls = [statistics.median(t[0] for t in column) for column in zip(*pairs, strict=True)]
    cpus = [statistics.median(t[1] for t in column) for column in zip(*pairs, strict=True)]
    setup = "" if "full" in only else f"made by one fdp run of {full.seconds:.0f} s"
    # the memory doit itself holds for N tasks, beside ours: doit keeps every task (some
    # kilobytes each), so no command that gives doit a task per product is flat in N
    from bench_sync import whole_process

    peaks = [whole_process(doit(), cwd, env)[2] for cwd in (anchor, root)]
    setup = "; ".join(
        [*([setup] if setup else []), f"peak RSS {_mb(peaks[1:])} (plain doit's {_mb(peaks[:1])})"]
    )
    if "noop" in only:
        rows.append(
            Row(
                "no-op (doit)",
                n,
                walls[1],
                repeat,
                "plain doit, N file tasks",
                walls[0],
                [p[1][0] for p in pairs],
                note=setup,
                cpu_seconds=cpus[1],
                anchor_cpu_seconds=cpus[0],
            )
        )
    if "status" not in only:
        return rows
    rows.append(
        Row(
            "status (fdp status)",
            n,
            walls[3],
            repeat,
            "no-op doit",
            walls[1],
            [p[3][0] for p in pairs],
            note=f"doit list --status on N file tasks: {walls[2]:.2f} s ({cpus[2]:.2f} s CPU)",
            cpu_seconds=cpus[3],
            anchor_cpu_seconds=cpus[1],
        )
    )
    return rows


# FAIR-CLI's measured push and pull of 1,000 products (../shared/fdp-reference), for ratios
FAIR_CLI_SECONDS = {"push": 2024.0, "pull": 1288.0}


def sync_rows(base: Path, n: int, root: Path, env: dict[str, str], times: int) -> list[Row]:
    """Push, push again, pull into a fresh project, pull again and the producer's no-op, as
    whole processes side by side, each repetition against a registry server of its own (as a
    user runs `registry serve`); requests counted from the server's access log."""
    from bench_sync import RemoteServer, make_consumer, whole_process

    from fdp_tasks.server import serve as serve_module

    ops = ("push", "push again", "pull", "pull again", "no-op")
    walls: dict[str, list[float]] = {op: [] for op in ops}
    cpus: dict[str, list[float]] = {op: [] for op in ops}
    rss: dict[str, list[float | None]] = {op: [] for op in ops}
    requests: dict[str, list[int]] = {op: [] for op in ops}
    server_cpu: dict[str, list[float]] = {op: [] for op in ops}
    for i in range(times):
        server = RemoteServer(base / f"server-{i}")
        log = server.base / "access.log"
        serve_module.start_background(
            str(server.db),
            server.base / "blobs",
            server.base / "state",
            port=server.port,
            access_log=str(log),
        )
        consumer = make_consumer(base, f"consumer-{i}")
        consumer_env = {**env, "FDP_HOME": str(consumer.home)}
        token = str(server.token_file)
        remote = ["remote", "add", "origin", server.api_url, "--token-file", token]
        for project, project_env in ((root, env), (consumer.root, consumer_env)):
            run(fdp(*remote), project, project_env)
        try:
            pull = fdp("pull", "config.yaml")
            steps = (
                ("push", fdp("push", "config.yaml"), root, env),
                ("push again", fdp("push", "config.yaml"), root, env),
                ("pull", pull, consumer.root, consumer_env),
                ("pull again", pull, consumer.root, consumer_env),
                ("no-op", doit(), root, env),
            )
            for op, argv, cwd, step_env in steps:
                if op != "push" and op != "pull":  # the next command, a few seconds later
                    settle(Path(step_env["FDP_HOME"]))
                if op in ("pull again", "no-op"):
                    # as for the no-op row: the first after a change fills the caches (the
                    # registry's answers, the hashes by stat); the next one is measured
                    run(argv, cwd, step_env)
                lines_before = _lines(log)
                cpu_before = server.cpu() or 0.0
                wall, cpu, peak = whole_process(argv, cwd, step_env)
                walls[op].append(wall)
                cpus[op].append(cpu)
                rss[op].append(peak)
                requests[op].append(_lines(log) - lines_before)
                server_cpu[op].append((server.cpu() or 0.0) - cpu_before)
            if len(list((consumer.home / "data").rglob("*.csv"))) != n:
                raise RuntimeError(f"the pull of {n} products left another number of files")
        finally:
            server.stop()
            for project, project_env in ((root, env), (consumer.root, consumer_env)):
                run(fdp("remote", "remove", "origin"), project, project_env)
    rows = []
    noop = statistics.median(walls["no-op"])
    noop_cpu = statistics.median(cpus["no-op"])
    for op in ops[:-1]:
        notes = [
            f"{statistics.median(requests[op]) / n:.2f} requests/product",
            f"server CPU {statistics.median(server_cpu[op]):.2f} s",
            f"peak RSS {_mb(rss[op])} (no-op's {_mb(rss['no-op'])})",
        ]
        seconds = statistics.median(walls[op])
        if op in FAIR_CLI_SECONDS and n == 1000:
            fair = FAIR_CLI_SECONDS[op]
            notes.append(f"{fair / seconds:.0f}x FAIR-CLI's {fair:.0f} s")
        again = op == "pull again"
        rows.append(
            Row(
                f"{op} (fdp {op.split()[0]}, own server)",
                n,
                seconds,
                times,
                "no-op doit" if again else "",
                noop if again else None,
                walls[op],
                note="; ".join(notes),
                cpu_seconds=statistics.median(cpus[op]),
                anchor_cpu_seconds=noop_cpu if again else None,
            )
        )
    return rows


def _mb(peaks: list[float | None]) -> str:
    known = [p for p in peaks if p is not None]
    return f"{max(known):.0f} MB" if known else "? MB (no /usr/bin/time)"


def _lines(path: Path) -> int:
    try:
        with open(path, "rb") as fh:
            return sum(1 for _ in fh)
    except FileNotFoundError:
        return 0


def markdown(rows: list[Row]) -> str:
    lines = [
        "| what | N | median s | runs | anchor | anchor s | ratio | CPU s | anchor CPU s "
        "| CPU ratio | notes |",
        "|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|",
    ]

    def shown(value: float | None, suffix: str = "") -> str:
        return "-" if value is None else f"{value:.2f}{suffix}"

    for row in rows:
        lines.append(
            f"| {row.what} | {row.n} | {row.seconds:.2f} | {row.repetitions} | "
            f"{row.anchor or '-'} | {shown(row.anchor_seconds)} | {shown(row.ratio, 'x')} | "
            f"{shown(row.cpu_seconds)} | {shown(row.anchor_cpu_seconds)} | "
            f"{shown(row.cpu_ratio, 'x')} | {row.note} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000", help="values of N, comma-separated")
    parser.add_argument(
        "--repeat", type=int, default=5, help="repetitions of no-op and status (3 from N=10,000)"
    )
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    parser.add_argument(
        "--only", default=",".join(ROWS), help=f"rows to measure, of {', '.join(ROWS)}"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary projects")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes takes comma-separated positive integers")
    if not sizes or min(sizes) < 1 or args.repeat < 1:
        parser.error("--sizes and --repeat take positive integers")
    only = tuple(r.strip() for r in args.only.split(",") if r.strip())
    if not only or set(only) - set(ROWS):
        parser.error(f"--only takes rows of {', '.join(ROWS)}, comma-separated")

    info = machine_info()
    print(", ".join(f"{k}: {v}" for k, v in info.items()), flush=True)
    base = Path(tempfile.mkdtemp(prefix="fdp-bench-scale-"))
    rows: list[Row] = []
    started = time.perf_counter()
    try:
        for n in sizes:
            big = n >= 10_000
            repeat = 1 if n >= 100_000 else min(args.repeat, 3) if big else args.repeat
            rows += scale_rows(base / f"n{n}", n, repeat, 1 if big else 3, only)
            print(markdown([r for r in rows if r.n == n]), flush=True)
    finally:
        if args.keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    total = time.perf_counter() - started
    print(f"\n## All sizes ({total:.0f} s, namespace {NAMESPACE})\n")
    print(markdown(rows))
    if args.json:
        document: dict[str, Any] = {
            "machine": info,
            "total_seconds": round(total, 2),
            "rows": [asdict(r) | {"ratio": r.ratio, "cpu_ratio": r.cpu_ratio} for r in rows],
        }
        args.json.write_text(json.dumps(document, indent=2), encoding="utf-8")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Benchmark of run, push and pull: wall time and HTTP requests per data product.

The cost of syncing with a registry is round trips, not bytes, so besides seconds this counts
every HTTP request the client sends (and which endpoints they go to) against an HTTP remote
(a registry server in its own process on loopback) and a directory remote. Everything but the
remote server and the model script runs in this process, which is what lets the harness count
requests without touching fdp_tasks.

    python benchmarks/bench_sync.py [--products 100] [--size 1024] [--json out.json]
                                    [--breakdown] [--remotes http,dir] [--jobs 1,8] [--keep]

`--jobs 1,8` adds a push and a pull to a registry server of their own for each count of
parallel transfers, side by side in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import doit.doit_cmd  # noqa: F401 - imported up front so the first phase is not charged for it
import requests
import sqlalchemy as sa
import urllib3.connection
import yaml

import fdp_tasks.server.serve as serve_module
from fdp_tasks.entry import run_doit
from fdp_tasks.project import Project
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

REPO = Path(__file__).resolve().parent.parent
NAMESPACE = "lab"

MODEL = '''\
"""Reads the seed and writes every data product the config lists, SIZE bytes each."""
import sys
from fdp_tasks.api import Session

size = int(sys.argv[1])
with Session() as fdp:
    with open(fdp.read("inputs/seed")) as fh:
        seed = fh.read().strip()
    for item in fdp.config["write"]:
        line = f"{item['data_product']},{seed}\\n"
        with open(fdp.write(item["data_product"]), "w") as out:
            out.write((line * (size // len(line) + 1))[:size])
'''


# ---------------------------------------------------------------------------- counting
ID_SEGMENT = re.compile(r"^\d+$")
SQL_VERB = re.compile(r"^\s*(\w+)")
SQL_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+[\"`]?(\w+)", re.IGNORECASE)
HASH_SEGMENT = re.compile(r"^[0-9a-fA-F]{32,64}$")


def request_shape(method: str, url: str) -> str:
    """`GET /api/object/12/?page_size=1000` -> `GET /api/object/{id}/?page_size`: groups calls."""
    split = urlsplit(url)
    parts = []
    for part in split.path.split("/"):
        if ID_SEGMENT.match(part):
            part = "{id}"
        elif HASH_SEGMENT.match(part):
            part = "{sha1}"
        parts.append(part)
    keys = sorted({k for k, _ in parse_qsl(split.query, keep_blank_values=True)})
    query = f"?{'&'.join(keys)}" if keys else ""
    return f"{method.upper()} {'/'.join(parts)}{query}"


def sql_shape(statement: str) -> str:
    """`SELECT ... FROM object WHERE ...` -> `SELECT object`: groups statements by table."""
    verb = SQL_VERB.match(statement)
    table = SQL_TABLE.search(statement)
    return " ".join(
        part for part in ((verb[1].upper() if verb else "?"), table[1] if table else "") if part
    )


class Counters:
    """Everything counted during one phase: client requests, connections, SQL, local server.

    Requests are counted at `requests.Session.send`, which sees every request on the wire,
    redirects included; `Session.request` would miss followed redirects.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.active = False
        self.reset()

    def reset(self) -> None:
        self.shapes: Counter[str] = Counter()
        self.statuses: dict[str, Counter[int]] = {}
        self.methods: Counter[str] = Counter()
        self.connections = 0
        self.sql: Counter[str] = Counter()
        self.local_server: Counter[str] = Counter()

    def install(self) -> None:
        """Patch the classes once; counting happens only while `active`."""
        counters = self
        send = requests.Session.send
        connect = urllib3.connection.HTTPConnection.connect
        create_app = serve_module.create_app

        def counting_send(
            session: requests.Session, request: requests.PreparedRequest, **kwargs: Any
        ) -> requests.Response:
            response = send(session, request, **kwargs)
            if counters.active:
                shape = request_shape(request.method or "?", request.url or "")
                with counters.lock:
                    counters.shapes[shape] += 1
                    counters.methods[(request.method or "?").upper()] += 1
                    counters.statuses.setdefault(shape, Counter())[response.status_code] += 1
            return response

        def counting_connect(conn: urllib3.connection.HTTPConnection) -> None:
            if counters.active:
                with counters.lock:
                    counters.connections += 1
            connect(conn)

        def counting_app(*args: Any, **kwargs: Any) -> Any:
            # The local registry `run` serves for the script: count what reaches it.
            app = create_app(*args, **kwargs)
            inner = app.wsgi_app  # the Flask app stays what the server configures

            def middleware(environ: dict[str, Any], start_response: Any) -> Any:
                if counters.active:
                    shape = request_shape(environ["REQUEST_METHOD"], environ["PATH_INFO"])
                    with counters.lock:
                        counters.local_server[shape] += 1
                return inner(environ, start_response)

            app.wsgi_app = middleware
            return app

        def count_sql(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
            if counters.active:
                with counters.lock:
                    counters.sql[sql_shape(statement)] += 1

        requests.Session.send = counting_send  # type: ignore[method-assign]
        urllib3.connection.HTTPConnection.connect = counting_connect  # type: ignore[method-assign]
        serve_module.create_app = counting_app  # type: ignore[assignment]
        sa.event.listen(sa.engine.Engine, "before_cursor_execute", count_sql)

    @property
    def requests(self) -> int:
        return sum(self.shapes.values())


COUNTERS = Counters()


# ---------------------------------------------------------------------------- results
@dataclass
class Measurement:
    operation: str
    remote: str
    n: int
    seconds: float
    requests: int
    connections: int
    sql_statements: int
    client_cpu_seconds: float
    server_cpu_seconds: float | None
    local_registry_requests: int
    peak_rss_mb: float | None = None  # this process, during this phase only (Linux)
    methods: dict[str, int] = field(default_factory=dict)
    breakdown: dict[str, dict[str, Any]] = field(default_factory=dict)
    sql_breakdown: dict[str, int] = field(default_factory=dict)

    @property
    def items_per_second(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")

    @property
    def requests_per_product(self) -> float:
        return self.requests / self.n if self.n else 0.0

    def as_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["items_per_second"] = round(self.items_per_second, 2)
        out["requests_per_product"] = round(self.requests_per_product, 3)
        return out


def process_cpu(pid: int) -> float | None:
    """User + system CPU seconds of another process (Linux /proc), or None elsewhere."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------- fixtures
TIME = Path("/usr/bin/time")  # GNU time: the peak RSS of the command alone


def whole_process(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[float, float, float | None]:
    """Wall seconds, CPU seconds (user + system, with its children) and peak RSS in MB of
    one whole process, as a user runs it. The peak comes from GNU time, which forks the
    command from its own small process: a child forked from this one inherits its RSS as
    the starting high-water mark, so `wait4`'s figure would be this benchmark's (None
    without /usr/bin/time)."""
    with tempfile.NamedTemporaryFile(prefix="fdp-bench-rss-", delete=False) as fh:
        rss_file = Path(fh.name)
    wrapped = [str(TIME), "-f", "%M", "-o", str(rss_file), *argv] if TIME.is_file() else argv
    try:
        start = time.perf_counter()
        proc = subprocess.Popen(
            wrapped, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        assert proc.stdout is not None
        output = proc.stdout.read().decode("utf-8", "replace")
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        code = os.waitstatus_to_exitcode(status)
        if code != 0:
            command = " ".join(argv)
            raise RuntimeError(f"{command} in {cwd} exited {code}:\n{output[-4000:]}")
        words = rss_file.read_text(encoding="utf-8").split() if TIME.is_file() else []
    finally:
        rss_file.unlink(missing_ok=True)
    peak = int(words[-1]) / 1024 if words and words[-1].isdigit() else None
    return seconds, usage.ru_utime + usage.ru_stime, peak


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RemoteServer:
    """The HTTP remote: a registry server in its own process, as users would run it."""

    def __init__(self, base: Path):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.db = base / "registry.db"
        store = Store(self.db)
        self.token_file = base / "token"
        working_token(store, file=self.token_file)
        store.close()
        self.port = free_port()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/"

    def start(self) -> None:
        serve_module.start_background(
            str(self.db), self.base / "blobs", self.base / "state", port=self.port
        )

    def cpu(self) -> float | None:
        info = serve_module.background_status(self.base / "state")
        return process_cpu(info["pid"]) if info else None

    def stop(self) -> None:
        serve_module.stop_background(self.base / "state")


@dataclass
class BenchProject:
    """A project directory with its own FDP_HOME (registry, data store)."""

    root: Path
    home: Path

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """FDP_HOME and the working directory of this project, for in-process commands."""
        old_home, old_cwd = os.environ.get("FDP_HOME"), Path.cwd()
        os.environ["FDP_HOME"] = str(self.home)
        os.chdir(self.root)
        try:
            yield
        finally:
            os.chdir(old_cwd)
            if old_home is None:
                os.environ.pop("FDP_HOME", None)
            else:
                os.environ["FDP_HOME"] = old_home

    def write_config(self, data: dict[str, Any]) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.config.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")

    def set_remotes(self, remotes: dict[str, dict[str, str]], default: str) -> None:
        """What `fdp remote add` writes, plus which remote push and pull use."""
        with self.active():
            project = Project.load(self.root)
            project.settings["remotes"] = remotes
            project.settings["default_remote"] = default
            project.save_settings()

    def doit(self, *args: str, jobs: int | None = None) -> None:
        """`doit run <args>` in this project, in this process; output shown only on failure.
        `jobs`: files moved at once (default: the project's setting, else the default)."""
        # doit's reporter writes to the stream bound when doit was imported, hence -o.
        log = self.root / "doit-report.log"
        out = io.StringIO()
        with self.active(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            code = run_doit(self.config, ["run", "-o", str(log), *args], jobs=jobs)
        if code != 0:
            report = log.read_text(encoding="utf-8") if log.is_file() else ""
            raise RuntimeError(
                f"doit run {' '.join(args)} in {self.root} exited {code}:\n"
                f"{report[-2000:]}{out.getvalue()[-4000:]}"
            )

    def products(self) -> list[Path]:
        folder = self.home / "data" / NAMESPACE / "results"
        return sorted(folder.rglob("*.csv")) if folder.is_dir() else []


def make_producer(base: Path, n: int, size: int) -> BenchProject:
    project = BenchProject(base / "producer", base / "producer-home")
    (project.root / "raw").mkdir(parents=True, exist_ok=True)
    (project.root / "raw" / "seed.txt").write_text("seed-value\n", encoding="utf-8")
    (project.root / "model.py").write_text(MODEL, encoding="utf-8")
    project.write_config(
        {
            "run_metadata": {
                "description": "sync benchmark",
                "default_input_namespace": NAMESPACE,
                "default_output_namespace": NAMESPACE,
                "script": f"python3 ${{{{REPO_DIR}}}}/model.py {size}",
            },
            "register": [
                {
                    "external_object": "inputs/seed",
                    "namespace_name": NAMESPACE,
                    "root": "${{REPO_DIR}}/raw/",
                    "path": "seed.txt",
                    "file_type": "txt",
                    "version": "1.0.0",
                    "title": "seed",
                    "unique_name": "seed",
                    "alternate_identifier_type": "local",
                }
            ],
            "write": [
                {
                    "data_product": f"results/part{i:05d}",
                    "description": f"part {i}",
                    "file_type": "csv",
                }
                for i in range(n)
            ],
        }
    )
    return project


def make_consumer(base: Path, name: str) -> BenchProject:
    project = BenchProject(base / name, base / f"{name}-home")
    project.write_config(
        {
            "run_metadata": {
                "description": "sync benchmark reader",
                "default_input_namespace": NAMESPACE,
            },
            "read": [{"data_product": "results/*"}],
        }
    )
    return project


# ---------------------------------------------------------------------------- phases
def measure(
    operation: str, remote: str, n: int, server: RemoteServer | None, work: Callable[[], None]
) -> Measurement:
    """Run `work` once with every counter on; wall time and counts for `n` products."""
    COUNTERS.reset()
    reset_peak_rss()
    server_before = server.cpu() if server else None
    cpu_before = time.process_time()
    COUNTERS.active = True
    start = time.perf_counter()
    try:
        work()
    finally:
        seconds = time.perf_counter() - start
        COUNTERS.active = False
    server_after = server.cpu() if server else None
    server_cpu = (
        server_after - server_before
        if server_before is not None and server_after is not None
        else None
    )
    breakdown = {
        shape: {
            "count": count,
            "per_product": round(count / n, 3) if n else 0.0,
            "statuses": dict(sorted(COUNTERS.statuses.get(shape, Counter()).items())),
        }
        for shape, count in COUNTERS.shapes.most_common()
    }
    return Measurement(
        operation=operation,
        remote=remote,
        n=n,
        seconds=seconds,
        requests=COUNTERS.requests,
        connections=COUNTERS.connections,
        sql_statements=sum(COUNTERS.sql.values()),
        client_cpu_seconds=time.process_time() - cpu_before,
        server_cpu_seconds=server_cpu,
        local_registry_requests=sum(COUNTERS.local_server.values()),
        peak_rss_mb=phase_peak_rss_mb(),
        methods=dict(COUNTERS.methods.most_common()),
        breakdown=breakdown,
        sql_breakdown=dict(COUNTERS.sql.most_common()),
    )


def reset_peak_rss() -> None:
    """Start this process's peak resident set size afresh (Linux: `clear_refs` 5), so each
    phase reports its own peak rather than the largest so far."""
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def phase_peak_rss_mb() -> float | None:
    """This process's peak resident set size since `reset_peak_rss` (MB), or None."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    return None


def check_products(project: BenchProject, n: int, what: str) -> None:
    found = len(project.products())
    if found != n:
        raise RuntimeError(f"{what}: expected {n} data product files, found {found}")


def remote_products(server: RemoteServer) -> int:
    store = Store(server.db)
    try:
        return store.count("data_product")
    finally:
        store.close()


def jobs_rows(base: Path, producer: BenchProject, n: int, jobs: int) -> list[Measurement]:
    """Push to a registry server of its own, then pull into a fresh project, moving `jobs`
    files at once (`--jobs`)."""
    server = RemoteServer(base / f"server-jobs-{jobs}")
    server.start()
    try:
        name = f"jobs{jobs}"
        producer.set_remotes(
            {name: {"url": server.api_url, "token_file": str(server.token_file)}}, name
        )
        label = f"--jobs {jobs}"
        rows = [
            measure(f"push {label}", "http", n, server, lambda: producer.doit("push", jobs=jobs))
        ]
        if remote_products(server) < n:
            raise RuntimeError(f"push {label}: the remote registry is missing data products")
        consumer = make_consumer(base, f"consumer-jobs-{jobs}")
        consumer.set_remotes({name: {"url": server.api_url}}, name)
        rows.append(
            measure(
                f"pull {label}",
                "http",
                n,
                server,
                lambda: consumer.doit("register", "pull", jobs=jobs),
            )
        )
        check_products(consumer, n, f"pull {label}")
        return rows
    finally:
        server.stop()


def benchmark(
    base: Path, n: int, size: int, kinds: list[str], jobs: list[int] | None = None
) -> list[Measurement]:
    """Run once, then for each remote kind: push, push again, pull fresh, pull again; then
    a push and a pull for each count of parallel transfers in `jobs`."""
    results: list[Measurement] = []
    server = RemoteServer(base / "remote-server") if "http" in kinds else None
    if server:
        server.start()
    try:
        remotes = {"dir": {"url": str(base / "dir-remote")}}
        if server:
            remotes["http"] = {"url": server.api_url, "token_file": str(server.token_file)}
        producer = make_producer(base, n, size)
        producer.set_remotes(remotes, kinds[0])

        results.append(measure("run", "-", n, None, producer.doit))
        check_products(producer, n, "run")
        results.append(measure("run (no-op)", "-", n, None, producer.doit))

        for kind in kinds:
            producer.set_remotes(remotes, kind)
            srv = server if kind == "http" else None
            results.append(measure("push", kind, n, srv, lambda: producer.doit("push")))
            if server and kind == "http" and remote_products(server) < n:
                raise RuntimeError("push: the remote registry is missing data products")
            results.append(measure("push (no-op)", kind, n, srv, lambda: producer.doit("push")))

            consumer = make_consumer(base, f"consumer-{kind}")
            # Reading needs no token, as for a colleague pulling public results.
            consumer.set_remotes({kind: {"url": remotes[kind]["url"]}}, kind)
            results.append(
                measure("pull", kind, n, srv, lambda c=consumer: c.doit("register", "pull"))
            )
            check_products(consumer, n, f"pull from {kind}")
            results.append(
                measure("pull (no-op)", kind, n, srv, lambda c=consumer: c.doit("register", "pull"))
            )
        for count in jobs or []:
            results += jobs_rows(base, producer, n, count)
    finally:
        if server:
            server.stop()
    return results


# ---------------------------------------------------------------------------- report
def machine_info() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
    }
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    for package in ("fdp-tasks", "requests", "sqlalchemy", "doit", "waitress"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            info[f"{package}_version"] = metadata.version(package)
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        info["git_commit"] = subprocess.run(
            ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
    return info


def peak_rss_mb() -> dict[str, float]:
    """Peak resident set size of this process and of its largest waited-for child (MB)."""
    per_mb = 1024 * 1024 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes or KiB
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {
        "benchmark_process": round(own / per_mb, 1),
        "largest_child": round(children / per_mb, 1),
    }


def markdown_table(results: list[Measurement]) -> str:
    header = (
        "| operation | remote | N | seconds | items/s | requests | requests/product "
        "| connections | SQL stmts/product (this process) | client CPU s | server CPU s "
        "| peak RSS MB |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in results:
        server_cpu = "-" if m.server_cpu_seconds is None else f"{m.server_cpu_seconds:.2f}"
        rss = "-" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f}"
        lines.append(
            f"| {m.operation} | {m.remote} | {m.n} | {m.seconds:.2f} | "
            f"{m.items_per_second:.1f} | {m.requests} | {m.requests_per_product:.2f} | "
            f"{m.connections} | {m.sql_statements / m.n:.1f} | {m.client_cpu_seconds:.2f} | "
            f"{server_cpu} | {rss} |"
        )
    return "\n".join(lines)


def breakdown_text(results: list[Measurement], top: int = 15) -> str:
    """Where each phase's requests (and this process's SQL statements) went, most first."""
    out = []
    for m in results:
        out.append(
            f"\n### {m.operation} ({m.remote}, N={m.n}): {m.requests} requests "
            f"({m.requests_per_product:.2f}/product), {m.connections} new connections, "
            f"{m.sql_statements} SQL statements"
        )
        if m.breakdown:
            out.append("\n| requests | per product | HTTP status | method and path |")
            out.append("|---:|---:|---|---|")
            for shape, row in list(m.breakdown.items())[:top]:
                statuses = ", ".join(f"{code}x{n}" for code, n in row["statuses"].items())
                out.append(
                    f"| {row['count']} | {row['per_product']:.2f} | {statuses} | `{shape}` |"
                )
            if len(m.breakdown) > top:
                rest = sum(row["count"] for row in list(m.breakdown.values())[top:])
                out.append(f"| {rest} | {rest / m.n:.2f} | | ({len(m.breakdown) - top} more) |")
        if m.sql_breakdown:
            sql = list(m.sql_breakdown.items())
            shown = ", ".join(f"`{shape}` {count / m.n:.1f}" for shape, count in sql[:8])
            out.append(
                f"\nSQL statements per product in this process: {shown}"
                + (", ..." if len(sql) > 8 else "")
            )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100, help="data products (N)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per data product")
    parser.add_argument(
        "--remotes", default="http,dir", help="comma-separated remote kinds to measure: http, dir"
    )
    parser.add_argument("--json", type=Path, help="write the raw figures to this file")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="print the requests of each phase by method and path",
    )
    parser.add_argument(
        "--jobs",
        default="1,8",
        help="comma-separated counts of parallel transfers to push and pull with, each to a "
        "registry server of its own ('' for none)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    kinds = [k.strip() for k in args.remotes.split(",") if k.strip()]
    try:
        jobs = [int(j) for j in args.jobs.split(",") if j.strip()]
    except ValueError:
        parser.error("--jobs takes comma-separated positive integers")
    if any(j < 1 for j in jobs):
        parser.error("--jobs takes comma-separated positive integers")
    if not kinds or set(kinds) - {"http", "dir"}:
        parser.error("--remotes takes http and/or dir")
    if args.products < 1 or args.size < 1:
        parser.error("--products and --size must be positive")

    info = machine_info()
    print("## Machine")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print(
        f"\nN = {args.products} data products of {args.size} bytes, remotes: {kinds}\n", flush=True
    )

    results, total = timed_in_tempdir(
        "fdp-bench-",
        args.keep,
        lambda base: benchmark(base, args.products, args.size, kinds, jobs),
    )
    rss = peak_rss_mb()

    print("## Results\n")
    print(markdown_table(results))
    print(
        f"\nTotal {total:.1f} s. Peak RSS: benchmark process {rss['benchmark_process']} MB, "
        f"largest child (server or script) {rss['largest_child']} MB."
    )
    print(
        "Run: the model script writes to the local registry's SQLite directly; "
        "requests = HTTP calls made by this process, local registry server hits: "
        f"{results[0].local_registry_requests}."
    )
    if args.breakdown:
        print("\n## Requests by endpoint" + breakdown_text(results))
    if args.json:
        write_json(args.json, info, args, total, rss, results)
    return 0


def timed_in_tempdir(prefix: str, keep: bool, work: Callable[[Path], Any]) -> tuple[Any, float]:
    """`work(base)` in a fresh temporary directory (kept with --keep), with requests counted;
    returns its result and the seconds it took."""
    COUNTERS.install()
    base = Path(tempfile.mkdtemp(prefix=prefix))
    started = time.perf_counter()
    try:
        out = work(base)
    finally:
        if keep:
            print(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return out, time.perf_counter() - started


def write_json(
    path: Path,
    info: dict[str, Any],
    args: argparse.Namespace,
    total: float,
    rss: dict[str, Any],
    results: list[Any],
    **extra: Any,
) -> None:
    """The raw figures of a benchmark run, breakdowns included, as JSON."""
    document = {
        "machine": info,
        "products": args.products,
        "size": args.size,
        "total_seconds": round(total, 3),
        "peak_rss_mb": rss,
        **extra,
        "results": [m.as_json() for m in results],
    }
    path.write_text(json.dumps(document, indent=2), encoding="utf-8")
    print(f"\nwrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())

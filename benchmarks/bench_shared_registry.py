#!/usr/bin/env python
"""Benchmark of a shared registry: PostgreSQL + S3 beside SQLite + a blob folder, same run.

Two of our registry servers run in processes of their own on loopback: one as a group would
start it on one machine (SQLite, blobs in a folder), one as a consortium would run it
(PostgreSQL, blobs in S3 through presigned URLs: moto's S3 server, in its own process too).
One project's run writes N small data products; they are pushed to each server, then pulled
into a fresh project from each. Reported per phase: wall time, HTTP requests per product
(counted by the client, presigned object-store requests included), and the CPU seconds of
the registry server process (from /proc), with the object store's and the database's apart
where they are processes of their own.

    python benchmarks/bench_shared_registry.py [--products 1000,10000] [--size 1024]
        [--database postgresql+psycopg://...] [--json out.json] [--breakdown] [--keep]

Each count in `--products` gets servers, a bucket and a database of its own, one after the
other in the same run; every row is printed as soon as it is measured, so a long run shows
how far it got. Without --database, a throwaway PostgreSQL cluster is started
(tests/postgres.py); if PostgreSQL is not installed, the second server runs on SQLite too,
and the table says so.

moto's own server (werkzeug's development server) closes the connection after every answer
and waits for more request bytes after each, which no S3 does: it would charge every
presigned PUT and GET of the client, and every S3 call of the registry server, a new TCP
connection. moto's application is served by waitress here instead, which keeps connections
alive as S3 does.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench_sync import (
    REPO,
    Measurement,
    RemoteServer,
    breakdown_text,
    check_products,
    free_port,
    machine_info,
    make_consumer,
    make_producer,
    markdown_table,
    measure,
    peak_rss_mb,
    process_cpu,
    timed_in_tempdir,
    write_json,
)

import fdp_tasks.server.serve as serve_module
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

sys.path.insert(0, str(REPO / "tests"))
# moto takes any credentials; these only have to be there, as real ones would be
ACCESS_KEY = "fdp-bench"
SECRET_KEY = "fdp-bench-secret"  # noqa: S105
# moto's S3 application behind waitress (HTTP/1.1 keep-alive): see the module docstring
MOTO_ON_WAITRESS = """
import sys
import waitress
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
app = DomainDispatcherApplication(create_backend_app)
waitress.serve(app, host=sys.argv[1], port=int(sys.argv[2]), threads=8, _quiet=True)
"""


class S3Server:
    """moto's S3 server in a process of its own, with one bucket for the registry's blobs."""

    def __init__(self, base: Path):
        self.base = base
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bucket = "fdp-shared-registry"

    def start(self) -> None:
        self.base.mkdir(parents=True, exist_ok=True)
        with open(self.base / "s3.log", "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", MOTO_ON_WAITRESS, "127.0.0.1", str(self.port)],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    break
            except OSError as exc:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"the S3 server did not start; see {self.base}/s3.log"
                    ) from exc
                time.sleep(0.1)
        # The registry server (a child process) and this one find it the standard way.
        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ENDPOINT_URL": self.endpoint,
            }
        )
        import boto3

        boto3.session.Session().client("s3").create_bucket(Bucket=self.bucket)

    def cpu(self) -> float | None:
        return process_cpu(self.proc.pid) if self.proc else None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


class SharedServer(RemoteServer):
    """Our registry server on a database URL, its blobs in S3."""

    def __init__(self, base: Path, db_url: str, blobs: str):
        self.base = base
        base.mkdir(parents=True, exist_ok=True)
        self.db = db_url  # type: ignore[assignment]
        self.blobs = blobs
        store = Store(db_url)
        self.token_file = base / "token"
        working_token(store, file=self.token_file)
        store.close()
        self.port = free_port()

    def start(self) -> None:
        serve_module.start_background(self.db, self.blobs, self.base / "state", port=self.port)


def database_for(base: Path, url: str | None) -> tuple[str, str, Any]:
    """The database URL of the shared server, what it is, and a cluster to stop (or None)."""
    if url:
        return url, url.split("://", 1)[0], None
    try:
        from postgres import PostgresCluster, postgres_problem
    except ImportError:
        problem = "tests/postgres.py is not there"
    else:
        problem = postgres_problem()
        if problem is None:
            cluster = PostgresCluster.start()
            return cluster.new_database("bench"), "postgresql", cluster
    print(f"PostgreSQL: not used ({problem}); the S3 server runs on SQLite", flush=True)
    return f"sqlite:///{base / 'shared.db'}", "sqlite", None


Report = Callable[[Measurement, float | None], None]


def benchmark(
    base: Path, n: int, size: int, database: str | None, report: Report
) -> tuple[list[Measurement], dict[str, float | None], str]:
    """Run once, then push to and pull from each server in turn (the shared one first);
    `report` gets each row, with the S3 server's CPU seconds, as soon as it is measured."""
    results: list[Measurement] = []
    object_store_cpu: dict[str, float | None] = {}
    s3 = S3Server(base / "s3")
    s3.start()
    db_url, db_kind, cluster = database_for(base, database)
    local = RemoteServer(base / "sqlite-folder")
    shared = SharedServer(base / "shared", db_url, f"s3://{s3.bucket}/blobs")
    names = {f"{db_kind}+s3": shared, "sqlite+folder": local}
    try:
        local.start()
        shared.start()
        remotes = {
            name: {"url": server.api_url, "token_file": str(server.token_file)}
            for name, server in names.items()
        }
        producer = make_producer(base, n, size)
        producer.set_remotes(remotes, next(iter(names)))
        results.append(measure("run", "-", n, None, producer.doit))
        report(results[-1], None)
        check_products(producer, n, "run")
        for name, server in names.items():
            producer.set_remotes(remotes, name)
            consumer = make_consumer(base, f"consumer-{name.replace('+', '-')}")
            consumer.set_remotes({name: {"url": remotes[name]["url"]}}, name)
            for operation, work in (
                ("push", lambda: producer.doit("push")),
                ("pull", lambda c=consumer: c.doit("register", "pull")),
            ):
                before = s3.cpu()
                results.append(measure(operation, name, n, server, work))
                after = s3.cpu()
                used = None
                if name != "sqlite+folder" and before is not None and after is not None:
                    used = object_store_cpu[operation] = after - before
                report(results[-1], used)
            check_products(consumer, n, f"pull from {name}")
    finally:
        local.stop()
        shared.stop()
        s3.stop()
        if cluster is not None:
            cluster.stop()
    return results, object_store_cpu, db_kind


def product_counts(text: str) -> list[int]:
    """`1000,10000` -> [1000, 10000]."""
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--products {text!r}: expected counts separated by commas, such as 1000,10000"
        ) from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError(f"--products {text!r}: counts must be positive")
    return counts


def table_header() -> str:
    """The results table's two header lines, with a column for the S3 server's CPU."""
    lines = markdown_table([]).splitlines()
    return f"{lines[0]} S3 (moto) CPU s |\n{lines[1]}---:|"


def table_row(measurement: Measurement, object_store_cpu: float | None) -> str:
    row = markdown_table([measurement]).splitlines()[2]
    return f"{row} {'-' if object_store_cpu is None else f'{object_store_cpu:.2f}'} |"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--products",
        type=product_counts,
        default=[1000],
        help="data products (N), or several counts in one run: 1000,10000",
    )
    parser.add_argument("--size", type=int, default=1024, help="bytes per data product")
    parser.add_argument(
        "--database",
        default=None,
        help="the shared server's database URL (default: a throwaway PostgreSQL cluster)",
    )
    parser.add_argument("--json", type=Path, help="write the raw figures to this file")
    parser.add_argument(
        "--breakdown", action="store_true", help="print each phase's requests by endpoint"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.size < 1:
        parser.error("--size must be positive")

    info = machine_info()
    print("## Machine")
    for key, value in info.items():
        print(f"- {key}: {value}")
    counts = ", ".join(str(n) for n in args.products)
    print(f"\nN = {counts} data products of {args.size} bytes\n", flush=True)

    results: list[Measurement] = []
    s3_cpu: dict[str, dict[str, float | None]] = {}
    kinds: set[str] = set()

    def report(measurement: Measurement, object_store_cpu: float | None) -> None:
        print(table_row(measurement, object_store_cpu), flush=True)

    def run_all(base: Path) -> None:
        print(table_header(), flush=True)
        for n in args.products:
            rows, cpu, db_kind = benchmark(base / f"n{n}", n, args.size, args.database, report)
            results.extend(rows)
            s3_cpu[str(n)] = cpu
            kinds.add(db_kind)

    _, total = timed_in_tempdir("fdp-bench-shared-", args.keep, run_all)
    rss = peak_rss_mb()
    shared = "/".join(sorted(kinds))
    print(
        f"\nRows: `{shared}+s3` is the shared server, `sqlite+folder` the one beside it. "
        "Server CPU s is the registry process's only; S3 (moto) CPU s is the object store's "
        "(a process of its own); the database server's is not counted."
    )
    print(
        f"Total {total:.1f} s. Peak RSS: benchmark process {rss['benchmark_process']} MB, "
        f"largest child {rss['largest_child']} MB."
    )
    if args.breakdown:
        print("\n## Requests by endpoint" + breakdown_text(results))
    if args.json:
        write_json(args.json, info, args, total, rss, results, object_store_cpu_seconds=s3_cpu)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

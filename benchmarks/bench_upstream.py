#!/usr/bin/env python
"""Benchmark of push and pull against the upstream FAIR Data Pipeline registry, beside our own.

The upstream registry is the emulation in tests/emulation/upstream.py (data-registry v1.2.1
as observed, with an S3 object store: moto in server mode), run in its own process on
loopback, as our own registry server is. One project's run writes N small data products;
they are pushed to both registries, then pulled into a fresh project from each. Requests are
counted by the client (as in bench_sync.py, whose harness this reuses: object-store requests
and followed redirects count too) and by the emulation itself, and the upstream's figures
are reported as ratios to our server's.

    python benchmarks/bench_upstream.py [--products 100] [--size 1024] [--json out.json]
                                        [--breakdown] [--keep]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from bench_sync import (
    REPO,
    BenchProject,
    Measurement,
    RemoteServer,
    breakdown_text,
    check_products,
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

sys.path.insert(0, str(REPO / "tests"))
from emulation.upstream import remote_counts  # noqa: E402 - tests/ is not a package

EMULATION = REPO / "tests" / "emulation" / "upstream.py"
KINDS = ("http", "upstream")


class UpstreamServer:
    """The emulated upstream registry and its object store, in a process of their own."""

    def __init__(self, base: Path):
        self.base = base
        self.proc: subprocess.Popen[str] | None = None
        self.log: Any = None
        self.base_url = ""
        self.token_file = Path()

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/api/"

    def start(self) -> None:
        """Start it and wait for its one line of JSON (address and token file)."""
        self.base.mkdir(parents=True, exist_ok=True)
        self.log = open(self.base / "server.log", "w", encoding="utf-8")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [sys.executable, str(EMULATION), "--dir", str(self.base / "registry")],
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the emulation did not start; see {self.base / 'server.log'}")
        info = json.loads(line)
        self.base_url = info["base_url"]
        self.token_file = Path(info["token_file"])

    def cpu(self) -> float | None:
        return process_cpu(self.proc.pid) if self.proc else None

    def counts(self) -> Counter[str]:
        return remote_counts(self.base_url)

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None
        if self.log is not None:
            self.log.close()


def with_release_date(project: BenchProject) -> None:
    """The upstream refuses an external object without a release date (ours does not)."""
    config = yaml.safe_load(project.config.read_text(encoding="utf-8"))
    for item in config.get("register") or []:
        item.setdefault("release_date", "2026-01-01T00:00")
    project.write_config(config)


def benchmark(base: Path, n: int, size: int) -> tuple[list[Measurement], dict[str, int]]:
    """Run once; then for each registry push, push again, pull fresh and pull again.

    Also returns, per upstream phase, the requests the emulation itself answered (registry
    and object store), as a check on the client-side counts.
    """
    results: list[Measurement] = []
    server_side: dict[str, int] = {}
    ours = RemoteServer(base / "ours")
    upstream = UpstreamServer(base / "upstream")
    ours.start()
    upstream.start()
    try:
        remotes = {
            "http": {"url": ours.api_url, "token_file": str(ours.token_file)},
            "upstream": {"url": upstream.api_url, "token_file": str(upstream.token_file)},
        }
        producer = make_producer(base, n, size)
        with_release_date(producer)
        producer.set_remotes(remotes, "http")
        results.append(measure("run", "-", n, None, producer.doit))
        check_products(producer, n, "run")
        for kind in KINDS:
            server: Any = ours if kind == "http" else upstream
            producer.set_remotes(remotes, kind)
            consumer = make_consumer(base, f"consumer-{kind}")
            # Pulling with the token: the client must keep it from the object store.
            consumer.set_remotes({kind: remotes[kind]}, kind)
            phases = [
                ("push", lambda: producer.doit("push")),
                ("push (no-op)", lambda: producer.doit("push")),
                ("pull", lambda c=consumer: c.doit("register", "pull")),
                ("pull (no-op)", lambda c=consumer: c.doit("register", "pull")),
            ]
            for operation, work in phases:
                before = upstream.counts() if kind == "upstream" else Counter()
                results.append(measure(operation, kind, n, server, work))
                if kind == "upstream":
                    server_side[operation] = sum((upstream.counts() - before).values())
            check_products(consumer, n, f"pull from {kind}")
    finally:
        ours.stop()
        upstream.stop()
    return results, server_side


def ratio_table(results: list[Measurement], server_side: dict[str, int]) -> str:
    """Upstream against our server, phase by phase."""
    by = {(m.operation, m.remote): m for m in results}
    lines = [
        "| operation | requests/product ours | upstream | ratio | seconds ours | upstream "
        "| ratio | upstream requests seen by the emulation |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for operation in ("push", "push (no-op)", "pull", "pull (no-op)"):
        mine, theirs = by[(operation, "http")], by[(operation, "upstream")]
        rq = theirs.requests / mine.requests if mine.requests else float("nan")
        sec = theirs.seconds / mine.seconds if mine.seconds else float("nan")
        lines.append(
            f"| {operation} | {mine.requests_per_product:.2f} | "
            f"{theirs.requests_per_product:.2f} | {rq:.2f} | {mine.seconds:.2f} | "
            f"{theirs.seconds:.2f} | {sec:.2f} | {server_side.get(operation, 0)} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--products", type=int, default=100, help="data products (N)")
    parser.add_argument("--size", type=int, default=1024, help="bytes per data product")
    parser.add_argument("--json", type=Path, help="write the raw figures to this file")
    parser.add_argument(
        "--breakdown", action="store_true", help="print each phase's requests by endpoint"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    if args.products < 1 or args.size < 1:
        parser.error("--products and --size must be positive")

    info = machine_info()
    print("## Machine")
    for key, value in info.items():
        print(f"- {key}: {value}")
    print(f"\nN = {args.products} data products of {args.size} bytes\n", flush=True)

    (results, server_side), total = timed_in_tempdir(
        "fdp-bench-upstream-", args.keep, lambda base: benchmark(base, args.products, args.size)
    )
    rss = peak_rss_mb()

    print("## Results (`http`: our server, `upstream`: the emulation)\n")
    print(markdown_table(results))
    print("\n## Upstream / ours\n")
    print(ratio_table(results, server_side))
    print(
        f"\nTotal {total:.1f} s. Peak RSS: benchmark process {rss['benchmark_process']} MB, "
        f"largest child {rss['largest_child']} MB."
    )
    if args.breakdown:
        print("\n## Requests by endpoint" + breakdown_text(results))
    if args.json:
        write_json(
            args.json,
            info,
            args,
            total,
            rss,
            results,
            upstream_requests_seen_by_the_emulation=server_side,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

#!/usr/bin/env python
"""One large file pushed to and pulled from a registry server: throughput and peak memory.

Files stream end to end (hashed as they move, written through part files, uploaded in
resumable pieces), so the peak memory of the `fdp` process and of the server must not grow
with the file's size. For each size this runs, as separate processes on the same disk:

- `cp` + `sha1sum` of the file: what the disk and one hash cost, the anchor of the ratios;
- `fdp push`: the file (checked against its recorded SHA-1 first) and its records to a
  registry server on loopback (`python -m fdp_tasks.server.serve`);
- `fdp pull` into a fresh project: the file from the server into its data store, hashed.

It prints seconds, MiB/s, the ratio to the anchor and the peak RSS of the `fdp` process
(its own, from wait4) and of the server (VmHWM), one row per size and step.

    python benchmarks/bench_large.py [--sizes 256,1024] [--keep]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bench_sync import NAMESPACE, RemoteServer, whole_process

import fdp_tasks.server.serve as serve_module

REPO = Path(__file__).resolve().parent.parent
MiB = 1024 * 1024

# The model copies the prepared file to its output: the benchmark is about moving it.
COPY_MODEL = """\
import shutil, sys
from fdp_tasks.api import Session

with Session() as fdp:
    shutil.copyfile(sys.argv[1], fdp.write("results/large"))
"""


def make_file(path: Path, megabytes: int) -> None:
    """Incompressible bytes, each MiB different, written without holding the file in memory."""
    block = os.urandom(MiB)
    with open(path, "wb") as out:
        for i in range(megabytes):
            out.write(block[:-8] + i.to_bytes(8, "big"))


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float]:
    """Run a command; its wall seconds and its own peak RSS in MiB (0 when unknown)."""
    seconds, _, peak = whole_process(argv, cwd, env)
    return seconds, peak or 0.0


def server_peak_mb(server: RemoteServer) -> float:
    info = serve_module.background_status(server.base / "state")
    if not info:
        return float("nan")
    for line in Path(f"/proc/{info['pid']}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def project(root: Path, config: dict) -> dict[str, str]:
    """A project folder with `config` as config.yaml; the environment of its own FDP_HOME."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    env = dict(os.environ)
    env["FDP_HOME"] = str(root.parent / f"{root.name}-home")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    env["FDP_PROGRESS"] = "never"
    return env


def fdp(*args: str) -> list[str]:
    return [sys.executable, "-m", "fdp_tasks.cli.main", *args]


def one_size(base: Path, megabytes: int) -> list[tuple[str, float, float, float]]:
    """(step, seconds, fdp peak MiB, server peak MiB) for one file of `megabytes` MiB."""
    base.mkdir(parents=True)
    source = base / "source.bin"
    make_file(source, megabytes)

    copy = base / "copy.bin"
    start = time.perf_counter()
    subprocess.run(["cp", str(source), str(copy)], check=True)
    subprocess.run(["sha1sum", str(copy)], check=True, stdout=subprocess.DEVNULL)
    anchor = time.perf_counter() - start
    copy.unlink()

    producer = base / "producer"
    producer.mkdir()
    (producer / "model.py").write_text(COPY_MODEL, encoding="utf-8")
    producer_env = project(
        producer,
        {
            "run_metadata": {
                "description": "one large output",
                "default_input_namespace": NAMESPACE,
                "default_output_namespace": NAMESPACE,
                "script": f"python3 ${{{{REPO_DIR}}}}/model.py {source}",
            },
            "write": [
                {"data_product": "results/large", "description": "large", "file_type": "bin"}
            ],
        },
    )
    subprocess.run(
        fdp("run", "config.yaml"),
        cwd=producer,
        env=producer_env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    source.unlink()  # the data store holds its copy: keep the disk's footprint down

    server = RemoteServer(base / "server")
    server.start()
    try:
        url = server.api_url
        token = ["--token-file", str(server.token_file)]
        subprocess.run(
            fdp("remote", "add", "origin", url, *token),
            cwd=producer,
            env=producer_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        push_s, push_rss = timed(fdp("push"), producer, producer_env)
        after_push = server_peak_mb(server)

        consumer = base / "consumer"
        consumer_env = project(
            consumer,
            {
                "run_metadata": {"description": "reader", "default_input_namespace": NAMESPACE},
                "read": [{"data_product": "results/large"}],
            },
        )
        subprocess.run(
            fdp("remote", "add", "origin", url),
            cwd=consumer,
            env=consumer_env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        pull_s, pull_rss = timed(fdp("pull"), consumer, consumer_env)
        after_pull = server_peak_mb(server)
    finally:
        server.stop()
    return [
        ("cp + sha1sum", anchor, float("nan"), float("nan")),
        ("fdp push", push_s, push_rss, after_push),
        ("fdp pull", pull_s, pull_rss, after_pull),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="256,1024", help="file sizes in MiB, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folders")
    args = parser.parse_args(argv)
    sizes = [int(size) for size in args.sizes.split(",") if size.strip()]
    base = Path(tempfile.mkdtemp(prefix="fdp-bench-large-"))
    rows = []
    try:
        for megabytes in sizes:
            for step, seconds, rss, server_rss in one_size(base / f"{megabytes}", megabytes):
                rows.append((megabytes, step, seconds, rss, server_rss))
            if not args.keep:
                shutil.rmtree(base / f"{megabytes}", ignore_errors=True)
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(
        f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"files under {tempfile.gettempdir()}"
    )
    print(
        "| MiB | step | seconds | MiB/s | ratio to cp + sha1sum | fdp peak RSS MiB | "
        "server peak RSS MiB |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|")
    anchors = {mb: seconds for mb, step, seconds, _, _ in rows if step == "cp + sha1sum"}
    for megabytes, step, seconds, rss, server_rss in rows:
        ratio = seconds / anchors[megabytes]
        shown = [f"{value:.0f}" if value == value else "-" for value in (rss, server_rss)]
        print(
            f"| {megabytes} | {step} | {seconds:.2f} | {megabytes / seconds:.0f} | "
            f"{ratio:.2f} | {shown[0]} | {shown[1]} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

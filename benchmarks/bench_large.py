#!/usr/bin/env python
"""Large files through a registry server: throughput and peak memory of upload and download.

Files are streamed end to end (hashed while they move, written through temp files), so peak
memory of client and server must stay flat however large the file is. This measures it, and
compares throughput with a plain copy + SHA-1 of the same file on the same disk.

    python benchmarks/bench_large.py [--mb 512] [--files 1]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

from fdp_tasks.datastore import DataStore
from fdp_tasks.files import read_chunks, sha1_file
from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

CHUNK = 1024 * 1024


def make_file(path: Path, megabytes: int) -> None:
    block = os.urandom(CHUNK)
    with open(path, "wb") as out:
        for i in range(megabytes):
            out.write(block[:-8] + i.to_bytes(8, "big"))


def peak_rss_mb(pid: int | None = None) -> float:
    """Peak resident memory: of this process, or of another one from /proc."""
    if pid is None:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(base: Path, port: int) -> subprocess.Popen:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fdp_tasks.server.serve",
            "--db",
            str(base / "registry.db"),
            "--blobs",
            str(base / "blobs"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    for _ in range(200):
        try:
            requests.get(f"http://127.0.0.1:{port}/api/", timeout=1)
            return proc
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=512, help="size of each file in MiB")
    parser.add_argument("--files", type=int, default=1)
    args = parser.parse_args(argv)
    base = Path(tempfile.mkdtemp(prefix="fdp-bench-large-"))
    try:
        sources = []
        for i in range(args.files):
            sources.append(base / f"source-{i}.bin")
            make_file(sources[-1], args.mb)
        total_mb = args.mb * args.files

        start = time.perf_counter()
        for src in sources:
            digest = hashlib.sha1()
            with open(src, "rb") as fh, open(base / "copy.bin", "wb") as out:
                for block in read_chunks(fh):
                    digest.update(block)
                    out.write(block)
                out.flush()
                os.fsync(out.fileno())
        raw = time.perf_counter() - start

        store = Store(base / "server" / "registry.db")
        token = working_token(store)
        store.close()
        port = 20000 + os.getpid() % 20000
        server = start_server(base / "server", port)
        try:
            client = HttpRegistry(f"http://127.0.0.1:{port}/api/", token=token)
            hashes = [sha1_file(src) for src in sources]
            start = time.perf_counter()
            infos = [client.upload_blob(src, sha) for src, sha in zip(sources, hashes, strict=True)]
            upload = time.perf_counter() - start
            local = DataStore(base / "pulled")
            start = time.perf_counter()
            for info, sha in zip(infos, hashes, strict=True):
                url = info["storage_root"] + info["path"]
                local.put_stream(f"{sha}.bin", client.download(url), expected_sha1=sha)
            download = time.perf_counter() - start
            server_rss = peak_rss_mb(server.pid)
        finally:
            server.terminate()
            server.wait()
        print(
            f"{args.files} file(s) of {args.mb} MiB, {total_mb} MiB in all, "
            f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}"
        )
        print("| step | seconds | MiB/s |")
        print("|---|---:|---:|")
        for name, seconds in (
            ("copy + SHA-1 (raw disk)", raw),
            ("upload (hash-checked)", upload),
            ("download (hash-checked)", download),
        ):
            print(f"| {name} | {seconds:.2f} | {total_mb / seconds:.0f} |")
        print(f"peak memory: client {peak_rss_mb():.0f} MiB, server {server_rss:.0f} MiB")
    finally:
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

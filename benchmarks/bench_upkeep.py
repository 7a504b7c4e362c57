#!/usr/bin/env python
"""`fdp verify` and `fdp gc` over data stores of growing size: time and peak memory.

Both walk the data store and page through the registry, so their peak memory must not grow
with the number of files, and their time should stay a small multiple of hashing the same
files with `sha1sum`. For each size this builds, in a temporary directory, a data store of N
small files (100 per folder) and a registry that records each (with its SHA-1), then runs,
as separate processes on the same disk:

- `xargs sha1sum` over the list of files: reading and hashing every file, the anchor of the ratios;
- `fdp verify`: every recorded file hashed against the registry, and the store walked for
  orphans;
- `fdp gc`: the store walked for what nothing references (only listing).

It prints seconds, the ratio to the anchor and the peak RSS of each process (wait4).

    python benchmarks/bench_upkeep.py [--sizes 1000,10000] [--keep]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def build(home: Path, count: int) -> None:
    """A FDP_HOME whose data store holds `count` files, each recorded in its registry. Run in
    a process of its own (`--build`), so that the processes measured are not forked from one
    that holds the registry's libraries (a child's peak RSS counts what it had from its
    parent before it started its program)."""
    sys.path.insert(0, str(REPO))
    from fdp_tasks.datastore import DataStore
    from fdp_tasks.store.sql import Store

    data = DataStore(home / "data")
    data.root.mkdir(parents=True, exist_ok=True)
    store = Store(home / "registry.db")
    root = store.create("storage_root", {"root": data.uri, "local": True})
    with store.transaction():
        for i in range(count):
            rel = f"bench/results/part{i // 100:05d}/{i}.csv"
            path = data.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            body = f"row,{i}\n".encode() * 64
            path.write_bytes(body)
            store.create(
                "storage_location",
                {
                    "path": rel,
                    "hash": hashlib.sha1(body, usedforsecurity=False).hexdigest(),
                    "public": True,
                    "storage_root": root["id"],
                },
            )
    store.close()


def timed(
    argv: list[str], cwd: Path, env: dict[str, str], shell: bool = False
) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one process."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{argv} failed: {proc.stderr.read() if proc.stderr else ''}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="file counts, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--build", nargs=2, metavar=("COUNT", "HOME"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build(Path(args.build[1]), int(args.build[0]))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    print(f"{platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print("| files | step | seconds | x sha1sum | peak RSS MiB |")
    print("|---:|---|---:|---:|---:|")
    work = Path(tempfile.mkdtemp(prefix="fdp-bench-upkeep-"))
    try:
        for count in sizes:
            base = work / str(count)
            home = base / "home"
            subprocess.run([sys.executable, __file__, "--build", str(count), str(home)], check=True)
            project = base / "project"
            project.mkdir()
            env = {
                **os.environ,
                "FDP_HOME": str(home),
                "FDP_PROGRESS": "never",
                "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
            }
            listing = base / "files.list"
            listing.write_bytes(
                b"".join(
                    os.fsencode(os.path.join(folder, name)) + b"\0"
                    for folder, _dirs, files in os.walk(home / "data")
                    for name in files
                )
            )
            anchor, anchor_rss = timed(["xargs", "-0", "-a", str(listing), "sha1sum"], project, env)
            print(f"| {count} | sha1sum | {anchor:.2f} | 1.0 | {anchor_rss:.0f} |")
            fdp = [sys.executable, "-m", "fdp_tasks.cli.main"]
            for step, argv in (("fdp verify", ["verify"]), ("fdp gc", ["gc"])):
                seconds, rss = timed([*fdp, *argv], project, env)
                print(f"| {count} | {step} | {seconds:.2f} | {seconds / anchor:.1f} | {rss:.0f} |")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

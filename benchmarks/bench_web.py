#!/usr/bin/env python
"""Benchmark of the registry server's web view (/ui/): does a page cost the same on a
registry of 10,000 data products as on one of 1,000?

For each size, a registry is filled directly through the store (data products with their
objects and files, and code runs each writing a hundred of them), and served by a registry
server in a process of its own on loopback (`python -m fdp_tasks.server.serve`, as a group
runs it). Each page is then asked for `--repeat` times; the table gives the median wall time
of one answer, and its ratio to the anchor: the REST API's own listing of the same 50 data
products (`/api/data_product/?page_size=50`), measured the same way against the same server.

Keyset paging shows as flat rows: the first page, the last page and a deep search page cost
about the same at both sizes. A listing that read every row would grow tenfold.

    python benchmarks/bench_web.py [--sizes 1000,10000] [--repeat 20] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import fdp_tasks.server.serve as serve_module  # noqa: E402
from fdp_tasks.store.sql import Store  # noqa: E402

OUTPUTS_PER_RUN = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fill(db: Path, products: int) -> dict[str, int]:
    """A registry of `products` data products `lab:results/pNNNNN@1.0.0` (public files on an
    outside root), made by code runs of OUTPUTS_PER_RUN outputs each; the ids the pages use."""
    store = Store(db)
    try:
        with store.transaction():
            ns = store.create("namespace", {"name": "lab"})
            root = store.create("storage_root", {"root": "https://data.example.org/"})
            script_file = store.create(
                "storage_location",
                {"path": "run.sh", "hash": "f" * 40, "public": True, "storage_root": root["id"]},
            )
            script = store.create("object", {"storage_location": script_file["id"]})
            run_outputs: list[int] = []
            first = last = 0
            for i in range(products):
                location = store.create(
                    "storage_location",
                    {
                        "path": f"p{i:05d}.csv",
                        "hash": f"{i:040x}",
                        "public": True,
                        "storage_root": root["id"],
                    },
                )
                obj = store.create(
                    "object", {"storage_location": location["id"], "description": f"part {i}"}
                )
                product = store.create(
                    "data_product",
                    {
                        "object": obj["id"],
                        "namespace": ns["id"],
                        "name": f"results/p{i:05d}",
                        "version": "1.0.0",
                    },
                )
                first = first or product["id"]
                last = product["id"]
                run_outputs += obj["components"]
                if len(run_outputs) == OUTPUTS_PER_RUN or i == products - 1:
                    store.create(
                        "code_run",
                        {
                            "run_date": "2026-01-01T00:00:00Z",
                            "description": "writes a hundred parts",
                            "submission_script": script["id"],
                            "outputs": run_outputs,
                        },
                    )
                    run_outputs = []
        return {"oldest": first, "newest": last}
    finally:
        store.close()


def median_ms(url: str, repeat: int) -> float:
    """The median wall time of one GET (a connection each, as a browser's first visit)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        resp = requests.get(url, timeout=120)
        times.append(time.perf_counter() - start)
        if resp.status_code != 200:
            raise SystemExit(f"{url} answered {resp.status_code}: {resp.text[:300]}")
    return statistics.median(times) * 1000


def measure(size: int, repeat: int, base: Path) -> list[dict[str, object]]:
    folder = base / f"n{size}"
    folder.mkdir()
    started = time.perf_counter()
    ids = fill(folder / "registry.db", size)
    print(f"  filled {size} data products in {time.perf_counter() - started:.1f} s")
    port = free_port()
    serve_module.start_background(
        str(folder / "registry.db"), folder / "blobs", folder / "state", port=port
    )
    url = f"http://127.0.0.1:{port}"
    pages = {
        "anchor: /api/data_product/?page_size=50": "/api/data_product/?page_size=50",
        "products, first page": "/ui/",
        "products, last page": f"/ui/?before={ids['oldest'] + 25}",
        "search, first page": "/ui/?q=p0",
        "search, last page": f"/ui/?q=p0&before={ids['oldest'] + 25}",
        "search ns:name, no match": "/ui/?q=lab:nothing-like-this",
        "product page": f"/ui/products/{ids['newest']}/",
        "code runs, first page": "/ui/runs/",
        "code run page": "/ui/runs/1/",
    }
    rows: list[dict[str, object]] = []
    try:
        requests.get(url + "/ui/", timeout=120)  # warm: the first answer loads templates
        times = {label: median_ms(url + path, repeat) for label, path in pages.items()}
        anchor = next(iter(times.values()))
        for label, ms in times.items():
            rows.append({"products": size, "page": label, "ms": ms, "ratio": ms / anchor})
    finally:
        serve_module.stop_background(folder / "state")
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000", help="registry sizes, comma-separated")
    parser.add_argument("--repeat", type=int, default=20, help="requests per page")
    parser.add_argument("--json", type=Path, help="write the figures here too")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    print(f"{platform.platform()}, Python {platform.python_version()}")
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
        for size in sizes:
            rows += measure(size, args.repeat, Path(tmp))
    print("\n| products | page | median ms | × anchor |\n|---:|---|---:|---:|")
    for row in rows:
        print(f"| {row['products']} | {row['page']} | {row['ms']:.1f} | {row['ratio']:.2f} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

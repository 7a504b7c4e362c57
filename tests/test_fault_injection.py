"""Sync that never loses data, shown under faults: a push and a pull of 200 data products
through a proxy that drops, fails, stalls and resets connections (tests/faults.py); `kill
-9` of `fdp push` and `fdp pull` at seeded points; two pushers of the same products at once.

After each, the end state is compared with the source record by record and hash by hash:
nothing lost (every product with the code run that made it, that run's inputs, outputs,
config, script and code repository), nothing corrupt (every file's SHA-1, read back, is
its record's), nothing twice (one record per natural key, one object per uuid).

Every assertion message starts with the seed; `FDP_FAULT_SEED=<seed>` replays one.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
import yaml
from faults import FaultProxy, seeded_fraction
from support import RECORD_TYPES, CountingRegistry, Env, Result, producer, reader

from fdp_tasks.datastore import local_root
from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.store.schema import load_schema
from fdp_tasks.store.sql import Store
from fdp_tasks.transfer import download, location_url

RUNS = 4  # runs of the source project, each writing its own products
PER_RUN = 50  # products each run writes: RUNS * PER_RUN = 200 in all
PRODUCTS = RUNS * PER_RUN
TRIES = 12  # a command under faults is repeated until it exits 0, at most this often
KILLS = 3  # kill -9 points per command
JOBS = ("--jobs", "4")  # files moved at once
# Each test has a generous time limit (setup included): making the 200 products and moving
# them several times takes minutes on a busy machine, though well under two on an idle one.


def seed_for() -> int:
    """FDP_FAULT_SEED when set (to replay a failure), else a new seed for this test."""
    given = os.environ.get("FDP_FAULT_SEED")
    if given:
        return int(given)
    return random.SystemRandom().randrange(1, 2**31)


# ------------------------------------------------------------------------ the source
def make_source(base: Path) -> Env:
    """A project whose RUNS runs each wrote PER_RUN products of their own (results/partNNN,
    version 0.0.1), all from the one registered seed input: 200 products, RUNS code runs."""
    env = producer(base, outputs=list(range(PER_RUN)), name="source")
    config_file = env.project / "config.yaml"
    for run in range(RUNS):
        config = yaml.safe_load(config_file.read_text(encoding="utf-8"))
        config["write"] = [
            {"data_product": f"results/part{i:03d}", "description": f"part {i}", "file_type": "csv"}
            for i in range(run * PER_RUN, (run + 1) * PER_RUN)
        ]
        env.config(config)
        env.fdp("run")
    return env


@pytest.fixture(scope="module")
def pristine_source(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    """The source project, made once per test worker, and a copy of it to start each test
    from (a project's paths are in its registry, so it is put back where it was made)."""
    base = tmp_path_factory.mktemp("fault-source")
    make_source(base)
    keep = base / "pristine"
    shutil.copytree(base, keep / "tree", symlinks=True, ignore=shutil.ignore_patterns("pristine"))
    yield base, keep / "tree"


@pytest.fixture
def source(pristine_source: tuple[Path, Path]) -> Env:
    """The source project as it was made, whatever an earlier test did to it."""
    base, tree = pristine_source
    for name in ("source", "source-home"):
        shutil.rmtree(base / name, ignore_errors=True)
        shutil.copytree(tree / name, base / name, symlinks=True)
    return Env(base, "source")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[CountingRegistry]:
    registry = CountingRegistry(tmp_path / "server")
    yield registry
    registry.stop()


@pytest.fixture
def proxies() -> Iterator[Callable[..., FaultProxy]]:
    started: list[FaultProxy] = []

    def start(target: str, seed: int, **options: Any) -> FaultProxy:
        proxy = FaultProxy(target, seed, **options)
        started.append(proxy)
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


def client_timeout() -> float:
    """How long the registry client waits for an answer: a long stall lasts longer."""
    with HttpRegistry("http://127.0.0.1:1/api/") as client:
        return float(client.timeout)


# ------------------------------------------------------------------------ the invariants
@dataclass
class Snapshot:
    """What a registry holds, by natural identity rather than by its own ids."""

    products: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # ref -> uuid, hash
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # uuid -> what it links
    objects: dict[str, str | None] = field(default_factory=dict)  # uuid -> hash
    files: dict[str, tuple[str, str]] = field(default_factory=dict)  # uuid -> root, path
    names: dict[str, list[str]] = field(default_factory=dict)  # object uuid -> product refs
    duplicates: list[str] = field(default_factory=list)


def snapshot(db: Path) -> Snapshot:
    """What the registry in this SQLite file holds (a server's, or a project's own)."""
    store = Store(db)
    try:
        return _snapshot(store)
    finally:
        store.close()


def _snapshot(store: Store) -> Snapshot:
    schema = load_schema()
    records = {t: {r["id"]: r for r in store.find(t)} for t in RECORD_TYPES}
    out = Snapshot()
    for type_name in RECORD_TYPES:
        seen: Counter[tuple[Any, ...]] = Counter()
        for record in records[type_name].values():
            for key in schema[type_name].natural_keys(record):
                seen[(key, *(str(record[k]) for k in key))] += 1
        out.duplicates += [f"{type_name} {key}: {n} records" for key, n in seen.items() if n > 1]
    objects = records["object"]
    locations = records["storage_location"]
    roots = records["storage_root"]
    for obj in objects.values():
        location = locations.get(obj.get("storage_location") or -1)
        out.objects[obj["uuid"]] = location["hash"] if location else None
        if location:
            root = roots[location["storage_root"]]["root"]
            out.files[obj["uuid"]] = (root, location["path"])
    namespaces = {n["id"]: n["name"] for n in records["namespace"].values()}
    for product in records["data_product"].values():
        ref = f"{namespaces[product['namespace']]}:{product['name']}@{product['version']}"
        uuid = objects[product["object"]]["uuid"]
        out.products[ref] = (uuid, out.objects[uuid])
        out.names.setdefault(uuid, []).append(ref)
    components = records["object_component"]

    def component(cid: int) -> str:
        return f"{objects[components[cid]['object']]['uuid']}/{components[cid]['name']}"

    def uuid_of(oid: int | None) -> str | None:
        return objects[oid]["uuid"] if oid else None

    for run in records["code_run"].values():
        out.runs[run["uuid"]] = {
            "inputs": sorted(component(c) for c in run.get("inputs") or []),
            "outputs": sorted(component(c) for c in run.get("outputs") or []),
            "model_config": uuid_of(run.get("model_config")),
            "submission_script": uuid_of(run.get("submission_script")),
            "code_repo": uuid_of(run.get("code_repo")),
        }
    return out


def lost_or_changed(seed: int, source: Snapshot, copy: Snapshot, refs: list[str]) -> list[str]:
    """What of `refs` (and the runs that made them) `copy` lacks or holds otherwise."""
    problems = []
    wanted_runs = set()
    for ref in refs:
        if ref not in copy.products:
            problems.append(f"lost {ref}")
        elif copy.products[ref] != source.products[ref]:
            problems.append(f"{ref}: {copy.products[ref]} instead of {source.products[ref]}")
        uuid = source.products[ref][0]
        wanted_runs |= {
            run
            for run, links in source.runs.items()
            if any(c.startswith(uuid + "/") for c in links["outputs"])
        }
    for run in sorted(wanted_runs):
        if run not in copy.runs:
            problems.append(f"lost code run {run}")
            continue
        for what, value in source.runs[run].items():
            if copy.runs[run][what] != value:
                problems.append(f"code run {run}: {what} {copy.runs[run][what]} != {value}")
            for uuid in value if isinstance(value, list) else [value]:
                uuid = (uuid or "").partition("/")[0]
                if uuid and copy.objects.get(uuid, "absent") != source.objects[uuid]:
                    problems.append(f"code run {run}: {what} object {uuid} lost or changed")
    problems += [f"duplicate {d}" for d in copy.duplicates]
    return [f"seed={seed}: {p}" for p in problems]


def bytes_at(root: str, path: str, token: str) -> bytes:
    """The bytes at root + path: a local file, or downloaded (with the token, as a server
    serves private files only to those who sent them)."""
    local = local_root(root)
    if local is not None:
        return (local / path).read_bytes()
    return b"".join(download(location_url(root, path), auth=lambda url: _auth(token)))


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"token {token}"}


def corrupt_files(
    seed: int,
    copy: Snapshot,
    data_store: Path | None = None,
    token: str = "",
    redirect: tuple[str, str] = ("", ""),
) -> tuple[list[str], int]:
    """Files of `copy` whose bytes, read back from `data_store` or over HTTP from a server,
    do not have the SHA-1 of their record. Other local roots (a code repository, a folder
    of the project) are not files of a store. `redirect` swaps a proxy's origin for the
    server's. Also says how many files were read."""
    problems = []
    read = 0
    for uuid, (root, path) in sorted(copy.files.items()):
        folder = local_root(root)
        if folder is not None and (data_store is None or not folder.is_relative_to(data_store)):
            continue
        if redirect[0]:
            root = root.replace(redirect[0], redirect[1])
        try:
            got = bytes_at(root, path, token)
        except Exception as exc:  # noqa: BLE001 - said in the assertion
            problems.append(f"seed={seed}: {uuid} at {root}{path} cannot be read: {exc}")
            continue
        read += 1
        if hashlib.sha1(got).hexdigest() != copy.objects[uuid]:
            problems.append(f"seed={seed}: {uuid} at {root}{path} is corrupt")
    return problems, read


def source_refs(source: Snapshot) -> list[str]:
    """Every data product of the source: its outputs and the input they were made from."""
    return sorted(source.products)


def result_refs(source: Snapshot) -> list[str]:
    """The outputs of the source's runs (what a reader of `results/*` pulls)."""
    return sorted(ref for ref in source.products if ":results/" in ref)


def assert_pushed(seed: int, env: Env, server: CountingRegistry, proxy: str = "") -> None:
    """The server holds everything of the project, once, and every file it recorded has
    its SHA-1 when downloaded back; `proxy` is the origin the files were recorded under
    when the push went through one (they are read from the server itself)."""
    mine, theirs = snapshot(env.home / "registry.db"), snapshot(server.db)
    assert len(result_refs(mine)) == PRODUCTS, f"seed={seed}: the source has {len(mine.products)}"
    problems = lost_or_changed(seed, mine, theirs, source_refs(mine))
    extra = sorted(set(theirs.objects) - set(mine.objects))
    problems += [f"seed={seed}: object {uuid} is on the server only" for uuid in extra]
    origin = "{0.scheme}://{0.netloc}".format(urlsplit(server.api_url))
    redirect = (proxy, origin) if proxy else ("", "")
    corrupt, read = corrupt_files(seed, theirs, token=server.token, redirect=redirect)
    problems += corrupt + ([] if read > PRODUCTS else [f"seed={seed}: only {read} files read"])
    assert not problems, "\n".join(problems[:40])


def assert_pulled(seed: int, server: CountingRegistry, env: Env) -> None:
    """The project holds every output on the server, once, with the runs that made them,
    and every file in its data store has the SHA-1 of its record."""
    theirs, mine = snapshot(server.db), snapshot(env.home / "registry.db")
    problems = lost_or_changed(seed, theirs, mine, result_refs(theirs))
    corrupt, read = corrupt_files(seed, mine, env.data_store.resolve())
    problems += corrupt + ([] if read >= PRODUCTS else [f"seed={seed}: only {read} files read"])
    assert not problems, "\n".join(problems[:40])


def fdp_ok(seed: int, env: Env, *args: str) -> Result:
    """`fdp ARGS`, which must exit 0 (the message names the seed)."""
    result = env.fdp(*args, check=False)
    assert result.returncode == 0, (
        f"seed={seed}: fdp {' '.join(args)} exited {result.returncode}:\n{result.output[-3000:]}"
    )
    return result


def until_done(seed: int, env: Env, *args: str, proxy: FaultProxy | None = None) -> list[str]:
    """`fdp ARGS` run again until it exits 0 (at most TRIES times); every failed try must
    have said why in `fdp: error` lines, not in a traceback. The outputs of the tries."""
    outputs = []
    for _ in range(TRIES):
        result = env.fdp(*args, check=False)
        outputs.append(result.output)
        said = f"seed={seed}: {' '.join(args)}" + (f" ({proxy.summary()})" if proxy else "")
        assert "Traceback" not in result.output, f"{said}:\n{result.output[-3000:]}"
        if result.returncode == 0:
            return outputs
        assert result.returncode == 1, (
            f"{said} exited {result.returncode}:\n{result.output[-3000:]}"
        )
        assert "error" in result.output, f"{said} failed without a word:\n{result.output[-3000:]}"
    tail = outputs[-1][-3000:]
    raise AssertionError(f"seed={seed}: {' '.join(args)} still failing after {TRIES} tries\n{tail}")


# ------------------------------------------------------------------------ the tests
@pytest.mark.timeout(900)
def test_push_through_a_faulty_network_loses_nothing(
    source: Env, server: CountingRegistry, proxies: Callable[..., FaultProxy]
) -> None:
    seed = seed_for()
    print(f"seed={seed}")
    proxy = proxies(server.api_url, seed, long_stall=client_timeout() + 2)
    source.add_remote(proxy.url, server.token_file)
    tries = until_done(seed, source, "push", *JOBS, proxy=proxy)
    print(f"{proxy.summary()}; {len(tries)} tries")
    assert sum(proxy.injected.values()) > 0, f"{proxy.summary()}: no fault was injected"
    with proxy.calm():
        assert_pushed(
            seed, source, server, proxy="{0.scheme}://{0.netloc}".format(urlsplit(proxy.url))
        )
        again = fdp_ok(seed, source, "push")
    assert again.executed == [], f"seed={seed}: a second push did {again.executed}"


@pytest.mark.timeout(900)
def test_pull_through_a_faulty_network_loses_nothing(
    tmp_path: Path,
    source: Env,
    server: CountingRegistry,
    proxies: Callable[..., FaultProxy],
) -> None:
    seed = seed_for()
    print(f"seed={seed}")
    proxy = proxies(server.api_url, seed, max_long_stalls=0)
    # pushed through the proxy, so that the files' storage root is the proxy's too, and
    # downloads meet the faults as well as the API requests
    source.add_remote(proxy.url, server.token_file)
    with proxy.calm():
        fdp_ok(seed, source, "push")
    colleague = reader(tmp_path, proxy.url, ["results/*"])
    tries = until_done(seed, colleague, "pull", *JOBS, proxy=proxy)
    print(f"{proxy.summary()}; {len(tries)} tries")
    assert sum(proxy.injected.values()) > 0, f"{proxy.summary()}: no fault was injected"
    # files come in bundles (POST /data/) and one by one (GET /data/<sha1>), for what a
    # bundle cut short did not bring
    downloads = sum(
        n for line, n in proxy.seen.items() if line.startswith(("GET /data/", "POST /data/"))
    )
    assert downloads > 0, f"seed={seed}: no download went through the proxy"
    with proxy.calm():
        assert_pulled(seed, server, colleague)
    before = snapshot(colleague.home / "registry.db")
    with proxy.calm():
        fdp_ok(seed, colleague, "pull")
    after = snapshot(colleague.home / "registry.db")
    assert after == before, f"seed={seed}: a second pull changed the local registry"


def kill_points(seed: int, what: str, total: int) -> list[tuple[int, float]]:
    """KILLS points, in order, of a series of runs of a command that makes `total` requests
    when nothing stops it: after how many requests have reached the server since the
    series began, and how long after that, a run is killed."""
    counts = sorted(
        1 + int(0.9 * total * seeded_fraction(seed, what, n, "requests")) for n in range(KILLS)
    )
    return [
        (count, 0.1 * seeded_fraction(seed, what, n, "delay")) for n, count in enumerate(counts)
    ]


def requests_made(seed: int, server: CountingRegistry, env: Env, *args: str) -> int:
    """How many requests `fdp ARGS` makes of `server` when nothing stops it."""
    before = server.total()
    fdp_ok(seed, env, *args)
    return server.total() - before


def kill_series(
    seed: int, env: Env, server: CountingRegistry, args: list[str], total: int
) -> list[str]:
    """`fdp ARGS` started again and again, each run killed (kill -9 of its process group)
    at the next of the seeded points; what happened to each, for the assertion messages."""
    notes = []
    start = server.total()
    for count, delay in kill_points(seed, " ".join(args), total):
        proc = env.start_fdp(
            *args, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 300
        while server.total() - start < count and proc.poll() is None:
            assert time.monotonic() < deadline, f"seed={seed}: {args} made no progress"
            time.sleep(0.002)
        time.sleep(delay)
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            notes.append(f"killed at request {server.total() - start} (+{delay:.3f} s)")
        else:
            notes.append(f"ended ({proc.returncode}) before request {count}")
    return notes


@pytest.mark.timeout(900)
def test_push_killed_at_random_points_then_rerun(
    tmp_path: Path, source: Env, server: CountingRegistry
) -> None:
    seed = seed_for()
    scratch = CountingRegistry(tmp_path / "scratch")
    try:
        source.add_remote(scratch.api_url, scratch.token_file, name="scratch")
        total = requests_made(seed, scratch, source, "push", "--remote", "scratch")
    finally:
        scratch.stop()
    source.add_remote(server.api_url, server.token_file)
    notes = kill_series(seed, source, server, ["push", "--remote", "origin"], total)
    print(f"seed={seed}: {notes} of {total} requests")
    fdp_ok(seed, source, "push", "--remote", "origin")
    assert_pushed(seed, source, server)


@pytest.mark.timeout(900)
def test_pull_killed_at_random_points_then_rerun(
    tmp_path: Path, source: Env, server: CountingRegistry
) -> None:
    seed = seed_for()
    source.add_remote(server.api_url, server.token_file)
    fdp_ok(seed, source, "push")
    total = requests_made(
        seed, server, reader(tmp_path, server.api_url, ["results/*"], name="trial"), "pull"
    )
    colleague = reader(tmp_path, server.api_url, ["results/*"])
    notes = kill_series(seed, colleague, server, ["pull"], total)
    print(f"seed={seed}: {notes} of {total} requests")
    fdp_ok(seed, colleague, "pull")
    assert_pulled(seed, server, colleague)


def inputs_as_products(snap: Snapshot, run: str) -> list[tuple[str, str | None]]:
    """The data products (ref, SHA-1) a code run read, by the objects its inputs name."""
    objects = [component.partition("/")[0] for component in snap.runs[run]["inputs"]]
    return sorted((ref, snap.objects[uuid]) for uuid in objects for ref in snap.names.get(uuid, []))


@pytest.mark.timeout(900)
def test_two_clones_push_the_same_products_at_once(
    tmp_path: Path, source: Env, server: CountingRegistry
) -> None:
    """Two checkouts of one project on one machine share the user's registry and data
    store, so they push the very same records: at the same time, into one server."""
    seed = seed_for()
    clone = Env(tmp_path, "clone")
    shutil.copytree(source.project, clone.project, dirs_exist_ok=True, symlinks=True)
    clone.home = source.home
    source.add_remote(server.api_url, server.token_file)
    clone.add_remote(server.api_url, server.token_file)
    pushers = [
        env.start_fdp("push", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for env in (source, clone)
    ]
    said = [p.communicate(timeout=300)[0] for p in pushers]
    for proc, output in zip(pushers, said, strict=True):
        assert "Traceback" not in output, f"seed={seed}:\n{output[-3000:]}"
        conflict = [line for line in output.splitlines() if "error" in line]
        assert proc.returncode == 0 or (proc.returncode == 3 and len(conflict) == 1), (
            f"seed={seed}: exited {proc.returncode}:\n{output[-3000:]}"
        )
    assert_pushed(seed, source, server)


@pytest.mark.timeout(900)
def test_two_projects_push_the_same_registered_input_at_once(
    tmp_path: Path, server: CountingRegistry
) -> None:
    """Two people register the same source (same name, version and bytes) and run their
    own models on it, then push at the same moment: one record of the input, and each run
    names it as what it read."""
    seed = seed_for()
    projects = [
        producer(tmp_path, outputs=list(parts), name=name)
        for name, parts in (("alice", range(0, 20)), ("bob", range(50, 70)))
    ]
    for env in projects:
        fdp_ok(seed, env, "run")
        env.add_remote(server.api_url, server.token_file)
    pushers = [
        env.start_fdp("push", stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for env in projects
    ]
    said = [p.communicate(timeout=300)[0] for p in pushers]
    for proc, output in zip(pushers, said, strict=True):
        assert proc.returncode == 0, f"seed={seed}: exited {proc.returncode}:\n{output[-3000:]}"
    theirs = snapshot(server.db)
    problems = [f"seed={seed}: duplicate {d}" for d in theirs.duplicates]
    for env in projects:
        mine = snapshot(env.home / "registry.db")
        for ref, (_uuid, digest) in sorted(mine.products.items()):
            if theirs.products.get(ref, (None, None))[1] != digest:
                problems.append(f"seed={seed}: {ref} lost or changed")
        for run in mine.runs:
            if run not in theirs.runs:
                problems.append(f"seed={seed}: lost code run {run}")
            elif inputs_as_products(theirs, run) != inputs_as_products(mine, run):
                problems.append(
                    f"seed={seed}: code run {run} read {inputs_as_products(mine, run)} but "
                    f"the server names {inputs_as_products(theirs, run)}"
                )
    assert not problems, "\n".join(problems)


# What each fault looks like to a client, and whether the server saw the request.
FAULT_EFFECTS = {
    "drop_before_request": ("no answer", 0),
    "drop_mid_request": ("no answer", 0),
    "drop_before_answer": ("no answer", 1),
    "drop_mid_answer": ("no answer", 1),
    "error_before": ("500", 0),
    "error_after": ("500", 1),
    "reset": ("no answer", 1),
    "stall": ("200", 1),
    "long_stall": ("no answer", 1),
}


@pytest.mark.parametrize("fault", sorted(FAULT_EFFECTS))
def test_the_proxy_injects_what_it_draws(
    fault: str, server: CountingRegistry, proxies: Callable[..., FaultProxy]
) -> None:
    proxy = proxies(server.api_url, 1, rates={fault: 1.0}, short_stall=(0.01, 0.02), long_stall=1.0)
    url = proxy.url + "namespace/"
    try:
        said = str(requests.get(url, timeout=0.5, headers=_auth(server.token)).status_code)
    except requests.RequestException:
        said = "no answer"
    assert (said, server.requests["GET /api/namespace/"]) == FAULT_EFFECTS[fault]
    assert proxy.injected == Counter({fault: 1})
    with proxy.calm():
        assert requests.get(url, timeout=5).status_code == 200


def test_the_faults_drawn_depend_only_on_the_seed() -> None:
    lines = [f"POST /api/object/ {n % 7}" for n in range(400)]

    def faults(seed: int) -> list[str | None]:
        proxy = FaultProxy("http://127.0.0.1:9/api/", seed)
        try:
            return [proxy.draw(line) for line in lines]
        finally:
            proxy.stop()

    first = faults(7)
    assert faults(7) == first
    assert faults(8) != first
    assert 10 < sum(1 for f in first if f) < 150

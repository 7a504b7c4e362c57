"""Two-phase push and pull, through `fdp` and `doit` against a real registry server on
loopback that notes every request in the order it answered them.

Bytes move first, on `--jobs` threads; records follow, one closure at a time and the data
product last, however doit runs the items (one after another, `-P thread`, `-P process`).
Each item is its own task: one that fails says why, the others go on, the summary line
counts both, and a rerun does only what failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import CountingRegistry, Env, producer, reader, sha1
from test_parallel_push import slow_code_runs

# Each run writes bytes of its own, so no two versions share a file in the data store.
UNIQUE_MODEL = '''\
"""Reads the seed and writes `<name>,<seed>,<nanoseconds>` to each write item: new bytes
at every run."""
import time
from fdp_tasks.api import Session

with Session() as fdp:
    with open(fdp.read("inputs/seed")) as fh:
        seed = fh.read().strip()
    for item in fdp.config["write"]:
        with open(fdp.write(item["data_product"]), "w") as out:
            out.write(f"{item['data_product']},{seed},{time.time_ns()}\\n")
'''

RECORD_TYPES = ("storage_root", "storage_location", "file_type", "author", "object")


@pytest.fixture
def counting_registry(tmp_path: Path) -> Iterator[Callable[..., CountingRegistry]]:
    started: list[CountingRegistry] = []

    def start(wrap: Callable[[Any], Any] | None = None) -> CountingRegistry:
        registry = CountingRegistry(tmp_path / f"remote{len(started)}", wrap=wrap)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


def made_runs(tmp_path: Path, runs: int, outputs: int) -> Env:
    """A project whose job ran `runs` times, each writing new versions of its outputs."""
    env = producer(tmp_path, outputs=outputs, model=UNIQUE_MODEL)
    env.doit()
    for _ in range(runs - 1):
        env.doit("force=1")
    return env


def created(registry: CountingRegistry) -> list[str]:
    """The paths of the records the registry created, in order."""
    return [e.split()[1] for e in registry.log if e.startswith("POST") and " 201" in e]


def is_file_request(entry: str) -> bool:
    """An upload: asking for an upload URL (`POST /api/data/<sha1>`) or sending the bytes."""
    path = entry.split()[1]
    return path.startswith(("/api/data/", "/data/"))


def summary(result: Any) -> str:
    """The last line of stdout: the command's summary."""
    return result.stdout.strip().splitlines()[-1]


# ------------------------------------------------------------------------ ordering
def test_push_uploads_every_file_before_the_first_record(
    tmp_path: Path, counting_registry: Callable[..., CountingRegistry]
) -> None:
    registry = counting_registry()
    env = made_runs(tmp_path, runs=3, outputs=3)
    env.add_remote(registry.api_url, registry.token_file)

    pushed = env.fdp("push", "--jobs", "4")

    assert registry.store.count("data_product") == 1 + 3 * 3  # the seed, and 9 outputs
    assert summary(pushed) == "9 pushed"
    writes = [e for e in registry.log if e.startswith(("POST", "PUT"))]
    first_record = next(i for i, e in enumerate(writes) if not is_file_request(e))
    # every output's bytes, besides the seed's and the run's files: small, so in a bundle
    # (`PUT /data/`) after the first file alone (the probe that the remote takes files)
    assert any(e.startswith("PUT /data/ ") for e in writes[:first_record]), writes
    for output in (env.data_store / "lab" / "results").rglob("*.csv"):
        digest = sha1(output)
        assert (registry.db.parent / "blobs" / digest[:2] / digest).is_file(), output
    assert all(is_file_request(e) for e in writes[:first_record])
    assert not any(is_file_request(e) for e in writes[first_record:]), writes


@pytest.mark.parametrize("runner", ["thread", "process"])
def test_each_product_reaches_the_remote_after_the_run_that_made_it(
    tmp_path: Path, counting_registry: Callable[..., CountingRegistry], runner: str
) -> None:
    """With a registry slow to record code runs, four workers pushing the outputs of four
    runs never create a product before its run: after k code runs, at most k runs' outputs
    (besides the input every run read) are there."""
    runs, outputs = 4, 2
    registry = counting_registry(wrap=slow_code_runs)
    env = made_runs(tmp_path, runs=runs, outputs=outputs)
    env.add_remote(registry.api_url, registry.token_file)

    pushed = env.doit("-n", "4", "-P", runner, "push", "jobs=4")

    assert registry.store.count("code_run") == runs
    assert registry.store.count("data_product") == 1 + runs * outputs
    assert summary(pushed) == f"{runs * outputs} pushed"
    code_runs = products = 0
    for path in created(registry):
        code_runs += path == "/api/code_run/"
        products += path == "/api/data_product/"
        assert products - 1 <= outputs * code_runs, created(registry)


# ------------------------------------------------------------------------ faults
def test_a_corrupted_file_fails_its_item_alone_and_a_rerun_pushes_only_it(
    tmp_path: Path, counting_registry: Callable[..., CountingRegistry]
) -> None:
    registry = counting_registry()
    env = made_runs(tmp_path, runs=4, outputs=1)  # part00@0.0.1 .. 0.0.4, one run each
    env.add_remote(registry.api_url, registry.token_file)
    broken = env.data_store / "lab/results/part00/0.0.2.csv"
    good = broken.read_bytes()
    broken.write_bytes(b"changed behind the registry's back\n")

    first = env.fdp("push", "--jobs", "4", check=False)

    assert first.returncode != 0
    assert summary(first) == "3 pushed, 1 failed"
    failure = [line for line in first.stderr.splitlines() if "fdp: error:" in line]
    assert len(failure) == 1, first.stderr
    assert "push:lab:results/part00@0.0.2" in failure[0] and "SHA-1" in failure[0]
    versions = sorted(r["version"] for r in registry.store.find("data_product", {}))
    assert versions == ["0.0.1", "0.0.3", "0.0.4", "1.0.0"]  # three outputs, and the seed
    assert registry.store.count("code_run") == 3

    broken.write_bytes(good)
    second = env.fdp("push", "--jobs", "4")

    assert [t for t in second.executed if t.startswith("push:")] == [
        "push:lab:results/part00@0.0.2"
    ]
    assert summary(second) == "1 pushed, 3 up to date"
    assert registry.store.count("code_run") == 4
    again = env.fdp("push")
    assert summary(again) == "4 up to date"


# ------------------------------------------------------------------------ pull
@pytest.mark.parametrize("how", ["fdp", "process"])
def test_pull_downloads_in_parallel_then_copies_the_records(
    tmp_path: Path, counting_registry: Callable[..., CountingRegistry], how: str
) -> None:
    registry = counting_registry()
    env = made_runs(tmp_path, runs=1, outputs=6)
    env.add_remote(registry.api_url, registry.token_file)
    env.fdp("push")
    colleague = reader(tmp_path, registry.api_url, ["results/*"])

    if how == "fdp":
        pulled = colleague.fdp("pull", "--jobs", "4")
    else:
        pulled = colleague.doit("-n", "2", "-P", "process", "register", "pull", "jobs=4")

    assert summary(pulled) == "6 pulled"
    assert pulled.stdout.count("pulled lab:results/") == 6
    for i in range(6):
        rel = f"lab/results/part{i:02d}/0.0.1.csv"
        assert (colleague.data_store / rel).read_bytes() == (env.data_store / rel).read_bytes()
    again = colleague.fdp("pull")
    assert summary(again) == "1 up to date" and "pulled lab" not in again.stdout


# ------------------------------------------------------------------------ progress
def test_bars_show_on_request_and_never_on_a_pipe(
    tmp_path: Path,
    counting_registry: Callable[..., CountingRegistry],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    registry = counting_registry()
    env = made_runs(tmp_path, runs=2, outputs=2)
    env.add_remote(registry.api_url, registry.token_file)
    other = counting_registry()
    env.add_remote(other.api_url, other.token_file, name="other")

    monkeypatch.delenv("FDP_PROGRESS", raising=False)
    piped = env.fdp("push")
    assert "uploading" not in piped.stderr and "pushing" not in piped.stderr
    assert "\r" not in piped.stderr

    monkeypatch.setenv("FDP_PROGRESS", "always")
    shown = env.fdp("push", "--remote", "other")
    assert "uploading" in shown.stderr and "pushing" in shown.stderr
    assert "4/4" in shown.stderr  # the records bar, at its end
    assert summary(shown) == "4 pushed"


# ------------------------------------------------------------------------ --jobs
def test_jobs_must_be_a_positive_integer_wherever_it_is_given(tmp_path: Path) -> None:
    env = producer(tmp_path, outputs=1)

    flag = env.fdp("push", "--jobs", "0", check=False)
    assert flag.returncode == 2 and "--jobs" in flag.stderr

    doit = env.doit("push", "jobs=many", check=False)
    assert doit.returncode != 0 and "jobs=many" in doit.stderr

    env.fdp("remote", "add", "origin", str(tmp_path / "dir-remote"))
    settings = env.project / ".fdp/settings.yaml"
    data = yaml.safe_load(settings.read_text(encoding="utf-8"))
    settings.write_text(yaml.safe_dump({**data, "jobs": "lots"}), encoding="utf-8")
    setting = env.fdp("push", check=False)
    assert setting.returncode == 2
    lines = setting.stderr.strip().splitlines()
    assert len(lines) == 1 and str(settings) in lines[0] and "jobs" in lines[0], lines

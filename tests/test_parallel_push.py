"""Pushing with doit's parallel runner (`doit -n 2 -P thread push`), against a real registry
server on loopback that counts what reaches it.

The tasks of one command share what the command opened: one connection per remote however
many push tasks run at once, and nothing pushed twice. A data product reaches the remote
only after the code run that made it, so that its presence there means its provenance is
there too.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import CountingRegistry, Env, producer

RUNS = 4  # runs of the producer's job, each with its own versions of the outputs
OUTPUTS = 3  # outputs of each run
INPUTS = 1  # the registered seed every run reads
THREADS = 3  # doit's own thread and its two workers (-n 2 -P thread)
JOBS = 2  # the upload threads of the bytes phase (`jobs=2`)


def slow_code_runs(app: Callable[..., Any]) -> Callable[..., Any]:
    """A registry that takes its time to record a code run, as a busy one may: push tasks
    running alongside the one sending the run get ahead of it."""

    def wrapped(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["REQUEST_METHOD"] == "POST" and environ.get("PATH_INFO", "").endswith(
            "/code_run/"
        ):
            time.sleep(0.5)
        return app(environ, start_response)

    return wrapped


def runs_made(tmp_path: Path) -> Env:
    """A project whose job ran RUNS times (forced), each run writing new versions."""
    env = producer(tmp_path, outputs=OUTPUTS)
    env.doit()
    for _ in range(RUNS - 1):
        env.doit("force=1")
    return env


@pytest.fixture
def counting_registry(tmp_path: Path) -> Iterator[Callable[..., CountingRegistry]]:
    started: list[CountingRegistry] = []

    def start(wrap: Callable[[Any], Any] | None = None) -> CountingRegistry:
        registry = CountingRegistry(tmp_path / "remote", wrap=wrap)
        started.append(registry)
        return registry

    yield start
    for registry in started:
        registry.stop()


def test_parallel_push_shares_one_connection_per_remote(
    tmp_path: Path, counting_registry: Callable[..., CountingRegistry]
) -> None:
    registry = counting_registry()
    env = runs_made(tmp_path)
    env.add_remote(registry.api_url, registry.token_file)

    pushed = env.doit("-n", "2", "-P", "thread", "push", f"jobs={JOBS}")

    assert registry.token not in pushed.output
    assert registry.store.count("code_run") == RUNS
    assert registry.store.count("data_product") == INPUTS + RUNS * OUTPUTS
    # Every one of the RUNS * OUTPUTS push tasks asks the remote (its up-to-date check), so
    # a remote opened per task would connect that often at least. The one remote of the
    # command keeps a small pool instead: a connection for each thread asking at the same
    # moment (doit's own, for the up-to-date checks, its two workers, and the upload
    # threads of the bytes phase), now and then one more while all are busy, and no more.
    assert len(pushed.executed) >= RUNS
    assert 1 <= len(registry.connections) <= 2 * (THREADS + JOBS) < RUNS * OUTPUTS, sorted(
        registry.connections
    )
    # the same command again finds everything there, in one listing per namespace
    before = registry.total()
    again = env.doit("-n", "2", "-P", "thread", "push")
    assert again.executed == []
    assert registry.total() - before <= 3


@pytest.mark.parametrize("runner", ["thread", "process"])
def test_parallel_push_creates_products_only_after_their_code_run(
    tmp_path: Path, counting_registry: Callable[..., CountingRegistry], runner: str
) -> None:
    registry = counting_registry(wrap=slow_code_runs)
    env = runs_made(tmp_path)
    env.add_remote(registry.api_url, registry.token_file)

    env.doit("-n", "2", "-P", runner, "push")

    assert registry.store.count("data_product") == INPUTS + RUNS * OUTPUTS
    created = [
        entry.split()[1] for entry in registry.log if entry.startswith("POST") and " 201" in entry
    ]
    first_run = created.index("/api/code_run/")
    # before the first code run, only what runs read: their products come after it
    assert created[:first_run].count("/api/data_product/") == INPUTS, created

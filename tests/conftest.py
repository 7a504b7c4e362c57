"""Shared fixtures: real registry servers on 127.0.0.1, stopped at teardown."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from fdp_tasks.registry.serve import RunningServer, start_in_thread
from fdp_tasks.registry.server import prepare_store
from fdp_tasks.registry.store import Store


@dataclass
class LiveRegistry:
    """A registry server running in a thread of the test process, with an admin token."""

    running: RunningServer
    store: Store
    token: str
    blob_dir: Path

    @property
    def url(self) -> str:
        return self.running.url

    @property
    def api_url(self) -> str:
        return self.running.api_url

    def headers(self, token: str | None = "") -> dict[str, str]:
        """Request headers as data-pipeline-api sends them; token "" means the admin's."""
        headers = {"Accept": "application/json; version=1.0.0"}
        token = self.token if token == "" else token
        if token:
            headers["Authorization"] = f"token {token}"
        return headers

    def stop(self) -> None:
        self.running.stop()


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[Callable[..., LiveRegistry]]:
    """Factory: `registry_server(name="registry", public_url=None)` starts a fresh server
    (own SQLite database and blob directory under tmp_path) on a free port."""
    started: list[LiveRegistry] = []

    def start(name: str = "registry", public_url: str | None = None) -> LiveRegistry:
        base = tmp_path / name
        base.mkdir(parents=True, exist_ok=True)
        store = Store(base / "registry.db")
        token = prepare_store(store)
        running = start_in_thread(store, base / "blobs", public_url=public_url)
        live = LiveRegistry(running, store, token, base / "blobs")
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()
        live.store.close()

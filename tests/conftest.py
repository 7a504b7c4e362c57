"""Shared fixtures: real registry servers on 127.0.0.1 (ours, and an emulation of the
upstream one with its object store), stopped at teardown; a port that refuses connections;
file systems mounted for a test.

Every server binds port 0 and says which port it got, so tests can run in parallel
(pytest-xdist): a session-scoped fixture is made once per worker process.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from postgres import PostgresCluster, postgres_problem
from support import Mounts, mounting_problem, refused_port

from fdp_tasks.server.serve import RunningServer, start_in_thread
from fdp_tasks.store.sql import Store
from fdp_tasks.store.tokens import working_token

if TYPE_CHECKING:  # imported by the fixtures that use them: moto and boto3 take a while
    from emulation.upstream import ObjectStore, Upstream


@dataclass
class LiveRegistry:
    """A registry server running in a thread of the test process, with an admin token."""

    running: RunningServer
    store: Store
    token: str
    blob_dir: Path
    token_file: Path  # the token, readable by its owner only, for `--token-file`

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


# The database backends the store and server tests run on.
BACKENDS = ["sqlite", "postgresql"]


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """A throwaway PostgreSQL cluster for the session, one per test worker (tests/postgres.py).

    Without PostgreSQL installed, the tests that need it are skipped, saying why; with the
    environment variable FDP_REQUIRE_POSTGRES=1 (as .ci/run sets) that is a failure."""
    problem = postgres_problem()
    if problem:
        if os.environ.get("FDP_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"FDP_REQUIRE_POSTGRES=1, but {problem}")
        pytest.skip(problem)
    cluster = PostgresCluster.start()
    yield cluster
    cluster.stop()


@dataclass
class Databases:
    """Fresh registry databases of one backend for a test: SQLite files under its tmp_path,
    or databases of the session's PostgreSQL cluster (dropped after the test)."""

    backend: str
    folder: Path
    cluster: PostgresCluster | None = None
    made: list[str] = field(default_factory=list)

    def new(self, name: str = "registry") -> str:
        """The URL of a new, empty registry database."""
        if self.cluster is None:
            return f"sqlite:///{self.folder / f'{name}.db'}"
        url = self.cluster.new_database()
        self.made.append(url)
        return url

    def drop_all(self) -> None:
        if self.cluster is not None:
            for url in self.made:
                self.cluster.drop_database(url)


@pytest.fixture(params=BACKENDS)
def databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Databases]:
    """Makes the test run once on SQLite and once on PostgreSQL (see `Databases`)."""
    cluster = request.getfixturevalue("postgres") if request.param == "postgresql" else None
    made = Databases(request.param, tmp_path / "databases", cluster)
    made.folder.mkdir(parents=True, exist_ok=True)
    yield made
    made.drop_all()


@pytest.fixture
def registry_database(databases: Databases) -> str:
    """The URL of an empty registry database, on each backend in turn."""
    return databases.new()


@pytest.fixture
def registry_server(tmp_path: Path) -> Iterator[Callable[..., LiveRegistry]]:
    """Factory: `registry_server(name="registry", public_url=None, database=None,
    blobs=None)` starts a fresh server (own database, by default SQLite, and blob directory
    under tmp_path, or `blobs`: an s3:// URL or a Storage) on a free port."""
    started: list[LiveRegistry] = []

    def start(
        name: str = "registry",
        public_url: str | None = None,
        database: str | None = None,
        blobs: Any = None,
    ) -> LiveRegistry:
        base = tmp_path / name
        base.mkdir(parents=True, exist_ok=True)
        store = Store(database or base / "registry.db")
        token = working_token(store, file=base / "token")
        running = start_in_thread(store, blobs or base / "blobs", public_url=public_url)
        live = LiveRegistry(running, store, token, base / "blobs", base / "token")
        started.append(live)
        return live

    yield start
    for live in started:
        live.stop()
        live.store.close()


@pytest.fixture(scope="session")
def object_store() -> Iterator[ObjectStore]:
    """An S3 API server (moto) on 127.0.0.1 for the whole session, one per test worker: it
    counts requests in this process, and starts in well under a second. Each emulated
    registry gets a bucket of its own there."""
    from emulation.upstream import ObjectStore

    store = ObjectStore.start()
    yield store
    store.stop()


@pytest.fixture
def upstream_registry(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Upstream]]:
    """Factory: `upstream_registry(object_storage=True, storage_root=True, name="upstream")`
    starts an emulation of the upstream FAIR Data Pipeline registry (tests/emulation/
    upstream.py) on a free port, with its database and 0600 token file under tmp_path; with
    object storage its files go to a fresh bucket of the session's S3 server."""
    from emulation.upstream import start_upstream

    started: list[Upstream] = []

    def start(
        object_storage: bool = True, storage_root: bool = True, name: str = "upstream"
    ) -> Upstream:
        objects = request.getfixturevalue("object_store") if object_storage else None
        upstream = start_upstream(tmp_path / name, objects, storage_root=storage_root)
        started.append(upstream)
        return upstream

    yield start
    for upstream in started:
        upstream.stop()
        upstream.store.close()


@pytest.fixture
def refused_url() -> Iterator[str]:
    """The API URL of a registry that is not there: a port on 127.0.0.1 that refuses
    connections, held for the test so that no other test's server is given it."""
    with refused_port() as port:
        yield f"http://127.0.0.1:{port}/api/"


@pytest.fixture
def mounts(tmp_path: Path) -> Iterator[Mounts]:
    """Mounts a test makes (a tmpfs to fill, a read-only bind mount), taken down at teardown.

    Without the right to mount (not root, no mount namespace) the test is skipped, with the
    reason printed; in CI (env var CI set), which runs as root, that is a failure."""
    problem = mounting_problem(tmp_path / ".mount-probe")
    if problem:
        print(problem)
        if os.environ.get("CI"):
            pytest.fail(problem)
        pytest.skip(problem)
    made = Mounts()
    try:
        yield made
    finally:
        made.unmount_all()

"""What a command holds open while it carries out a plan: connections and what they learned.

A `Plan` says what a config asks for; a `SyncSession` is where the work happens. It opens
each remote once (with a cache in front of its registry) and keeps the remote's product
listings, one Puller and one Pusher per remote, the push checks done, which remotes were
opened without their token, the local registry handle that tasks write to, and the local
user's identity. Every task of one command shares it, in doit's worker threads too, so a
command talks to a remote over one connection and looks each thing up once.

A read-only session (`fdp status`, which only compares) creates nothing: it reads the
registry the plan reads, and opens remotes without creating them.

doit's process runner (`-P process`) forks its workers: a connection, a database handle or a
lock inherited from the parent is not the worker's to use. So a worker gets a session of its
own (`for_process`), and what must not interleave (the records of one push closure, the
records of one pull) is serialised by `records_lock`, across threads and processes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Any

try:
    import fcntl
except ImportError:  # no flock (Windows): doit's process runner spawns there, threads lock
    fcntl = None  # type: ignore[assignment]

from fdp_tasks.config import load_config
from fdp_tasks.config.resolve import warn_once
from fdp_tasks.errors import FdpError
from fdp_tasks.graph.plan import Plan, ReadItem, local_registry
from fdp_tasks.project import ENV_REMOTE_TOKEN, Project, RemoteSpec, remote_env_name
from fdp_tasks.refs import ProductRef
from fdp_tasks.remotes import Remote, open_remote
from fdp_tasks.remotes.kept_listing import (
    ProductListing,
    empty_listing,
    kept_file,
    product_listing,
)
from fdp_tasks.remotes.sync import Puller, Pusher
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record
from fdp_tasks.store.cache import CachedRegistry

if TYPE_CHECKING:  # the SQL engine is imported by whoever opens the store
    from fdp_tasks.store.sql import Store

# What the doit tasks are given: the command's one session, however often it is asked for.
SessionFor = Callable[[], "SyncSession"]

# The session of each (config, remote) in this process; one made before a fork is not used
# after it (SyncSession.pid says whose it is).
_BY_PROCESS: dict[tuple[str, str | None], SyncSession] = {}
_PROCESS_LOCK = threading.Lock()


class SyncSession:
    """The connections, caches and identity of one command carrying out `plan`."""

    def __init__(
        self,
        plan: Plan,
        store: Store | None = None,
        remote_name: str | None = None,
        readonly: bool = False,
    ):
        """`store`: the local registry the command writes (default: the one the plan reads);
        `remote_name`: the remote used when none is named (default: the project's);
        `readonly`: nothing is created, not even a directory remote."""
        self.plan = plan
        self.project: Project = plan.project
        self.store: Store = store if store is not None else plan.store
        self.remote_name = remote_name
        self.readonly = readonly
        self.push_checked = False  # preflight_push has run for this command
        # what this command pushes (`graph.tasks.session_pushable`): listed once, shared by
        # the task graph, the preflight and the bytes phase
        self.pushable: list[Any] | None = None
        self.push_broken: str | None = None  # why the remote cannot take this push, if so
        self._lock = threading.RLock()  # doit's worker threads share the session
        self._remotes: dict[str | None, Remote] = {}
        self._tokenless: set[str | None] = set()  # remotes opened without their token file
        self._pullers: dict[str, Puller] = {}
        self._pushers: dict[str, Pusher] = {}
        self._listings: dict[tuple[str, str], ProductListing] = {}
        # what the bytes phase of a pull found to fetch for each read item (by remote URL
        # and item index), handed on to the item's own task in this process
        self.to_pull: dict[tuple[str, int], list[tuple[ProductRef, Record]]] = {}
        self._author_id: int | None = None
        self._records_locks: dict[str, tuple[threading.Lock, IO[str] | None]] = {}
        self.pid = os.getpid()

    @classmethod
    def for_process(cls, config_path: str | Path, remote_name: str | None = None) -> SyncSession:
        """The session of a command's config in this process: the one the command opened
        (`share`), or in a worker doit's process runner forked, one of its own, opened on
        first use and kept for the worker's other tasks."""
        key = (str(config_path), remote_name)
        with _PROCESS_LOCK:
            found = _BY_PROCESS.get(key)
            if found is not None and found.pid == os.getpid():
                return found
            session = cls.for_config(config_path, remote_name=remote_name)
            _BY_PROCESS[key] = session
            return session

    def share(self, config_path: str | Path) -> None:
        """Be the session `for_process` hands out for this config in this process."""
        with _PROCESS_LOCK:
            _BY_PROCESS[(str(config_path), self.remote_name)] = self

    @contextlib.contextmanager
    def records_lock(self, target: str) -> Iterator[None]:
        """Held while one closure's records are written to `target` (a remote's URL, or
        "local"), so no two workers interleave theirs: a lock for this process's threads,
        and a lock file under the project's state for the processes of doit's process
        runner (each opens its own, since a descriptor inherited through fork would be
        the same lock as its parent's)."""
        with self._lock:
            if target not in self._records_locks:
                handle: IO[str] | None = None
                if fcntl is not None:
                    digest = hashlib.sha256(target.encode("utf-8")).hexdigest()[:16]
                    folder = self.project.state_dir / "locks"
                    folder.mkdir(parents=True, exist_ok=True)
                    handle = open(folder / f"records-{digest}.lock", "a")  # noqa: SIM115
                self._records_locks[target] = (threading.Lock(), handle)
            lock, handle = self._records_locks[target]
        with lock:
            if handle is not None:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                if handle is not None:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    @classmethod
    def for_config(
        cls, config_path: str | Path, remote_name: str | None = None, readonly: bool = False
    ) -> SyncSession:
        """The plan of a config, and the session that carries it out. A command that writes
        gets the local registry created here if it is missing; a read-only one reads it as
        it is (one that does not exist reads as empty)."""
        path = Path(config_path).expanduser().absolute()
        project = Project.find(path.parent) if path.is_file() else None
        # an unchanged config is not validated again (its outcome is kept in its state)
        cache = project.state_dir_for(path) / "validated" if project else None
        cfg = load_config(config_path, cache_dir=cache, write_cache=not readonly)
        project = project or Project.find(cfg.path.parent)
        store = local_registry(project, cfg.path, readonly)  # opened when first needed
        plan = Plan(cfg, project, store, remember=not readonly)
        return cls(plan, store, remote_name=remote_name, readonly=readonly)

    # ------------------------------------------------------------- lifetime
    def close(self) -> None:
        """Close the remotes this session opened. The local registry stays open: the
        process shares it (see store.sql.open_store)."""
        with self._lock:
            remotes = list(self._remotes.values())
            self._remotes.clear()
            self._pullers.clear()
            self._pushers.clear()
            listings = list(self._listings.values())
            self._listings.clear()
            handles = [handle for _, handle in self._records_locks.values() if handle]
            self._records_locks.clear()
        for remote in remotes:
            remote.close()
        for listing in listings:
            listing.close()
        for handle in handles:
            handle.close()

    def __enter__(self) -> SyncSession:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _writing(self, what: str) -> None:
        if self.readonly:
            raise RuntimeError(f"a read-only session cannot {what}")

    # -------------------------------------------------------------- identity
    def ensure_identity(self) -> None:
        """The local user and its author in place before anything is recorded; once."""
        self.author_id()

    def author_id(self) -> int:
        """The author the local user's records are made by (set up on first use)."""
        self._writing("record the local user")
        with self._lock:
            if self._author_id is None:
                self._author_id = self.project.author_id()
            return self._author_id

    # ---------------------------------------------------------------- remote
    def remote(self, name: str | None = None, write: bool = False) -> Remote:
        """The remote to pull from or push to: a named one, origin, or the config's URL.

        Opened once per session and kept, with a cache in front of its registry, so that
        every task of a command shares one connection and what has been looked up. Reading
        needs no token: a token file that is missing or not private only stops a `write`.
        """
        name = name or self.remote_name
        with self._lock:
            if write and name in self._remotes and name in self._tokenless:
                self.project.remote(name).token()  # says why there is no token to write with
                raise self._no_token(self._remotes[name].name)
            if name not in self._remotes:
                remote = self._open(name, write)
                remote.registry = CachedRegistry(remote.registry)
                self._remotes[name] = remote
            return self._remotes[name]

    def _open(self, name: str | None, write: bool) -> Remote:
        url = self.plan.config_remote_url
        if name is None and url is not None and not self.project.remotes:
            # the token, if any, from the environment: FDP_REMOTE_TOKEN(_ORIGIN)
            token = RemoteSpec("origin", url).token()
            return open_remote("origin", url, token, readonly=self.readonly)
        spec = self.project.remote(name)
        try:
            token = spec.token()
        except FdpError as exc:
            if write:
                raise
            warn_once(f"reading remote {spec.name} without a token: {exc}")
            token = None
            self._tokenless.add(name)
        if token is None and spec.url.startswith(("http://", "https://")):
            if write:
                raise self._no_token(spec.name)
            self._tokenless.add(name)
        return open_remote(spec.name, spec.url, token, readonly=self.readonly)

    @staticmethod
    def _no_token(name: str) -> FdpError:
        """A registry takes no write without a token: said before anything is sent."""
        return FdpError(
            f"remote {name} has no token to write with: set "
            f"{remote_env_name(ENV_REMOTE_TOKEN, name)} (or {ENV_REMOTE_TOKEN}), or give it "
            f"a token file (`fdp remote add {name} URL --token-file FILE`)"
        )

    def remote_products(self, remote: Remote, namespace: str) -> ProductListing:
        """The remote's data products in a namespace, by (name, version): one listing, of
        records cut down to a few fields (`queries.listed`), read from a file as asked."""
        key = (remote.url, namespace)
        with self._lock:
            if key not in self._listings:
                ns = queries.namespace_id(remote.registry, namespace)
                # past the remote's cache, which would keep every whole record; kept between
                # commands where the remote gives a listing's count (`kept_listing`)
                if ns is None:
                    self._listings[key] = empty_listing()
                else:
                    kept = kept_file(self.project.home, remote.url, ns)
                    self._listings[key] = product_listing(
                        remote.registry, ns, kept, save=not self.readonly
                    )
            return self._listings[key]

    def remote_product(self, remote: Remote, ref: ProductRef) -> Record | None:
        """The remote's record of one data product, from its namespace's listing."""
        return self.remote_products(remote, ref.namespace).get((ref.name, ref.version_text))

    def remote_newest(self, remote: Remote, item: ReadItem) -> Iterator[tuple[str, str]]:
        """(name, newest version on the remote) of every product name an unpinned read
        matches, by name, read from the listing a page of names at a time."""
        return self.remote_products(remote, item.namespace).newest(item.name)

    def note_pushed(self, remote: Remote, pushed: list[tuple[ProductRef, Record]]) -> None:
        """Products a push created or found on the remote (listed records, with the SHA-1
        pushed): listed from now on."""
        for ref, record in pushed:
            self.remote_products(remote, ref.namespace).note(record)

    @property
    def records(self) -> Store:
        """The local registry as the sync actions read it: the store itself, past the
        answers kept for the up-to-date checks (`graph/answers.py`)."""
        from fdp_tasks.graph.answers import store_behind

        return store_behind(self.store)

    def puller(self, remote: Remote) -> Puller:
        """One Puller per remote and command, so shared provenance is copied once."""
        self._writing("pull")
        with self._lock:
            if remote.url not in self._pullers:
                self._pullers[remote.url] = Puller(
                    remote, self.records, self.plan.data, hashes=self.plan.hashes
                )
            return self._pullers[remote.url]

    def pusher(self, remote: Remote) -> Pusher:
        """One Pusher per remote and command, so a closure shared by many products is sent
        once, and what the remote said (it cannot take files, say) is remembered."""
        self._writing("push")
        with self._lock:
            if remote.url not in self._pushers:

                def listed(other: ProductRef) -> Record | None:
                    return self.remote_product(remote, other)

                self._pushers[remote.url] = Pusher(
                    self.records, self.plan.data, remote, lookup=listed, hashes=self.plan.hashes
                )
            return self._pushers[remote.url]

    # ---------------------------------------------------------------- checks
    def verify_outputs(self, run_uuids: list[str]) -> None:
        """Refuse code runs whose outputs another run made: a script that looked up a name
        its config does not list can be linked to someone else's product (data-pipeline-api
        falls back to the first write item, which may be a write pattern), and such a run
        must not be taken for what made them."""
        store = self.store
        for run_uuid in run_uuids:
            rows = store.find("code_run", {"uuid": run_uuid}, limit=1)
            for component in rows[0]["outputs"] if rows else []:
                # a count per output, not a listing: each listed run carries all its outputs
                if store.count("code_run", {"outputs": component}) < 2:
                    continue
                others = [
                    r["uuid"]
                    for r in store.find("code_run", {"outputs": component})
                    if r["uuid"] != run_uuid
                ]
                if others:
                    obj = store.get("object", store.get("object_component", component)["object"])
                    made = [
                        str(f.ref)
                        for f in queries.locate_many(
                            store, [store.get("data_product", p) for p in obj["data_products"]]
                        )
                    ]
                    raise FdpError(
                        f"code run {run_uuid} lists as its output {', '.join(made) or 'an object'}"
                        f", which code run {others[0]} made: the script wrote under a name its "
                        "config does not list (data-pipeline-api takes the first write item "
                        "for such a name); list every output as a write item"
                    )

"""What a config asks for, worked out against the local registry: the facts tasks are made of.

The plan answers the questions the task graph and `fdp status` ask (which items are there,
what the run's inputs are, whether outputs are intact) without doing any of the work. It
holds facts only: no connection, no remote, nothing it learns from one, and it is not
changed once made. Carrying a plan out (remotes, pullers and pushers, the local user's
identity) is the job of a `graph.session.SyncSession`.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from fdp_tasks.catalog.locations import intact, located_intact
from fdp_tasks.config import Config, ResolveContext, load_config, resolve
from fdp_tasks.config.codebase import code_digest
from fdp_tasks.config.resolve import (
    DIRTY,
    declared_reads,
    script_paths,
    uncommitted_digest,
)
from fdp_tasks.config.templates import git_root
from fdp_tasks.config.validate import format_path
from fdp_tasks.datastore import DataStore
from fdp_tasks.errors import ConfigError
from fdp_tasks.files import sha1_file
from fdp_tasks.project import Project
from fdp_tasks.refs import PartialRef, ProductRef
from fdp_tasks.stat_cache import StatCache
from fdp_tasks.store import queries
from fdp_tasks.store.base import NotFound

if TYPE_CHECKING:  # a plan whose checks are answered without the registry opens no SQL engine
    from fdp_tasks.store.sql import Store


def local_registry(project: Project, config_path: Path, readonly: bool = False) -> Store:
    """The local registry a config's plan reads: the up-to-date checks' look-ups answered
    from the config's state while the registry is unchanged (`graph/answers.py`), the
    store opened only when something else is asked. `readonly`: opened as commands that
    only look open it (nothing created, no provisional records), and no answers kept."""
    from fdp_tasks.graph.answers import Answers

    answers = Answers(
        project.registry_db,
        project.read_store if readonly else project.store,
        project.state_dir_for(config_path) / "registry-answers.db",
        writable=not readonly,
    )
    return cast("Store", answers)


def script_files(run_metadata: dict[str, Any]) -> dict[str, str]:
    """SHA-1 of the script file, and of every existing file an inline script names.

    `python3 src/model.py` thus reruns the job when model.py changes.
    """
    return {word: sha1_file(path) for word, path in script_paths(run_metadata).items()}


def explain_change(old: dict[str, Any], new: dict[str, Any]) -> str:
    """Why the job must run again, in words, from two run_inputs() snapshots."""
    reasons = []
    old_meta, new_meta = old.get("meta", {}), new.get("meta", {})
    code_key = "code" if "code" in new_meta else "latest_commit"
    if old_meta.get(code_key) != new_meta.get(code_key):
        was, now = old_meta.get("latest_commit"), new_meta.get("latest_commit")
        reasons.append(f"the code is at commit {_short(now)} (the last run had {_short(was)})")
    elif old_meta.get("uncommitted") != new_meta.get("uncommitted"):
        reasons.append("the uncommitted changes differ from the last run's")
    for name in sorted(set(old.get("script", {})) | set(new.get("script", {}))):
        if old.get("script", {}).get(name) != new.get("script", {}).get(name):
            reasons.append(f"{Path(name).name} changed")
    old_in, new_in = old.get("inputs", {}), new.get("inputs", {})
    for ref in sorted(set(old_in) | set(new_in)):
        if ref not in old_in:
            reasons.append(f"new input {ref}")
        elif ref not in new_in:
            reasons.append(f"input {ref} no longer read")
        elif old_in[ref] != new_in[ref]:
            reasons.append(f"input {ref} has new content")
    if old.get("writes") != new.get("writes"):
        reasons.append("write items changed")
    changed = sorted(
        k
        for k in set(old_meta) | set(new_meta)
        if old_meta.get(k) != new_meta.get(k)
        and k not in ("latest_commit", "uncommitted", "code")
    )
    if changed:
        reasons.append(f"run_metadata changed ({', '.join(changed)})")
    return "; ".join(reasons) or "the config changed"


class LocalView:
    """The local registry as config resolution sees it."""

    def __init__(self, store: Store):
        self.store = store

    def versions(self, namespace: str, name: str) -> list[str]:
        return queries.product_versions(self.store, namespace, name)

    def names(self, namespace: str, pattern: str) -> list[str]:
        return queries.product_names(self.store, namespace, pattern)


@dataclass(frozen=True)
class Output:
    """A data product a code run wrote, as a push and `fdp status` name it."""

    ref: ProductRef
    hash: str | None
    product_id: int


@dataclass(frozen=True)
class ReadItem:
    """A read as the config states it: namespace filled in, version maybe an incrementer."""

    namespace: str
    name: str
    version: str
    index: int
    key: str = ""  # the key path the user wrote for it (its version, if given), for messages

    @property
    def pinned(self) -> bool:
        return bool(self.version) and "${{" not in self.version

    @property
    def ref(self) -> PartialRef:
        """What the read asks for, as the config states it."""
        return PartialRef(self.namespace, self.name, self.version)

    @property
    def label(self) -> str:
        return str(PartialRef(self.namespace, self.name, self.version if self.pinned else None))

    def product(self, name: str, version: str) -> ProductRef:
        """One data product this read takes: itself when pinned, else a name it matches at
        a version found for it."""
        return ProductRef.of(self.namespace, name, version)


class Plan:
    """A config, the project it belongs to, and the local registry and data store.

    Made once and not changed after: what it works out (the resolved items, the state
    folder) is worked out from the config and the project alone, on first use.
    """

    def __init__(
        self,
        config: str | Path | Config,
        project: Project | None = None,
        store: Store | None = None,
        remember: bool = True,
    ):
        """`store`: the local registry to read (a command that writes passes the one it
        writes to); by default it is read as it is, and one that does not exist reads as
        empty, so that making a plan creates nothing. `remember`: whether its checks may
        keep what they hashed in the config's state (commands that only look do not)."""
        self.cfg: Config = config if isinstance(config, Config) else load_config(config)
        self.project: Project = project or Project.find(self.cfg.path.parent)
        self.store: Store = store if store is not None else self.project.read_store()
        self.data: DataStore = self.project.data_store
        self.remember = remember
        self._sealed = True

    def __setattr__(self, name: str, value: Any) -> None:
        if getattr(self, "_sealed", False):
            raise AttributeError(f"a Plan is not changed once made (setting {name})")
        super().__setattr__(name, value)

    @cached_property
    def state_dir(self) -> Path:
        """Per-config state (doit's dependency file, the runs log): configs never share it."""
        return self.project.state_dir_for(self.cfg.path)

    @cached_property
    def hashes(self) -> StatCache:
        """The SHA-1s of data-store files the up-to-date checks hashed, by their stat, kept
        in the config's state so that a no-op reads no unchanged file again."""
        return StatCache(self.state_dir / "hashes.db", writable=self.remember)

    def remember_answers(self) -> None:
        """Keep what the checks hashed and what they asked the registry, for the next
        command (when this plan may remember)."""
        self.hashes.save()
        if self.remember:
            keep = getattr(self.store, "save", None)  # a plan's `local_registry` has it
            if keep is not None:
                keep()

    @property
    def runs_log(self) -> Path:
        return self.state_dir / "runs.jsonl"

    # ------------------------------------------------------------ resolution
    def context(
        self,
        registry_url: str = "",
        run_id: str | None = None,
        resolve_writes: bool = True,
        **job: Any,
    ) -> ResolveContext:
        """The resolution context; `job` holds ResolveContext's job fields (job_dir,
        local_token, symbolic, require_inputs)."""
        user = self.project.user
        return ResolveContext(
            registry=LocalView(self.store),
            data_store=self.data.root,
            registry_url=registry_url,
            user_namespace=user.namespace,
            user_input_namespace=user.input_namespace,
            user_output_namespace=user.output_namespace,
            user_name=user.name,
            user_id=user.identifier,
            run_id=run_id or str(uuid.uuid4()),
            now=datetime.now(),
            resolve_writes=resolve_writes,
            **job,
        )

    def working(
        self,
        registry_url: str = "",
        resolve_writes: bool = True,
        run_id: str | None = None,
        **job: Any,
    ) -> dict[str, Any]:
        return resolve(self.cfg, self.context(registry_url, run_id, resolve_writes, **job))

    def job_working(self, registry_url: str, job_dir: Path, token: str) -> dict[str, Any]:
        """The working config of a job about to run: every input must be here."""
        return self.working(
            registry_url,
            job_dir=str(job_dir),
            local_token=token,
            require_inputs=True,
        )

    @cached_property
    def registers(self) -> list[dict[str, Any]]:
        """The register items, resolved (templates, namespaces, roots); no registry needed."""
        data = {k: v for k, v in self.cfg.data.items() if k in ("run_metadata", "register")}
        if not data.get("register"):
            return []
        only = Config(path=self.cfg.path, data=data, file=self.cfg.file)
        return resolve(only, self.context(resolve_writes=False)).get("register", [])

    @cached_property
    def reads(self) -> list[ReadItem]:
        """Reads to pull: those neither satisfied by a register item of the same config nor
        read from a cache file. Resolution says what each asks for."""
        registered = {
            (r.get("namespace_name"), r.get("external_object") or r.get("data_product"))
            for r in self.registers
        }
        declared = declared_reads(self.cfg, self.context(resolve_writes=False, symbolic=True))
        return [
            ReadItem(read.namespace, read.name, read.version, read.index, format_path(read.key))
            for read in declared
            if read.cache is None and (read.namespace, read.name) not in registered
        ]

    @cached_property
    def local_repo(self) -> Path:
        """Where the script runs: run_metadata.local_repo, else the root of the git
        repository holding the config, else the config's folder."""
        meta = self.cfg.data.get("run_metadata") or {}
        if "local_repo" in meta:
            try:
                working = self.working(resolve_writes=False, symbolic=True)
                return Path(working["run_metadata"]["local_repo"])
            except ConfigError:
                pass
        return git_root(self.cfg.dir) or self.cfg.dir

    @cached_property
    def config_remote_url(self) -> str | None:
        """The remote the config itself names (run_metadata.remote_data_registry_url): a
        URL as written, a relative directory from the config's folder; None without one."""
        meta = self.cfg.data.get("run_metadata") or {}
        url = meta.get("remote_data_registry_url")
        if not url:
            return None
        url = str(url)
        if "://" not in url and not Path(url).is_absolute():
            url = str((self.cfg.dir / url).resolve())
        return url

    @property
    def has_script(self) -> bool:
        meta = self.cfg.data.get("run_metadata") or {}
        return bool(meta.get("script") or meta.get("script_path"))

    # ---------------------------------------------------------------- checks
    def product_intact(self, ref: ProductRef) -> bool:
        """The product is registered and its file is in the local store with the right hash."""
        found = queries.locate_ref(self.store, ref)
        intact = found is not None and located_intact(self.data, found, self.hashes)
        self.remember_answers()
        return intact

    def intact_products(self, refs: list[ProductRef], remember: bool = True) -> set[ProductRef]:
        """Which of these products `product_intact` would find intact, their files asked
        for a page of names at a time in one query (a pull of a glob over thousands of
        products asks a few, not a few per product), with what was hashed and asked kept
        once at the end (`remember`; a caller asking page after page keeps them once, when
        it is done)."""
        by_namespace: dict[str, list[ProductRef]] = {}
        for ref in refs:
            by_namespace.setdefault(ref.namespace, []).append(ref)
        here: set[ProductRef] = set()
        step = queries.NAMES_PER_QUERY
        for namespace, group in by_namespace.items():
            names = sorted({ref.name for ref in group})
            wanted = {(ref.name, ref.version_text): ref for ref in group}
            for start in range(0, len(names), step):
                rows = self.store.product_files(namespace, names[start : start + step])
                for name, version, path, sha1, root in rows:
                    asked = wanted.get((name, version))
                    if (
                        asked is not None
                        and path
                        and intact(self.data, path, sha1, root=root, hashes=self.hashes)
                    ):
                        here.add(asked)
        if remember:
            self.remember_answers()
        return here

    def read_present(self, item: ReadItem) -> bool:
        if item.pinned:
            return self.product_intact(item.product(item.name, item.version))
        # the newest of each name a page at a time: a glob over 100,000 products holds a
        # page of them, and stops at the first that is not here
        present = False
        for _, _, path, sha1, root in self.store.newest_files(item.namespace, item.name):
            present = bool(path) and intact(self.data, path, sha1, root=root, hashes=self.hashes)
            if not present:
                break
        self.remember_answers()
        return present

    def run_inputs(self) -> dict[str, Any]:
        """What the run's outputs depend on: script files, inputs by hash, writes, metadata."""
        # the job directory and token stay symbols: a new job is not a change
        working = self.working(resolve_writes=False, run_id="RUN_ID", symbolic=True)
        meta = dict(working["run_metadata"])
        meta.pop("local_data_registry_url", None)
        # The code is part of what outputs depend on: a commit that changes a tracked file
        # reruns the job (a model's code is often in modules its script imports), and so do
        # other uncommitted changes; a commit that changes only FDP configs does not
        # (config/codebase.py), so a warm CI cache reruns only the configs that changed.
        code = code_digest(
            self.local_repo, self.project.state_dir / "config-blobs.json", self.remember
        )
        if code is not None:
            meta["code"] = code
        if str(meta.get("latest_commit", "")).endswith(DIRTY):
            meta["uncommitted"] = uncommitted_digest(self.local_repo)
        inputs: dict[str, str | None] = {}
        for item in working.get("read") or []:
            use = item.get("use") or {}
            if use.get("cache"):
                inputs[f"cache:{use['cache']}"] = None
                continue
            ref = ProductRef.of_read_item(item)
            found = queries.locate_ref(self.store, ref)
            inputs[str(ref)] = found.hash if found else None
        # a pinned version is part of what is asked; an incrementer stays as written
        writes = [
            {k: v for k, v in item.items() if k != "use"}
            | {k: (item.get("use") or {}).get(k) for k in ("namespace", "version", "component")}
            for item in working.get("write") or []
        ]
        return json.loads(
            json.dumps(
                {"meta": meta, "script": script_files(meta), "inputs": inputs, "writes": writes},
                default=str,
            )
        )

    def run_signature(self, parts: dict[str, Any] | None = None) -> str:
        parts = parts or self.run_inputs()
        meta = parts.get("meta") or {}
        if "code" in meta:  # what the commit holds counts, not its id
            parts = {**parts, "meta": {k: v for k, v in meta.items() if k != "latest_commit"}}
        blob = json.dumps(parts, sort_keys=True)
        return hashlib.sha1(blob.encode(), usedforsecurity=False).hexdigest()

    def output_refs(self, run_uuids: list[str]) -> list[Output] | None:
        """What the given code runs wrote, by name and SHA-1, in data product order, or
        None if any run is gone: one query, the one the job's up-to-date check asks."""
        rows = self.store.run_outputs(run_uuids)
        if rows is None:
            return None
        by_id = {row[0]: row for row in rows}  # two outputs of one object name it once
        return [
            Output(ProductRef.of(space, name, version), sha1 or None, ident)
            for ident, space, name, version, _, sha1, _ in sorted(by_id.values())
        ]

    def outputs_of(self, run_uuids: list[str]) -> list[queries.Located] | None:
        """The products the given code runs wrote, with their records, or None if any run
        or output is gone."""
        outputs = self.output_refs(run_uuids)
        if outputs is None:
            return None
        try:
            products = self.store.get_many("data_product", [o.product_id for o in outputs])
            return queries.locate_many(self.store, [products[o.product_id] for o in outputs])
        except NotFound:
            return None

    def outputs_intact(self, run_uuids: list[str]) -> bool:
        """Every output of these code runs is registered, with its file intact: their
        files found in one query, each hashed only if its stat changed since last time."""
        files = self.store.run_outputs(run_uuids)
        whole = files is not None and all(
            bool(path) and intact(self.data, path, sha1, root=root, hashes=self.hashes)
            for *_, path, sha1, root in files
        )
        self.remember_answers()
        return whole


def _short(commit: object) -> str:
    text = str(commit or "none")
    return text[:12] + ("-dirty" if text.endswith(DIRTY) else "")

"""The script side: what a model script calls to read inputs and write outputs.

    from fdp_tasks.api import Session

    with Session() as fdp:                       # reads $FDP_CONFIG_DIR/config.yaml
        params = fdp.read("SEIRS_model/parameters")
        out = fdp.write("SEIRS_model/results/model_output")
        ...write the file at `out`...
    # leaving the block records the code run, its inputs and outputs

Outputs are written under a temporary name and renamed to `<namespace>/<name>/<version>.<ext>`
only when the session finalises, so a crashed script leaves nothing registered and no file
under a final name. With direct access to the local registry (FDP_LOCAL_DB) everything the
session records is one transaction; otherwise it talks to the registry's REST API. Under
`fdp run` the records are provisional until the job exits 0 (the job's token says whose
they are), and the finalise says how far it is through the pipe FDP_PROGRESS_FD names;
outside fdp neither applies. The working config is read from the JSON copy a job writes
beside it (`working_config`), or from the YAML when that copy is missing or out of date.

A file of the data store is never overwritten with other bytes: a path that holds bytes the
registry does not name (the registry was lost, say) moves the output to the next free patch
version, and one the registry names is an error.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import uuid as uuidlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from fdp_tasks import working_config
from fdp_tasks.catalog.locations import (
    forget_roots,
    intact,
    local_location,
    placement,
    store_root_id,
)
from fdp_tasks.datastore import DataStore, local_root, product_path
from fdp_tasks.errors import FdpError
from fdp_tasks.files import sha1_file
from fdp_tasks.names import glob_matches, is_glob, namespace_problem, product_name_problem
from fdp_tasks.refs import ProductRef
from fdp_tasks.store import queries
from fdp_tasks.store.base import Registry, UniqueViolation
from fdp_tasks.versions import increment

LOCAL_USER = "admin"
PROGRESS_FD_ENV = "FDP_PROGRESS_FD"  # a pipe the job runner reads the finalise's progress from
JOB_ENV = "FDP_JOB"  # set by `fdp run`: what the session records belongs to a running job
RECORD_CHUNK = 1000  # outputs recorded together: a finalise's memory stays flat in N


@dataclass
class _Output:
    name: str
    namespace: str
    version: str
    file_type: str
    description: str
    public: bool
    temp: Path
    component: str | None = None


@dataclass
class _Issue:
    description: str
    severity: int
    targets: list[tuple[str, Any]] = field(default_factory=list)


def connect(run_metadata: dict[str, Any]) -> Registry:
    """The local registry: the database itself when FDP_LOCAL_DB names it, else its REST API."""
    db = os.environ.get("FDP_LOCAL_DB")
    if db:
        from fdp_tasks.store.sql import open_store

        return open_store(db)
    from fdp_tasks.remotes.client import HttpRegistry

    return HttpRegistry(
        run_metadata["local_data_registry_url"], token=os.environ.get("FDP_LOCAL_TOKEN")
    )


class Session:
    """One code run: the reads, writes and issues of a script, recorded together."""

    def __init__(
        self,
        config_dir: str | Path | None = None,
        script: str | Path | None = None,
        registry: Registry | None = None,
    ):
        directory = config_dir or os.environ.get("FDP_CONFIG_DIR")
        if not directory:
            raise FdpError("FDP_CONFIG_DIR is not set: run this script with `fdp run` or `doit`")
        self.config_dir = Path(directory).resolve()
        self.config_path = self.config_dir / os.environ.get("FDP_CONFIG_NAME", "config.yaml")
        self.config: dict[str, Any] = working_config.read(self.config_path)
        self.run_metadata: dict[str, Any] = self.config["run_metadata"]
        self.store = DataStore(self.run_metadata["write_data_store"])
        self.registry = registry or connect(self.run_metadata)
        self.script = Path(script or os.environ.get("FDP_SCRIPT") or self._find_script())
        self.uuid = str(uuidlib.uuid4())
        self.inputs: dict[str, tuple[Path, int]] = {}
        self.outputs: dict[str, _Output] = {}
        self.issues: list[_Issue] = []
        self.finalised = False
        self._namespaces: dict[str, dict[str, Any]] = {}
        self._file_types: dict[str, int] = {}
        self._by_name: dict[str, dict[str, dict[str, Any]]] = {}

    def _find_script(self) -> Path:
        found = sorted(self.config_dir.glob("script.*"))
        if not found:
            raise FdpError(f"no script.* in {self.config_dir}")
        return found[0]

    # --------------------------------------------------------------- reading
    def _item(self, section: str, data_product: str) -> dict[str, Any]:
        """The config item naming data_product: exactly, else (writes only) the first '*'
        pattern that matches it; a script cannot read or write what its config does not name."""
        problem = product_name_problem(data_product)
        if problem:
            raise FdpError(f"Session.{section}({data_product!r}): {problem}")
        found = self._items_by_name(section).get(data_product)
        if found is not None:
            return found
        items = [i for i in self.config.get(section) or [] if isinstance(i, dict)]
        names = [str(i.get("data_product", "?")) for i in items]
        patterns = [n for n in names if is_glob(n)]
        if section == "write":
            for item in items:
                if glob_matches(str(item.get("data_product")), data_product):
                    return item
        known = ", ".join(n for n in names if not is_glob(n)) or "none"
        if patterns:
            known += "; patterns: " + ", ".join(patterns)
        raise FdpError(
            f"{self.config_path}: no {section} item for {data_product!r} (known: {known})"
        )

    def _items_by_name(self, section: str) -> dict[str, dict[str, Any]]:
        """A section's items by the names they are asked for by (`data_product`, or the
        `use.data_product` it stands for), the first item of a name winning, made once: a
        script writing thousands of outputs looks each up without scanning the list."""
        if section not in self._by_name:
            index: dict[str, dict[str, Any]] = {}
            for item in self.config.get(section) or []:
                if not isinstance(item, dict):
                    continue
                use = item.get("use") or {}
                for name in (item.get("data_product"), use.get("data_product")):
                    if isinstance(name, str):
                        index.setdefault(name, item)
            self._by_name[section] = index
        return self._by_name[section]

    def read(self, data_product: str, component: str | None = None) -> Path:
        """The local path of an input named in the config's read block (by its exact name:
        the working config lists every product a read pattern matched)."""
        if data_product in self.inputs:
            return self.inputs[data_product][0]
        item = self._item("read", data_product)
        use = item.get("use") or {}
        if use.get("cache"):
            path = Path(use["cache"]).expanduser().resolve()
            self.inputs[data_product] = (path, 0)
            return path
        ref = ProductRef.of_read_item(item, self.run_metadata.get("default_input_namespace"))
        found = queries.locate_ref(self.registry, ref)
        if found is None or found.location is None or found.root is None:
            raise FdpError(f"{ref} is not in the local registry; pull it first")
        base = local_root(found.root["root"])
        if base is None or not self.store.holds(found.root["root"]):
            raise FdpError(
                f"{ref} is stored at {found.root['root']}, outside the local data store; "
                "pull it first"
            )
        path = self.store.path(found.location["path"])
        component_id = self._component(found.object, component)
        self.inputs[data_product] = (path, component_id)
        return path

    def _component(self, obj: dict[str, Any], name: str | None) -> int:
        if not name:
            return queries.whole_object_component(self.registry, obj)
        rows = self.registry.find("object_component", {"object": obj["id"], "name": name}, limit=1)
        if not rows:
            raise FdpError(f"object {obj.get('uuid')} has no component {name!r}")
        return rows[0]["id"]

    # --------------------------------------------------------------- writing
    def write(self, data_product: str, component: str | None = None) -> Path:
        """A path to write an output to; it is registered when the session finalises.

        data_product is a write item's name, or a new name that a '*' pattern item matches
        (`results/*` takes `results/run1`, each '*' one segment): the output then gets that
        item's namespace, version, file type, description and public flag. A name no item
        names or matches is an error listing the items and patterns.

        data-pipeline-api 0.9.1 (`link_write`) differs: a name no write item names falls back
        to the first write item, and is registered under that item's name and version (with
        run_metadata's namespace and public flag, whatever the item says), so two unknown
        names claim one name and version, and a first item `results/*` registers a product
        literally named 'results/*' (which our registry refuses). Scripts written for it must
        list every output name as its own write item.
        """
        if data_product in self.outputs:
            return self.outputs[data_product].temp
        item = self._item("write", data_product)
        use = item.get("use") or {}
        namespace = use.get("namespace") or self.run_metadata.get("default_output_namespace")
        if is_glob(str(item.get("data_product"))):
            name = data_product  # a new output under a pattern item
        else:
            name = use.get("data_product") or item["data_product"]
        problem = namespace_problem(namespace)
        if problem or not isinstance(namespace, str):
            raise FdpError(f"{self.config_path}: write {data_product!r}: {problem}")
        file_type = str(item["file_type"]).lstrip(".")
        folder = str(self.store.path(f"{namespace}/{name}"))
        try:  # one system call for the usual new folder in a folder that exists
            os.mkdir(folder)
        except FileExistsError:
            pass
        except FileNotFoundError:
            os.makedirs(folder, exist_ok=True)
        temp = Path(os.path.join(folder, f"dat-{secrets.token_hex(8)}.{file_type}"))
        self.outputs[data_product] = _Output(
            name=name,
            namespace=namespace,
            version=str(use["version"]),
            file_type=file_type,
            description=item.get("description") or "",
            public=bool(item.get("public", self.run_metadata.get("public", True))),
            temp=temp,
            component=component,
        )
        return temp

    def raise_issue(
        self,
        description: str,
        severity: int = 1,
        *,
        data_product: str | None = None,
        config: bool = False,
        script: bool = False,
    ) -> None:
        """Attach an issue to an input or output, to the config, or to the script."""
        issue = _Issue(description, severity)
        if data_product:
            issue.targets.append(("product", data_product))
        if config:
            issue.targets.append(("config", None))
        if script:
            issue.targets.append(("script", None))
        self.issues.append(issue)

    # -------------------------------------------------------------- finalise
    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.finalise()
        else:
            self.discard()

    def discard(self) -> None:
        """Remove unfinished outputs after a failure; nothing is registered."""
        for out in self.outputs.values():
            with contextlib.suppress(FileNotFoundError):
                out.temp.unlink()

    def finalise(self) -> str:
        """Register outputs and the code run; returns the code run's uuid."""
        if self.finalised:
            return self.uuid
        missing = [n for n, o in self.outputs.items() if not o.temp.is_file()]
        if missing:
            raise FdpError(f"outputs never written: {', '.join(missing)}")
        hashes = {n: sha1_file(o.temp) for n, o in self.outputs.items()}
        placed: list[tuple[Path, Path]] = []
        try:
            with self._transaction(), self._provisional():
                moves = self._record(hashes)
                # Files go into place, and the run into coderuns.txt, before the records
                # commit: a crash in between leaves files nothing refers to (the next run
                # may overwrite them), never records whose files are missing.
                for temp, final in moves:
                    if final is not None:
                        os.replace(temp, final)
                        placed.append((temp, final))
                with open(self.config_dir / "coderuns.txt", "a", encoding="utf-8") as fh:
                    fh.write(self.uuid + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())
        except BaseException:
            for temp, final in reversed(placed):  # nothing was recorded: undo the moves
                with contextlib.suppress(OSError):
                    os.replace(final, temp)
            forget_roots(self.registry)
            self._namespaces.clear()
            self._file_types.clear()
            self.discard()
            raise
        for temp, final in moves:
            if final is None:
                temp.unlink(missing_ok=True)  # the same bytes were in the store already
        self.finalised = True
        return self.uuid

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        begin = getattr(self.registry, "transaction", None)
        if begin is None:
            yield
        else:
            with begin():
                yield

    @contextlib.contextmanager
    def _provisional(self) -> Iterator[None]:
        """Under a job, what is recorded is the job's, provisional until it exits 0: the
        store notes it by the job's token (over HTTP the server does the same)."""
        token = os.environ.get("FDP_LOCAL_TOKEN")
        mark = getattr(self.registry, "provisional_as", None)
        if not token or mark is None:
            yield
            return
        from fdp_tasks.store.sql import token_digest

        # under `fdp run` (FDP_JOB set) the job must still be running to record anything
        with mark(token_digest(token), required=bool(os.environ.get(JOB_ENV))):
            yield

    def _report(self, line: str) -> None:
        """Tell the job runner how far the finalise is, if it listens (FDP_PROGRESS_FD)."""
        fd = os.environ.get(PROGRESS_FD_ENV, "")
        if not fd.isdigit():
            return
        with contextlib.suppress(OSError, ValueError):
            os.write(int(fd), (line + "\n").encode("ascii"))

    def _free_target(self, out: _Output, sha1: str) -> tuple[str, str, bool]:
        """The version, path and whether the bytes still need writing, for an output: its
        own version, unless that path holds other bytes. Bytes the registry names there are
        an error; bytes it does not (a lost registry, a file put there by hand) are never
        overwritten: the output takes the next patch version whose path is free."""
        version = out.version
        while True:
            rel = product_path(out.namespace, out.name, version, out.file_type)
            target, needs_write = placement(self.registry, self.store, rel, sha1, out.public)
            final = self.store.path(target)
            if target != rel or not final.exists() or sha1_file(final) == sha1:
                return version, target, needs_write
            if self._referenced(rel):
                raise FdpError(f"{final} already exists with other content; not overwriting it")
            following = increment("PATCH", [version])
            while self._registered(out, following):
                following = increment("PATCH", [following])
            print(
                f"warning: {final} holds other bytes than {out.namespace}:{out.name}@{version} "
                f"and the registry does not name them; keeping them and writing "
                f"{out.name}@{following}",
                file=sys.stderr,
            )
            version = following

    def _registered(self, out: _Output, version: str) -> bool:
        ns = self._namespace(out.namespace)["id"]
        return bool(
            self.registry.find(
                "data_product",
                {"namespace": ns, "name": out.name, "version": version},
                limit=1,
            )
        )

    def _referenced(self, rel: str) -> bool:
        """Whether the registry points at this file (else it is left over from a crash)."""
        root = store_root_id(self.registry, self.store)
        return bool(
            self.registry.find("storage_location", {"storage_root": root, "path": rel}, limit=1)
        )

    def _namespace(self, name: str) -> dict[str, Any]:
        if name not in self._namespaces:
            self._namespaces[name] = self.registry.get_or_create("namespace", {"name": name})[0]
        return self._namespaces[name]

    def _file_type(self, extension: str) -> int:
        if extension not in self._file_types:
            self._file_types[extension] = queries.file_type_id(self.registry, extension)
        return self._file_types[extension]

    def _author(self) -> int:
        users = self.registry.find("users", {"username": LOCAL_USER}, limit=1)
        if users:
            links = self.registry.find("user_author", {"user": users[0]["id"]}, limit=1)
            if links:
                return links[0]["author"]
        return self.registry.get_or_create("author", {"name": LOCAL_USER})[0]["id"]

    def _file_object(
        self, path: Path, description: str, extension: str, authors: list[int]
    ) -> dict[str, Any]:
        rel = self.store.relative(path)
        location = local_location(self.registry, self.store, rel, sha1_file(path), keep_new=True)
        return self.registry.create(
            "object",
            {
                "description": description,
                "storage_location": location,
                "file_type": self._file_type(extension),
                "authors": authors,
            },
        )

    def _code_repo(self, authors: list[int]) -> dict[str, Any]:
        # The repository itself is the storage root and the commit the path: a location is
        # unique per (root, hash), so two repositories never share one, even uncommitted.
        repo = self.run_metadata.get("remote_repo") or ""
        commit = self.run_metadata.get("latest_commit") or "0" * 40
        if "://" not in repo:
            repo = Path(self.run_metadata.get("local_repo") or self.config_dir).resolve().as_uri()
        root, path = repo.rstrip("/") + "/", commit
        root_rec, _ = self.registry.get_or_create("storage_root", {"root": root, "local": False})
        loc, _ = self.registry.get_or_create(
            "storage_location",
            {"path": path, "hash": commit, "public": True, "storage_root": root_rec["id"]},
        )
        return self.registry.create(
            "object",
            {
                "description": "code repository of the run",
                "storage_location": loc["id"],
                "authors": authors,
            },
        )

    def _record_outputs_at_once(
        self, hashes: dict[str, str], authors: list[int]
    ) -> tuple[dict[str, int], list[tuple[Path, Path | None]]] | None:
        """The outputs' records made many at a time, where the registry can (the SQL store:
        `create_many`), so that recording costs a few statements per chunk of outputs, not
        some forty per output. The records and files are those the one-by-one path makes;
        None (nothing recorded) when that path is needed: no `create_many`, or an output
        whose path holds other bytes, which may move it to another version."""
        reg = self.registry
        if getattr(reg, "create_many", None) is None or not self.outputs:
            return None
        root = store_root_id(reg, self.store)
        held: dict[tuple[str, bool], dict[str, Any]] = {}  # (sha1, public) -> location
        for public in {out.public for out in self.outputs.values()}:
            wanted = sorted({hashes[n] for n, o in self.outputs.items() if o.public == public})
            for start in range(0, len(wanted), 500):
                filters = {"storage_root": root, "hash": wanted[start : start + 500]}
                for row in reg.find("storage_location", {**filters, "public": public}):
                    held[(row["hash"], public)] = {"id": row["id"], "path": row["path"]}
        for name, out in self.outputs.items():  # before anything is recorded
            if (hashes[name], out.public) not in held:
                rel = product_path(out.namespace, out.name, out.version, out.file_type)
                final = self.store.path(rel)
                if final.exists() and sha1_file(final) != hashes[name]:
                    return None
        # looked up (or made) before the chunks, so that no id is remembered from a rollback
        for out in self.outputs.values():
            self._namespace(out.namespace)
            self._file_type(out.file_type)
        outputs: dict[str, int] = {}
        moves: list[tuple[Path, Path | None]] = []
        names = list(self.outputs)
        try:
            with self._transaction():  # a savepoint: a chunk that fails undoes them all
                for start in range(0, len(names), RECORD_CHUNK):
                    chunk = names[start : start + RECORD_CHUNK]
                    self._record_chunk(chunk, hashes, authors, root, held, outputs, moves)
        except UniqueViolation:
            return None  # recorded meanwhile: the one-by-one path finds it
        return outputs, moves

    def _record_chunk(
        self,
        names: list[str],
        hashes: dict[str, str],
        authors: list[int],
        root: int,
        held: dict[tuple[str, bool], dict[str, Any]],
        outputs: dict[str, int],
        moves: list[tuple[Path, Path | None]],
    ) -> None:
        """Record some outputs with one `create_many` per record type, adding each one's
        component to `outputs` and its file's move to `moves`; `held` is what the
        registry, or an earlier chunk, records for each content."""
        reg = self.registry
        create_many = reg.create_many  # type: ignore[attr-defined]
        places: list[tuple[str, _Output, Path | None]] = []  # name, output, file to write
        new_locations: list[dict[str, Any]] = []
        for name in names:
            out = self.outputs[name]
            sha1, key = hashes[name], (hashes[name], out.public)
            found = held.get(key)
            if found is not None:  # bytes recorded already: their file stays their home
                written = "id" not in found or not intact(self.store, found["path"], sha1)
                places.append((name, out, self.store.path(found["path"]) if written else None))
                continue
            rel = product_path(out.namespace, out.name, out.version, out.file_type)
            row = {"path": rel, "hash": sha1, "public": out.public, "storage_root": root}
            held[key] = row
            new_locations.append(row)
            places.append((name, out, self.store.path(rel)))
        created = create_many("storage_location", new_locations)
        for row, record in zip(new_locations, created, strict=True):
            row["id"] = record["id"]
            for field_name in ("hash", "public", "storage_root"):
                del row[field_name]  # kept for later chunks: the id and path only
        objects = create_many(
            "object",
            [
                {
                    "description": out.description,
                    "storage_location": held[(hashes[name], out.public)]["id"],
                    "file_type": self._file_type(out.file_type),
                    "authors": authors,
                }
                for name, out, _ in places
            ],
        )
        create_many(
            "data_product",
            [
                {
                    "object": obj["id"],
                    "namespace": self._namespace(out.namespace)["id"],
                    "name": out.name,
                    "version": out.version,
                }
                for (_, out, _), obj in zip(places, objects, strict=True)
            ],
        )
        for (name, out, target), obj in zip(places, objects, strict=True):
            moves.append((out.temp, target))
            if out.component:
                outputs[name] = reg.get_or_create(
                    "object_component", {"object": obj["id"], "name": out.component}
                )[0]["id"]
            else:
                outputs[name] = obj["components"][0]

    def _record(self, hashes: dict[str, str]) -> list[tuple[Path, Path | None]]:
        reg = self.registry
        moves: list[tuple[Path, Path | None]] = []
        authors = [self._author()]
        config_obj = self._file_object(
            self.config_path, "working config.yaml of the run", "yaml", authors
        )
        script_obj = self._file_object(
            self.script,
            "submission script of the run",
            self.script.suffix.lstrip(".") or "sh",
            authors,
        )
        repo_obj = self._code_repo(authors)
        outputs: dict[str, int] = {}
        self._report(f"outputs {len(self.outputs)}")
        at_once = self._record_outputs_at_once(hashes, authors)
        if at_once is not None:
            outputs, moves = at_once
            self._report(f"done {len(outputs)}")
        for name, out in self.outputs.items() if at_once is None else ():
            out.version, target, needs_write = self._free_target(out, hashes[name])
            final = self.store.path(target)
            moves.append((out.temp, final if needs_write else None))
            ns = self._namespace(out.namespace)
            location = local_location(reg, self.store, target, hashes[name], out.public)
            obj = reg.create(
                "object",
                {
                    "description": out.description,
                    "storage_location": location,
                    "file_type": self._file_type(out.file_type),
                    "authors": authors,
                },
            )
            reg.create(
                "data_product",
                {
                    "object": obj["id"],
                    "namespace": ns["id"],
                    "name": out.name,
                    "version": out.version,
                },
            )
            if out.component:
                outputs[name] = reg.get_or_create(
                    "object_component", {"object": obj["id"], "name": out.component}
                )[0]["id"]
            else:
                outputs[name] = queries.whole_object_component(reg, obj)
            self._report("done 1")
        reg.create(
            "code_run",
            {
                "run_date": datetime.now(timezone.utc).isoformat(),
                "description": self.run_metadata.get("description") or "",
                "code_repo": repo_obj["id"],
                "model_config": config_obj["id"],
                "submission_script": script_obj["id"],
                "inputs": [c for _, c in self.inputs.values() if c],
                "outputs": list(outputs.values()),
                "uuid": self.uuid,
            },
        )
        for issue in self.issues:
            components = []
            for kind, target in issue.targets:
                if kind == "product":
                    if target in outputs:
                        components.append(outputs[target])
                    elif target in self.inputs:
                        components.append(self.inputs[target][1])
                    else:
                        raise FdpError(
                            f"issue names {target!r}, which this run neither read nor wrote"
                        )
                else:
                    obj = config_obj if kind == "config" else script_obj
                    components.append(queries.whole_object_component(reg, obj))
            reg.create(
                "issue",
                {
                    "severity": issue.severity,
                    "description": issue.description,
                    "component_issues": components,
                },
            )
        return moves

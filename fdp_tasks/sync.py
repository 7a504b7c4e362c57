"""Moving data products and their provenance between the local registry and a remote.

Records are matched by natural keys from the schema (unique keys, or the uuid that every
object and code run carries), so a rerun after any failure finds what is already there and
creates nothing twice. Ids are translated record by record; no URL of one registry ever
lands in another.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fdp_tasks.datastore import DataStore, product_path
from fdp_tasks.errors import FdpError, IntegrityError, OutOfSync
from fdp_tasks.locations import intact, local_location, placement
from fdp_tasks.registry import queries
from fdp_tasks.registry.base import Record, Registry, RegistryError, UniqueViolation
from fdp_tasks.registry.cache import CachedRegistry
from fdp_tasks.registry.schema import RegistrySchema, load_schema
from fdp_tasks.remotes.base import Remote

log = logging.getLogger(__name__)

Relocate = Callable[[Record], int | None]


class Copier:
    """Copies records from `src` into `dst`, following foreign keys first (dependency order)."""

    def __init__(
        self,
        src: Registry,
        dst: Registry,
        relocate: Relocate | None = None,
        schema: RegistrySchema | None = None,
    ):
        self.src = src
        self.dst = dst
        self.schema = schema or load_schema()
        self.relocate = relocate
        self.ids: dict[tuple[str, int], int] = {}
        self.whole_objects: dict[int, int] = {}  # source object id -> its new whole_object

    def copy(self, type_name: str, src_id: int) -> int:
        key = (type_name, src_id)
        if key in self.ids:
            return self.ids[key]
        if type_name == "storage_location" and self.relocate:
            moved = self.relocate(self.src.get(type_name, src_id))
            if moved is not None:
                self.ids[key] = moved
                return moved
        record = self.src.get(type_name, src_id)
        rtype = self.schema[type_name]
        if self._known(key, record):
            return self.ids[key]
        data: dict[str, Any] = {}
        for field in rtype.fields.values():
            value = record.get(field.name)
            if field.is_fk:
                data[field.name] = None if value is None else self.copy(field.to, value)
            elif field.is_m2m:
                data[field.name] = [self.copy(field.to, v) for v in value or []]
            elif value is not None:
                data[field.name] = value
        if self._known(key, record):  # copying what it points to may have mapped it
            return self.ids[key]
        try:
            created, is_new = self.dst.get_or_create(type_name, data)
        except UniqueViolation as exc:
            raise OutOfSync(
                f"{type_name} clashes with a different record on the remote: {exc}"
            ) from None
        self._check_same(type_name, data, created)
        self.ids[key] = created["id"]
        if is_new and rtype.whole_object_component and len(created.get("components") or []) == 1:
            # the registry made the object's whole_object component with it
            self.whole_objects[src_id] = created["components"][0]
        return created["id"]

    def _known(self, key: tuple[str, int], record: Record) -> bool:
        """Whether the destination id is known without asking the destination."""
        if key not in self.ids and record.get("whole_object"):
            # a new object's whole_object component: creating it again could only answer 409
            if record.get("object") in self.whole_objects:
                self.ids[key] = self.whole_objects[record["object"]]
        return key in self.ids

    def _check_same(self, type_name: str, wanted: dict[str, Any], got: Record) -> None:
        """An existing data product must point at an object holding the same file."""
        if type_name != "data_product" or got["object"] == wanted["object"]:
            return
        mine = _object_hash(self.dst, wanted["object"])
        theirs = _object_hash(self.dst, got["object"])
        if mine != theirs:
            raise OutOfSync.different_content(f"{wanted['name']}@{wanted['version']}", theirs, mine)


def _object_hash(registry: Registry, object_id: int) -> str | None:
    obj = registry.get("object", object_id)
    if not obj.get("storage_location"):
        return None
    return registry.get("storage_location", obj["storage_location"])["hash"]


# ------------------------------------------------------------------------- pull
class Puller:
    """Pulls data products from one remote, with the code runs that made them (records only).

    One Puller serves a whole command, so the records that many products share (a code run
    and its config, script and sibling outputs) are copied once, not once per product.
    """

    def __init__(self, remote: Remote, local: Registry, store: DataStore):
        self.remote = remote
        self.local = local
        self.store = store
        self.moved: dict[int, int] = {}  # remote storage_location id -> the local one
        self.copier = Copier(remote.registry, local, lambda loc: self.moved.get(loc["id"]))
        self.runs_copied: set[int] = set()
        self.outputs_copied: set[int] = set()  # remote components those runs wrote
        self.provenance = True  # until the remote shows it cannot answer

    def _pull_provenance(self, obj: Record) -> None:
        """Copy the records of the code run that made `obj`, once per run."""
        components = set(obj.get("components") or [])
        if not self.provenance or components <= self.outputs_copied:
            return  # no way to ask, or its run came with a sibling product
        try:
            runs = runs_that_made(self.remote.registry, obj)
        except ProvenanceUnavailable as exc:
            log.warning("pulling files without their code runs from %s: %s", self.remote.name, exc)
            self.provenance = False
            return
        for run in runs:
            if run["id"] not in self.runs_copied:
                self.copier.copy("code_run", run["id"])
                self.runs_copied.add(run["id"])
                self.outputs_copied.update(run.get("outputs") or [])

    def pull(self, ref: queries.ProductRef, product: Record | None = None) -> queries.Located:
        """Fetch one data product's file and records into the local registry.

        `product` is the remote's record when the caller already listed it.
        """
        registry = self.remote.registry
        found = queries.locate(registry, product) if product else queries.locate_ref(registry, ref)
        if found is None:
            raise FdpError(f"{ref} is not in remote {self.remote.name} ({self.remote.url})")
        if found.location is None or found.root is None or not found.hash:
            raise FdpError(f"{ref} has no file with a SHA-1 on remote {self.remote.name}")
        mine = queries.find_product(
            self.local, found.namespace["name"], ref.name, found.product["version"]
        )
        if mine is not None:
            my_hash = queries.locate(self.local, mine).hash
            if my_hash != found.hash:
                raise OutOfSync(
                    f"{ref} is in the local registry with other content (SHA-1 {my_hash}) than "
                    f"on remote {self.remote.name} ({found.hash}); nothing was changed. Keep "
                    "yours as a new version, or delete it to take the remote's"
                )
        public = found.location.get("public", True)
        rel, needs_download = placement(
            self.local,
            self.store,
            product_path(
                found.namespace["name"],
                ref.name,
                found.product["version"],
                _extension(registry, found),
            ),
            found.hash,
            public,
        )
        if needs_download and not intact(self.store, rel, found.hash):
            self.store.put_stream(
                rel,
                self.remote.download(found.root["root"], found.location["path"]),
                expected_sha1=found.hash,
            )
        here = local_location(self.local, self.store, rel, found.hash, public)
        self.moved[found.location["id"]] = here
        self.copier.ids[("storage_location", found.location["id"])] = here
        self.copier.copy("data_product", found.product["id"])
        mine = self.local.get("object", self.copier.ids[("object", found.object["id"])])
        if mine.get("storage_location") != here:
            # copied before as another product's provenance, with the remote's location
            self.local.patch("object", mine["id"], {"storage_location": here})
        for ext_id in found.product.get("external_object") or []:
            self.copier.copy("external_object", ext_id)
        self._pull_provenance(found.object)
        return queries.locate(
            self.local,
            self.local.get("data_product", self.copier.ids[("data_product", found.product["id"])]),
        )


class ProvenanceUnavailable(Exception):
    """The remote cannot say which code run made an object (it refuses or ignores the filter)."""


def runs_that_made(registry: Registry, obj: Record) -> list[Record]:
    """The code runs with one of the object's components among their outputs.

    A registry that refuses the filter, or ignores it (and so answers with runs that did not
    make the object), raises ProvenanceUnavailable, so the caller stops asking instead of
    paging through every run on each product.
    """
    components = set(obj.get("components") or [])
    runs: dict[int, Record] = {}
    for component in components:
        try:
            rows = registry.find("code_run", {"outputs": component})
        except RegistryError as exc:
            raise ProvenanceUnavailable(f"the registry refused a code_run filter: {exc}") from exc
        for row in rows:
            if component not in (row.get("outputs") or []):
                raise ProvenanceUnavailable("the registry ignores code_run filters on outputs")
            runs[row["id"]] = row
    return list(runs.values())


def _extension(registry: Registry, found: queries.Located) -> str:
    if found.object.get("file_type"):
        return registry.get("file_type", found.object["file_type"])["extension"]
    return Path(found.location["path"]).suffix.lstrip(".") if found.location else ""


# ------------------------------------------------------------------------- push
class Pusher:
    """Pushes data products with their provenance closure: the code runs that made them,
    those runs' config, script and inputs, and so on back to registered sources."""

    def __init__(
        self,
        local: Registry,
        store: DataStore,
        remote: Remote,
        lookup: Callable[[queries.ProductRef], Record | None] | None = None,
    ):
        """`lookup` finds a data product on the remote (default: one query per product)."""
        self.local = CachedRegistry(local)  # nothing writes to it while pushing
        self.lookup = lookup or (
            lambda ref: queries.find_product(remote.registry, ref.namespace, ref.name, ref.version)
        )
        self.store = store
        self.remote = remote
        self.copier = Copier(self.local, remote.registry, self._relocate)
        self.done_products: set[int] = set()
        self.done_runs: set[int] = set()
        self.active: set[int] = set()
        self.active_runs: set[int] = set()
        self.roots: dict[str, int] = {}
        self.uploaded = 0

    def _relocate(self, location: Record) -> int | None:
        root = self.local.get("storage_root", location["storage_root"])
        if not self.store.holds(root["root"]):
            return None  # not a file of ours (a code repo, an original source): copy the record
        if not location.get("public", True):
            # as in the reference: only public files leave the machine; the record says where
            log.info("not uploading %s: it is not public", location["path"])
            return None
        rel = location["path"]
        if not self.store.exists(rel):
            raise FdpError(
                f"cannot push {rel}: it is missing from the data store {self.store.root}"
            )
        sha1 = self.store.hash(rel)
        if sha1 != location["hash"]:
            raise IntegrityError(
                f"{self.store.path(rel)} has SHA-1 {sha1} but the registry recorded "
                f"{location['hash']}; not pushing a modified file"
            )
        remote_root, remote_path = self.remote.upload(self.store.path(rel), sha1, rel)
        self.uploaded += 1
        dst = self.remote.registry
        if remote_root not in self.roots:
            root_rec, _ = dst.get_or_create("storage_root", {"root": remote_root, "local": False})
            self.roots[remote_root] = root_rec["id"]
        loc, _ = dst.get_or_create(
            "storage_location",
            {
                "path": remote_path,
                "hash": sha1,
                "public": location.get("public", True),
                "storage_root": self.roots[remote_root],
            },
        )
        return loc["id"]

    def push_product(self, product_id: int) -> list[tuple[queries.ProductRef, Record]]:
        """Push one data product after everything it came from.

        The data product record is created last, so its presence on the remote means the
        whole closure is there; an interrupted push is finished by the next one. Returns
        every data product this call created or found on the remote (siblings included).
        """
        if product_id in self.done_products or product_id in self.active:
            return []
        if not self.active and not self.active_runs:
            self.preflight(product_id)
        self.active.add(product_id)
        try:
            pushed = []
            product = self.local.get("data_product", product_id)
            obj = self.local.get("object", product["object"])
            self.copier.copy("object", obj["id"])
            for component in obj.get("components") or []:
                for run in self.local.find("code_run", {"outputs": component}):
                    pushed += self.push_run(run["id"])
            theirs = self.copier.copy("data_product", product_id)
            for ext_id in product.get("external_object") or []:
                self.copier.copy("external_object", ext_id)
            namespace = self.local.get("namespace", product["namespace"])["name"]
            ref = queries.ProductRef(namespace, product["name"], product["version"])
            pushed.append((ref, self.remote.registry.get("data_product", theirs)))
            self.done_products.add(product_id)
            return pushed
        finally:
            self.active.discard(product_id)

    def push_run(self, run_id: int) -> list[tuple[queries.ProductRef, Record]]:
        """Push a code run: its inputs first, then the run, then its other outputs."""
        if run_id in self.done_runs or run_id in self.active_runs:
            return []
        self.active_runs.add(run_id)
        try:
            pushed = []
            run = self.local.get("code_run", run_id)
            for product_id in self._products(run.get("inputs") or []):
                pushed += self.push_product(product_id)
            self.copier.copy("code_run", run_id)
            for product_id in self._products(run.get("outputs") or []):
                pushed += self.push_product(product_id)
            self.done_runs.add(run_id)
            return pushed
        finally:
            self.active_runs.discard(run_id)

    def closure(self, product_id: int) -> list[int]:
        """Every data product a push of this one carries: its runs' inputs and outputs, and
        theirs, back to the registered sources."""
        seen: dict[int, None] = {}  # insertion-ordered set
        runs: set[int] = set()
        todo = [product_id]
        while todo:
            current = todo.pop()
            if current in seen:
                continue
            seen[current] = None
            obj = self.local.get("object", self.local.get("data_product", current)["object"])
            for component in obj.get("components") or []:
                for run in self.local.find("code_run", {"outputs": component}):
                    if run["id"] not in runs:
                        runs.add(run["id"])
                        todo += self._products(run.get("inputs") or [])
                        todo += self._products(run.get("outputs") or [])
        return list(seen)

    def preflight(self, product_id: int) -> None:
        """Refuse before anything is sent if the remote holds any product of the closure
        with other content: a conflict found halfway would leave records behind."""
        for pid in self.closure(product_id):
            if pid in self.done_products:
                continue
            mine = queries.locate(self.local, self.local.get("data_product", pid))
            theirs = self.lookup(mine.ref)
            if theirs is None:
                continue
            their_hash = queries.locate(self.remote.registry, theirs).hash
            if their_hash != mine.hash:
                raise OutOfSync.different_content(str(mine.ref), their_hash, mine.hash)

    def _products(self, component_ids: list[int]) -> list[int]:
        out = []
        for component_id in component_ids:
            component = self.local.get("object_component", component_id)
            out += self.local.get("object", component["object"]).get("data_products") or []
        return out

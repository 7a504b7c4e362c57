"""Moving data products and their provenance between the local registry and a remote.

Records are matched by natural keys from the schema (unique keys, or the uuid that every
object and code run carries), so a rerun after any failure finds what is already there and
creates nothing twice. Ids are translated record by record; no URL of one registry ever
lands in another.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fdp_tasks.catalog.locations import (
    forget_roots,
    intact,
    placement,
    recorded_many,
    settle,
    store_root_id,
)
from fdp_tasks.datastore import DataStore, product_path
from fdp_tasks.errors import FdpError, HashMismatch, OutOfSync
from fdp_tasks.names import namespace_problem, product_name_problem
from fdp_tasks.provenance.walk import Lineage, ProvenanceUnavailable
from fdp_tasks.refs import ProductRef
from fdp_tasks.remotes.base import Remote
from fdp_tasks.stat_cache import StatCache
from fdp_tasks.storage.base import BUNDLE_FILE_BYTES
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record, Registry, UniqueViolation
from fdp_tasks.store.cache import CachedRegistry, all_kept, forget, forget_ids
from fdp_tasks.store.schema import RegistrySchema, load_schema

log = logging.getLogger(__name__)

Relocate = Callable[[Record], int | None]
# Data products whose records a push sends together (a few requests per kind of record),
# and whose records a pull writes in one transaction.
PUSH_BATCH = 200
PULL_BATCH = 200
CLOSURES_KEPT = 16  # closures a push keeps, with their conflicts (see Pusher._closures)
BUNDLE_FILES = 200  # small files sent or asked for in one request, where the remote can
# A bundle sent holds this much at most: under the API's body limit of our server (4 MiB by
# default; one set lower answers 413, and files then go one by one)
BUNDLE_BYTES = 3 * 1024 * 1024
# The kinds of record there are one or more of per data product.
PER_PRODUCT = ("data_product", "object", "object_component", "storage_location")


def counting_into(add: Callable[[int], None] | None) -> Callable[[int], None] | None:
    """A storage's progress callback (bytes of one transfer so far) that adds what is new
    to `add` (a bar's byte count, shared by every transfer). A retry that starts over
    adds nothing until it has passed what was counted."""
    if add is None:
        return None
    counted = 0

    def moved(so_far: int) -> None:
        nonlocal counted
        if so_far > counted:
            add(so_far - counted)
            counted = so_far

    return moved


def in_parallel(
    work: Callable[[Any], object], items: Iterable[Any], jobs: int, done: Callable[[], None]
) -> dict[Any, FdpError | OSError]:
    """`work(item)` for every item on `jobs` threads; `done()` after each. Returns why items
    failed, by item: one failure never stops the others (a rerun redoes just those)."""
    failed: dict[Any, FdpError | OSError] = {}
    lock = threading.Lock()

    def one(item: Any) -> None:
        try:
            work(item)
        except (FdpError, OSError) as exc:
            with lock:
                failed[item] = exc
        finally:
            done()

    todo = list(items)
    if jobs <= 1 or len(todo) <= 1:
        for item in todo:
            one(item)
        return failed
    with ThreadPoolExecutor(max_workers=jobs, thread_name_prefix="fdp-transfer") as pool:
        list(pool.map(one, todo))
    return failed


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
        if self._known(key, record):
            return self.ids[key]
        if type_name == "file_type":
            # one file type per extension in a registry, whatever each side calls it
            self.ids[key] = queries.file_type_id(self.dst, record["extension"], record["name"])
            return self.ids[key]
        data = self.translate(type_name, record)
        if self._known(key, record):  # copying what it points to may have mapped it
            return self.ids[key]
        try:
            created, is_new = self.dst.get_or_create(type_name, data)
        except UniqueViolation as exc:
            raise OutOfSync(
                f"{type_name} clashes with a different record on the remote: {exc}"
            ) from None
        self._copied(type_name, record, data, created, is_new)
        return created["id"]

    def copy_many(self, type_name: str, src_ids: Iterable[int]) -> list[int]:
        """`copy` for many records of one type: what they point at first, a type at a time,
        then the records themselves in one batch of the destination's (`get_or_create_many`:
        a few hundred per request or statement), so N records cost a few round trips rather
        than N. Returns their ids in the destination, in the order given."""
        wanted = list(dict.fromkeys(src_ids))
        todo = [i for i in wanted if (type_name, i) not in self.ids]
        if (
            len(todo) > 1
            and type_name != "file_type"
            and not (type_name == "storage_location" and self.relocate)
        ):
            self._copy_batch(type_name, todo)
        return [self.copy(type_name, i) for i in wanted]  # what the batch left: one by one

    def _copy_batch(self, type_name: str, src_ids: list[int]) -> None:
        records = self.src.get_many(type_name, src_ids)
        todo = [r for r in records.values() if not self._known((type_name, r["id"]), r)]
        rtype = self.schema[type_name]
        for field in rtype.fields.values():  # the records they point at, a type at a time
            if field.is_fk:
                targets = [r[field.name] for r in todo if r.get(field.name) is not None]
            elif field.is_m2m:
                targets = [t for r in todo for t in r.get(field.name) or []]
            else:
                continue
            if targets:
                self.copy_many(field.target, targets)
        todo = [r for r in todo if not self._known((type_name, r["id"]), r)]
        if not todo:
            return
        rows = [self.translate(type_name, r) for r in todo]  # all known now: nothing is asked
        try:
            made = self.dst.get_or_create_many(type_name, rows)
        except UniqueViolation as exc:
            raise OutOfSync(
                f"{type_name} clashes with a different record on the remote: {exc}"
            ) from None
        for record, data, (created, is_new) in zip(todo, rows, made, strict=True):
            self._copied(type_name, record, data, created, is_new)

    def _copied(
        self, type_name: str, record: Record, data: dict[str, Any], created: Record, is_new: bool
    ) -> None:
        """Note a record the destination created or found for the source's `record`."""
        self._check_same(type_name, record, data, created)
        if type_name == "data_product" and created["object"] != data["object"]:
            # the same content is there under this name already (another project registered
            # the same source, or pushed it first): what links to ours links to that one
            self._adopt(record["object"], created["object"])
        self.ids[(type_name, record["id"])] = created["id"]
        whole = self.schema[type_name].whole_object_component
        if is_new and whole and len(created.get("components") or []) == 1:
            # the registry made the object's whole_object component with it
            self.whole_objects[record["id"]] = created["components"][0]

    def translate(
        self, type_name: str, record: Record, skip: tuple[str, ...] = ()
    ) -> dict[str, Any]:
        """The fields of a source record with its references copied and renumbered for the
        destination; fields in `skip` are left out for the caller to fill in."""
        data: dict[str, Any] = {}
        for field in self.schema[type_name].fields.values():
            if field.name in skip:
                continue
            value = record.get(field.name)
            if field.is_fk:
                data[field.name] = None if value is None else self.copy(field.target, value)
            elif field.is_m2m:
                data[field.name] = [self.copy(field.target, v) for v in value or []]
            elif value is not None:
                data[field.name] = value
        return data

    def _known(self, key: tuple[str, int], record: Record) -> bool:
        """Whether the destination id is known without asking the destination."""
        # a new object's whole_object component: creating it again could only answer 409
        if (
            key not in self.ids
            and record.get("whole_object")
            and record.get("object") in self.whole_objects
        ):
            self.ids[key] = self.whole_objects[record["object"]]
        return key in self.ids

    def _adopt(self, src_object: int, dst_object: int) -> None:
        """Let the destination's `dst_object` stand for the source's `src_object`: the
        source object's components are copied again, onto it, when next met, so a code run
        that read the product names the product's own object."""
        self.ids[("object", src_object)] = dst_object
        self.whole_objects.pop(src_object, None)
        for component in self.src.get("object", src_object).get("components") or []:
            self.ids.pop(("object_component", component), None)

    def _check_same(
        self, type_name: str, record: Record, wanted: dict[str, Any], got: Record
    ) -> None:
        """An existing data product must point at an object holding the same file (ours
        read from the source, where it is this copy's own)."""
        if type_name != "data_product" or got["object"] == wanted["object"]:
            return
        mine = _object_hash(self.src, record["object"])
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

    A pull copies what was asked: the products, and for each the code run that made it with
    the run's config, script, code repository and inputs (records; input files stay on the
    remote). The run's other outputs are not copied: the local code run lists the outputs
    pulled so far, and a later pull of more of them adds them to it. So pulling 10 products of
    a run that wrote 1,000 costs the same as pulling 10 of a run that wrote 10.

    One Puller serves a whole command, so the records that many products share (a code run
    and its config, script and inputs) are looked up and copied once, not once per product.
    """

    def __init__(
        self,
        remote: Remote,
        local: Registry,
        store: DataStore,
        hashes: StatCache | None = None,
    ):
        """`hashes`: the SHA-1s of data-store files by their stat; a file this pull wrote is
        told to it, so that the checks after its download do not read it again."""
        self.remote = remote
        self.local = local
        self.store = store
        self.hashes = hashes
        self.moved: dict[int, int] = {}  # remote storage_location id -> the local one
        self.copier = Copier(remote.registry, local, lambda loc: self.moved.get(loc["id"]))
        # the remote's code runs, each asked for once (by the first of its outputs met)
        self.lineage = Lineage(remote.registry, strict=True)
        self.local_outputs: dict[int, list[int]] = {}  # local code run -> its outputs
        self.settled: dict[tuple[str, int], Record] = {}  # local namespaces and roots
        self.skipped: set[str] = set()  # non-canonical names already warned about
        self.provenance = True  # until the remote shows it cannot answer
        # what `download_plan` found for each product, taken by its pull (same process)
        self.planned: dict[ProductRef, tuple[queries.Located, FileToFetch]] = {}
        # local data products by (namespace, name, version), looked up in batches
        self.local_products: dict[queries.ProductKey, Record | None] = {}
        # the local storage locations of a page's files by SHA-1, then public, read in batches
        self.local_locations: dict[str, dict[bool, Record]] = {}

    def _skip(self, what: str, problem: str) -> None:
        """Warn once per name, then go on with the rest."""
        if what not in self.skipped:
            self.skipped.add(what)
            log.warning("skipping %s on remote %s: %s", what, self.remote.name, problem)

    def _made(self, obj: Record) -> dict[int, list[int]]:
        """The remote's runs that made `obj`, each with the local copies of the output
        components of `obj` it made (copied here). The remote is asked once per run; a
        remote that cannot say leaves the files without their runs, said once."""
        if not self.provenance:
            return {}
        components = list(obj.get("components") or [])
        try:
            self.lineage.runs_that_made(components)
        except ProvenanceUnavailable as exc:
            log.warning("pulling files without their code runs from %s: %s", self.remote.name, exc)
            self.provenance = False
            return {}
        outputs: dict[int, list[int]] = {}
        for component in components:
            for run in self.lineage.made_by(component):
                outputs.setdefault(run["id"], []).append(self._output(component, obj))
        return outputs

    def _output(self, component_id: int, obj: Record) -> int:
        """The local copy of an output component of a pulled object."""
        key = ("object_component", component_id)
        fresh = self.copier.whole_objects.get(obj["id"])
        if key not in self.copier.ids and fresh is not None and len(obj["components"]) == 1:
            # an object's only component is the whole_object one its registry made with it,
            # and so is the one the local registry just made: no need to fetch the record
            self.copier.ids[key] = fresh
        return self.copier.copy("object_component", component_id)

    def _record_run(self, run: Record, outputs: list[int]) -> None:
        """Copy the code run with these outputs, or add them to the local copy of it."""
        key = ("code_run", run["id"])
        if key not in self.copier.ids:
            data = self.copier.translate("code_run", run, skip=("inputs", "outputs"))
            data["inputs"] = [self._input(c) for c in run.get("inputs") or []]
            data["outputs"] = outputs
            mine, is_new = self.local.get_or_create("code_run", data)
            self.copier.ids[key] = mine["id"]
            self.local_outputs[mine["id"]] = list(mine.get("outputs") or [])
            if is_new:
                return
        run_id = self.copier.ids[key]
        known = self.local_outputs[run_id]
        have = set(known)
        missing = [c for c in dict.fromkeys(outputs) if c not in have]
        if missing:
            known += missing
            add = getattr(self.local, "add_links", None)
            if add is not None:  # the SQL store: only the new links are written
                add("code_run", run_id, "outputs", missing)
            else:
                self.local.patch("code_run", run_id, {"outputs": list(known)})

    def _input(self, component_id: int) -> int:
        """The local copy of an input component, with the data product records it belongs to.

        An input that is here already (registered or pulled with the same content) is linked
        as it is; one that is not comes as records only, pointing at the remote's file, with
        the external object it was registered from.
        """
        key = ("object_component", component_id)
        if key in self.copier.ids:
            return self.copier.ids[key]
        src = self.remote.registry
        obj = src.get("object", src.get("object_component", component_id)["object"])
        for product_id in obj.get("data_products") or []:
            product = src.get("data_product", product_id)
            namespace = src.get("namespace", product["namespace"])["name"]
            problem = name_problem(namespace, product["name"])
            if problem:
                self._skip(f"{namespace}:{product['name']}@{product['version']}", problem)
                continue
            ref = ProductRef.of(namespace, product["name"], product["version"])
            mine = queries.find_product(self.local, ref.namespace, ref.name, ref.version_text)
            if mine is None:
                self.copier.copy("data_product", product_id)
                # what the input was registered from (a DOI, say), as for a pulled product
                for ext_id in product.get("external_object") or []:
                    self.copier.copy("external_object", ext_id)
            elif queries.locate(self.local, mine).hash == _object_hash(src, obj["id"]):
                self.copier.ids.setdefault(("object", obj["id"]), mine["object"])
                self.copier.ids[("data_product", product_id)] = mine["id"]
            else:
                log.warning(
                    "a run on remote %s read %s, which the local registry holds with other "
                    "content; its record is not linked to the run",
                    self.remote.name,
                    ref,
                )
        return self.copier.copy("object_component", component_id)

    def download(
        self,
        wanted: Iterable[tuple[ProductRef, Record | None]],
        jobs: int,
        keep: bool = False,
        on_bytes: Callable[[int], None] | None = None,
        on_file: Callable[[], None] = lambda: None,
    ) -> dict[FileToFetch, FdpError | OSError]:
        """Download the files a pull of these products still needs, each once, a page of
        products for each of `jobs` threads at a time (planned, then fetched); returns why
        files failed. Why a product cannot be pulled is said by its own pull. `keep`:
        remember each product's plan for its pull in this process, which then asks the
        remote nothing more (for products read one item at a time); without it a pull
        plans its pages again, and memory holds a few pages, however many products."""
        failed: dict[FileToFetch, FdpError | OSError] = {}
        size = PULL_BATCH * max(1, jobs)  # a bundle of files for each thread
        rest = iter(wanted)
        while page := list(itertools.islice(rest, size)):
            files: dict[str, FileToFetch] = {}
            for ref, where in self._planned_page(page):
                if isinstance(where, FdpError):
                    continue
                found, file, needs_download = where
                if keep:
                    self.planned[ref] = (_kept(found), file)
                if needs_download:
                    files.setdefault(file.rel, file)
            self._forget_plan()
            failed.update(self._download_files(list(files.values()), jobs, on_bytes, on_file))
        return failed

    def _planned_page(
        self, page: Sequence[tuple[ProductRef, Record | None]]
    ) -> Iterator[tuple[ProductRef, tuple[queries.Located, FileToFetch, bool] | FdpError]]:
        """`_where` for a page of products, or why each cannot be pulled, after reading the
        remote's objects, locations and roots and the local registry's products of the page
        in a few batches (kept until `_forget_plan`)."""
        registry = self.remote.registry
        self.local_locations = {}  # a page's own: a location it does not know is asked for
        with contextlib.suppress(FdpError):  # what is missing, each product's look-up says
            located = queries.locate_many(registry, [p for _, p in page if p is not None])
            hashes = [found.hash for found in located if found is not None and found.hash]
            self.local_locations = recorded_many(self.local, self.store, hashes)
        self.local_products.update(queries.find_products(self.local, [ref for ref, _ in page]))
        for ref, product in page:
            try:
                yield ref, self._where(ref, product)
            except FdpError as exc:
                yield ref, exc

    def _forget_plan(self) -> None:
        """Drop what `_planned_page` read: a pull holds the records of one page."""
        self._forget_local_lookups()
        forget(self.remote.registry, PER_PRODUCT)
        self.lineage.forget(PER_PRODUCT)

    def _forget_local_lookups(self) -> None:
        """Drop the local products and locations a plan read in batches: recording a page
        changes them, and a later page reads its own."""
        self.local_products.clear()
        self.local_locations.clear()

    def _local_product(self, namespace: str, name: str, version: str) -> Record | None:
        key = (namespace, name, version)
        if key in self.local_products:
            return self.local_products[key]
        return queries.find_product(self.local, namespace, name, version)

    def _download_files(
        self,
        files: list[FileToFetch],
        jobs: int,
        on_bytes: Callable[[int], None] | None = None,
        on_file: Callable[[], None] = lambda: None,
    ) -> dict[FileToFetch, FdpError | OSError]:
        """Download files into the data store on `jobs` threads, each checked against its
        SHA-1 and renamed into place only when whole; returns why files failed. Records
        are copied afterwards, by `pull_many`, which finds the files in place. Small files come
        a bundle of BUNDLE_FILES at a time where the remote sends them so (our server),
        the rest one by one."""
        todo = [f for f in files if not intact(self.store, f.rel, f.sha1, hashes=self.hashes)]
        for _ in range(len(files) - len(todo)):
            on_file()  # in place already: read once, here
        placed = self._fetch_bundles(todo, jobs, on_bytes, on_file)
        rest = [f for f in todo if f.rel not in placed]
        return in_parallel(lambda f: self._fetch(f, counting_into(on_bytes)), rest, jobs, on_file)

    def _fetch_bundles(
        self,
        files: list[FileToFetch],
        jobs: int,
        on_bytes: Callable[[int], None] | None,
        on_file: Callable[[], None],
    ) -> set[str]:
        """What `download_small` brought, each file written whole and checked against its
        SHA-1 (a file that is not what was asked for is left to its own download, which
        says why); returns the data-store paths placed."""
        placed: set[str] = set()
        lock = threading.Lock()

        def one(group: list[FileToFetch]) -> None:
            by_key: dict[tuple[str, str], list[FileToFetch]] = {}
            for file in group:
                by_key.setdefault((file.root, file.path), []).append(file)
            for root, path, data in self.remote.download_small(list(by_key)):
                for file in by_key.get((root, path), []):
                    try:
                        self.store.put_stream(file.rel, [data], expected_sha1=file.sha1)
                    except (FdpError, OSError) as exc:
                        log.debug("%s from a bundle: %s", file.rel, exc)
                        continue
                    self._wrote(file)
                    with lock:
                        placed.add(file.rel)
                    if on_bytes is not None:
                        on_bytes(len(data))
                    on_file()

        groups = [files[i : i + BUNDLE_FILES] for i in range(0, len(files), BUNDLE_FILES)]
        failed = in_parallel(lambda i: one(groups[i]), range(len(groups)), jobs, lambda: None)
        for why in failed.values():  # the files it did not bring come one by one
            log.debug("a bundle of files: %s", why)
        return placed

    def _fetch(self, file: FileToFetch, progress: Callable[[int], None] | None = None) -> None:
        if intact(self.store, file.rel, file.sha1, hashes=self.hashes):
            return
        # a download killed before the end continues from its part file, not from zero
        self.store.put_resumable(
            file.rel,
            lambda start: self.remote.download(file.root, file.path, start),
            expected_sha1=file.sha1,
            progress=progress,
        )
        self._wrote(file)

    def _wrote(self, file: FileToFetch) -> None:
        """A file in place with the bytes of its SHA-1 (checked as they were written)."""
        if self.hashes is not None:
            self.hashes.wrote(self.store.where(file.rel), file.sha1)

    def _where(
        self, ref: ProductRef, product: Record | None
    ) -> tuple[queries.Located, FileToFetch, bool]:
        """A remote product, the data-store path its file goes to and whether it still needs
        fetching, or why it cannot be pulled (nothing is changed)."""
        problem = name_problem(ref.namespace, product["name"] if product else ref.name)
        if problem:
            raise NonCanonicalName(f"skipping {ref} on remote {self.remote.name}: {problem}")
        registry = self.remote.registry
        found = queries.locate(registry, product) if product else queries.locate_ref(registry, ref)
        if found is None:
            raise FdpError(f"{ref} is not in remote {self.remote.name} ({self.remote.url})")
        if found.location is None or found.root is None or not found.hash:
            raise FdpError(f"{ref} has no file with a SHA-1 on remote {self.remote.name}")
        mine = self._local_product(found.namespace["name"], ref.name, found.product["version"])
        if mine is not None:
            my_hash = queries.locate(self.local, mine).hash
            if my_hash != found.hash:
                raise OutOfSync(
                    f"{ref} is in the local registry with other content (SHA-1 {my_hash}) than "
                    f"on remote {self.remote.name} ({found.hash}); nothing was changed. Keep "
                    "yours as a new version, or delete it to take the remote's"
                )
        public = found.location.get("public", True)
        own = product_path(
            found.namespace["name"], ref.name, found.product["version"], _extension(registry, found)
        )
        rel, needs_download = placement(
            self.local, self.store, own, found.hash, public, self.local_locations.get(found.hash)
        )
        file = FileToFetch(
            str(ref),
            rel,
            found.root["root"],
            found.location["path"],
            found.hash,
            public,
            found.location["id"],
            own,
        )
        return found, file, needs_download

    def pull(self, ref: ProductRef, product: Record | None = None) -> queries.Located:
        """Fetch one data product's file and records into the local registry.

        `product` is the remote's record when the caller already listed it. A name that is
        not canonical raises NonCanonicalName before anything is copied: a caller pulling
        what a glob listed warns and goes on with the rest. A file that `download`
        put in place already is not fetched again.
        """
        found, file, needs_download = self._where(ref, product)
        if needs_download:
            self._fetch(file)
        self._record([(found, file)])
        product_id = self.copier.ids[("data_product", found.product["id"])]
        product = self.local.get("data_product", product_id)
        mine = self.local.get("object", product["object"])
        location = self.local.get("storage_location", mine["storage_location"])
        return queries.Located(
            product,
            self._settled("namespace", product["namespace"]),
            mine,
            location,
            self._settled("storage_root", location["storage_root"]),
        )

    def pull_many(
        self, wanted: Iterable[tuple[ProductRef, Record]]
    ) -> Iterator[tuple[ProductRef, str | NonCanonicalName]]:
        """`pull` for many listed products, their records written a page at a time (each
        kind of record in one batch, in one transaction): yields each product with the
        SHA-1 of its file, or the NonCanonicalName that skipped it. Another error stops
        the pull there; the pages before it are recorded. Products `download` kept the plan
        of take it; the others are planned a page at a time here."""
        rest = iter(wanted)
        while batch := list(itertools.islice(rest, PULL_BATCH)):
            page: list[tuple[queries.Located, FileToFetch]] = []
            fresh = [(ref, product) for ref, product in batch if ref not in self.planned]
            planned = dict(self._planned_page(fresh)) if fresh else {}
            for ref, _ in batch:
                if ref in self.planned:
                    found, file = self.planned.pop(ref)
                    needs_download = True  # unless it is in place by now (`_fetch` checks)
                else:
                    where = planned[ref]
                    if isinstance(where, NonCanonicalName):
                        yield ref, where
                        continue
                    if isinstance(where, FdpError):
                        raise where
                    found, file, needs_download = where
                if needs_download:
                    self._fetch(file)
                page.append((found, file))
            if page:
                yield from self._recorded_page(page)
            elif fresh:
                self._forget_plan()

    def _recorded_page(
        self, page: list[tuple[queries.Located, FileToFetch]]
    ) -> Iterator[tuple[ProductRef, str]]:
        self._record(page)
        # which local records the page's copies are: asked again (by natural key) in the
        # rare case a later page names them, as a run's input. Dropped before the page is
        # yielded, so a caller that stops reading leaves none behind.
        for found, file in page:
            obj = found.object
            for key in (("data_product", found.product["id"]), ("object", obj["id"])):
                self.copier.ids.pop(key, None)
            for component in obj.get("components") or []:
                self.copier.ids.pop(("object_component", component), None)
            self.copier.ids.pop(("storage_location", file.location_id), None)
            self.copier.whole_objects.pop(obj["id"], None)
            self.moved.pop(file.location_id, None)
            if self.hashes is not None:
                self.hashes.settled(self.store.where(file.rel))
        for found, file in page:
            yield found.ref, file.sha1

    def _record(self, page: list[tuple[queries.Located, FileToFetch]]) -> None:
        """The records of products whose files are in place, in one transaction: their
        locations, objects and data products in batches, then the runs that made them.
        A failure undoes the page and forgets the ids it made."""
        try:
            self._read_ahead(page)
            with self.local.transaction():
                self._record_page(page)
            self._forget_local_lookups()  # these are here now
            self._forget_page(page)
        except BaseException:
            self._forget_local_lookups()
            self.copier.ids.clear()
            self.copier.whole_objects.clear()
            self.moved.clear()
            self.local_outputs.clear()
            self.settled.clear()
            forget_roots(self.local)
            raise

    def _read_ahead(self, page: list[tuple[queries.Located, FileToFetch]]) -> None:
        """The remote's data product and object records of a page, with those of the
        products planned next up to a page in all, in one batch each: a config that reads
        its products one item at a time records them a page of one at a time, and each
        item then finds its records read already."""
        products = [found.product["id"] for found, _ in page]
        objects = [found.object["id"] for found, _ in page]
        registry = self.remote.registry
        if all_kept(registry, "data_product", products) and all_kept(registry, "object", objects):
            return  # read ahead with a page before
        for found, _ in itertools.islice(self.planned.values(), PULL_BATCH - len(page)):
            products.append(found.product["id"])
            objects.append(found.object["id"])
        registry.get_many("data_product", products)
        registry.get_many("object", objects)

    def _forget_page(self, page: list[tuple[queries.Located, FileToFetch]]) -> None:
        """Drop the remote's records of a recorded page: a pull holds a page's records,
        not those of every product it pulls."""
        registry = self.remote.registry
        forget_ids(registry, "data_product", [found.product["id"] for found, _ in page])
        forget_ids(registry, "object", [found.object["id"] for found, _ in page])
        forget_ids(registry, "storage_location", [file.location_id for _, file in page])
        components = [c for found, _ in page for c in found.object.get("components") or []]
        forget_ids(registry, "object_component", components)
        self.lineage.forget(PER_PRODUCT)

    def _record_page(self, page: list[tuple[queries.Located, FileToFetch]]) -> None:
        root = store_root_id(self.local, self.store)
        rows = [
            {"path": f.rel, "hash": f.sha1, "public": f.public, "storage_root": root}
            for _, f in page
        ]
        made = self.local.get_or_create_many("storage_location", rows)
        for (_, file), (location, _) in zip(page, made, strict=True):
            if location["path"] != file.rel:  # another process recorded the bytes just now
                settle(self.store, file.rel, location["path"], file.sha1, False)
            if file.own not in (file.rel, location["path"]) and self.store.stat(file.own)[1]:
                # fetched to the product's own path by a page planned before an earlier page
                # recorded the same bytes under another path: one copy is kept
                settle(self.store, file.own, location["path"], file.sha1, False)
            self.moved[file.location_id] = location["id"]
            self.copier.ids[("storage_location", file.location_id)] = location["id"]
        self.copier.copy_many("data_product", [found.product["id"] for found, _ in page])
        objects = [self.copier.ids[("object", found.object["id"])] for found, _ in page]
        records = self.local.get_many("object", objects)
        for (_, file), object_id in zip(page, objects, strict=True):
            mine, here = records[object_id], self.moved[file.location_id]
            if mine.get("storage_location") != here:
                # copied before as another product's provenance, with the remote's location
                self.local.patch("object", mine["id"], {"storage_location": here})
        # whole records (a listing keeps only a few fields), read by the copy just above
        products = self.remote.registry.get_many(
            "data_product", [found.product["id"] for found, _ in page]
        )
        self.copier.copy_many(
            "external_object",
            [e for product in products.values() for e in product.get("external_object") or []],
        )
        outputs: dict[int, list[int]] = {}  # remote run -> local outputs met on this page
        for found, _ in page:
            for run_id, mine_ids in self._made(found.object).items():
                outputs.setdefault(run_id, []).extend(mine_ids)
        for run_id, mine_ids in outputs.items():
            self._record_run(self.lineage.runs[run_id], mine_ids)

    def _settled(self, type_name: str, record_id: int) -> Record:
        """A local namespace or storage root (records a pull never changes), read once."""
        key = (type_name, record_id)
        if key not in self.settled:
            self.settled[key] = self.local.get(type_name, record_id)
        return self.settled[key]


def _kept(found: queries.Located) -> queries.Located:
    """What a pull keeps of a remote product it plans, until the page holding it is
    recorded: the fields the copy of its records reads, not the whole records, which it
    reads again a page at a time (`Puller._read_ahead`)."""
    location = found.location
    return queries.Located(
        queries.listed(found.product),
        found.namespace,
        {key: found.object.get(key) for key in KEPT_OBJECT},
        None if location is None else {key: location.get(key) for key in KEPT_LOCATION},
        found.root,
    )


KEPT_OBJECT = ("id", "components", "storage_location")
KEPT_LOCATION = ("id", "path", "hash", "public", "storage_root")


@dataclass(frozen=True)
class FileToFetch:
    """A remote file a pull puts into the data store: what it is for, where it goes (`rel`),
    where it is (storage root and path) and the SHA-1 it must have."""

    product: str
    rel: str
    root: str
    path: str
    sha1: str
    public: bool = True
    location_id: int = 0  # the remote's storage location record
    # the product's own path, where `rel` is another product's file with the same bytes
    own: str = ""


class NonCanonicalName(FdpError):
    """A remote's data product whose name or namespace is not canonical: it is not pulled."""


def name_problem(namespace: str, name: str) -> str | None:
    """Why a remote's namespace or data product name cannot be taken as it is, if so.

    A name that is not canonical (`a//b`, `a/./b`) would alias another product's folder in
    the data store, so it is never copied, whatever the remote holds.
    """
    return namespace_problem(namespace) or product_name_problem(name)


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
        lookup: Callable[[ProductRef], Record | None] | None = None,
        hashes: StatCache | None = None,
    ):
        """`lookup` finds a data product on the remote (default: one query per product);
        `hashes`: the SHA-1s of data-store files by their stat, so that a file the up-to-date
        checks hashed is not read again to see it is intact before it is sent (the remote
        checks the bytes it receives all the same)."""
        self.local = CachedRegistry(local)  # nothing writes to it while pushing
        self.hashes = hashes
        # the provenance walk: which runs made what, each run read once
        self.lineage = Lineage(self.local, forget=self.local.forget_ids)
        self.lookup = lookup or (
            lambda ref: queries.find_product(
                remote.registry, ref.namespace, ref.name, ref.version_text
            )
        )
        self.store = store
        self.remote = remote
        self.copier = Copier(self.local, remote.registry, self._relocate)
        self.done_products: set[int] = set()
        self.done_runs: set[int] = set()
        self.active: set[int] = set()
        self.active_runs: set[int] = set()
        self.roots: dict[str, int] = {}
        self.placed: dict[int, tuple[str, str, str]] = {}  # local location -> remote file
        self._placing = threading.Lock()  # `placed` is filled by the upload threads
        self.storage_ok = False  # the remote has taken a file
        self.no_storage: FdpError | None = None  # why the remote cannot take files
        # products whose closure preflight found clear: each closure is walked once, not
        # once per item of it
        self.cleared: set[int] = set()
        # products in closures found without conflicts, and whose closure's files were
        # listed, by the bytes phase: a push in pages walks each closure once, not per page
        self.clear: set[int] = set()
        self.listed: set[int] = set()
        # the closures of the latest few sets of maker runs, and the conflict found in each:
        # the N outputs of one run share a closure, walked and checked once, not N times
        self._closures: dict[frozenset[int], tuple[list[int], OutOfSync | None]] = {}

    # ------------------------------------------------------------ bytes phase
    def files(self, product_ids: Iterable[int]) -> list[Record]:
        """The storage locations a push of these products uploads (their provenance
        closures' files that are ours and public), each once, in the order a push meets
        them. Reads only the local registry: called before the upload threads start, so
        they find every record they need in the cache."""
        wanted: dict[int, Record] = {}
        seen = self.listed  # a closure met in an earlier call (a page before) is not walked again
        for product_id in product_ids:
            if product_id in seen or product_id in self.done_products:
                continue
            closure = self.closure(product_id)
            seen.update(closure)
            for location in self._locations(closure):
                if location["id"] in wanted or location["id"] in self.placed:
                    continue
                root = self.local.get("storage_root", location["storage_root"])
                if self.store.holds(root["root"]) and location.get("public", True):
                    wanted[location["id"]] = location
        self._forget_records()
        return list(wanted.values())

    def _forget_records(self) -> None:
        """Drop the local records read so far of the kinds there are one or more of per
        product (runs, roots and namespaces stay): a push holds the records of a batch of
        products at a time, not those of every product it pushes."""
        forget(self.local, PER_PRODUCT)
        forget(self.remote.registry, PER_PRODUCT)  # what the push made there, read back
        self.lineage.forget(PER_PRODUCT)

    def upload_files(
        self,
        locations: list[Record],
        jobs: int,
        on_bytes: Callable[[int], None] | None = None,
        on_file: Callable[[], None] = lambda: None,
    ) -> dict[int, FdpError | OSError]:
        """Upload files on `jobs` threads before any record is written; returns why files
        failed, by location id. A file that failed is tried again by the push of a product
        that needs it, which then fails with the reason; the others go on."""
        by_id = {location["id"]: location for location in locations}
        if len(by_id) > 1:
            try:
                self.remote.prepare_uploads([location["hash"] for location in by_id.values()])
            except FdpError as exc:  # each upload asks for itself, and says what is wrong
                log.debug("asking where to upload %d files at once: %s", len(by_id), exc)
        bundled = self._upload_bundles(list(by_id.values()), jobs, on_bytes, on_file)
        return in_parallel(
            lambda lid: self._upload(by_id[lid], counting_into(on_bytes)),
            [lid for lid in by_id if lid not in bundled],
            jobs,
            on_file,
        )

    def _upload_bundles(
        self,
        locations: list[Record],
        jobs: int,
        on_bytes: Callable[[int], None] | None,
        on_file: Callable[[], None],
    ) -> set[int]:
        """Small public files of ours, intact, sent BUNDLE_FILES (at most BUNDLE_BYTES) to a
        request where the remote takes bundles (`upload_small`); returns the location ids
        placed. Anything else, and whatever a bundle did not place, goes one by one."""
        # (location, size): a file's path is made when its bundle is sent, not held for all
        small: list[tuple[Record, int]] = []
        for location in locations:
            root = self.local.get("storage_root", location["storage_root"])
            if not self.store.holds(root["root"]) or not location.get("public", True):
                continue
            rel, sha1 = location["path"], location["hash"]
            try:
                size = self.store.path(rel).stat().st_size
                if size > BUNDLE_FILE_BYTES:
                    continue  # hashed by its own upload only
                if not intact(self.store, rel, sha1, hashes=self.hashes):
                    continue  # its own upload says what is wrong
            except (FdpError, OSError):
                continue
            small.append((location, size))
        groups: list[list[tuple[Record, int]]] = []
        for item in small:
            if (
                not groups
                or len(groups[-1]) >= BUNDLE_FILES
                or sum(s for _, s in groups[-1]) + item[1] > BUNDLE_BYTES
            ):
                groups.append([])
            groups[-1].append(item)
        placed: set[int] = set()

        def one(group: list[tuple[Record, int]]) -> None:
            files = [(self.store.path(loc["path"]), loc["hash"]) for loc, _ in group]
            there = self.remote.upload_small(files)
            for location, size in group:
                if location["hash"] not in there:
                    continue
                remote_root, remote_path = there[location["hash"]]
                with self._placing:
                    self.storage_ok = True
                    self.placed[location["id"]] = (remote_root, remote_path, location["hash"])
                    placed.add(location["id"])
                if on_bytes is not None:
                    on_bytes(size)
                on_file()

        failed = in_parallel(lambda i: one(groups[i]), range(len(groups)), jobs, lambda: None)
        for why in failed.values():
            log.debug("a bundle of files: %s", why)  # its files go one by one
        return placed

    def _upload(
        self, location: Record, progress: Callable[[int], None] | None = None
    ) -> tuple[str, str, str] | None:
        """Put a file of the data store into the remote's, once per location: returns its
        (storage root, path, SHA-1) there, or None when its record is copied as it is (not a
        file of ours, or not public)."""
        with self._placing:
            if location["id"] in self.placed:
                return self.placed[location["id"]]
        root = self.local.get("storage_root", location["storage_root"])
        if not self.store.holds(root["root"]):
            return None  # not a file of ours (a code repo, an original source): copy the record
        if not location.get("public", True):
            # as in the reference: only public files leave the machine; the record says where
            log.info("not uploading %s: it is not public", location["path"])
            return None
        rel, sha1 = location["path"], location["hash"]
        if not intact(self.store, rel, sha1, hashes=self.hashes):
            if not self.store.exists(rel):
                raise FdpError(
                    f"cannot push {rel}: it is missing from the data store {self.store.root}"
                )
            raise HashMismatch(
                f"{self.store.path(rel)} has SHA-1 {self.store.hash(rel)} but the registry "
                f"recorded {sha1}; not pushing a modified file"
            )
        remote_root, remote_path = self.remote.upload(
            self.store.path(rel), sha1, rel, progress=progress
        )
        with self._placing:
            self.storage_ok = True
            self.placed[location["id"]] = (remote_root, remote_path, sha1)
            return self.placed[location["id"]]

    def _relocate(self, location: Record) -> int | None:
        placed = self._upload(location)
        if placed is None:
            return None
        record = self._remote_location(location, placed)
        loc, _ = self.remote.registry.get_or_create("storage_location", record)
        return loc["id"]

    def push_product(self, product_id: int) -> list[tuple[ProductRef, Record]]:
        """Push one data product after everything it came from.

        The data product record is created last, so its presence on the remote means the
        whole closure is there; an interrupted push is finished by the next one. Returns
        every data product this call created or found on the remote (siblings included).

        Records are copied one closure at a time: callers on several threads or processes
        hold the remote's records lock (`SyncSession.records_lock`) around this call, so a
        product never reaches the remote while another caller is still sending its run.
        """
        if product_id in self.done_products or product_id in self.active:
            return []
        if not self.active and not self.active_runs:
            self.preflight(product_id)
        return self._push_products([product_id])

    def _push_products(self, product_ids: Iterable[int]) -> list[tuple[ProductRef, Record]]:
        """Push data products after everything they came from, a few hundred at a time:
        their files' locations and objects, then the runs that made them (which push their
        other outputs the same way), then the data product records, each kind in batches
        of the remote's (`Copier.copy_many`)."""
        todo = [
            pid
            for pid in dict.fromkeys(product_ids)
            if pid not in self.done_products and pid not in self.active
        ]
        pushed: list[tuple[ProductRef, Record]] = []
        for start in range(0, len(todo), PUSH_BATCH):
            pushed += self._push_batch(todo[start : start + PUSH_BATCH])
        return pushed

    def _push_batch(self, todo: list[int]) -> list[tuple[ProductRef, Record]]:
        self.active.update(todo)
        try:
            pushed: list[tuple[ProductRef, Record]] = []
            products = self.local.get_many("data_product", todo)
            sha1s = self._push_objects([products[p]["object"] for p in todo])
            for pid in todo:
                for run in self.lineage.runs_of_product(pid):
                    pushed += self.push_run(run["id"])
            theirs = self.copier.copy_many("data_product", todo)
            self.copier.copy_many(
                "external_object",
                [e for pid in todo for e in products[pid].get("external_object") or []],
            )
            records = self.remote.registry.get_many("data_product", theirs)  # made just now
            for pid, their_id in zip(todo, theirs, strict=True):
                product = products[pid]
                namespace = self.local.get("namespace", product["namespace"])["name"]
                ref = ProductRef.of(namespace, product["name"], product["version"])
                sha1 = sha1s.get(product["object"])
                pushed.append((ref, queries.listed(records[their_id], sha1)))
            self.done_products.update(todo)
            self._forget_records()
            return pushed
        finally:
            self.active.difference_update(todo)

    def _push_objects(self, object_ids: list[int]) -> dict[int, str]:
        """Objects with their files' locations on the remote, each kind in batches; returns
        the SHA-1 of each object's file, by local object id."""
        objects = self.local.get_many("object", object_ids)
        locations = [o["storage_location"] for o in objects.values()]
        self._place_many(locations)
        hashes = self.local.get_many("storage_location", [i for i in locations if i is not None])
        self.copier.copy_many("object", list(objects))
        return {
            object_id: hashes[obj["storage_location"]]["hash"]
            for object_id, obj in objects.items()
            if obj.get("storage_location") is not None
        }

    def _place_many(self, location_ids: list[int | None]) -> None:
        """The remote's storage locations of files of ours, for many local locations at
        once (their bytes are there already, from the bytes phase): one batch of creates."""
        wanted = [
            lid
            for lid in dict.fromkeys(location_ids)
            if lid is not None and ("storage_location", lid) not in self.copier.ids
        ]
        if len(wanted) < 2:
            return  # one is copied as the object that names it meets it
        rows: list[dict[str, Any]] = []
        placed: list[int] = []
        for lid, location in self.local.get_many("storage_location", wanted).items():
            where = self._upload(location)
            if where is None:
                continue  # not a file of ours: its record is copied as it is
            rows.append(self._remote_location(location, where))
            placed.append(lid)
        if not rows:
            return
        made = self.remote.registry.get_or_create_many("storage_location", rows)
        for lid, (record, _) in zip(placed, made, strict=True):
            self.copier.ids[("storage_location", lid)] = record["id"]

    def _remote_location(self, location: Record, placed: tuple[str, str, str]) -> dict[str, Any]:
        """The remote's storage location record of a file uploaded to `placed`."""
        remote_root, remote_path, sha1 = placed
        if remote_root not in self.roots:
            root_rec, _ = self.remote.registry.get_or_create(
                "storage_root", {"root": remote_root, "local": False}
            )
            self.roots[remote_root] = root_rec["id"]
        return {
            "path": remote_path,
            "hash": sha1,
            "public": location.get("public", True),
            "storage_root": self.roots[remote_root],
        }

    def push_run(self, run_id: int) -> list[tuple[ProductRef, Record]]:
        """Push a code run: its inputs first, then the run, then its other outputs."""
        if run_id in self.done_runs or run_id in self.active_runs:
            return []
        self.active_runs.add(run_id)
        try:
            pushed = []
            run = self.lineage.runs.get(run_id) or self.local.get("code_run", run_id)
            pushed += self._push_products(self.lineage.products_of(run.get("inputs") or []))
            # what the run names (its outputs' objects and components above all) in
            # batches, before the run record, which would otherwise copy them one by one
            components = [*(run.get("inputs") or []), *(run.get("outputs") or [])]
            for start in range(0, len(components), PUSH_BATCH):
                chunk = components[start : start + PUSH_BATCH]
                records = self.local.get_many("object_component", chunk)
                self._push_objects([c["object"] for c in records.values()])
                self.copier.copy_many("object_component", chunk)
                self._forget_records()
            self.copier.copy("code_run", run_id)
            outputs = run.get("outputs") or []
            for start in range(0, len(outputs), PUSH_BATCH):  # a page of records at a time
                chunk = outputs[start : start + PUSH_BATCH]
                pushed += self._push_products(self.lineage.products_of(chunk))
            self.done_runs.add(run_id)
            return pushed
        finally:
            self.active_runs.discard(run_id)

    def closure(self, product_id: int) -> list[int]:
        """Every data product a push of this one carries: its runs' inputs and outputs, and
        theirs, back to the registered sources (the provenance walk's `Lineage.closure`).
        Products made by the same runs have the same closure: the latest are kept."""
        makers = self._makers(product_id)
        kept = self._closures.get(makers) if makers else None
        return kept[0] if kept is not None else self.lineage.closure([product_id])

    def _makers(self, product_id: int) -> frozenset[int]:
        """The runs that made a product (none for a registered source): its closure's key."""
        return frozenset(run["id"] for run in self.lineage.runs_of_product(product_id))

    def checked_closure(self, product_id: int) -> tuple[list[int], OutOfSync | None]:
        """The product's closure, and why the remote cannot take it (it holds one of its
        products with other content) or None; found once for all the products of the same
        runs."""
        makers = self._makers(product_id)
        kept = self._closures.get(makers) if makers else None
        if kept is not None and kept[1] is not None:
            return kept
        products = kept[0] if kept is not None else self.lineage.closure([product_id])
        found: OutOfSync | None = None
        try:
            self.check_conflicts(products)
        except OutOfSync as exc:
            found = exc
        if makers:
            self._closures.pop(makers, None)
            while len(self._closures) >= CLOSURES_KEPT:
                del self._closures[next(iter(self._closures))]  # the oldest
            self._closures[makers] = (products, found)
        return products, found

    def preflight(self, product_id: int) -> None:
        """Refuse before anything is sent if the remote holds any product of the closure
        with other content, or if it cannot take files: either found halfway would leave
        records behind."""
        if self.no_storage is not None:
            raise self.no_storage  # said once by the remote; not asked again for every item
        if product_id in self.cleared:
            return  # in a closure found clear, so its own closure is clear (a part of it)
        products, found = self.checked_closure(product_id)
        if found is not None:
            raise OutOfSync(str(found))  # a new one each time: a raise adds to its traceback
        self._probe_storage([pid for pid in products if pid not in self.done_products])
        self.cleared.update(products)

    def check_conflicts(self, products: list[int]) -> None:
        """Raise OutOfSync if the remote holds one of these products under its name and
        version with other content (what the push would put there)."""
        todo = [pid for pid in products if pid not in self.done_products]
        for start in range(0, len(todo), PUSH_BATCH):  # a page of records at a time
            page = todo[start : start + PUSH_BATCH]
            records = self.local.get_many("data_product", page)
            for mine in queries.locate_many(self.local, [records[pid] for pid in page]):
                theirs = self.lookup(mine.ref)
                if theirs is None:
                    continue
                their_hash = queries.listed_hash(self.remote.registry, theirs)
                if their_hash != mine.hash:
                    raise OutOfSync.different_content(str(mine.ref), their_hash, mine.hash)
            if len(todo) > PUSH_BATCH:
                self._forget_records()

    def without_conflicts(self, product_ids: list[int]) -> list[int]:
        """The products whose closure the remote holds nothing different of: only their
        files are uploaded, so a refused item leaves not even bytes on the remote.

        A product in a closure found clear has a clear closure too (closures are
        transitive), so each closure is walked once, as `files` does."""
        kept: list[int] = []
        for pid in product_ids:
            if pid not in self.clear and pid not in self.cleared:  # (cleared: by preflight)
                closure, found = self.checked_closure(pid)
                if found is not None:
                    continue
                self.clear.update(closure)
            kept.append(pid)
        return kept

    def _probe_storage(self, products: list[int]) -> None:
        """Upload the push's first public file before any record is written, so a remote that
        cannot take files (an upstream registry without object storage) stops the push here,
        once. A push with nothing public to upload needs no probe."""
        from fdp_tasks.remotes.client import NoFileStorage

        if self.storage_ok:
            return
        for location in self._locations(products):
            root = self.local.get("storage_root", location["storage_root"])["root"]
            if not intact(
                self.store, location["path"], location["hash"], root=root, hashes=self.hashes
            ):
                continue  # not ours, or missing or modified: the push of its product says so
            try:
                if self._upload(location) is not None:
                    return
            except NoFileStorage as exc:
                self.no_storage = exc
                raise

    def _locations(self, products: list[int]) -> Iterator[Record]:
        """The storage locations of the products' files and of the config, script, code
        repository and unnamed inputs and outputs (files no data product names) of the runs
        that made them, in the order a push meets them."""
        keys = ("model_config", "submission_script", "code_repo")
        runs: set[int] = set()
        seen: set[int] = set()
        for start in range(0, len(products), PUSH_BATCH):  # a page of records at a time
            objects: list[int] = []
            page = products[start : start + PUSH_BATCH]
            mine = self.lineage.records.many("data_product", page)  # in batches, for object_of
            self.lineage.records.many("object", [p["object"] for p in mine.values()])
            for pid in page:
                objects.append(self.lineage.object_of(pid)["id"])
                for run in self.lineage.runs_of_product(pid):
                    if run["id"] not in runs:
                        runs.add(run["id"])
                        objects += [run[key] for key in keys if run.get(key)]
                        objects += self.lineage.unnamed_objects(run)
            objects = [o for o in dict.fromkeys(objects) if o not in seen]
            seen.update(objects)
            records = self.local.get_many("object", objects)  # in batches
            wanted = [records[o]["storage_location"] for o in objects]
            locations = self.local.get_many("storage_location", [w for w in wanted if w])
            for location in wanted:
                if location:
                    yield locations[location]
            if len(products) > PUSH_BATCH:
                self._forget_records()

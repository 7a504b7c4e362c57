"""Deleting one data product version with the provenance only it needs, in one transaction.

Used by `fdp delete` on the local registry (and a directory remote) and by our server's
`DELETE /api/data_product/<id>/`, so both follow one rule:

- a version that a code run read, or that an issue, a code repository release or another
  user's keyword, licence or note names, is in use: nothing is deleted and `InUse` names
  what uses it;
- otherwise the data product goes, with its external objects; its object too, with its
  components and annotations (keywords, licences, key-values, quality marks), unless another
  data product shares it; a storage location goes once no object or external object names
  it;
- the runs that made it lose it from their outputs, and a run left with no output goes,
  with the config, script and repository objects no other record needs, so the next run of
  its config runs again instead of finding an empty run up to date.

With `user_id` (the server), the data product and its object must be that user's, else
`NotOwner`; other records are deleted only when that user wrote them, and left otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fdp_tasks.store.base import InvalidRecord, Record, RegistryError
from fdp_tasks.store.sql import Store
from fdp_tasks.store.sweep import _unclaimed

# Records that only describe an object: they go with it.
ANNOTATIONS = ("keyword", "licence", "key_value", "quality_controlled")
# The fields of a code run that name objects of its own making (not its inputs or outputs).
RUN_OBJECTS = ("code_repo", "model_config", "submission_script")


class InUse(InvalidRecord):
    """Other records use the version: `users` names them (code runs by uuid)."""

    def __init__(self, what: str, users: list[str]):
        shown = ", ".join(users[:10]) + (f" and {len(users) - 10} more" if len(users) > 10 else "")
        super().__init__(f"{what} is used by {shown}: nothing was deleted")
        self.users = users


class NotOwner(RegistryError):
    """The version, or its object, was written by another user."""


@dataclass
class Retired:
    """What a deletion removed: records per type, the code runs that went, and the
    (storage_root, path, hash) of each storage location that went."""

    records: dict[str, int] = field(default_factory=dict)
    runs: list[str] = field(default_factory=list)
    locations: list[tuple[str, str, str]] = field(default_factory=list)

    def count(self, type_name: str) -> None:
        self.records[type_name] = self.records.get(type_name, 0) + 1

    @property
    def total(self) -> int:
        return sum(self.records.values())


class _Pruning:
    def __init__(self, store: Store, user_id: int | None, admin: bool):
        self.store = store
        self.user_id = user_id
        self.admin = admin
        self.done = Retired()

    def mine(self, record: Record) -> bool:
        """Whether this deletion may take the record (always, without a user)."""
        if self.user_id is None or self.admin:
            return True
        return record.get("updated_by") in (None, self.user_id)

    def delete(self, type_name: str, record: Record) -> None:
        self.store.delete(type_name, record["id"])
        self.done.count(type_name)

    def users_of(self, obj: Record) -> list[str]:
        """What keeps an object: runs reading it, issues and releases naming it, runs whose
        config, script or repository it is, and another user's notes on it."""
        found: list[str] = []
        for component in obj["components"]:
            readers = self.store.find("code_run", {"inputs": component})
            issues = self.store.find("issue", {"component_issues": component})
            found += [f"code run {run['uuid']}" for run in readers]
            found += [f"issue {issue['uuid']}" for issue in issues]
        for release in self.store.find("code_repo_release", {"object": obj["id"]}):
            found.append(f"code repo release {release['name']}@{release['version']}")
        for name in RUN_OBJECTS:
            found += [
                f"code run {run['uuid']}" for run in self.store.find("code_run", {name: obj["id"]})
            ]
        for type_name in ANNOTATIONS:
            for note in self.store.find(type_name, {"object": obj["id"]}):
                if not self.mine(note):
                    found.append(f"{type_name} {note['id']} of another user")
        return sorted(set(found))

    def drop_object(self, obj: Record) -> None:
        """An object nothing needs any more, its components, annotations and location."""
        for type_name in ANNOTATIONS:
            for note in self.store.find(type_name, {"object": obj["id"]}):
                self.delete(type_name, note)
        for component in obj["components"]:
            if not self._whole(component):  # the whole_object one goes with the object
                self.store.delete("object_component", component)
                self.done.count("object_component")
        self.delete("object", obj)
        self.done.count("object_component")
        if obj.get("storage_location"):
            self.drop_location(obj["storage_location"])

    def _whole(self, component_id: int) -> bool:
        return bool(self.store.get("object_component", component_id).get("whole_object"))

    def drop_location(self, location_id: int) -> None:
        """A storage location, once no object or external object names it (and it is this
        deletion's to take)."""
        if self.store.find("object", {"storage_location": location_id}, limit=1):
            return
        if self.store.find("external_object", {"original_store": location_id}, limit=1):
            return
        location = self.store.get("storage_location", location_id)
        if not self.mine(location):
            return
        root = self.store.get("storage_root", location["storage_root"])
        self.delete("storage_location", location)
        self.done.locations.append((root["root"], location["path"], location["hash"]))

    def drop_run_objects(self, run: Record) -> None:
        """The config, script and repository objects of a run that went, if nothing else
        (another run, a data product) names them."""
        for name in RUN_OBJECTS:
            object_id = run.get(name)
            if object_id is None:
                continue
            obj = self.store.get("object", object_id)
            if obj["data_products"] or not self.mine(obj):
                continue
            if self.users_of(obj):
                continue
            self.drop_object(obj)


def retire_product(
    store: Store,
    product_id: int,
    *,
    user_id: int | None = None,
    admin: bool = False,
    drop_files: Callable[[list[str]], None] | None = None,
) -> Retired:
    """Delete one data product version and what only it needs (see the module docstring),
    all in one transaction: InUse or NotOwner leave everything as it was.

    `drop_files(hashes)` is called inside the transaction with the SHA-1s no storage
    location names any more and nobody else asked to keep (a server's blobs go so)."""
    with store.transaction() as conn:
        done = _retire(store, product_id, user_id, admin)
        hashes = {sha1 for _root, _path, sha1 in done.locations}
        if drop_files is not None and hashes:
            store.lock_files(conn, hashes)
            unnamed = _unclaimed(store, conn, hashes, user_id, None)
            if unnamed:
                drop_files(unnamed)
        return done


def _retire(store: Store, product_id: int, user_id: int | None, admin: bool) -> Retired:
    """The deletions of `retire_product`, inside its transaction."""
    work = _Pruning(store, user_id, admin)
    product = store.get("data_product", product_id)
    namespace = store.get("namespace", product["namespace"])["name"]
    what = f"{namespace}:{product['name']}@{product['version']}"
    obj = store.get("object", product["object"])
    if not work.mine(product) or not work.mine(obj):
        raise NotOwner(f"{what} was written by another user: only they, or admin, delete it")
    shared = [p for p in obj["data_products"] if p != product_id]
    users = [] if shared else work.users_of(obj)
    if users:
        raise InUse(what, users)
    for ext in product.get("external_object") or []:
        ext_record = store.get("external_object", ext)
        original = ext_record.get("original_store")
        work.delete("external_object", ext_record)
        if original is not None:
            work.drop_location(original)
    work.delete("data_product", product)
    if shared:
        return work.done
    makers: list[Record] = []
    for component in obj["components"]:
        makers += store.find("code_run", {"outputs": component})
    gone_components = set(obj["components"])
    emptied: list[Record] = []
    for run in {r["id"]: r for r in makers}.values():
        left = [c for c in run["outputs"] if c not in gone_components]
        store.patch("code_run", run["id"], {"outputs": left})
        if not left and work.mine(run):
            emptied.append(run)
    for run in emptied:
        work.delete("code_run", run)
        work.done.runs.append(run["uuid"])
    work.drop_object(store.get("object", obj["id"]))
    for run in emptied:
        work.drop_run_objects(run)
    return work.done


def in_use_message(exc: InUse) -> dict[str, Any]:
    """The server's 409 body for a version in use: the message, and what uses it."""
    return {"detail": str(exc), "used_by": exc.users}

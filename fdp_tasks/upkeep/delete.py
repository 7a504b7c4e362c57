"""`fdp delete ns:name@version [--remote NAME]`: one data product version, with the
provenance only it needs (`store.prune`), removed from the local registry or a remote.

Locally (and on a directory remote) the records go in one transaction, then the files no
storage location names any more; a version that a code run read is refused, naming the runs.
Without `yes` nothing changes: the same deletion runs in a transaction that is rolled back,
to say what it would remove.

Over HTTP, the remote decides: our server deletes a version with what only it needs, in one
transaction, when the user wrote it and nothing of others' uses it (403, 409 otherwise). A
registry whose data products take no DELETE (the reference registry deletes only code runs,
and says so in the `Allow` header of an OPTIONS answer, or leaves the header out) is told
apart before anything is asked of it, and the command says in one line that it cannot.
"""

from __future__ import annotations

from collections.abc import Callable

from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.locks import project_lock
from fdp_tasks.project import Project
from fdp_tasks.refs import PartialRef, ProductRef
from fdp_tasks.remotes import open_remote
from fdp_tasks.remotes.client import HttpRegistry
from fdp_tasks.remotes.directory import DirectoryRemote
from fdp_tasks.storage import Storage
from fdp_tasks.store import queries
from fdp_tasks.store.prune import InUse, Retired, retire_product
from fdp_tasks.store.sql import Store

Say = Callable[[str], None]


class _Undo(Exception):
    """Raised to roll a trial deletion back."""


class InUseError(FdpError):
    """The version is used by other records: nothing was deleted."""


def parse_ref(text: str) -> ProductRef:
    typed = PartialRef.parse(text, "the data product")
    if not typed.namespace or not typed.pinned:
        raise BadInput(f"{text}: give the data product as namespace:name@version")
    return typed.resolve(None, [])


def describe(retired: Retired) -> str:
    parts = [f"{n} {t}" for t, n in sorted(retired.records.items()) if n]
    text = ", ".join(parts) or "nothing"
    if retired.runs:
        text += f" (code run(s) left without outputs: {', '.join(retired.runs)})"
    return text


def _retire(store: Store, ref: ProductRef, where: str, yes: bool) -> Retired:
    product = queries.find_product(store, ref.namespace, ref.name, ref.version_text)
    if product is None:
        raise FdpError(f"{ref} is not in {where}")
    try:
        if yes:
            return retire_product(store, product["id"])
        try:
            with store.transaction():
                trial = retire_product(store, product["id"])
                raise _Undo
        except _Undo:
            return trial
    except InUse as exc:
        raise InUseError(f"{where}: {exc}") from None


def drop_files(
    store: Store, holds: Callable[[str], bool], retired: Retired, remove: Callable[[str], None]
) -> list[str]:
    """Delete the files of the locations that went, under roots `holds` says are ours, when
    no location left names the same path there. Returns the paths deleted."""
    roots = [r["id"] for r in store.find("storage_root") if holds(r["root"])]
    gone = []
    for root, path, _sha1 in retired.locations:
        if not holds(root):
            continue
        if any(
            store.find("storage_location", {"storage_root": r, "path": path}, limit=1)
            for r in roots
        ):
            continue
        remove(path)
        gone.append(path)
    return gone


def delete_local(project: Project, text: str, say: Say, yes: bool = False) -> Retired:
    ref = parse_ref(text)
    store = project.store()
    data = project.data_store
    if not yes:
        retired = _retire(store, ref, "the local registry", yes=False)
        say(f"would delete {ref} from the local registry: {describe(retired)}; --yes deletes it")
        return retired
    with project_lock(project.state_dir):
        retired = _retire(store, ref, "the local registry", yes=True)

        def unlink(path: str) -> None:
            data.path(path).unlink(missing_ok=True)

        files = drop_files(store, data.holds, retired, unlink)
    say(f"deleted {ref} from the local registry: {describe(retired)}")
    for path in files:
        say(f"deleted file {data.root / path}")
    return retired


def delete_remote(project: Project, text: str, remote_name: str, say: Say, yes: bool) -> None:
    ref = parse_ref(text)
    spec = project.remote(remote_name or None)
    with open_remote(spec.name, spec.url, spec.token()) as remote:
        registry = remote.registry
        where = f"remote {remote.name}"
        if isinstance(registry, HttpRegistry):
            _delete_over_http(registry, ref, where, say, yes)
            return
        if not isinstance(registry, Store) or not isinstance(remote, DirectoryRemote):
            raise FdpError(f"{where} ({remote.url}) cannot delete data products")
        retired = _retire(registry, ref, where, yes)
        if not yes:
            say(f"would delete {ref} from {where}: {describe(retired)}; --yes deletes it")
            return
        storage: Storage = remote.storage
        files = drop_files(registry, remote.holds, retired, storage.delete)
        say(f"deleted {ref} from {where}: {describe(retired)}; {len(files)} file(s)")


def _delete_over_http(
    registry: HttpRegistry, ref: ProductRef, where: str, say: Say, yes: bool
) -> None:
    product = queries.find_product(registry, ref.namespace, ref.name, ref.version_text)
    if product is None:
        raise FdpError(f"{ref} is not on {where}")
    url = registry.url_for("data_product", product["id"])
    answer = registry.request("OPTIONS", url, ok=(200, 204), expected=(403, 404, 405))
    allowed = {m.strip().upper() for m in answer.headers.get("Allow", "").split(",")}
    if "DELETE" not in allowed:
        raise FdpError(
            f"{where} ({registry.api_url}) does not delete data products (a FAIR Data "
            f"Pipeline registry deletes only code runs): {ref} stays there"
        )
    if not yes:
        say(f"would delete {ref} from {where}, with what only it needs; --yes deletes it")
        return
    resp = registry.request("DELETE", url, ok=(200, 204), expected=(403, 409))
    if resp.status_code in (403, 409):
        try:
            detail = resp.json().get("detail")
        except ValueError:
            detail = resp.text.strip()[:300]
        raise (InUseError if resp.status_code == 409 else FdpError)(
            f"{where} refused to delete {ref} ({resp.status_code}): {detail}"
        )
    say(f"deleted {ref} from {where}")

"""What the local registry holds, as the commands show it: the one way the CLI reaches
records (products, code runs, objects, and what a remote has besides)."""

from __future__ import annotations

import contextlib
import json
import sys
from typing import Any

from fdp_tasks import environment
from fdp_tasks.catalog.locations import intact
from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.project import Project
from fdp_tasks.provenance import walk_product
from fdp_tasks.refs import PartialRef
from fdp_tasks.remotes import open_remote
from fdp_tasks.store import queries


def describe(project: Project, item: str) -> dict[str, Any]:
    """A data product (ns:name@version, the newest without @), a code run or an object
    (uuid), with its provenance. Only reads: a registry that is not there reads as empty."""
    store = project.read_store()
    is_uuid = len(item) == 36 and item.count("-") == 4 and ":" not in item
    if not is_uuid:
        return product_info(store, item)
    runs = store.find("code_run", {"uuid": item}, limit=1)
    if not runs:
        return object_info(store, item)
    info = run_info(store, item)
    info["output_count"] = output_count(project, item, len(runs[0]["outputs"]))
    info["environment"] = run_environment(project, store, runs[0])
    return info


def run_environment(project: Project, store: Any, run: dict[str, Any]) -> dict[str, Any] | str:
    """The environment a code run recorded (`fdp_tasks.environment`), read from the local
    data store; where it is not here (a pulled run's), where it is."""
    for component_id in run.get("inputs") or []:
        obj = store.get("object", store.get("object_component", component_id)["object"])
        if obj.get("description") != environment.DESCRIPTION or obj.get("data_products"):
            continue
        if not obj.get("storage_location"):
            break
        location = store.get("storage_location", obj["storage_location"])
        root = store.get("storage_root", location["storage_root"])
        data = project.data_store
        if intact(data, location["path"], location["hash"], root=root["root"]):
            with contextlib.suppress(ValueError, OSError):
                found = json.loads(data.path(location["path"]).read_text(encoding="utf-8"))
                if isinstance(found, dict):
                    return found
        return f"recorded at {root['root']}{location['path']} (not in the local data store)"
    return "not recorded"


def products(project: Project, namespace: str | None = None) -> list[str]:
    """Every data product as ns:name@version, oldest first (of one namespace, if given)."""
    store = project.read_store()
    namespaces = {ns["id"]: ns["name"] for ns in store.find("namespace")}
    filters = {}
    if namespace:
        ns_id = queries.namespace_id(store, namespace)
        if ns_id is None:
            return []
        filters["namespace"] = ns_id
    return [
        f"{namespaces[p['namespace']]}:{p['name']}@{p['version']}"
        for p in store.find("data_product", filters, newest_first=False)
    ]


def code_runs(project: Project) -> list[dict[str, Any]]:
    """Every code run, oldest first: uuid, date, input and output counts, description."""
    return [
        {
            "uuid": run["uuid"],
            "run_date": run["run_date"],
            "inputs": len(run["inputs"]),
            "outputs": len(run["outputs"]),
            "description": run["description"],
        }
        for run in project.read_store().find("code_run", newest_first=False)
    ]


def product_info(store: Any, ref_text: str) -> dict[str, Any]:
    typed = PartialRef.parse(ref_text, "the data product")
    if not typed.namespace:
        raise BadInput(f"{ref_text}: give the namespace, as namespace:name@version")
    if not typed.pinned and typed.incrementer != "LATEST":
        raise BadInput(f"{ref_text}: give a version, or none (or latest) for the newest")
    versions = [] if typed.pinned else queries.product_versions(store, typed.namespace, typed.name)
    if not typed.pinned and not versions:
        raise FdpError(f"{ref_text} is not in the local registry")
    ref = typed.resolve(None, versions)
    product = queries.find_product(store, ref.namespace, ref.name, ref.version_text)
    if product is None:
        raise FdpError(f"{ref} is not in the local registry")
    found = queries.locate(store, product)
    info: dict[str, Any] = {
        "data_product": str(ref),
        "object_uuid": found.object["uuid"],
        "description": found.object.get("description"),
        "file": (found.root["root"] + found.location["path"])
        if found.location and found.root
        else None,
        "sha1": found.hash,
        "authors": [store.get("author", a)["name"] for a in found.object["authors"]],
    }
    for ext_id in found.product.get("external_object") or []:
        ext = store.get("external_object", ext_id)
        info["external_object"] = {
            k: ext[k]
            for k in (
                "title",
                "identifier",
                "alternate_identifier",
                "release_date",
                "primary_not_supplement",
            )
            if ext.get(k) is not None
        }
    # the runs that made it and those that read it, as the provenance walk finds them
    made = walk_product(store, found.product["id"])
    info["made_by"] = [run.uuid for run in made.activities.values()]
    read = walk_product(store, found.product["id"], downstream=True)
    info["read_by"] = sorted(run.uuid for run in read.activities.values())
    return info


def run_info(store: Any, run_uuid: str) -> dict[str, Any]:
    rows = store.find("code_run", {"uuid": run_uuid}, limit=1)
    if not rows:
        raise FdpError(f"no code run {run_uuid} in the local registry")
    run = rows[0]

    def products(components: list[int]) -> list[str]:
        out = []
        for cid in components:
            obj = store.get("object", store.get("object_component", cid)["object"])
            for pid in obj["data_products"]:
                p = store.get("data_product", pid)
                ns = store.get("namespace", p["namespace"])["name"]
                out.append(f"{ns}:{p['name']}@{p['version']}")
        return out

    def where(object_id: int | None) -> str | None:
        if object_id is None:
            return None
        obj = store.get("object", object_id)
        if not obj.get("storage_location"):
            return None
        location = store.get("storage_location", obj["storage_location"])
        root = store.get("storage_root", location["storage_root"])
        return f"{root['root']}{location['path']} (SHA-1 {location['hash']})"

    return {
        "code_run": run["uuid"],
        "run_date": run["run_date"],
        "description": run["description"],
        "code_repo": where(run["code_repo"]),
        "model_config": where(run["model_config"]),
        "submission_script": where(run["submission_script"]),
        "inputs": products(run["inputs"]),
        "outputs": products(run["outputs"]),
    }


def output_count(project: Project, run_uuid: str, here: int) -> str:
    """How many outputs of a code run are here, and how many the remote holds that are not.

    A pull copies only the outputs asked for, so a run's local record may list 10 of the
    1,000 it wrote. The remote is asked once (the run's record lists its outputs), never once
    per output; without a remote nothing is said about one, and one that does not answer
    gets a one-line note.
    """
    text = f"{here} here"
    try:
        spec = project.remote()
    except FdpError:
        return text  # no remote configured: nothing to compare with
    try:
        with open_remote(spec.name, spec.url, spec.token()) as remote:
            rows = remote.registry.find("code_run", {"uuid": run_uuid}, limit=1)
    except (FdpError, OSError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"note: remote {spec.name} did not answer: {reason}", file=sys.stderr)
        return text
    if not rows:
        return f"{text}; the run is not on remote {spec.name}"
    only_there = len(rows[0].get("outputs") or []) - here
    if only_there <= 0:
        return f"{text}, no others on remote {spec.name}"
    return (
        f"{text}, {only_there} on remote {spec.name} only "
        "(read them in a config and `fdp pull` to fetch)"
    )


def object_info(store: Any, object_uuid: str) -> dict[str, Any]:
    """An object by uuid: the data products it holds, or its file and description."""
    rows = store.find("object", {"uuid": object_uuid}, limit=1)
    if not rows:
        raise FdpError(f"no code run or object {object_uuid} in the local registry")
    obj = rows[0]
    if obj["data_products"]:
        product = store.get("data_product", obj["data_products"][0])
        ns = store.get("namespace", product["namespace"])["name"]
        return product_info(store, f"{ns}:{product['name']}@{product['version']}")
    info: dict[str, Any] = {"object_uuid": obj["uuid"], "description": obj.get("description")}
    if obj.get("storage_location"):
        location = store.get("storage_location", obj["storage_location"])
        root = store.get("storage_root", location["storage_root"])
        info["file"] = root["root"] + location["path"]
        info["sha1"] = location["hash"]
    return info

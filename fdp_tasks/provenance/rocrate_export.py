"""A `ProvGraph` as an RO-Crate (the `rocrate` package) of the Workflow Run Crate profile:
each code run is a `CreateAction` whose instrument is its submission script (a
`ComputationalWorkflow`, the crate's main entity being the root run's), whose objects are its
inputs and config and whose results are its outputs; authors are `Person`s. Every data file
carries its `sha1` as the registry recorded it, and its bytes when `bytes_of` gives them (a
reference to its URL otherwise).

    build_crate(graph, bytes_of) -> rocrate.rocrate.ROCrate
    write_crate(crate, destination, as_zip)
    crate_metadata(crate) -> dict          the ro-crate-metadata.json, as JSON data

`bytes_of(entity)` returns a local file holding the entity's bytes, or None: the caller
decides what may be shipped (the server never ships a private file).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

from rocrate.model.computationalworkflow import ComputationalWorkflow
from rocrate.model.contextentity import ContextEntity
from rocrate.model.person import Person
from rocrate.rocrate import ROCrate

from fdp_tasks.provenance.walk import (
    ASSOCIATED_WITH,
    ATTRIBUTED_TO,
    CODE_REPO,
    CONFIG,
    EXTERNAL,
    GENERATED_BY,
    SCRIPT,
    USED,
    Activity,
    Entity,
    ProvGraph,
)

PROCESS_RUN_CRATE = "https://w3id.org/ro/wfrun/process/0.5"
WORKFLOW_RUN_CRATE = "https://w3id.org/ro/wfrun/workflow/0.5"
WORKFLOW_RO_CRATE = "https://w3id.org/workflowhub/workflow-ro-crate/1.0"
PROFILES = (PROCESS_RUN_CRATE, WORKFLOW_RUN_CRATE, WORKFLOW_RO_CRATE)
SHELL = {
    "@id": "#shell-script",
    "@type": "ComputerLanguage",
    "name": "Shell script",
    "url": "https://www.gnu.org/software/bash/",
}

# The RO-Crate context has no term for a SHA-1; the registry's vocabulary does.
SHA1_TERM = "https://data.fairdatapipeline.org/vocab/#hash"

BytesOf = Callable[[Entity], Path | None]


def _crate_path(entity: Entity) -> str:
    """Where a file sits in the crate: data products by name and version, the rest by
    what they are and their hash (a run's config and script share names with others)."""
    ext = f".{entity.extension}" if entity.extension else ""
    if entity.namespace and entity.name and entity.version:
        return f"data/{entity.namespace}/{entity.name}/{entity.version}{ext}"
    base = {CONFIG: "config", SCRIPT: "script"}.get(entity.kind, "file")
    name = Path(entity.path or "").name or f"{base}{ext}"
    return f"runs/{(entity.hash or entity.key.rpartition('/')[2])[:12]}/{name}"


def _file_properties(entity: Entity) -> dict[str, Any]:
    props: dict[str, Any] = {"name": entity.label}
    if entity.description:
        props["description"] = entity.description
    if entity.hash:
        props["sha1"] = entity.hash
    if entity.file_type:
        props["encodingFormat"] = entity.file_type
    if entity.version:
        props["version"] = entity.version
    if entity.last_updated:
        props["dateModified"] = entity.last_updated
    if entity.location:
        props["url"] = entity.location
    return props


def _add_file(
    crate: ROCrate, entity: Entity, source: Path | None, language: Any, workflow: bool
) -> Any:
    """One file of the crate: shipped when `source` holds its bytes, else referenced by
    its URL; a script is a ComputationalWorkflow in the shell language."""
    props = _file_properties(entity)
    if source is None and not entity.location:
        # nowhere to be had (a private file, to an anonymous reader): described, not linked
        ident = f"#{quote(entity.key, safe='')}"
        return crate.add(ContextEntity(crate, ident, properties={"@type": "CreativeWork", **props}))
    if source is not None:
        location, where = str(source), _crate_path(entity)
    else:
        location, where = entity.location or "", None
    if not workflow:
        return crate.add_file(location, dest_path=where, properties=props)
    added = crate.add(ComputationalWorkflow(crate, location, where, properties=props))
    added["programmingLanguage"] = language
    return added


def build_crate(graph: ProvGraph, bytes_of: BytesOf) -> ROCrate:
    """The crate of `graph`; files whose bytes `bytes_of` gives are copied in."""
    crate = ROCrate(version="1.1")
    crate.metadata.extra_terms["sha1"] = SHA1_TERM
    shell = {k: v for k, v in SHELL.items() if k != "@id"}
    language = crate.add(ContextEntity(crate, SHELL["@id"], properties=shell))
    files: dict[str, Any] = {}

    def add_file(entity: Entity, workflow: bool = False) -> Any:
        if entity.key not in files:
            files[entity.key] = _add_file(crate, entity, bytes_of(entity), language, workflow)
        return files[entity.key]

    people: dict[str, Person] = {}
    for agent in graph.agents.values():
        ident = agent.identifier or f"#{quote(agent.key, safe='')}"
        people[agent.key] = crate.add(Person(crate, ident, properties={"name": agent.name}))

    creators: dict[str, list[str]] = {}
    for edge in graph.edges:
        if edge.relation == ATTRIBUTED_TO:
            creators.setdefault(edge.source, []).append(edge.target)

    for entity in sorted(graph.entities.values(), key=lambda e: e.key):
        if entity.kind in (EXTERNAL, CODE_REPO, SCRIPT):
            continue
        added = add_file(entity)
        authors = [{"@id": people[a].id} for a in creators.get(entity.key, [])]
        if authors:
            added["author"] = authors

    main_workflow = None
    for activity in sorted(graph.activities.values(), key=lambda a: (a.run_date or "", a.key)):
        inputs = [e.target for e in graph.edges if e.source == activity.key and e.relation == USED]
        outputs = [
            e.source for e in graph.edges if e.target == activity.key and e.relation == GENERATED_BY
        ]
        script_key, repo_key = activity.submission_script, activity.code_repo
        script = graph.entities.get(script_key or "")
        instrument = None
        if script is not None:
            instrument = add_file(script, workflow=True)
            repo = graph.entities.get(repo_key or "")
            if repo is not None and repo.location:
                where = repo.location.removesuffix(repo.hash or "")
                instrument["codeRepository"] = where.rstrip("/")
            if activity.commit:
                instrument["version"] = activity.commit
            if main_workflow is None or activity.key == graph.root:
                main_workflow = instrument
        action = crate.add_action(
            instrument,
            identifier=f"#{activity.uuid}",
            object=[files[k] for k in inputs if k in files and k not in (script_key, repo_key)],
            result=[files[key] for key in outputs if key in files],
            properties=_action_properties(graph, activity, people),
        )
        crate.root_dataset.append_to("mentions", action)
    if main_workflow is not None:
        crate.mainEntity = main_workflow
    crate.root_dataset["name"] = f"Provenance of {graph.root}"
    crate.root_dataset["description"] = (
        f"What made {graph.root}, as recorded in a FAIR Data Pipeline registry"
        if not graph.downstream
        else f"What was made from {graph.root}, as recorded in a FAIR Data Pipeline registry"
    )
    crate.root_dataset["license"] = "https://creativecommons.org/publicdomain/zero/1.0/"
    _declare_profiles(crate)
    return crate


def _action_properties(graph: ProvGraph, activity: Activity, people: dict[str, Person]) -> dict:
    """A code run as a CreateAction: its name, description, start and who ran it."""
    props: dict[str, Any] = {"name": f"code run {activity.uuid}"}
    if activity.description:
        props["description"] = activity.description
    if activity.run_date:
        props["startTime"] = activity.run_date
    runners = [
        people[e.target]
        for e in graph.edges
        if e.source == activity.key and e.relation == ASSOCIATED_WITH
    ]
    if runners:
        props["agent"] = {"@id": runners[0].id}
    return props


def _declare_profiles(crate: ROCrate) -> None:
    """The root conforms to the run crate profiles, each a CreativeWork of the crate."""
    crate.root_dataset["conformsTo"] = [{"@id": profile} for profile in PROFILES]
    for profile in PROFILES:
        crate.add(
            ContextEntity(
                crate,
                profile,
                properties={
                    "@type": "CreativeWork",
                    "name": _profile_name(profile),
                    "version": profile.rsplit("/", 1)[1],
                },
            )
        )


def _profile_name(uri: str) -> str:
    if "process" in uri:
        return "Process Run Crate"
    if "wfrun" in uri:
        return "Workflow Run Crate"
    return "Workflow RO-Crate"


def write_crate(crate: ROCrate, destination: Path, as_zip: bool) -> None:
    """The crate as a folder, or as one zip file, at `destination` (replaced whole)."""
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=destination.parent, prefix=".crate-") as tmp:
        staged = Path(tmp) / "crate"
        if as_zip:
            crate.write_zip(str(staged) + ".zip")
            Path(str(staged) + ".zip").replace(destination)
        else:
            crate.write(staged)
            if destination.exists():
                old = Path(tmp) / "old"
                destination.replace(old)
            staged.replace(destination)


def crate_metadata(crate: ROCrate) -> dict[str, Any]:
    """The crate's ro-crate-metadata.json as JSON data."""
    return json.loads(json.dumps(crate.metadata.generate()))

"""A `ProvGraph` as a W3C PROV document (the `prov` package), shaped as the upstream FAIR
Data Pipeline registry's prov-report: the same prefixes (`reg` for the central registry,
`lreg` for any other, `fair` for the registry's vocabulary, `dcat`, `dcmitype`, `dcterms`,
`foaf`, `rdf`) and the same attribute names and roles.

    build_document(graph, registry_url) -> prov.model.ProvDocument
    serialize(document, fmt) -> bytes      fmt: one of FORMATS

Node identifiers are the graph's natural keys under the registry's prefix
(`lreg:data_product/ns:name@version`, `lreg:code_run/<uuid>`, ...), so the documents of one
product in two registries differ only in that prefix's URL and in what each registry
itself says differently (where the file lies, when its record was written).
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import quote

from prov.constants import PROV, PROV_ROLE
from prov.identifier import Namespace, QualifiedName
from prov.model import ProvDocument, ProvRecord

from fdp_tasks.errors import BadInput
from fdp_tasks.provenance.walk import (
    ASSOCIATED_WITH,
    ATTRIBUTED_TO,
    CODE_REPO,
    DERIVED_FROM,
    EXTERNAL,
    GENERATED_BY,
    PRODUCT,
    SCRIPT,
    SPECIALIZATION_OF,
    USED,
    Activity,
    Agent,
    Entity,
    ProvGraph,
)

CENTRAL_REGISTRY_URL = "https://data.fairdatapipeline.org/"
VOCABULARIES = {
    "dcat": "http://www.w3.org/ns/dcat#",
    "dcmitype": "http://purl.org/dc/dcmitype/",
    "dcterms": "http://purl.org/dc/terms/",
    "foaf": "http://xmlns.com/foaf/spec/#",
    "rdf": "http://www.w3.org/1999/02/22-rdf-syntax-ns#",
}
# The formats `serialize` writes: ours by their W3C names, and the upstream prov-report's
# `?format=` names as aliases.
FORMATS = ("prov-json", "prov-n", "prov-xml", "turtle", "json-ld")
ALIASES = {"json": "prov-json", "provn": "prov-n", "xml": "prov-xml", "ttl": "turtle"}
MEDIA_TYPES = {
    "prov-json": "application/json",
    "prov-n": "text/provenance-notation",
    "prov-xml": "text/xml",
    "turtle": "text/turtle",
    "json-ld": "application/ld+json",
}
# Where the local registry has no URL of its own (the SQL store read in place).
LOCAL_REGISTRY_URL = "http://localhost/"


class _Terms:
    """QualifiedNames of one document's namespaces."""

    def __init__(self, doc: ProvDocument, registry_url: str):
        base = registry_url if registry_url.endswith("/") else registry_url + "/"
        self.prefix = "reg" if base == CENTRAL_REGISTRY_URL else "lreg"
        self.reg = doc.add_namespace(self.prefix, base)
        self.fair = doc.add_namespace("fair", f"{CENTRAL_REGISTRY_URL}vocab/#")
        self.ns: dict[str, Namespace] = {
            prefix: doc.add_namespace(prefix, uri) for prefix, uri in VOCABULARIES.items()
        }

    def __call__(self, prefix: str, name: str) -> QualifiedName:
        if prefix == "fair":
            return self.fair[name]
        if prefix == "prov":
            return PROV[name]
        return self.ns[prefix][name]

    def node(self, key: str) -> QualifiedName:
        return self.reg[quote(key, safe="/:@.-_~+")]


def build_document(graph: ProvGraph, registry_url: str | None = None) -> ProvDocument:
    """The PROV document of `graph`, with node ids under `registry_url` (the registry's
    site root; the central registry's gets the prefix `reg`, any other `lreg`)."""
    doc = ProvDocument()
    terms = _Terms(doc, registry_url or LOCAL_REGISTRY_URL)
    for agent in sorted(graph.agents.values(), key=lambda a: a.key):
        doc.agent(terms.node(agent.key), _agent_attributes(agent, terms))
    for entity in sorted(graph.entities.values(), key=lambda e: e.key):
        doc.entity(terms.node(entity.key), _entity_attributes(entity, terms))
    for activity in sorted(graph.activities.values(), key=lambda a: a.key):
        doc.activity(
            terms.node(activity.key),
            activity.run_date,
            activity.end_date,
            _activity_attributes(activity, terms),
        )
    for edge in graph.edges:
        source, target = terms.node(edge.source), terms.node(edge.target)
        role = {PROV_ROLE: terms(_role_prefix(edge.role), edge.role)} if edge.role else None
        if edge.relation == USED:
            doc.used(source, target, None, None, role)
        elif edge.relation == GENERATED_BY:
            doc.wasGeneratedBy(source, target)
        elif edge.relation == ATTRIBUTED_TO:
            doc.wasAttributedTo(source, target, None, role)
        elif edge.relation == ASSOCIATED_WITH:
            doc.wasAssociatedWith(source, target, None, None, role)
            # the upstream report says who started a run this way
            activity = graph.activities[edge.source]
            doc.wasStartedBy(source, target, None, activity.run_date, None, role)
        elif edge.relation == DERIVED_FROM:
            doc.wasDerivedFrom(source, target)
        elif edge.relation == SPECIALIZATION_OF:
            doc.specializationOf(source, target)
    return doc


def _role_prefix(role: str | None) -> str:
    return "dcterms" if role == "creator" else "fair"


def _agent_attributes(agent: Agent, t: _Terms) -> list[tuple[QualifiedName, Any]]:
    attributes: list[tuple[QualifiedName, Any]] = [
        (t("rdf", "type"), PROV["Person"]),
        (t("foaf", "name"), agent.name),
    ]
    if agent.identifier:
        attributes.append((t("dcterms", "identifier"), agent.identifier))
    return attributes


def _object_attributes(entity: Entity, t: _Terms) -> list[tuple[QualifiedName, Any]]:
    """What the upstream report says of any file: when, where, what, which format."""
    out: list[tuple[QualifiedName, Any]] = []
    if entity.last_updated:
        out.append((t("dcterms", "modified"), entity.last_updated))
    if entity.location:
        out.append((t("prov", "atLocation"), entity.location))
    if entity.hash:
        out.append((t("fair", "commit" if entity.kind == CODE_REPO else "hash"), entity.hash))
    if entity.description:
        out.append((t("dcterms", "description"), entity.description))
    if entity.kind == PRODUCT:
        out.append((t("fair", "namespace"), entity.namespace))
        out.append((t("dcterms", "title"), entity.name))
        out.append((t("dcat", "hasVersion"), entity.version))
    out += [(t("fair", "issue"), issue) for issue in entity.issues]
    if entity.file_type:
        out.append((t("dcterms", "format"), entity.file_type))
    return out


def _entity_attributes(entity: Entity, t: _Terms) -> list[tuple[QualifiedName, Any]]:
    if entity.kind == EXTERNAL:
        return _external_attributes(entity, t)
    out: list[tuple[QualifiedName, Any]] = []
    if entity.kind == PRODUCT:
        out.append((t("rdf", "type"), t("dcat", "Dataset")))
    elif entity.kind == SCRIPT or (entity.kind == CODE_REPO and entity.details):
        out.append((t("rdf", "type"), t("dcmitype", "Software")))
    out += _object_attributes(entity, t)
    if entity.kind == CODE_REPO and entity.details:
        names = {"name": ("dcterms", "title"), "version": ("dcat", "hasVersion")}
        for key, value in entity.details.items():
            prefix, name = names.get(key, ("fair", key))
            out.append((t(prefix, name), value))
    return out


def _external_attributes(entity: Entity, t: _Terms) -> list[tuple[QualifiedName, Any]]:
    details = entity.details
    out: list[tuple[QualifiedName, Any]] = [
        (t("rdf", "type"), t("dcat", "Dataset")),
        (t("dcterms", "title"), details.get("title") or entity.label),
    ]
    if details.get("release_date"):
        out.append((t("dcterms", "issued"), details["release_date"]))
    out.append((t("dcat", "hasVersion"), entity.version))
    names = (
        ("identifier", "dcterms", "identifier"),
        ("alternate_identifier", "fair", "alternate_identifier"),
        ("alternate_identifier_type", "fair", "alternate_identifier_type"),
        ("description", "dcterms", "description"),
        ("original_store", "prov", "atLocation"),
    )
    for key, prefix, name in names:
        if details.get(key):
            out.append((t(prefix, name), details[key]))
    return out


def _activity_attributes(activity: Activity, t: _Terms) -> list[tuple[QualifiedName, Any]]:
    out: list[tuple[QualifiedName, Any]] = [(t("rdf", "type"), t("fair", "Run"))]
    if activity.description:
        out.append((t("dcterms", "description"), activity.description))
    return out


# ------------------------------------------------------------------ serialising
def normalise_format(fmt: str) -> str:
    """Our format name for `fmt` (ours or the upstream prov-report's); BadInput if none."""
    name = ALIASES.get(fmt, fmt)
    if name not in FORMATS:
        known = ", ".join(FORMATS)
        raise BadInput(f"format: expected one of {known}, got {fmt!r}")
    return name


def serialize(doc: ProvDocument, fmt: str) -> bytes:
    """The document as `fmt` (see FORMATS), UTF-8."""
    name = normalise_format(fmt)
    if name == "prov-json":
        text = doc.serialize(format="json", indent=2)
    elif name == "prov-n":
        text = doc.get_provn()
    elif name == "prov-xml":
        buffer = io.BytesIO()
        doc.serialize(buffer, format="xml")
        return buffer.getvalue()
    elif name == "turtle":
        text = doc.serialize(format="rdf", rdf_format="turtle")
    else:
        text = doc.serialize(format="rdf", rdf_format="json-ld")
    return (text or "").encode("utf-8")


def read_json(data: str | bytes) -> ProvDocument:
    """A PROV-JSON document read back (for checks and tests)."""
    return ProvDocument.deserialize(content=data, format="json")


def records_of(doc: ProvDocument) -> list[ProvRecord]:
    """The document's records (its bundles' too)."""
    return list(doc.get_records())

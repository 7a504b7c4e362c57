"""The provenance walk: a typed graph of what made a data product or a code run (upstream),
or of what was made from it (downstream), read from any `Registry`.

Public entry points, for the CLI, the server, doit and the web view alike:

    walk(registry, "ns:name@version" | "<code run uuid>", depth=1, downstream=False)
    walk_product(registry, product_id, depth=1, downstream=False)
    walk_code_run(registry, run_id, depth=1, downstream=False)
    resolve_item(registry, text) -> ("data_product" | "code_run", record id)

Depth counts code runs, as the upstream registry's prov-report does: depth 1 is a product,
the run that made it and that run's config, script, code repository and inputs; depth 2
adds the runs that made those inputs, and so on. Downstream, depth 1 is the runs that read
the product and what they wrote.

Keys are natural, never a registry's row ids: `data_product/ns:name@version`,
`object/<uuid>`, `code_run/<uuid>`, `author/<identifier or name>`, so the graph of a product
pushed to another registry has the same keys as the one made where it was run. Records are
fetched a level at a time with `get_many`, each record once per walk.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.refs import PartialRef
from fdp_tasks.store import queries
from fdp_tasks.store.base import Record, Registry, RegistryError

# What each entity kind stands for; the exports pick their vocabulary from it.
PRODUCT = "data_product"
EXTERNAL = "external_object"
CONFIG = "model_config"
SCRIPT = "submission_script"
CODE_REPO = "code_repo"
OBJECT = "object"  # a file that no data product names (an input read by uuid)

# Relations, as W3C PROV names them; each edge reads `source relation target`.
USED = "used"  # activity used entity
GENERATED_BY = "wasGeneratedBy"  # entity wasGeneratedBy activity
ATTRIBUTED_TO = "wasAttributedTo"  # entity wasAttributedTo agent
ASSOCIATED_WITH = "wasAssociatedWith"  # activity wasAssociatedWith agent
DERIVED_FROM = "wasDerivedFrom"  # entity wasDerivedFrom entity
SPECIALIZATION_OF = "specializationOf"  # external object specializationOf data product

# Roles, as the upstream registry's vocabulary names them.
ROLE_INPUT = "input_data"
ROLE_CONFIG = "model_configuration"
ROLE_SCRIPT = "submission_script"
ROLE_SOFTWARE = "software"
ROLE_RUNNER = "code_runner"
ROLE_CREATOR = "creator"

MAX_DEPTH = 100
# Records a walk reads at a time: a run of 10,000 outputs is walked 500 products at a time,
# and the records of a page are dropped once it is done with them.
WALK_PAGE = 500


@dataclass
class Entity:
    """A data product (with its file), an external object, or a run's config, script or
    code repository. `hash` and `location` are the file's SHA-1 and URL (root + path)."""

    key: str
    kind: str
    label: str
    record_id: int | None = None  # the data product's (or object's) id in the walked registry
    object_uuid: str | None = None
    namespace: str | None = None
    name: str | None = None
    version: str | None = None
    description: str | None = None
    file_type: str | None = None
    extension: str | None = None
    hash: str | None = None
    location: str | None = None
    path: str | None = None  # the path under its storage root
    public: bool | None = None
    last_updated: str | None = None
    issues: list[str] = field(default_factory=list)
    # external object fields, or a code repository release's (name, version, website)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class Activity:
    """A code run: started at `run_date`; the registry records no end time."""

    key: str
    uuid: str
    label: str
    record_id: int | None = None
    run_date: str | None = None
    end_date: str | None = None
    description: str | None = None
    model_config: str | None = None  # entity keys
    submission_script: str | None = None
    code_repo: str | None = None
    commit: str | None = None  # the code repository's hash: the git commit it ran


@dataclass
class Agent:
    """An author (of a file, or the user who ran a code run, through their author)."""

    key: str
    name: str
    identifier: str | None = None


@dataclass(frozen=True)
class Edge:
    source: str
    relation: str
    target: str
    role: str | None = None


@dataclass
class ProvGraph:
    """What `walk` returns: nodes by key, and the edges between them in the order found."""

    root: str
    depth: int
    downstream: bool
    entities: dict[str, Entity] = field(default_factory=dict)
    activities: dict[str, Activity] = field(default_factory=dict)
    agents: dict[str, Agent] = field(default_factory=dict)
    edges: list[Edge] = field(default_factory=list)
    _edge_set: set[Edge] = field(default_factory=set, repr=False, compare=False)

    def add_edge(self, source: str, relation: str, target: str, role: str | None = None) -> None:
        edge = Edge(source, relation, target, role)
        if edge not in self._edge_set:
            self._edge_set.add(edge)
            self.edges.append(edge)

    def products(self) -> list[Entity]:
        return [e for e in self.entities.values() if e.kind == PRODUCT]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data, in a fixed order (the digest hashes it)."""
        return {
            "root": self.root,
            "depth": self.depth,
            "downstream": self.downstream,
            "entities": [asdict(e) for e in sorted(self.entities.values(), key=_by_key)],
            "activities": [asdict(a) for a in sorted(self.activities.values(), key=_by_key)],
            "agents": [asdict(a) for a in sorted(self.agents.values(), key=_by_key)],
            "edges": sorted(
                (asdict(e) for e in self.edges),
                key=lambda e: (e["source"], e["relation"], e["target"], e["role"] or ""),
            ),
        }

    def digest(self) -> str:
        """A SHA-256 of the graph without the walked registry's row ids: it changes exactly
        when the provenance does (doit's `prov` task is up to date while it stays)."""
        data = self.to_dict()
        for group in ("entities", "activities"):
            for node in data[group]:
                node.pop("record_id", None)
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _by_key(node: Entity | Activity | Agent) -> str:
    return node.key


# ------------------------------------------------------------------ entry points
def resolve_item(registry: Registry, text: str) -> tuple[str, int]:
    """("data_product", id) for ns:name@version (the newest version without @), or
    ("code_run", id) for a code run's uuid; an object's uuid names its data product."""
    found = find_item(registry, text)
    if found is None:
        raise FdpError(f"{text.strip()}: no such data product or code run in the registry")
    return found


def find_item(registry: Registry, text: str) -> tuple[str, int] | None:
    """What `resolve_item` answers, or None when this registry does not hold the item (so a
    caller may ask another); a malformed reference is BadInput either way."""
    item = text.strip()
    if _looks_like_uuid(item):
        runs = registry.find("code_run", {"uuid": item}, limit=1)
        if runs:
            return "code_run", runs[0]["id"]
        objects = registry.find("object", {"uuid": item}, limit=1)
        if objects and objects[0].get("data_products"):
            return PRODUCT, objects[0]["data_products"][0]
        return None
    typed = PartialRef.parse(item, "the data product")
    if not typed.namespace:
        raise BadInput(f"{item}: give the namespace, as namespace:name@version")
    if not typed.pinned and typed.incrementer != "LATEST":
        raise BadInput(f"{item}: give a version, or none (or latest) for the newest")
    versions = (
        [] if typed.pinned else queries.product_versions(registry, typed.namespace, typed.name)
    )
    if not typed.pinned and not versions:
        return None
    ref = typed.resolve(None, versions)
    product = queries.find_product(registry, ref.namespace, ref.name, ref.version_text)
    return None if product is None else (PRODUCT, product["id"])


def walk(registry: Registry, item: str, depth: int = 1, downstream: bool = False) -> ProvGraph:
    """The provenance of `item` (ns:name@version or a code run uuid); see the module doc."""
    kind, record_id = resolve_item(registry, item)
    if kind == "code_run":
        return walk_code_run(registry, record_id, depth, downstream)
    return walk_product(registry, record_id, depth, downstream)


def walk_product(
    registry: Registry, product_id: int, depth: int = 1, downstream: bool = False
) -> ProvGraph:
    """The provenance of one data product (by its id in `registry`)."""
    _check_depth(depth)
    walker = _Walker(registry, ProvGraph("", depth, downstream))
    walker.graph.root = walker.product_entities([product_id])[product_id]
    walker.levels([product_id], depth, downstream)
    return walker.graph


def walk_code_run(
    registry: Registry, run_id: int, depth: int = 1, downstream: bool = False
) -> ProvGraph:
    """The provenance of one code run (by its id): its config, script, code repository,
    inputs and outputs, then `depth - 1` more levels upstream (or downstream)."""
    _check_depth(depth)
    walker = _Walker(registry, ProvGraph("", depth, downstream))
    run = walker.records.one("code_run", run_id)
    walker.graph.root = _run_key(run)
    inputs, outputs = walker.add_run(run, inputs=True, outputs=True)
    if depth > 1:
        walker.levels(outputs if downstream else inputs, depth - 1, downstream)
    return walker.graph


def _check_depth(depth: int) -> None:
    if not 1 <= depth <= MAX_DEPTH:
        raise BadInput(f"depth: expected a whole number from 1 to {MAX_DEPTH}, got {depth}")


def _looks_like_uuid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4 and ":" not in text


def _run_key(run: Record) -> str:
    return f"code_run/{run.get('uuid') or 'id-' + str(run['id'])}"


def _object_key(obj: Record) -> str:
    return f"object/{obj.get('uuid') or 'id-' + str(obj['id'])}"


# ------------------------------------------------------------------------ reading
class _Records:
    """Records by type and id, each fetched once, in batches (`get_many`)."""

    def __init__(self, registry: Registry):
        self.registry = registry
        self.cache: dict[str, dict[int, Record]] = {}

    def many(self, type_name: str, ids: Sequence[int | None]) -> dict[int, Record]:
        known = self.cache.setdefault(type_name, {})
        wanted = [i for i in dict.fromkeys(ids) if i is not None]
        missing = [i for i in wanted if i not in known]
        if missing:
            known.update(self.registry.get_many(type_name, missing))
        return {i: known[i] for i in wanted}

    def one(self, type_name: str, record_id: int) -> Record:
        return self.many(type_name, [record_id])[record_id]


class ProvenanceUnavailable(FdpError):
    """The registry cannot say which code run made an object: it refuses the filter on a
    run's outputs, or ignores it (answering with runs that did not make the object)."""


class Lineage:
    """Which code runs made or read a registry's objects, and the products a push carries.

    The walks of push, pull, the plan and the graph all go through here, and a run is asked
    for once: a run's record lists every output, so the first of its outputs met tells the
    runs of all the others. N products of one run then cost one look-up answering one
    record, not N look-ups each answering a record that lists all N outputs. A component
    is taken to be made by the runs found for the first output of theirs met (a run made
    here lists only what it wrote: `SyncSession.verify_outputs` refuses one that does not).

    `strict`: a registry that refuses the outputs filter, or ignores it, raises
    ProvenanceUnavailable instead of having its answer dropped, so a caller stops asking
    rather than paging through every run on each product. Records are kept for the life of
    the object (one per run, product, object and component met), except in a walk of more
    than WALK_PAGE products or components, which drops each page's records when done with
    them, here and through `forget` in a cache in front of `registry`.
    """

    def __init__(
        self,
        registry: Registry,
        strict: bool = False,
        forget: Callable[[str, list[int]], None] | None = None,
    ):
        self.registry = registry
        self.strict = strict
        self.forget_records = forget  # drops records from a cache in front of `registry`
        self.records = _Records(registry)
        self.runs: dict[int, Record] = {}  # runs met, by id
        self._made_by: dict[int, list[int]] = {}  # output component -> run ids
        self._asked: set[int] = set()  # components whose makers are known
        self._read_by: dict[int, list[int]] = {}  # input component -> run ids

    def _remember(self, run: Record) -> None:
        if run["id"] not in self.runs:
            self.runs[run["id"]] = run
            self.records.cache.setdefault("code_run", {})[run["id"]] = run
            for component in run.get("outputs") or []:
                self._made_by.setdefault(component, []).append(run["id"])
                self._asked.add(component)

    def _listing(self, component: int, field_name: str) -> list[Record]:
        try:
            rows = self.registry.find("code_run", {field_name: component})
        except RegistryError as exc:
            if self.strict:
                raise ProvenanceUnavailable(
                    f"the registry refused a code_run filter: {exc}"
                ) from exc
            raise
        kept = []
        for row in rows:
            if component in (row.get(field_name) or []):
                kept.append(row)
            elif self.strict:
                raise ProvenanceUnavailable(
                    f"the registry ignores code_run filters on {field_name}"
                )
        return kept

    def runs_that_made(self, component_ids: Sequence[int]) -> list[Record]:
        """The code runs with one of these components among their outputs, oldest first."""
        for component in dict.fromkeys(component_ids):
            if component not in self._asked:
                for run in self._listing(component, "outputs"):
                    self._remember(run)
                self._asked.add(component)
        found = {r for c in component_ids for r in self._made_by.get(c, [])}
        return [self.runs[r] for r in sorted(found)]

    def made_by(self, component_id: int) -> list[Record]:
        """The runs that made one component (after `runs_that_made` asked for it)."""
        return [self.runs[r] for r in self._made_by.get(component_id, [])]

    def runs_that_read(self, component_ids: Sequence[int]) -> list[Record]:
        """The code runs with one of these components among their inputs, oldest first.
        Many runs read one input, so each input is asked for itself."""
        found: set[int] = set()
        for component in dict.fromkeys(component_ids):
            if component not in self._read_by:
                rows = self._listing(component, "inputs")
                for run in rows:
                    self._remember(run)
                self._read_by[component] = [r["id"] for r in rows]
            found.update(self._read_by[component])
        return [self.runs[r] for r in sorted(found)]

    def forget(self, type_names: tuple[str, ...]) -> None:
        """Drop the records kept of these types (runs stay): a walk of many pages of
        products holds the records of one page at a time."""
        for type_name in type_names:
            self.records.cache.pop(type_name, None)

    def products_of(self, component_ids: Sequence[int]) -> list[int]:
        """The data products whose objects hold these components, in their order."""
        found: dict[int, None] = {}
        for objects in self._objects_of(component_ids):
            found.update(
                dict.fromkeys(p for obj in objects.values() for p in obj.get("data_products") or [])
            )
        return list(found)

    def _objects_of(self, component_ids: Sequence[int]) -> Iterator[dict[int, Record]]:
        """The objects holding these components, a page of components at a time."""
        for _, objects in self._pages_with_objects("object_component", component_ids):
            yield objects

    def _pages_with_objects(
        self, type_name: str, ids: Sequence[int]
    ) -> Iterator[tuple[Sequence[int], dict[int, Record]]]:
        """Pages of `ids`, records of a type that names an object (components, data
        products), each with the objects they name, read in batches. In a walk of more than
        a page, the records a page read itself are dropped when the next page is read."""
        many = len(ids) > WALK_PAGE
        for start in range(0, len(ids), WALK_PAGE):
            page = ids[start : start + WALK_PAGE]
            new_records = self._unknown(type_name, page) if many else []
            records = self.records.many(type_name, page)
            object_ids = [r["object"] for r in records.values()]
            new_objects = self._unknown("object", object_ids) if many else []
            yield page, self.records.many("object", object_ids)
            self._drop(type_name, new_records)
            self._drop("object", new_objects)

    def _unknown(self, type_name: str, ids: Iterable[int]) -> list[int]:
        """Which of these records are not kept yet: those a page of a walk reads itself,
        and may drop when done with them (what was kept before stays)."""
        kept = self.records.cache.get(type_name, {})
        return [i for i in dict.fromkeys(ids) if i not in kept]

    def _drop(self, type_name: str, ids: Iterable[int]) -> None:
        """Forget records a walk of many pages is done with, here and in the registry's
        cache, so that it holds a page's records, not those of every product it meets."""
        ids = list(ids)
        if not ids:
            return
        kept = self.records.cache.get(type_name, {})
        for record_id in ids:
            kept.pop(record_id, None)
        if self.forget_records is not None:
            self.forget_records(type_name, ids)

    def unnamed_objects(self, run: Record) -> list[int]:
        """The objects of a run's inputs and outputs that no data product names (ids)."""
        component_ids = [*(run.get("inputs") or []), *(run.get("outputs") or [])]
        found: dict[int, None] = {}
        for objects in self._objects_of(component_ids):
            found.update(
                dict.fromkeys(o for o, obj in objects.items() if not obj.get("data_products"))
            )
        return list(found)

    def object_of(self, product_id: int) -> Record:
        return self.records.one("object", self.records.one("data_product", product_id)["object"])

    def runs_of_product(self, product_id: int) -> list[Record]:
        """The code runs that made a data product."""
        return self.runs_that_made(self.object_of(product_id).get("components") or [])

    def closure(self, product_ids: Sequence[int]) -> list[int]:
        """Every data product a push of these carries: the runs that made them, those runs'
        inputs and other outputs, and theirs, back to the registered sources. Level by
        level (records fetched in batches), the products asked for first."""
        seen: dict[int, None] = {}  # insertion-ordered set
        done_runs: set[int] = set()
        frontier = list(product_ids)
        while frontier:
            frontier = [p for p in dict.fromkeys(frontier) if p not in seen]
            if not frontier:
                break
            seen.update(dict.fromkeys(frontier))
            following: list[int] = []
            for page, _ in self._pages_with_objects("data_product", frontier):
                for product_id in page:
                    for run in self.runs_of_product(product_id):
                        if run["id"] not in done_runs:
                            done_runs.add(run["id"])
                            following += self.products_of(run.get("inputs") or [])
                            following += self.products_of(run.get("outputs") or [])
            frontier = following
        return list(seen)

    def outputs_of_runs(self, runs: Sequence[Record]) -> list[int]:
        """The data products these code runs wrote (ids, ascending)."""
        for run in runs:
            self._remember(run)
        return sorted(self.products_of([c for run in runs for c in run.get("outputs") or []]))


class _Walker:
    def __init__(self, registry: Registry, graph: ProvGraph):
        self.registry = registry
        self.lineage = Lineage(registry)
        self.records = self.lineage.records
        self.graph = graph
        self._entities = graph.entities
        self._agents = graph.agents
        self.product_keys: dict[int, str] = {}

    def edge(self, source: str, relation: str, target: str, role: str | None = None) -> None:
        self.graph.add_edge(source, relation, target, role)

    # ----------------------------------------------------------- levels of runs
    def levels(self, product_ids: list[int], depth: int, downstream: bool) -> None:
        frontier = list(dict.fromkeys(product_ids))
        done_products: set[int] = set()
        done_runs: set[int] = set()
        for _ in range(depth):
            frontier = [p for p in frontier if p not in done_products]
            if not frontier:
                break
            done_products.update(frontier)
            self.product_entities(frontier)
            following: list[int] = []
            for product_id in frontier:
                product = self.records.one("data_product", product_id)
                obj = self.records.one("object", product["object"])
                key = self.product_keys[product_id]
                for run in self._runs(obj, "inputs" if downstream else "outputs"):
                    if run["id"] in done_runs:
                        self.link_again(run, key, downstream)
                        continue
                    done_runs.add(run["id"])
                    inputs, outputs = self.add_run(run, inputs=not downstream, outputs=downstream)
                    if downstream:
                        self.edge(self._run_key_of(run), USED, key, ROLE_INPUT)
                        for out in outputs:
                            self.edge(self.product_keys[out], DERIVED_FROM, key)
                        following += outputs
                    else:
                        self.edge(key, GENERATED_BY, self._run_key_of(run))
                        for source in inputs:
                            self.edge(key, DERIVED_FROM, self.product_keys[source])
                        following += inputs
            frontier = following

    def link_again(self, run: Record, key: str, downstream: bool) -> None:
        """A product met through a run already added: only its own edges are new."""
        run_key = self._run_key_of(run)
        if downstream:
            self.edge(run_key, USED, key, ROLE_INPUT)
        else:
            self.edge(key, GENERATED_BY, run_key)
            for source in self._products_of(run.get("inputs") or []):
                self.edge(key, DERIVED_FROM, self.product_keys[source])

    def _runs(self, obj: Record, field_name: str) -> list[Record]:
        """The code runs listing one of the object's components as an input or output,
        oldest first; rows a registry answers without the component are dropped (the
        upstream registry ignores some filters)."""
        components = obj.get("components") or []
        if field_name == "outputs":
            return self.lineage.runs_that_made(components)
        return self.lineage.runs_that_read(components)

    def _run_key_of(self, run: Record) -> str:
        return _run_key(run)

    # ------------------------------------------------------------------- runs
    def add_run(self, run: Record, inputs: bool, outputs: bool) -> tuple[list[int], list[int]]:
        """The run's activity with its config, script and code repository; its input and
        output products (ids) added as entities, linked as asked."""
        key = _run_key(run)
        objects = self.records.many(
            "object", [run.get("model_config"), run.get("submission_script"), run.get("code_repo")]
        )
        self._prefetch_objects(list(objects.values()))
        activity = Activity(
            key=key,
            uuid=run.get("uuid") or "",
            label=run.get("description") or key,
            record_id=run["id"],
            run_date=_text(run.get("run_date")),
            description=run.get("description"),
        )
        self.graph.activities[key] = activity
        roles = (
            ("model_config", CONFIG, ROLE_CONFIG),
            ("submission_script", SCRIPT, ROLE_SCRIPT),
            ("code_repo", CODE_REPO, ROLE_SOFTWARE),
        )
        for field_name, kind, role in roles:
            object_id = run.get(field_name)
            if object_id is None:
                continue
            entity = self.object_entity(objects[object_id], kind)
            setattr(activity, field_name, entity.key)
            if kind == CODE_REPO:
                activity.commit = entity.hash
            self.edge(key, USED, entity.key, role)
        script_id = run.get("submission_script")
        runners = objects[script_id].get("authors") or [] if script_id is not None else []
        for agent_key in self._agent_keys(runners):
            self.edge(key, ASSOCIATED_WITH, agent_key, ROLE_RUNNER)
        input_ids = self._products_of(run.get("inputs") or []) if inputs else []
        output_ids = self._products_of(run.get("outputs") or []) if outputs else []
        if inputs:
            for product_id in input_ids:
                self.edge(key, USED, self.product_keys[product_id], ROLE_INPUT)
            self._unnamed_objects(key, run.get("inputs") or [], USED)
        if outputs:
            for product_id in output_ids:
                self.edge(self.product_keys[product_id], GENERATED_BY, key)
            self._unnamed_objects(key, run.get("outputs") or [], GENERATED_BY)
        if inputs and outputs:
            for out in output_ids:
                for source in input_ids:
                    self.edge(self.product_keys[out], DERIVED_FROM, self.product_keys[source])
        return input_ids, output_ids

    def _products_of(self, component_ids: list[int]) -> list[int]:
        """The data products whose objects hold these components, as entities."""
        product_ids = self.lineage.products_of(component_ids)
        self.product_entities(product_ids)
        return product_ids

    def _unnamed_objects(self, run_key: str, component_ids: list[int], relation: str) -> None:
        """Inputs or outputs that are files no data product names: entities of their own."""
        components = self.records.many("object_component", component_ids)
        objects = self.records.many("object", [c["object"] for c in components.values()])
        for obj in objects.values():
            if obj.get("data_products"):
                continue
            self._prefetch_objects([obj])
            entity = self.object_entity(obj, OBJECT)
            if relation == USED:
                self.edge(run_key, USED, entity.key, ROLE_INPUT)
            else:
                self.edge(entity.key, GENERATED_BY, run_key)

    # --------------------------------------------------------------- entities
    def product_entities(self, product_ids: list[int]) -> dict[int, str]:
        """Entities for data products (fetched in batches), by product id: their keys."""
        wanted = [p for p in dict.fromkeys(product_ids) if p not in self.product_keys]
        if wanted:
            products = self.records.many("data_product", wanted)
            objects = self.records.many("object", [p["object"] for p in products.values()])
            self.records.many("namespace", [p["namespace"] for p in products.values()])
            self._prefetch_objects(list(objects.values()))
            externals = [e for p in products.values() for e in p.get("external_object") or []]
            self.records.many("external_object", externals)
            for product_id in wanted:
                self._product_entity(products[product_id], objects[products[product_id]["object"]])
        return {p: self.product_keys[p] for p in product_ids}

    def _product_entity(self, product: Record, obj: Record) -> None:
        namespace = self.records.one("namespace", product["namespace"])["name"]
        ref = f"{namespace}:{product['name']}@{product['version']}"
        entity = self._file_entity(f"data_product/{ref}", PRODUCT, ref, obj)
        entity.record_id = product["id"]
        entity.namespace = namespace
        entity.name = product["name"]
        entity.version = product["version"]
        self.product_keys[product["id"]] = entity.key
        for ext_id in product.get("external_object") or []:
            ext = self.records.one("external_object", ext_id)
            details = {
                name: _text(ext.get(name))
                for name in (
                    "title",
                    "release_date",
                    "identifier",
                    "alternate_identifier",
                    "alternate_identifier_type",
                    "description",
                    "primary_not_supplement",
                )
                if ext.get(name) is not None
            }
            if ext.get("original_store") is not None:
                details["original_store"] = self._location_url(ext["original_store"])
            ext_entity = Entity(
                key=f"external_object/{ref}",
                kind=EXTERNAL,
                label=str(ext.get("title") or ref),
                namespace=namespace,
                name=product["name"],
                version=product["version"],
                description=ext.get("description"),
                details=details,
            )
            self._entities[ext_entity.key] = ext_entity
            self.edge(ext_entity.key, SPECIALIZATION_OF, entity.key)

    def object_entity(self, obj: Record, kind: str) -> Entity:
        entity = self._file_entity(_object_key(obj), kind, obj.get("description") or "", obj)
        if not entity.label:
            entity.label = entity.key
        if kind == CODE_REPO:
            releases = self.registry.find("code_repo_release", {"object": obj["id"]}, limit=1)
            if releases:
                release = releases[0]
                entity.details = {
                    k: release.get(k) for k in ("name", "version", "website") if release.get(k)
                }
                entity.label = str(release.get("name") or entity.label)
        return entity

    def _file_entity(self, key: str, kind: str, label: str, obj: Record) -> Entity:
        if key in self._entities:
            return self._entities[key]
        entity = Entity(
            key=key,
            kind=kind,
            label=label,
            record_id=obj["id"],
            object_uuid=obj.get("uuid"),
            description=obj.get("description"),
            last_updated=_text(obj.get("last_updated")),
        )
        if obj.get("file_type") is not None:
            file_type = self.records.one("file_type", obj["file_type"])
            entity.file_type = file_type.get("name")
            entity.extension = file_type.get("extension")
        if obj.get("storage_location") is not None:
            location = self.records.one("storage_location", obj["storage_location"])
            entity.hash = location.get("hash")
            entity.path = location.get("path")
            entity.public = location.get("public")
            entity.location = self._location_url(obj["storage_location"])
        components = self.records.many("object_component", obj.get("components") or [])
        issue_ids = [i for c in components.values() for i in c.get("issues") or []]
        for issue in self.records.many("issue", issue_ids).values():
            entity.issues.append(f"{issue.get('description')} severity: {issue.get('severity')}")
        self._entities[key] = entity
        for agent_key in self._agent_keys(obj.get("authors") or []):
            self.edge(key, ATTRIBUTED_TO, agent_key, ROLE_CREATOR)
        return entity

    def _location_url(self, location_id: int) -> str:
        location = self.records.one("storage_location", location_id)
        root = self.records.one("storage_root", location["storage_root"])
        return f"{root.get('root') or ''}{location.get('path') or ''}"

    def _prefetch_objects(self, objects: list[Record]) -> None:
        """What the entities of these objects read, in one batch per type."""
        locations = self.records.many(
            "storage_location", [o.get("storage_location") for o in objects]
        )
        self.records.many("storage_root", [loc.get("storage_root") for loc in locations.values()])
        self.records.many("file_type", [o.get("file_type") for o in objects])
        self.records.many("author", [a for o in objects for a in o.get("authors") or []])
        self.records.many(
            "object_component", [c for o in objects for c in o.get("components") or []]
        )

    def _agent_keys(self, author_ids: list[int]) -> list[str]:
        keys = []
        for author in self.records.many("author", author_ids).values():
            key = f"author/{author.get('identifier') or author.get('name')}"
            if key not in self._agents:
                self._agents[key] = Agent(key, author.get("name") or "", author.get("identifier"))
            keys.append(key)
        return keys


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if hasattr(value, "isoformat"):
        return str(value.isoformat())
    return str(value)

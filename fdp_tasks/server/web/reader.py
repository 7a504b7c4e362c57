"""What the web view shows, read from the store a page at a time.

Every listing is keyset-paged on the record id (newest first, `before` the last id shown), so
a page costs the same on the ten-thousandth product as on the first, and every page fetches
its related records in batches (`get_many`), never one query per row. Reading only: nothing
here writes.

Who sees a file follows the server's rules (server/blobs.py): a private storage location's
hash and link are shown only to a viewer who may read those bytes, and a download link is
offered only where the download route would answer the viewer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from fdp_tasks.server.common import ADMIN
from fdp_tasks.store.base import NotFound, Record
from fdp_tasks.store.sql import Store
from fdp_tasks.versions import sort_versions

PAGE_SIZE = 50
# How many of a run's inputs and outputs a product page names (the run's own page has all).
RUN_ITEMS_ON_PRODUCT_PAGE = 25
# A search term longer than this is cut: no name in the registry comes near it.
MAX_QUERY = 200


@dataclass(frozen=True)
class Viewer:
    """Who asks: None for anonymous, else the token's user (for their private files)."""

    user: Record | None = None

    def may_read_private(self, store: Store, sha1: str) -> bool:
        if self.user is None:
            return False
        return self.user["username"] == ADMIN or store.may_read_file(sha1, self.user["id"])


@dataclass
class Page:
    """One page of a listing: its rows, and the id to page on from (None on the last page)."""

    rows: list[Any]
    next_before: int | None
    count: int


@dataclass
class ProductRow:
    id: int
    namespace: str
    name: str
    version: str
    description: str | None

    @property
    def ref(self) -> str:
        return f"{self.namespace}:{self.name}@{self.version}"


@dataclass
class FileView:
    """A file as a viewer may see it: hidden entirely when private to someone else."""

    private: bool
    hash: str | None = None
    link: str | None = None  # a download the viewer can follow
    where: str | None = None  # the location as text, when it is not a link


@dataclass
class ItemLink:
    """An input or output of a code run: a data product (linked), an external object, or
    an object with neither."""

    label: str
    product_id: int | None = None
    component: str | None = None


@dataclass
class RunSummary:
    id: int
    uuid: str | None
    run_date: str | None
    description: str | None
    input_count: int = 0
    output_count: int = 0
    # described inputs and outputs: all of them on the run's page, the first few elsewhere
    inputs: list[ItemLink] = field(default_factory=list)
    outputs: list[ItemLink] = field(default_factory=list)

    @property
    def more_inputs(self) -> int:
        return self.input_count - len(self.inputs)

    @property
    def more_outputs(self) -> int:
        return self.output_count - len(self.outputs)


@dataclass
class ProductView:
    row: ProductRow
    versions: list[tuple[str, int]]  # (version, product id), highest first
    object: Record
    file_type: str | None
    authors: list[Record]
    file: FileView | None
    external: list[Record]
    made_by: list[RunSummary]
    used_by: list[RunSummary]


@dataclass
class RunView:
    summary: RunSummary
    code_repo: FileView | None
    config: FileView | None
    script: FileView | None


def _cursor(rows: list[Record], size: int) -> tuple[list[Record], int | None]:
    page = rows[:size]
    return page, (page[-1]["id"] if len(rows) > size and page else None)


class WebReader:
    """The records behind each page, for one request's viewer.

    `own_root` is this server's storage root URL (`<base>/data/`): files under it download
    through the server's own route, `blob_link(sha1)`.
    """

    def __init__(
        self, store: Store, viewer: Viewer, own_root: str, blob_link: Callable[[str], str]
    ):
        self.store = store
        self.viewer = viewer
        self.own_root = own_root
        self.blob_link = blob_link

    # ------------------------------------------------------------------ products
    def products(self, query: str = "", before: int | None = None, size: int = PAGE_SIZE) -> Page:
        """Data products, newest first; with a query, those whose namespace or name holds it
        (any case; `ns:name` narrows each side)."""
        query = query.strip()[:MAX_QUERY]
        if not query:
            rows = self.store.find("data_product", {}, limit=size + 1, before_id=before)
            count = self.store.count("data_product")
        else:
            ids, count = self._search_ids(query, before, size + 1)
            found = self.store.get_many("data_product", ids) if ids else {}
            rows = [found[i] for i in ids]
        page, next_before = _cursor(rows, size)
        return Page(self._product_rows(page), next_before, count)

    def _search_ids(self, query: str, before: int | None, limit: int) -> tuple[list[int], int]:
        """Ids of matching products (one page of them, newest first) and how many match.

        The Registry protocol matches names exactly or by glob, and a glob with no fixed
        start reads every candidate row; a substring match belongs in the database, paged
        there like any listing.
        """
        products = self.store.tables["data_product"]
        namespaces = self.store.tables["namespace"]

        def holds(column: Any, text: str) -> Any:
            return sa.func.lower(column).contains(text.lower(), autoescape=True)

        def in_namespace(text: str) -> Any:
            return products.c.namespace_id.in_(
                sa.select(namespaces.c.id).where(holds(namespaces.c.name, text))
            )

        ns_part, colon, name_part = query.partition(":")
        if colon:
            conds = [in_namespace(ns_part)] if ns_part else []
            conds += [holds(products.c.name, name_part)] if name_part else []
        else:
            conds = [sa.or_(holds(products.c.name, query), in_namespace(query))]
        match = sa.and_(sa.true(), *conds)
        page_query = sa.select(products.c.id).where(match)
        if before is not None:
            page_query = page_query.where(products.c.id < before)
        page_query = page_query.order_by(products.c.id.desc()).limit(limit)
        count_query = sa.select(sa.func.count()).select_from(products).where(match)
        with self.store.unavailable_as_error(), self.store.engine.connect() as conn:
            ids = [row[0] for row in conn.execute(page_query)]
            count = conn.execute(count_query).scalar_one()
        return ids, count

    def _product_rows(self, products: list[Record]) -> list[ProductRow]:
        namespaces = self._many("namespace", (p["namespace"] for p in products))
        objects = self._many("object", (p["object"] for p in products))
        return [
            ProductRow(
                id=p["id"],
                namespace=namespaces[p["namespace"]]["name"],
                name=p["name"],
                version=p["version"],
                description=(objects.get(p["object"]) or {}).get("description"),
            )
            for p in products
        ]

    def product(self, product_id: int) -> ProductView:
        """Everything the product page shows; NotFound if there is no such product."""
        product = self.store.get("data_product", product_id)
        row = self._product_rows([product])[0]
        siblings = self.store.find(
            "data_product", {"namespace": product["namespace"], "name": product["name"]}
        )
        by_version = {p["version"]: p["id"] for p in siblings}
        ordered = sort_versions(list(by_version))
        ordered += sorted(v for v in by_version if v not in ordered)  # not semver: last
        versions = [(v, by_version[v]) for v in reversed(ordered)]
        obj = self.store.get("object", product["object"])
        file_type = None
        if obj.get("file_type") is not None:
            file_type = self.store.get("file_type", obj["file_type"])["name"]
        authors = list(self._many("author", obj.get("authors") or []).values())
        external = list(
            self._many("external_object", product.get("external_object") or []).values()
        )
        components = obj.get("components") or []
        return ProductView(
            row=row,
            versions=versions,
            object=obj,
            file_type=file_type,
            authors=authors,
            file=self.file(obj.get("storage_location")),
            external=external,
            made_by=self._runs_touching("outputs", components),
            used_by=self._runs_touching("inputs", components),
        )

    def _runs_touching(self, side: str, components: list[int], limit: int = 20) -> list[RunSummary]:
        """Code runs with one of the components among their `side` (inputs or outputs)."""
        runs: dict[int, Record] = {}
        for component in components:
            for run in self.store.find("code_run", {side: component}, limit=limit):
                runs.setdefault(run["id"], run)
        ordered = sorted(runs.values(), key=lambda r: r["id"], reverse=True)[:limit]
        return self._summaries(
            ordered, described=RUN_ITEMS_ON_PRODUCT_PAGE if side == "outputs" else 0
        )

    # ------------------------------------------------------------------ code runs
    def runs(self, before: int | None = None, size: int = PAGE_SIZE) -> Page:
        rows = self.store.find("code_run", {}, limit=size + 1, before_id=before)
        page, next_before = _cursor(rows, size)
        summaries = self._summaries(page, described=0)  # the list shows counts only
        return Page(summaries, next_before, self.store.count("code_run"))

    def run(self, run_id: int) -> RunView:
        """Everything the code run page shows; NotFound if there is no such run."""
        record = self.store.get("code_run", run_id)
        objects = self._many(
            "object",
            (record.get(k) for k in ("code_repo", "model_config", "submission_script")),
        )

        def file_of(key: str) -> FileView | None:
            object_id = record.get(key)
            obj = objects.get(object_id) if isinstance(object_id, int) else None
            return self.file(obj.get("storage_location")) if obj else None

        return RunView(
            summary=self._summaries([record])[0],
            code_repo=file_of("code_repo"),
            config=file_of("model_config"),
            script=file_of("submission_script"),
        )

    def _summaries(self, runs: list[Record], described: int | None = None) -> list[RunSummary]:
        """Runs with their first `described` inputs and outputs (all with None) named: a
        page that only mentions a run of a thousand outputs does not look them all up."""
        cut = slice(None) if described is None else slice(described)
        wanted = [c for run in runs for c in (*run["inputs"][cut], *run["outputs"][cut])]
        labels = self.describe_components(wanted)
        return [
            RunSummary(
                id=run["id"],
                uuid=run.get("uuid"),
                run_date=run.get("run_date"),
                description=run.get("description"),
                input_count=len(run["inputs"]),
                output_count=len(run["outputs"]),
                inputs=[labels[c] for c in run["inputs"][cut] if c in labels],
                outputs=[labels[c] for c in run["outputs"][cut] if c in labels],
            )
            for run in runs
        ]

    def describe_components(self, ids: Iterable[int]) -> dict[int, ItemLink]:
        """What each object component stands for, in a constant number of queries."""
        components = self._many("object_component", ids)
        objects = self._many("object", (c["object"] for c in components.values()))
        products = self._many(
            "data_product", (p for o in objects.values() for p in o.get("data_products") or [])
        )
        namespaces = self._many("namespace", (p["namespace"] for p in products.values()))
        externals = self._many(
            "external_object",
            (e for p in products.values() for e in p.get("external_object") or []),
        )
        out: dict[int, ItemLink] = {}
        for cid, component in components.items():
            obj = objects[component["object"]]
            part = None if component.get("whole_object") else component.get("name")
            made = [products[p] for p in obj.get("data_products") or [] if p in products]
            if not made:  # a file no data product names (a run's environment record, say)
                label = obj.get("description") or f"object #{obj['id']}"
                out[cid] = ItemLink(label, component=part)
                continue
            product = made[0]
            label = (
                f"{namespaces[product['namespace']]['name']}:{product['name']}@{product['version']}"
            )
            titles = [
                externals[e]["title"]
                for e in product.get("external_object") or []
                if e in externals and externals[e].get("title")
            ]
            if titles:
                label += f" ({titles[0]})"
            out[cid] = ItemLink(label, product_id=product["id"], component=part)
        return out

    # ------------------------------------------------------------------ authors
    def authors(self, before: int | None = None, size: int = PAGE_SIZE) -> Page:
        rows = self.store.find("author", {}, limit=size + 1, before_id=before)
        page, next_before = _cursor(rows, size)
        return Page(page, next_before, self.store.count("author"))

    # ------------------------------------------------------------------ files
    def file(self, location_id: int | None) -> FileView | None:
        """A storage location as this viewer may see it (None when there is none)."""
        if location_id is None:
            return None
        try:
            location = self.store.get("storage_location", location_id)
            root = self.store.get("storage_root", location["storage_root"])
        except NotFound:
            return None
        sha1 = str(location.get("hash") or "")
        readable = self.viewer.may_read_private(self.store, sha1)
        if not location.get("public") and not readable:
            return FileView(private=True)
        root_url = str(root.get("root") or "")
        path = str(location.get("path") or "")
        view = FileView(private=not location.get("public"), hash=sha1 or None)
        if root_url == self.own_root:
            if readable or self.store.file_published(sha1):
                view.link = self.blob_link(sha1)
        elif root_url.startswith(("https://", "http://")):
            view.link = root_url + path
        else:
            view.where = root_url + path
        return view

    # ------------------------------------------------------------------ helpers
    def _many(self, type_name: str, ids: Iterable[int | None]) -> dict[int, Record]:
        wanted = [i for i in ids if i is not None]
        return self.store.get_many(type_name, wanted) if wanted else {}

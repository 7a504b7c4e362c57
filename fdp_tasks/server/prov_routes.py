"""The provenance endpoints of the upstream registry, on our server: read-only, anonymous
allowed, answered from `fdp_tasks.provenance` as `fdp prov` answers locally.

    GET /api/prov-report/<data product id>/   ?format=json (default) | json-ld | xml |
        provn | svg | jpg | png (and our names: prov-json, prov-n, prov-xml, turtle),
        ?depth=N (code runs deep, default 1), ?attributes=False (pictures without details)
    GET /api/ro-crate/data-product/<id>/      ?format=json (the metadata, default) | zip
    GET /api/ro-crate/code-run/<id>/          the same, for a code run

A crate ships the bytes of published files only; a private file (and any file this server
does not hold) is a reference by URL, whoever asks. Anonymous requests see no private file's
hash or location, as the storage_location listing shows them none.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import flask

from fdp_tasks.errors import BadInput, FdpError
from fdp_tasks.provenance import ProvGraph, graph_picture, prov_doc, walk_code_run, walk_product
from fdp_tasks.provenance.walk import MAX_DEPTH, Entity
from fdp_tasks.server.blobs import blob_key
from fdp_tasks.server.common import ApiError, json_response
from fdp_tasks.store.base import NotFound

PICTURES = {"svg": "image/svg+xml", "jpg": "image/jpeg", "png": "image/png"}


def _depth() -> int:
    """?depth=, as upstream reads it: a bad or small value is 1."""
    try:
        depth = int(flask.request.args.get("depth", "1"))
    except ValueError:
        return 1
    return min(max(depth, 1), MAX_DEPTH)


def _attributes() -> bool:
    return flask.request.args.get("attributes", "True").lower() not in ("false", "0", "no")


class ProvViews:
    """The prov-report and RO-Crate views over one server's store and blobs."""

    def __init__(self, views: Any, blobs: Any):
        self.views = views
        self.blobs = blobs

    @property
    def store(self) -> Any:
        return self.views.store

    def _walk(self, walker: Callable[..., ProvGraph], record_id: int) -> ProvGraph:
        try:
            graph = walker(self.store, record_id, _depth())
        except NotFound:
            raise ApiError(404, {"detail": "Not found."}) from None
        if self.views.user() is None:
            # as the storage_location listing: a private file's hash and place are for
            # token holders only
            for entity in graph.entities.values():
                if entity.public is False:
                    entity.hash = entity.location = entity.path = None
        return graph

    def prov_report(self, record_id: int) -> flask.Response:
        fmt = flask.request.args.get("format", "json")
        graph = self._walk(walk_product, record_id)
        if fmt in PICTURES:
            try:
                data = graph_picture.render(graph, fmt, _attributes())
            except graph_picture.GraphvizMissing as exc:
                raise ApiError(501, {"detail": str(exc)}) from None
            return flask.Response(data, mimetype=PICTURES[fmt])
        try:
            name = prov_doc.normalise_format(fmt)
        except BadInput:
            known = "json, json-ld, xml, provn, svg, jpg, png"
            raise ApiError(400, {"detail": f"format: expected one of {known}"}) from None
        document = prov_doc.build_document(graph, self.views.base() + "/")
        data = prov_doc.serialize(document, name)
        if name == "prov-json":
            return json_response(json.loads(data))
        return flask.Response(data, mimetype=prov_doc.MEDIA_TYPES[name])

    def crate_of_product(self, record_id: int) -> flask.Response:
        return self._crate(self._walk(walk_product, record_id))

    def crate_of_run(self, record_id: int) -> flask.Response:
        return self._crate(self._walk(walk_code_run, record_id))

    def _crate(self, graph: ProvGraph) -> flask.Response:
        from fdp_tasks.provenance.rocrate_export import build_crate, crate_metadata, write_crate

        fmt = flask.request.args.get("format", "json")
        if fmt not in ("json", "json-ld", "zip"):
            raise ApiError(400, {"detail": "format: expected one of json, json-ld, zip"})
        with tempfile.TemporaryDirectory(prefix="fdp-crate-") as tmp:
            folder = Path(tmp)
            shipping = fmt == "zip"
            crate = build_crate(graph, lambda e: self._published_bytes(e, folder, shipping))
            if not shipping:
                mimetype = "application/ld+json" if fmt == "json-ld" else "application/json"
                return flask.Response(json.dumps(crate_metadata(crate)), mimetype=mimetype)
            target = folder / "crate.zip"
            try:
                write_crate(crate, target, as_zip=True)
            except (FdpError, OSError) as exc:
                raise ApiError(500, {"detail": f"the crate could not be made: {exc}"}) from None
            data = target.read_bytes()
        name = graph.root.rpartition("/")[2].replace(":", "_").replace("/", "_")
        return flask.Response(
            data,
            mimetype="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{name}.zip"'},
        )

    def _published_bytes(self, entity: Entity, folder: Path, shipping: bool) -> Path | None:
        """A local copy of a published file this server holds (none of a private one)."""
        sha1 = entity.hash
        if not sha1 or len(sha1) != 40 or not self.store.file_published(sha1):
            return None
        if not self.blobs.holds(sha1):
            return None
        copy = folder / "files" / sha1
        if not shipping:  # metadata only: the file is named, its bytes are not read
            return copy
        if not copy.exists():
            copy.parent.mkdir(parents=True, exist_ok=True)
            with copy.open("wb") as out:
                for chunk in self.blobs.storage.open(blob_key(sha1)):
                    out.write(chunk)
        return copy


def register_prov_routes(app: flask.Flask, views: Any, blobs: Any) -> ProvViews:
    """Adds the provenance endpoints to the registry app."""
    prov_views = ProvViews(views, blobs)
    routes = (
        ("/api/prov-report/<int:record_id>/", prov_views.prov_report, "prov_report"),
        ("/api/ro-crate/data-product/<int:record_id>/", prov_views.crate_of_product, "dp_crate"),
        ("/api/ro-crate/code-run/<int:record_id>/", prov_views.crate_of_run, "cr_crate"),
    )
    for rule, view, endpoint in routes:
        app.add_url_rule(
            rule,
            endpoint,
            view,
            methods=["GET"],
            strict_slashes=False,
            provide_automatic_options=False,
        )
    return prov_views

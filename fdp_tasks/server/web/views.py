"""The web view's routes: a Flask blueprint of read-only HTML pages under /ui/.

Pages are rendered on the server from the templates beside this module (Jinja escapes every
value), with one small stylesheet and no script. Every route answers GET (and HEAD) only,
so the view cannot change a record; a browser shows no file that the download route would
refuse it. Each answer forbids scripts and framing outright (Content-Security-Policy), so even
a name that slipped past escaping could not run.
"""

from __future__ import annotations

from typing import Any

import flask

from fdp_tasks.server.web.picture import MAX_PICTURE_NODES, product_picture
from fdp_tasks.server.web.reader import PAGE_SIZE, Viewer, WebReader
from fdp_tasks.store.base import NotFound

# The page's own stylesheet and nothing else: no script, plugin, frame or inline style (the
# picture's SVG colours itself with presentation attributes).
CONTENT_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; "
    "script-src 'none'; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def _before() -> int | None:
    """The keyset cursor of a listing (`?before=<id>`); anything else starts at the top."""
    text = flask.request.args.get("before", "")
    return int(text) if text.isdigit() and len(text) < 19 else None


def web_blueprint(views: Any) -> flask.Blueprint:
    """The /ui/ pages over the registry app `views` (a RegistryApp: its store, its base URL
    and the request's user, so that a token holder sees their own private files)."""
    web = flask.Blueprint(
        "web",
        __name__,
        url_prefix="/ui",
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )

    def reader() -> WebReader:
        return WebReader(
            views.store,
            Viewer(views.user()),
            own_root=f"{views.base()}/data/",
            blob_link=lambda sha1: flask.url_for("blob", sha1=sha1),
        )

    def page(template: str, status: int = 200, **context: Any) -> flask.Response:
        response = flask.make_response(flask.render_template(template, **context), status)
        response.headers["Content-Security-Policy"] = CONTENT_POLICY
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Referrer-Policy"] = "same-origin"
        return response

    def not_found(what: str) -> flask.Response:
        return page("web/missing.html", 404, what=what)

    @web.get("/")
    def products() -> flask.Response:
        query = flask.request.args.get("q", "")
        listing = reader().products(query, _before(), PAGE_SIZE)
        return page("web/products.html", query=query, listing=listing, section="products")

    @web.get("/products/<int:product_id>/")
    def product(product_id: int) -> flask.Response:
        read = reader()
        try:
            shown = read.product(product_id)
        except NotFound:
            return not_found(f"data product {product_id}")
        drawn = sum(r.input_count + r.output_count for r in shown.made_by)
        picture = product_picture(views.store, product_id) if drawn <= MAX_PICTURE_NODES else None
        return page("web/product.html", product=shown, picture=picture, section="products")

    @web.get("/runs/")
    def runs() -> flask.Response:
        listing = reader().runs(_before(), PAGE_SIZE)
        return page("web/runs.html", listing=listing, section="runs")

    @web.get("/runs/<int:run_id>/")
    def run(run_id: int) -> flask.Response:
        try:
            shown = reader().run(run_id)
        except NotFound:
            return not_found(f"code run {run_id}")
        return page("web/run.html", run=shown, section="runs")

    @web.get("/authors/")
    def authors() -> flask.Response:
        listing = reader().authors(_before(), PAGE_SIZE)
        return page("web/authors.html", listing=listing, section="authors")

    return web

"""A read-only web view of the registry: data products, code runs and authors as HTML pages
under /ui/, beside the REST API (see views.py)."""

from __future__ import annotations

from typing import Any

import flask

from fdp_tasks.server.web.views import web_blueprint

__all__ = ["register_web", "web_blueprint"]


def register_web(app: flask.Flask, views: Any) -> None:
    """Adds the /ui/ pages to the registry app, and sends a browser opening the server's
    root to them (the API stays at /api/)."""
    app.register_blueprint(web_blueprint(views))
    app.add_url_rule(
        "/", "home", lambda: flask.redirect(flask.url_for("web.products")), methods=["GET"]
    )

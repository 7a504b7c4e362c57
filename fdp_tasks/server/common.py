"""What every view of the registry server answers with: JSON bodies and API errors."""

from __future__ import annotations

import json
from typing import Any

import flask

# The registry's operator: may change any record, read any file, and add namespace members.
ADMIN = "admin"


class ApiError(Exception):
    """An error answer: status code plus a JSON body, raised anywhere inside a view."""

    def __init__(self, status: int, body: dict[str, Any], headers: dict[str, str] | None = None):
        super().__init__(body)
        self.status = status
        self.body = body
        self.headers = headers or {}


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> flask.Response:
    return flask.Response(
        json.dumps(body, separators=(",", ":")),
        status=status,
        mimetype="application/json",
        headers=headers,
    )

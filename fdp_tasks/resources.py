"""The JSON schemas shipped with fdp-tasks, read as package data.

They are the files of schemas/ at the top of the source tree, installed as the package
`fdp_tasks.schemas`; importlib.resources finds them in a wheel, a `pip install --user`, an
editable install or a zip alike, wherever the package landed.
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

SCHEMAS = "fdp_tasks.schemas"


def read_schema(name: str) -> dict[str, Any]:
    """The JSON document schemas/<name>, such as config.schema.json."""
    return json.loads(resources.files(SCHEMAS).joinpath(name).read_text(encoding="utf-8"))

"""The working config a job hands its script, written once and read fast.

Every language's API reads `config.yaml`, so that is what the job writes. Beside it goes a
JSON copy of the same document (`config.yaml.json`) that `fdp_tasks.api` reads instead: a
config of 10,000 write items takes seconds to parse as YAML in Python and milliseconds as
JSON. The copy names the SHA-1 of the YAML text it was made with, so a YAML file changed
since (or a copy that is missing or unreadable) means the YAML itself is read.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

# libyaml where it is installed: the same documents, several times faster
_Dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def copy_path(path: Path) -> Path:
    """Where the JSON copy of a working config lives: beside it, `.json` added."""
    return path.with_name(path.name + ".json")


def _digest(data: bytes) -> str:
    return hashlib.sha1(data, usedforsecurity=False).hexdigest()


def write(path: Path, document: dict[str, Any]) -> None:
    """Write the working config as YAML, and its JSON copy when JSON holds the document
    unchanged (no dates, no keys but strings)."""
    text = yaml.dump(document, Dumper=_Dumper, sort_keys=False)
    path.write_text(text, encoding="utf-8")
    try:
        encoded = json.dumps(document)
        same = json.loads(encoded) == document
    except (TypeError, ValueError):
        same = False
    if same:
        sha1 = _digest(text.encode("utf-8"))
        copy_path(path).write_text(
            '{"yaml_sha1": "' + sha1 + '", "config": ' + encoded + "}", encoding="utf-8"
        )


def read(path: Path) -> dict[str, Any]:
    """The working config at `path`: from its JSON copy while that names this YAML text,
    else parsed from the YAML."""
    data = path.read_bytes()
    try:
        copy = json.loads(copy_path(path).read_bytes())
        if isinstance(copy, dict) and copy.get("yaml_sha1") == _digest(data):
            config = copy.get("config")
            if isinstance(config, dict):
                return config
    except (OSError, ValueError):
        pass
    return yaml.load(data, Loader=_Loader)  # noqa: S506 (a safe loader)

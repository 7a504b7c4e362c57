"""Check a normalised user config against schemas/config.schema.json.

jsonschema's own messages name schema internals; users need one line per problem saying
which key is wrong and what was expected, so every error is rewritten here.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

from fdp_tasks.config.templates import (
    TEMPLATE_RE,
    TemplateError,
    Templater,
    check_names,
    is_templated_version_key,
    is_version_key,
)
from fdp_tasks.config.versions import incrementer, is_semver
from fdp_tasks.resources import schema_path

KeyPath = tuple[Any, ...]
Problem = tuple[KeyPath, str]

_TYPE_NAMES = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "boolean": "true or false",
    "integer": "an integer",
    "number": "a number",
    "null": "nothing",
}


@lru_cache(maxsize=1)
def config_validator() -> Draft202012Validator:
    """The compiled validator for config.schema.json (loaded once per process)."""
    schema = json.loads(schema_path("config.schema.json").read_text(encoding="utf-8"))
    return Draft202012Validator(schema)


def format_path(path: Iterable[Any]) -> str:
    """('write', 2, 'file_type') -> 'write[2].file_type'; the empty path is 'top level'."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "top level"


def path_sort_key(path: KeyPath) -> tuple:
    """Sort key that orders list indexes numerically (write[2] before write[10])."""
    return tuple((0, p, "") if isinstance(p, int) else (1, 0, str(p)) for p in path)


def format_problems(file: str, problems: Iterable[Problem]) -> list[str]:
    """Problem lines '<file>: <key path>: <message>', sorted by key path, without duplicates."""
    unique = sorted(set(problems), key=lambda p: (path_sort_key(p[0]), p[1]))
    return [f"{file}: {format_path(path)}: {msg}" for path, msg in unique]


def describe(value: Any) -> str:
    """A short human description of a YAML value for error messages."""
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, bool):
        return f"the boolean {str(value).lower()}"
    if isinstance(value, (int, float)):
        return f"the number {value}"
    if value is None:
        return "nothing (null)"
    return repr(value)


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    return describe(value)


def _error_problems(error: ValidationError) -> list[Problem]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator
    value = error.instance
    custom = schema.get("x-messages", {}).get(kind)
    if custom:
        return [(path, custom.replace("{value}", str(value)).replace("{type}", _json_type(value)))]
    if kind in ("not", "anyOf", "oneOf") and schema.get("x-error"):
        return [(path, schema["x-error"])]
    if kind == "required":
        props = schema.get("properties", {})
        out = []
        for key in error.validator_value:
            if isinstance(value, dict) and key not in value:
                hint = props.get(key, {}).get("x-hint")
                out.append(
                    (
                        path + (key,),
                        f"required key missing ({hint})" if hint else "required key missing",
                    )
                )
        return out
    if kind == "dependentRequired":
        out = []
        for key, deps in error.validator_value.items():
            if isinstance(value, dict) and key in value:
                out += [
                    (path + (d,), f"required key missing (needed with {key})")
                    for d in deps
                    if d not in value
                ]
        return out
    if kind == "additionalProperties":
        allowed = list(schema.get("properties", {}))
        out = []
        for key in value:
            if key in allowed:
                continue
            close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
            hint = (
                f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(allowed)
            )
            out.append((path + (key,), f"unknown key ({hint})"))
        return out
    if kind == "type":
        types = error.validator_value
        types = [types] if isinstance(types, str) else types
        want = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return [(path, f"expected {want}, got {describe(value)}")]
    if kind == "enum":
        return [(path, f"{value!r} is not one of " + ", ".join(map(str, error.validator_value)))]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind == "pattern":
        return [(path, f"{value!r} does not have the expected form")]
    if kind is False or kind == "false":
        return [(path, "not allowed here")]
    return [(path, error.message)]


def schema_problems(data: Any) -> list[Problem]:
    """Problems the JSON schema finds, as (key path, message) pairs."""
    out: list[Problem] = []
    for error in config_validator().iter_errors(data):
        out += _error_problems(error)
    # A value of the wrong type makes its other messages noise: keep the type error alone.
    typed = {p for p, m in out if m.startswith("expected ")}
    return [(p, m) for p, m in out if p not in typed or m.startswith("expected ")]


# Template variables in versions are expanded at each run; validation expands them at these
# sample times: a typical one, then one where zero-padded fields (%m, %d, %H, ...) start with 0.
_PROBE_TIMES = (datetime(2024, 11, 23, 12, 34, 56), datetime(2024, 1, 2, 3, 4, 5))
_PROBE_RUN_ID = "3f1c6a52-8f0e-4c8e-9d6e-1b2f3a4b5c6d"
# Variables whose values only the run knows: versions using them are checked when resolved.
_RUN_TIME_VARIABLES = {"USER", "USER_ID", "GIT_BRANCH", "GIT_REMOTE", "GIT_TAG"}


class _ProbeTemplater(Templater):
    """Sample values for validation; asks no git repository."""

    def value(self, name: str) -> str:
        if name == "REPO_DIR":
            return str(self.config_path.parent)
        return super().value(name)


def version_problems(text: str, register: bool = False) -> list[str]:
    """Problems of a version string holding template variables (other than a bare incrementer).

    Variables are fine in a version as long as the expanded result is a semantic version,
    e.g. "0.${{DATE}}.0"; the schema checks literal versions and incrementers.
    """
    if "${{" not in text or incrementer(text):
        return []
    problems = check_names(text, version="literal" if register else "incrementer")
    if problems:
        return problems
    names = {m.group(1) for m in TEMPLATE_RE.finditer(text)}
    if names & _RUN_TIME_VARIABLES:
        return []
    for i, now in enumerate(_PROBE_TIMES):
        probe = _ProbeTemplater(
            config_path=Path("/project/config.yaml"),
            now=now,
            run_id=_PROBE_RUN_ID,
            user_name=None,
            user_id=None,
        )
        try:
            expanded = probe.substitute(text)
        except (TemplateError, ValueError) as exc:
            return [str(exc)]
        if not is_semver(expanded):
            when = f" at {now.isoformat()}" if i else ""
            return [
                f"{text!r} expands to {expanded!r}{when}, which is not a semantic version "
                "(like 1.0.0)"
            ]
    return []


def template_problems(data: Any, path: KeyPath = ()) -> list[Problem]:
    """Unknown ${{...}} names in any string, and templated versions that expand to no semver."""
    out: list[Problem] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if is_templated_version_key(key):
                if isinstance(value, str):
                    msgs = version_problems(value, register=path[:1] == ("register",))
                    out += [(path + (key,), msg) for msg in msgs]
            elif not is_version_key(key):
                out += template_problems(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += template_problems(value, path + (i,))
    elif isinstance(data, str):
        out += [(path, msg) for msg in check_names(data)]
    return out


def script_problems(data: dict) -> list[Problem]:
    """Write items are outputs of a script: a config with writes needs one to run."""
    writes = data.get("write")
    if not isinstance(writes, list) or not writes:
        return []
    meta = data.get("run_metadata")
    meta = meta if isinstance(meta, dict) else {}
    for key in ("script", "script_path"):
        value = meta.get(key)
        if value is not None and not (isinstance(value, str) and not value.strip()):
            return []
    return [
        (
            ("run_metadata",),
            "write items need a script (run_metadata.script or run_metadata.script_path)",
        )
    ]


def validate_problems(data: Any) -> list[Problem]:
    """All problems of a normalised config as (key path, message) pairs."""
    if not isinstance(data, dict):
        return [
            ((), f"expected a mapping of run_metadata, read, write, register; got {describe(data)}")
        ]
    return (
        schema_problems(data)
        + template_problems(data)
        + script_problems(data)
        + name_problems(data)
    )


NAME_KEYS = (
    "data_product",
    "namespace",
    "namespace_name",
    "default_input_namespace",
    "default_output_namespace",
    "external_object",
)


def name_problems(data: Any, path: KeyPath = ()) -> list[Problem]:
    """Namespaces and product names become directories of the data store: no '..', no
    absolute paths, no backslashes, so a config can never point outside it."""
    out: list[Problem] = []
    if isinstance(data, dict):
        for key, value in data.items():
            if key in NAME_KEYS and isinstance(value, str) and _unsafe_name(value):
                out.append(
                    (
                        path + (key,),
                        f"{value!r} is not a safe name: no '..', no "
                        "leading '/', no '\\' (names become folders of the data store)",
                    )
                )
            else:
                out += name_problems(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += name_problems(value, path + (i,))
    return out


def _unsafe_name(value: str) -> bool:
    if "${{" in value:
        return False  # checked once expanded, when the data store path is made
    return value.startswith("/") or "\\" in value or ".." in value.split("/")


def validate_config(data: dict, file: str) -> list[str]:
    """Validate a normalised config dict; return one line per problem (empty if valid)."""
    return format_problems(file, validate_problems(data))

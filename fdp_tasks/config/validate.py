"""Check a normalised user config against schemas/config.schema.json.

jsonschema's own messages name schema internals; users need one line per problem saying
which key is wrong and what was expected, so every error is rewritten here.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fdp_tasks.config.templates import (
    TEMPLATE_RE,
    VARIABLES,
    TemplateError,
    check_names,
    config_dir_problems,
    is_templated_version_key,
    is_version_key,
    run_templater,
)
from fdp_tasks.names import namespace_problem, product_name_problem
from fdp_tasks.resources import read_schema
from fdp_tasks.scalars import parse_datetime
from fdp_tasks.versions import INCREMENTERS, incrementer, is_semver

if TYPE_CHECKING:  # jsonschema is imported when a config is validated, not to read a cached one
    from jsonschema import Draft202012Validator, FormatChecker
    from jsonschema.exceptions import ValidationError

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


def _semver(value: object) -> bool:
    return not isinstance(value, str) or is_semver(value)


def _version(value: object) -> bool:
    """A semantic version, an incrementer, or a version holding variables (checked once
    expanded, by version_problems)."""
    return not isinstance(value, str) or is_semver(value) or "${{" in value


def _register_version(value: object) -> bool:
    """As fdp-version, but not an incrementer: a register item names one version."""
    return _version(value) and not incrementer(value)


@lru_cache(maxsize=1)
def version_formats() -> FormatChecker:
    """The schema's version formats, checked by versions.py rather than a second semver
    pattern; anything but a string is left to the schema's `type`."""
    from jsonschema import FormatChecker

    checker = FormatChecker(formats=())
    checker.checks("semver")(_semver)
    checker.checks("fdp-version")(_version)
    checker.checks("fdp-register-version")(_register_version)
    return checker


@lru_cache(maxsize=4)
def schema_validator(name: str) -> Draft202012Validator:
    """The compiled validator for one of our schemas (loaded once per process)."""
    from jsonschema import Draft202012Validator

    return Draft202012Validator(read_schema(name), format_checker=version_formats())


def config_validator() -> Draft202012Validator:
    """The compiled validator for config.schema.json."""
    return schema_validator("config.schema.json")


def document_problems(schema_name: str, data: Any) -> list[Problem]:
    """What schemas/<schema_name> finds wrong in `data`, worded as config problems are
    (a sweep file's, say)."""
    out: list[Problem] = []
    for error in schema_validator(schema_name).iter_errors(data):
        out += _error_problems(error)
    typed = {p for p, m in out if m.startswith("expected ")}
    return [(p, m) for p, m in out if p not in typed or m.startswith("expected ")]


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


def _missing_keys(path: KeyPath, schema: dict, required: Any, value: Any) -> list[Problem]:
    props = schema.get("properties", {})
    out = []
    for key in required:
        if isinstance(value, dict) and key not in value:
            hint = props.get(key, {}).get("x-hint")
            message = f"required key missing ({hint})" if hint else "required key missing"
            out.append((path + (key,), message))
    return out


def _missing_companions(
    path: KeyPath, _schema: dict, dependencies: Any, value: Any
) -> list[Problem]:
    out = []
    for key, deps in dependencies.items():
        if isinstance(value, dict) and key in value:
            out += [
                (path + (d,), f"required key missing (needed with {key})")
                for d in deps
                if d not in value
            ]
    return out


def _unknown_keys(path: KeyPath, schema: dict, _allowed: Any, value: Any) -> list[Problem]:
    allowed = list(schema.get("properties", {}))
    out = []
    for key in value:
        if key in allowed:
            continue
        close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
        hint = f"did you mean {close[0]!r}?" if close else "expected one of " + ", ".join(allowed)
        out.append((path + (key,), f"unknown key ({hint})"))
    return out


# Validators whose problems are per key: one line for each key missing or unknown.
_KEYED_PROBLEMS: dict[str, Callable[[KeyPath, dict, Any, Any], list[Problem]]] = {
    "required": _missing_keys,
    "dependentRequired": _missing_companions,
    "additionalProperties": _unknown_keys,
}


def _error_problems(error: ValidationError) -> list[Problem]:
    path = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}
    kind = error.validator if isinstance(error.validator, str) else ""
    allowed: Any = error.validator_value  # what the schema keyword says: its shape varies
    value = error.instance
    custom = schema.get("x-messages", {}).get(kind)
    if custom:
        return [(path, custom.replace("{value}", str(value)).replace("{type}", _json_type(value)))]
    if kind in ("not", "anyOf", "oneOf") and schema.get("x-error"):
        return [(path, schema["x-error"])]
    keyed = _KEYED_PROBLEMS.get(kind)
    if keyed is not None:
        return keyed(path, schema, allowed, value)
    if kind == "type":
        types = [allowed] if isinstance(allowed, str) else allowed
        want = " or ".join(_TYPE_NAMES.get(t, t) for t in types)
        return [(path, f"expected {want}, got {describe(value)}")]
    if kind == "enum":
        return [(path, f"{value!r} is not one of " + ", ".join(map(str, allowed)))]
    if kind == "minLength":
        return [(path, "must not be empty")]
    if kind == "pattern":
        return [(path, f"{value!r} does not have the expected form")]
    if kind == "false":
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
# (CONFIG_DIR and LOCAL_TOKEN belong to the script only: config_dir_problems says so.)
_RUN_TIME_VARIABLES = {
    "USER",
    "USER_ID",
    "GIT_BRANCH",
    "GIT_REMOTE",
    "GIT_TAG",
    "CONFIG_DIR",
    "LOCAL_TOKEN",
}


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
    try:
        for when, expanded in _probe_expansions(text):
            if not is_semver(expanded):
                return [
                    f"{text!r} expands to {expanded!r}{when}, which is not a semantic version "
                    "(like 1.0.0)"
                ]
    except (TemplateError, ValueError) as exc:
        return [str(exc)]
    return []


def _probe_expansions(text: str) -> Iterator[tuple[str, str]]:
    """text expanded at each sample time, with ' at <time>' for all but the first; nothing
    when it uses variables only a run knows. Raises TemplateError or ValueError."""
    names = {m.group(1) for m in TEMPLATE_RE.finditer(text)}
    if names & _RUN_TIME_VARIABLES:
        return
    for i, now in enumerate(_PROBE_TIMES):
        # no repo_dir: ${{REPO_DIR}} is the config's folder, and no git repository is asked
        probe = run_templater(Path("/project/config.yaml"), now=now, run_id=_PROBE_RUN_ID)
        yield (f" at {now.isoformat()}" if i else ""), probe.substitute(text)


def normalise_datetime(value: str) -> str | None:
    """A config's date as 'YYYY-MM-DDTHH:MM:SS[zone]': the moment as written (its zone
    kept, none added), so the working config shows what the user meant; None if no date."""
    try:
        return parse_datetime(value).isoformat(timespec="seconds")
    except ValueError:
        return None


def release_date_problems(data: dict) -> list[Problem]:
    """A release_date made of template variables (`${{DATETIME-%Y-%m-%d}}`) must expand to a
    date: a format typo such as `%H:%M:S` would otherwise only fail when the item registers."""
    out: list[Problem] = []
    items = data.get("register")
    for i, item in enumerate(items if isinstance(items, list) else []):
        text = item.get("release_date") if isinstance(item, dict) else None
        if not isinstance(text, str) or "${{" not in text or check_names(text):
            continue  # literal dates are checked when loaded, bad variable names elsewhere
        try:
            for when, expanded in _probe_expansions(text):
                if normalise_datetime(expanded) is None:
                    out.append(
                        (
                            ("register", i, "release_date"),
                            f"{text!r} expands to {expanded!r}{when}, which is not a date "
                            "(ISO 8601, e.g. 2021-09-20T12:00:00)",
                        )
                    )
                    break
        except (TemplateError, ValueError) as exc:
            out.append((("register", i, "release_date"), str(exc)))
    return out


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
    placeholders = placeholder_problems(data)
    # A misspelt placeholder is reported once, with its hint: not also as a mapping where a
    # string was expected, nor as a version that is not one.
    hinted = {path for path, _ in placeholders}
    problems = (
        schema_problems(data)
        + template_problems(data)
        + release_date_problems(data)
        + script_problems(data)
        + name_problems(data)
        + duplicate_write_problems(data)
        + config_dir_problems(data)
    )
    return placeholders + [
        (path, msg)
        for path, msg in problems
        if not any(path[: len(where)] == where for where in hinted)
    ]


# -- placeholders that are not ${{NAME}} ------------------------------------------------------

# Known names a legacy {NAME} placeholder may hold: template variables and version incrementers.
# {VERSION} of older configs has no ${{VERSION}}: an incrementer is what it meant.
_OLD_ONLY = {"VERSION": "a version incrementer (${{PATCH}}, ${{MINOR}} or ${{MAJOR}})"}
PLACEHOLDER_NAMES = VARIABLES + INCREMENTERS + tuple(_OLD_ONLY)
_PLACEHOLDER_NAME_RE = re.compile(r"(?:" + "|".join(PLACEHOLDER_NAMES) + r"|DATETIME-[^{}]+)")
# Names a ${NAME} or {{NAME}} typo may hold: only the current ones (${VERSION} is the shell's).
_TYPO_NAME = r"(?:" + "|".join(VARIABLES + INCREMENTERS) + r"|DATETIME-[^{}]+)"
# A known name written {NAME}, ${NAME} (the shell's form) or {{NAME}} (no $), never as part of
# a correct ${{NAME}}: group 1, 2 or 3 holds the name, telling which form it is.
LEGACY_PLACEHOLDER_RE = re.compile(
    r"(?<![$\{])\{\s*(" + _PLACEHOLDER_NAME_RE.pattern + r")\s*\}(?!\})"
    r"|\$\{(?!\{)\s*(" + _TYPO_NAME + r")\s*\}(?!\})"
    r"|(?<![$\{])\{\{\s*(" + _TYPO_NAME + r")\s*\}\}(?!\})"
)
_TYPO_FORMS = ("{%s}", "${%s}", "{{%s}}")
SCRIPT_PATH: KeyPath = ("run_metadata", "script")
_AS_MAPPING = "YAML reads "


def placeholder_typo(match: re.Match[str]) -> tuple[str, str]:
    """(as written, without spaces; the name) of a LEGACY_PLACEHOLDER_RE match, for messages."""
    for form, name in zip(_TYPO_FORMS, match.groups(), strict=True):
        if name is not None:
            return form % name.strip(), name.strip()
    raise ValueError(match.group(0))


def placeholder_typos(text: str) -> list[tuple[str, str]]:
    """The known names not written as ${{NAME}} in text, as placeholder_typo, without repeats."""
    return list(dict.fromkeys(placeholder_typo(m) for m in LEGACY_PLACEHOLDER_RE.finditer(text)))


def placeholder_hint(names: list[str]) -> str:
    """'did you mean ${{A}}?' for the names of misspelt placeholders."""
    meant = [_OLD_ONLY.get(n, f"${{{{{n}}}}}") for n in dict.fromkeys(names)]
    return "did you mean " + " and ".join(meant) + "?"


def _braces(written: list[str]) -> str:
    """'{A} is' or '{A} and ${B} are': the subject of a placeholder message."""
    return f"{' and '.join(written)} {'are' if len(written) > 1 else 'is'}"


def placeholder_mapping_message(name: str) -> str:
    """The problem of a value YAML read as the mapping {NAME: null}."""
    hint = placeholder_hint([name])
    return f"{_AS_MAPPING}{{{name}}} as a mapping, not a template variable; {hint}"


def placeholder_problems(data: Any, path: KeyPath = ()) -> list[Problem]:
    """Single-brace {CONFIG_DIR} (the form of older configs), ${CONFIG_DIR} and {{CONFIG_DIR}}
    are never substituted, and would only fail when a run uses the value; YAML even reads a
    value that starts with {CONFIG_DIR} as a mapping: say which variable was meant.
    run_metadata.script is left to placeholder_warnings (braces there may be the shell's)."""
    out: list[Problem] = []
    if path == SCRIPT_PATH:
        return out
    if isinstance(data, dict):
        if len(data) == 1:
            (key, value), *_ = data.items()
            if (
                value is None
                and isinstance(key, str)
                and _PLACEHOLDER_NAME_RE.fullmatch(key.strip())
            ):
                return [(path, placeholder_mapping_message(key.strip()))]
        for key, value in data.items():
            out += placeholder_problems(value, path + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += placeholder_problems(value, path + (i,))
    elif isinstance(data, str):
        typos = placeholder_typos(data)
        if typos:
            written, names = zip(*typos, strict=True)
            what = "template variables" if len(typos) > 1 else "a template variable"
            hint = placeholder_hint(list(names))
            out.append((path, f"{_braces(list(written))} not {what}; {hint}"))
    return out


def placeholder_warnings(data: Any) -> list[Problem]:
    """{CONFIG_DIR}, ${CONFIG_DIR} or {{CONFIG_DIR}} in an inline script reaches the shell as
    it is (the shell expands ${CONFIG_DIR} to its own variable, usually empty): probably a
    ${{CONFIG_DIR}} mistyped, but braces and ${NAME} are the shell's own too, so this only
    warns."""
    meta = data.get("run_metadata") if isinstance(data, dict) else None
    script = meta.get("script") if isinstance(meta, dict) else None
    if not isinstance(script, str):
        return []
    typos = placeholder_typos(script)
    if not typos:
        return []
    written, names = zip(*typos, strict=True)
    hint = placeholder_hint(list(names))
    return [(SCRIPT_PATH, f"{_braces(list(written))} passed to the shell as written; {hint}")]


# -- names ------------------------------------------------------------------------------------


def name_problems(data: dict) -> list[Problem]:
    """Names become registry keys and data-store folders: each must be canonical (names.py),
    so that two spellings never alias one file. Read and write names may be '*' patterns."""
    out: list[Problem] = []

    def check(path: KeyPath, value: Any, kind: str) -> None:
        if not isinstance(value, str) or not value:
            return  # the schema reports it
        if kind == "namespace":
            problem = namespace_problem(value, templated=True)
        else:
            problem = product_name_problem(value, glob=kind == "pattern", templated=True)
        if problem:
            out.append((path, problem))

    def section(key: str) -> list[tuple[KeyPath, dict]]:
        items = data.get(key)
        items = items if isinstance(items, list) else []
        return [((key, i), item) for i, item in enumerate(items) if isinstance(item, dict)]

    meta = data.get("run_metadata")
    if isinstance(meta, dict):
        for key in ("default_input_namespace", "default_output_namespace"):
            check(("run_metadata", key), meta.get(key), "namespace")
    for path, item in section("read") + section("write"):
        use = given if isinstance(given := item.get("use"), dict) else {}
        check(path + ("data_product",), item.get("data_product"), "pattern")
        check(path + ("use", "data_product"), use.get("data_product"), "pattern")
        check(path + ("use", "namespace"), use.get("namespace"), "namespace")
    for path, item in section("register"):
        use = given if isinstance(given := item.get("use"), dict) else {}
        if "external_object" in item or "data_product" in item:
            check(path + ("external_object",), item.get("external_object"), "name")
            check(path + ("data_product",), item.get("data_product"), "name")
            check(path + ("namespace_name",), item.get("namespace_name"), "namespace")
            check(path + ("use", "namespace"), use.get("namespace"), "namespace")
        elif "namespace" in item:
            check(path + ("namespace",), item.get("namespace"), "namespace")
    return out


def duplicate_write_problems(data: dict) -> list[Problem]:
    """Two write items for one namespace, name and version would both claim one registry
    entry, and the second write would fail mid-run: refuse them before anything runs."""
    writes = data.get("write")
    if not isinstance(writes, list):
        return []
    meta = given if isinstance(given := data.get("run_metadata"), dict) else {}
    ns_default = meta.get("default_output_namespace")
    version_default = meta.get("default_write_version") or "${{PATCH}}"
    seen: dict[tuple, int] = {}
    out: list[Problem] = []
    for i, item in enumerate(writes):
        if not isinstance(item, dict):
            continue
        use = given if isinstance(given := item.get("use"), dict) else {}
        name = use.get("data_product") or item.get("data_product")
        ns = use.get("namespace") or ns_default
        version = use.get("version") or version_default
        if not all(isinstance(v, str) for v in (name, version)) or not isinstance(ns, str | None):
            continue  # the schema reports it
        inc = incrementer(version)
        component = use.get("component")
        if not isinstance(component, str | None):
            continue  # the schema reports it
        key = (ns, name, f"${{{{{inc}}}}}" if inc else version, component)
        if key in seen:
            what = f"{ns}:{name}@{key[2]}" if ns else f"{name}@{key[2]}"
            out.append(
                (("write", i), f"writes the same data product as write[{seen[key]}] ({what})")
            )
        else:
            seen[key] = i
    return out


def validate_config(data: dict, file: str) -> list[str]:
    """Validate a normalised config dict; return one line per problem (empty if valid)."""
    return format_problems(file, validate_problems(data))

"""Canonical data product and namespace names: the one rule every entry point applies.

Names become folders of data stores and keys of registries, so two spellings of one name
(`a/./b`, `a//b`, `a/b/`) would alias one file and silently overwrite each other's bytes.
Config validation, the script API, the registry store and server, and pull all ask here.
"""

from __future__ import annotations

import functools
import re

GLOB = "*"
# Characters the reference registry refuses in names: they would break its glob filters.
GLOB_CHARS = "[]?"


# A ${{...}} template variable in a config's name: its value is known only when the run
# resolves the config, so validation checks the name's shape around it.
_TEMPLATE = re.compile(r"\$\{\{.*?\}\}")
_STAND_IN = "T"


def _shape(name: str, templated: bool) -> str:
    return _TEMPLATE.sub(_STAND_IN, name) if templated else name


def product_name_problem(
    name: object, *, glob: bool = False, templated: bool = False
) -> str | None:
    """Why `name` is not a canonical data product name, or None when it is.

    A name is '/'-separated segments, none empty, '.' or '..', without a leading or
    trailing '/', a backslash or a NUL. `glob` allows '*' (read and write patterns);
    `templated` checks a config's name around its ${{...}} variables.
    """
    if not isinstance(name, str) or not name:
        return "a data product name must be a non-empty string"
    text = _shape(name, templated)
    if "\\" in text or "\x00" in text:
        return f"{name!r} holds a backslash or NUL; use '/' between segments"
    if text.startswith("/"):
        return f"{name!r} starts with '/'; names are relative (like model/output)"
    if text.endswith("/"):
        return f"{name!r} ends with '/'; remove it"
    for segment in text.split("/"):
        if segment == "":
            return f"{name!r} has an empty segment ('//'); use one '/'"
        if segment in (".", ".."):
            return f"{name!r} has a {segment!r} segment; names cannot hold '.' or '..' segments"
        if segment != segment.strip():
            return f"{name!r} has a segment with leading or trailing spaces"
    bad = [c for c in GLOB_CHARS if c in text]
    if bad:
        return f"{name!r} holds {''.join(bad)!r}; names cannot hold '[', ']' or '?'"
    if not glob and GLOB in text:
        return f"{name!r} holds '*', which only a config's read or write pattern may hold"
    return None


def namespace_problem(name: object, *, templated: bool = False) -> str | None:
    """Why `name` is not a canonical namespace name, or None when it is (`templated` as for
    product_name_problem)."""
    if not isinstance(name, str) or not name:
        return "a namespace must be a non-empty string"
    text = _shape(name, templated)
    if "/" in text or "\\" in text or "\x00" in text:
        return f"namespace {name!r} holds '/', '\\' or NUL; a namespace is one folder name"
    if text in (".", ".."):
        return f"namespace {name!r} is not a name"
    if text != text.strip():
        return f"namespace {name!r} has leading or trailing spaces"
    if any(c in text for c in GLOB + GLOB_CHARS):
        return f"namespace {name!r} holds '*', '[', ']' or '?'"
    return None


def is_glob(name: str) -> bool:
    """Whether a config's name is a pattern ('*' matches one segment's characters)."""
    return GLOB in name


def glob_matches(pattern: str, name: str) -> bool:
    """Whether a config's name pattern matches a data product name, as the reference CLI
    matches them: each '*' stands for one or more characters of one segment (never '/'),
    anchored at both ends. (A registry's own glob filter lets '*' cross '/': results of
    such a filter are narrowed with this.)"""
    return _glob_regex(pattern).fullmatch(name) is not None


def like_pattern(pattern: str) -> str:
    """A name pattern as SQL's LIKE (with ESCAPE '\\'): '*' as '%', and LIKE's own '%',
    '_' and escape taken literally. LIKE ignores case and lets '*' cross '/', so it only
    narrows what is read: the names it finds are matched exactly after."""
    escaped = pattern.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped.replace(GLOB, "%")


@functools.lru_cache(maxsize=256)
def _glob_regex(pattern: str) -> re.Pattern[str]:
    """A pattern's regex, made once: a pull matches one pattern against every name listed."""
    return re.compile(r"[^/\[\]?*]+".join(re.escape(part) for part in pattern.split(GLOB)))

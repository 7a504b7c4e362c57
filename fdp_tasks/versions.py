"""Semantic versions and the ${{...}} version incrementers.

A small own implementation, so that version order and increments follow semver 2.0.0 exactly
and do not depend on which third-party semver release happens to be installed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import lru_cache, total_ordering
from typing import TypeVar

_NUM = r"0|[1-9]\d*"
_PRE_ID = r"0|[1-9]\d*|\d*[A-Za-z-][0-9A-Za-z-]*"
SEMVER_RE = re.compile(
    rf"^(?P<major>{_NUM})\.(?P<minor>{_NUM})\.(?P<patch>{_NUM})"
    rf"(?:-(?P<pre>(?:{_PRE_ID})(?:\.(?:{_PRE_ID}))*))?"
    r"(?:\+(?P<build>[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*))?$",
    re.ASCII,  # semver's digits are ASCII ones; `\d` alone would take any script's
)
INCREMENTERS = ("MAJOR", "MINOR", "PATCH", "BUILD", "PRERELEASE", "LATEST")
INCREMENTER_RE = re.compile(r"^\$\{\{\s*(" + "|".join(INCREMENTERS) + r")\s*\}\}$")


class VersionError(ValueError):
    """A version string that is neither semver nor a known incrementer, or one that cannot apply."""


def _ident_key(ident: str) -> tuple[int, int, str]:
    # Numeric identifiers sort numerically and below alphanumeric ones (semver 11.4).
    return (0, int(ident), "") if ident.isdigit() else (1, 0, ident)


def _ids_key(ids: tuple[str, ...]) -> tuple:
    return tuple(_ident_key(i) for i in ids)


@total_ordering
@dataclass(frozen=True)
class Version:
    """A parsed semantic version; ordering is semver precedence, with build as a last tie-break."""

    major: int
    minor: int
    patch: int
    prerelease: tuple[str, ...] = ()
    build: tuple[str, ...] = ()

    @classmethod
    def parse(cls, text: str) -> Version:
        """Parse 'X.Y.Z[-pre][+build]'; raise VersionError otherwise. A listing of
        thousands of products holds a few distinct versions: each is parsed once."""
        if not isinstance(text, str):
            raise VersionError(f"{text!r} is not a semantic version (like 1.0.0)")
        return _parse(text)

    def _key(self) -> tuple:
        # A release sorts above its prereleases: (1, ()) > (0, ids).
        pre = (1, ()) if not self.prerelease else (0, _ids_key(self.prerelease))
        return (self.major, self.minor, self.patch, pre, _ids_key(self.build))

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Version):
            return NotImplemented
        return self._key() < other._key()

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.prerelease:
            text += "-" + ".".join(self.prerelease)
        if self.build:
            text += "+" + ".".join(self.build)
        return text


ZERO = Version(0, 0, 0)


def is_semver(text: object) -> bool:
    """True if text is a literal semantic version string."""
    return isinstance(text, str) and bool(SEMVER_RE.fullmatch(text))


def incrementer(text: object) -> str | None:
    """Return the incrementer name in '${{ PATCH }}' and the like, else None."""
    if not isinstance(text, str):
        return None
    match = INCREMENTER_RE.match(text.strip())
    return match.group(1) if match else None


@lru_cache(maxsize=4096)
def _parse(text: str) -> Version:
    match = SEMVER_RE.fullmatch(text.strip())
    if not match:
        raise VersionError(f"{text!r} is not a semantic version (like 1.0.0)")
    pre = match.group("pre")
    build = match.group("build")
    return Version(
        int(match.group("major")),
        int(match.group("minor")),
        int(match.group("patch")),
        tuple(pre.split(".")) if pre else (),
        tuple(build.split(".")) if build else (),
    )


def sort_versions(versions: list[str]) -> list[str]:
    """Valid semver strings in ascending precedence; anything unparsable is dropped."""
    parsed = []
    for v in versions:
        try:
            parsed.append((Version.parse(v), v))
        except VersionError:
            continue
    return [v for _, v in sorted(parsed, key=lambda pair: pair[0])]


def latest(versions: list[str]) -> str | None:
    """The highest valid version among versions, or None if there is none."""
    ordered = sort_versions(list(versions))
    return ordered[-1] if ordered else None


Row = TypeVar("Row")


def newest_of_each_name(rows: Iterable[tuple[str, str, Row]]) -> Iterator[Row]:
    """The row of the highest version of each name, from (name, version, row) triples in
    which the rows of a name come together (ordered by name, say): one name's rows are held
    at a time, so a stream of any length can be read. Versions that do not parse are passed
    over, as `latest` passes them."""
    name: str | None = None
    best: tuple[Version, Row] | None = None
    for row_name, text, row in rows:
        try:
            version = Version.parse(text)
        except VersionError:
            continue
        if row_name != name:
            if best is not None:
                yield best[1]
            name, best = row_name, None
        if best is None or version > best[0]:
            best = (version, row)
    if best is not None:
        yield best[1]


def _bump_ids(ids: tuple[str, ...], default: str) -> tuple[str, ...]:
    if not ids:
        return (default, "1")
    if ids[-1].isdigit():
        return ids[:-1] + (str(int(ids[-1]) + 1),)
    return ids + ("1",)


def increment(name: str, existing: list[str]) -> str:
    """Apply incrementer `name` to the highest of `existing` (floor 0.0.0).

    MAJOR/MINOR/PATCH follow semver's next-version rules (a prerelease is first released),
    PRERELEASE gives the next patch's '-rc.1' or bumps the prerelease counter, BUILD bumps a
    '+build.N' suffix, LATEST returns the highest existing version and fails if there is none.
    """
    top_text = latest(existing)
    if name == "LATEST":
        if top_text is None:
            raise VersionError("no version exists yet, so ${{LATEST}} cannot be resolved")
        return top_text
    top = Version.parse(top_text) if top_text else ZERO
    pre = bool(top.prerelease)
    if name == "MAJOR":
        if pre and top.minor == 0 and top.patch == 0:
            return str(Version(top.major, 0, 0))
        return str(Version(top.major + 1, 0, 0))
    if name == "MINOR":
        if pre and top.patch == 0:
            return str(Version(top.major, top.minor, 0))
        return str(Version(top.major, top.minor + 1, 0))
    if name == "PATCH":
        if pre:
            return str(Version(top.major, top.minor, top.patch))
        return str(Version(top.major, top.minor, top.patch + 1))
    if name == "PRERELEASE":
        if pre:
            return str(Version(top.major, top.minor, top.patch, _bump_ids(top.prerelease, "rc")))
        return str(Version(top.major, top.minor, top.patch + 1, ("rc", "1")))
    if name == "BUILD":
        return str(
            Version(top.major, top.minor, top.patch, top.prerelease, _bump_ids(top.build, "build"))
        )
    raise VersionError(f"unknown version incrementer ${{{{{name}}}}}")

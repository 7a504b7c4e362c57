"""References to data products: what a user typed, and the one product it came to name.

A `PartialRef` is a reference as written on a command line or in a config: its namespace
may be missing, its version missing, `latest`, an incrementer such as ${{MINOR}}, and its name
a '*' pattern. A `ProductRef` names exactly one data product: namespace, name and a concrete
semantic version. They are different types so that the type checker refuses a reference
still waiting for its defaults or its registry look-up where a resolved one is required;
`PartialRef.resolve` is the one way from the first to the second.

Both are written `namespace:name@version`, the form the command line, task names and messages
use.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from fdp_tasks.errors import BadInput
from fdp_tasks.names import is_glob
from fdp_tasks.versions import Version, VersionError, increment, incrementer, is_semver

LATEST = "latest"  # a version written as a word: the highest there is, as ${{LATEST}}
FORM = "namespace:name@version"


class RefError(BadInput, ValueError):
    """A reference that is malformed, or that cannot name one product."""


def _split(text: object, what: str) -> tuple[str | None, str, str | None]:
    """(namespace, name, version) of `[namespace:]name[@version]`; empty parts are errors."""
    if not isinstance(text, str):
        raise RefError(f"{what} must be a string of the form {FORM}, got {text!r}")
    stripped = text.strip()
    rest, at, version = stripped.partition("@")
    if not stripped:
        raise RefError(f"{what} is empty; expected {FORM}")
    if "@" in version:
        raise RefError(f"{text!r} holds more than one '@'; expected {FORM}")
    if at and not version:
        raise RefError(f"{text!r} has nothing after '@'; expected a version, as in {FORM}")
    namespace, colon, name = rest.partition(":")
    if not colon:
        namespace, name = "", rest
    elif not namespace:
        raise RefError(f"{text!r} has nothing before ':'; expected a namespace, as in {FORM}")
    if not name:
        raise RefError(f"{text!r} names no data product; expected {FORM}")
    return namespace or None, name, version if at else None


@dataclass(frozen=True)
class ProductRef:
    """One data product: its namespace, name and concrete version."""

    namespace: str
    name: str
    version: Version

    def __post_init__(self) -> None:
        # Records are untyped dicts: a version string slipping in would compare unequal to
        # every Version and be looked up as nothing, so it is refused at once.
        if not isinstance(self.version, Version):
            raise TypeError(f"ProductRef.version must be a Version, got {self.version!r}")
        if not self.namespace or not self.name:
            raise RefError(
                f"a data product reference needs a namespace and a name, got namespace "
                f"{self.namespace!r} and name {self.name!r}; expected {FORM}"
            )

    @classmethod
    def of(cls, namespace: str, name: str, version: str | Version) -> ProductRef:
        """The reference to a product as a registry records it (the version as text)."""
        if isinstance(version, Version):
            return cls(namespace, name, version)
        try:
            return cls(namespace, name, Version.parse(version))
        except VersionError:
            raise RefError(
                f"{namespace}:{name}@{version}: {version!r} is not a semantic version (like 1.0.0)"
            ) from None

    @classmethod
    def of_read_item(
        cls, item: Mapping[str, Any], default_namespace: str | None = None
    ) -> ProductRef:
        """The product a read item of a working config names. Resolution has qualified its
        `use` block (namespace, data_product, version); the item's own name stands in for a
        missing use.data_product, `default_namespace` for a missing use.namespace."""
        use = item.get("use") or {}
        namespace = use.get("namespace") or default_namespace
        name = use.get("data_product") or item.get("data_product")
        if not isinstance(namespace, str) or not isinstance(name, str):
            raise RefError(
                f"read item {name or '?'} gives no namespace or name, so it names no one data "
                f"product; expected use.namespace, use.data_product and use.version"
            )
        return cls.of(namespace, name, str(use.get("version")))

    @classmethod
    def parse(cls, text: str, what: str = "a data product reference") -> ProductRef:
        """`namespace:name@version` with every part given and a semantic version."""
        namespace, name, version = _split(text, what)
        if namespace is None or version is None:
            missing = " and ".join(
                part
                for part, value in (("namespace", namespace), ("version", version))
                if value is None
            )
            raise RefError(f"{text!r} gives no {missing}; expected {FORM}, as in ns:out@1.0.0")
        if is_glob(name):
            raise RefError(f"{text!r} is a pattern; expected one data product's name")
        return cls.of(namespace, name, version)

    @property
    def version_text(self) -> str:
        """The version as registries record it."""
        return str(self.version)

    def partial(self) -> PartialRef:
        """The same reference, as one a user could have typed."""
        return PartialRef(self.namespace, self.name, self.version_text)

    def __str__(self) -> str:
        return f"{self.namespace}:{self.name}@{self.version}"


@dataclass(frozen=True)
class PartialRef:
    """A reference as written: namespace maybe missing; version missing, a semantic version,
    `latest` or an incrementer; name maybe a '*' pattern."""

    namespace: str | None
    name: str
    version: str | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise RefError(f"a reference names no data product; expected {FORM}")
        if self.version is not None and not (
            is_semver(self.version) or self.version == LATEST or incrementer(self.version)
        ):
            raise RefError(
                f"{self}: version {self.version!r} is not a semantic version (like 1.0.0), "
                f"{LATEST!r} or an incrementer such as ${{{{MINOR}}}}"
            )

    @classmethod
    def parse(cls, text: str, what: str = "a data product reference") -> PartialRef:
        """`[namespace:]name[@version]`."""
        return cls(*_split(text, what))

    @property
    def is_glob(self) -> bool:
        """Whether the name is a pattern, standing for every name it matches."""
        return is_glob(self.name)

    @property
    def pinned(self) -> bool:
        """Whether the version is a concrete one: no registry is needed to know it."""
        return self.version is not None and is_semver(self.version)

    @property
    def incrementer(self) -> str | None:
        """The incrementer the version stands for (LATEST when none or `latest` is given),
        or None for a concrete version."""
        if self.version is None or self.version == LATEST:
            return "LATEST"
        return incrementer(self.version)

    def resolve(self, default_namespace: str | None, existing: Iterable[str]) -> ProductRef:
        """The product this names, given the namespace to take when it names none and the
        versions the registry holds of it: a concrete version is itself; none, `latest` and
        ${{LATEST}} are the highest existing; another incrementer is the version it makes
        from the highest existing (0.0.0 when there is none)."""
        namespace = self.namespace or default_namespace
        if not namespace:
            raise RefError(f"{self} names no namespace and there is no default; expected {FORM}")
        if self.is_glob:
            raise RefError(f"{self} is a pattern: resolve each name it matches on its own")
        if self.pinned:
            return ProductRef.of(namespace, self.name, str(self.version))
        # not pinned: __post_init__ leaves an incrementer, `latest` or no version
        step = self.incrementer or "LATEST"
        try:
            version = increment(step, list(existing))
        except VersionError as exc:
            raise RefError(f"{namespace}:{self.name}: {exc}") from None
        return ProductRef.of(namespace, self.name, version)

    def __str__(self) -> str:
        namespace = f"{self.namespace}:" if self.namespace else ""
        version = f"@{self.version}" if self.version else ""
        return f"{namespace}{self.name}{version}"

"""Turning loosely typed input (query strings, JSON, YAML) into the values a field holds."""

from __future__ import annotations

import uuid as uuidlib
from datetime import timezone
from typing import Any

from fdp_tasks import scalars
from fdp_tasks.store.schema import Field
from fdp_tasks.versions import is_semver


class BadValue(ValueError):
    """A value that does not fit its field; the message says what was expected."""


def parse_bool(value: Any) -> bool:
    """A boolean field's value (scalars.parse_bool's words), or BadValue."""
    try:
        return scalars.parse_bool(value)
    except ValueError as exc:
        raise BadValue(str(exc)) from None


def parse_datetime(value: Any) -> str:
    """The stored form of a date-time: ISO 8601 in UTC ('2021-09-20T12:00:00+00:00'), so
    that equal moments compare equal; a moment without a zone is taken as UTC."""
    try:
        moment = scalars.parse_datetime(value)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc).isoformat()


def coerce(field: Field, value: Any) -> Any:
    """The stored form of `value` for a scalar field; None stays None."""
    if value is None:
        return None
    kind = field.kind
    if kind == "boolean":
        return parse_bool(value)
    if kind == "integer":
        if isinstance(value, bool):
            raise BadValue(f"expected an integer, got {value!r}")
        try:
            return int(value)
        except (TypeError, ValueError) as exc:
            raise BadValue(f"expected an integer, got {value!r}") from exc
    if kind == "datetime":
        return parse_datetime(value)
    if kind == "uuid":
        try:
            return str(uuidlib.UUID(str(value)))
        except ValueError as exc:
            raise BadValue(f"expected a UUID, got {value!r}") from exc
    if not isinstance(value, (str, int, float)) or isinstance(value, bool):
        raise BadValue(f"expected a string, got {value!r}")
    text = str(value)
    if field.format == "semver" and not is_semver(text):
        raise BadValue(f"expected a semantic version such as 1.0.0, got {text!r}")
    return text

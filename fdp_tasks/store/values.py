"""Turning loosely typed input (query strings, JSON, YAML) into the values a field holds."""

from __future__ import annotations

import uuid as uuidlib
from datetime import datetime, timezone
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


def parse_moment(value: Any) -> datetime:
    """A date-time as an aware moment in UTC; a moment without a zone is taken as UTC."""
    try:
        moment = scalars.parse_datetime(value)
    except ValueError as exc:
        raise BadValue(str(exc)) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


def parse_datetime(value: Any) -> str:
    """The form a date-time takes in records: ISO 8601 in UTC ('2021-09-20T12:00:00+00:00'),
    so that equal moments compare equal; a moment without a zone is taken as UTC."""
    return parse_moment(value).isoformat()


# What an INTEGER column holds on PostgreSQL (SQLite's hold 64 bits): one limit for both.
LARGEST_INTEGER = 2**31 - 1


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
            number = int(value)
        except (TypeError, ValueError) as exc:
            raise BadValue(f"expected an integer, got {value!r}") from exc
        if not -LARGEST_INTEGER - 1 <= number <= LARGEST_INTEGER:
            raise BadValue(f"expected an integer of at most 32 bits, got {value!r}")
        return number
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
    if "\x00" in text:  # PostgreSQL's text cannot hold it; SQLite's could
        raise BadValue("expected text without NUL characters")
    if field.format == "semver" and not is_semver(text):
        raise BadValue(f"expected a semantic version such as 1.0.0, got {text!r}")
    return text

"""Turning loosely typed input (query strings, JSON, YAML) into the values a field holds."""

from __future__ import annotations

import uuid as uuidlib
from datetime import date, datetime, timezone
from typing import Any

from fdp_tasks.store.schema import Field
from fdp_tasks.versions import is_semver

TRUE = {"true", "1", "yes", "t", "y"}
FALSE = {"false", "0", "no", "f", "n"}


class BadValue(ValueError):
    """A value that does not fit its field; the message says what was expected."""


def parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise BadValue(f"expected true or false, got {value!r}")


def parse_datetime(value: Any) -> str:
    """Normalise to ISO 8601 in UTC with seconds ('2021-09-20T12:00:00+00:00')."""
    if isinstance(value, datetime):
        moment = value
    elif isinstance(value, date):
        moment = datetime(value.year, value.month, value.day)
    elif isinstance(value, str) and value.strip():
        text = value.strip().replace("Z", "+00:00")
        try:
            moment = datetime.fromisoformat(text)
        except ValueError as exc:
            raise BadValue(f"expected an ISO 8601 date or date-time, got {value!r}") from exc
    else:
        raise BadValue(f"expected an ISO 8601 date or date-time, got {value!r}")
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

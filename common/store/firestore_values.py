"""Python values to Firestore's JSON `Value`s and back, field paths, and the write sentinels.

Encoded as the official client does: None, bool, int (an `integerValue` string), float, an aware
datetime (`timestampValue`, RFC 3339 in UTC; a naive one is taken as UTC), str, bytes (base64),
list and dict (arrays and maps). Decoded timestamps are aware UTC datetimes (to the microsecond).
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z_0-9]*")
_TIMESTAMP = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)")


class _Delete:
    def __repr__(self) -> str:
        return "DELETE_FIELD"


DELETE_FIELD: Any = _Delete()  # in a merge set or an update: remove this field


class Transform:
    """A server-side change of one field, applied after the write's values."""

    def encode(self, path: str) -> dict[str, Any]:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class Increment(Transform):
    """Add `value` to the field (a missing or non-numeric field becomes `value`)."""

    value: int | float

    def encode(self, path: str) -> dict[str, Any]:
        return {"fieldPath": path, "increment": encode(self.value)}


@dataclass(frozen=True, slots=True)
class ArrayUnion(Transform):
    """Append each of `values` that the array does not hold yet (a missing field becomes them)."""

    values: list[Any]

    def encode(self, path: str) -> dict[str, Any]:
        return {"fieldPath": path, "appendMissingElements": {"values": [encode(v) for v in self.values]}}


def field_path(segments: list[str]) -> str:
    """`a.b`, with a segment that is not an identifier back-quoted: users.`0f3a…`."""
    return ".".join(s if _IDENTIFIER.fullmatch(s) else _quote(s) for s in segments)


def _quote(segment: str) -> str:
    return "`" + segment.replace("\\", "\\\\").replace("`", "\\`") + "`"


def encode(value: Any) -> dict[str, Any]:
    if value is None:
        return {"nullValue": None}
    if isinstance(value, bool):
        return {"booleanValue": value}
    if isinstance(value, int):
        return {"integerValue": str(value)}
    if isinstance(value, float):
        return {"doubleValue": value}
    if isinstance(value, datetime):
        return {"timestampValue": timestamp(value)}
    if isinstance(value, str):
        return {"stringValue": value}
    if isinstance(value, bytes):
        return {"bytesValue": base64.b64encode(value).decode()}
    if isinstance(value, list | tuple):
        return {"arrayValue": {"values": [encode(v) for v in value]}}
    if isinstance(value, dict):
        return {"mapValue": {"fields": {str(k): encode(v) for k, v in value.items()}}}
    raise TypeError(f"no Firestore value for {type(value).__name__}")


def decode(value: dict[str, Any]) -> Any:
    if "nullValue" in value:
        return None
    if "booleanValue" in value:
        return bool(value["booleanValue"])
    if "integerValue" in value:
        return int(value["integerValue"])
    if "doubleValue" in value:
        return float(value["doubleValue"])  # also "NaN", "Infinity"
    if "timestampValue" in value:
        return parse_timestamp(value["timestampValue"])
    if "stringValue" in value:
        return value["stringValue"]
    if "bytesValue" in value:
        return base64.b64decode(value["bytesValue"])
    if "arrayValue" in value:
        return [decode(v) for v in value["arrayValue"].get("values", [])]
    if "mapValue" in value:
        return decode_fields(value["mapValue"].get("fields", {}))
    if "referenceValue" in value:
        return value["referenceValue"]
    if "geoPointValue" in value:
        return dict(value["geoPointValue"])
    raise ValueError(f"unknown Firestore value: {sorted(value)}")


def decode_fields(fields: dict[str, Any]) -> dict[str, Any]:
    return {name: decode(value) for name, value in fields.items()}


def timestamp(moment: datetime) -> str:
    """RFC 3339 in UTC, to the microsecond."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def parse_timestamp(text: str) -> datetime:
    """An aware UTC datetime; nanoseconds are cut to microseconds."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    whole, fraction, zone = match.groups()
    micros = (fraction or "").ljust(6, "0")[:6]
    parsed = datetime.fromisoformat(f"{whole}.{micros}{'+00:00' if zone == 'Z' else zone}")
    return parsed.astimezone(UTC)

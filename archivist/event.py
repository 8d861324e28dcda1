"""Events: what arrived from which source, as payload and merged metadata (herostools semantics)."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from .decode import decode_payload
from .errors import PayloadError


@dataclass(frozen=True, slots=True)
class Received:
    """A zenoh sample as it came in; kept undecoded so the callback stays cheap and the spool gets the bytes."""

    key_expr: str
    raw: bytes
    received_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class Event:
    """A decoded HEROS event, ready to be routed."""

    source_name: str
    payload: Any
    metadata: dict[str, Any]


def source_name_from_key(key_expr: str, realm: str, event_name: str) -> str:
    """The HERO name between ``@object/{realm}/`` and ``/{event_name}``; may contain ``/`` for ``**``."""
    prefix, suffix = f"@object/{realm}/", f"/{event_name}"
    if key_expr.startswith(prefix) and key_expr.endswith(suffix) and len(key_expr) > len(prefix) + len(suffix):
        return key_expr[len(prefix) : -len(suffix)]
    return key_expr


DATASOURCE_EVENT = "observable_data"


def split_event(
    value: Any, default_metadata: dict[str, Any], event_name: str | None = None
) -> tuple[Any, dict[str, Any]]:
    """Split an event value into payload and metadata the way herostools' HERODataArchiver does.

    A ``(data, metadata)`` pair gives ``data`` and ``default_metadata | metadata``; a plain map is both the
    payload and (merged with the defaults) the metadata. A datasource's ``observable_data`` is a list of
    records, one per observable, and is kept whole: by herostools' rule a datasource with two observables
    would be read as a pair, its second record taken for metadata. Its metadata is the defaults and the
    newest record's ``time``.
    """
    if event_name == DATASOURCE_EVENT and isinstance(value, list) and all(isinstance(item, dict) for item in value):
        times = [t for item in value if is_record_time(t := item.get("time"))]
        return value, default_metadata | ({"time": max(times)} if times else {})
    if isinstance(value, dict):
        return value, default_metadata | value
    if isinstance(value, list) and len(value) == 2 and isinstance(value[1], dict):
        return value[0], default_metadata | value[1]
    kind = f"a list of {len(value)} items" if isinstance(value, list) else type(value).__name__
    raise PayloadError(f"event value must be a (data, metadata) pair or a map, got {kind}")


def is_record_time(value: Any) -> bool:
    """Whether ``value`` is a datasource record's time: a finite number of seconds, not a bool."""
    if not isinstance(value, int | float) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond float range (CBOR bignums decode to any size)
        return False


def decode_event(received: Received, realm: str, event_name: str, default_metadata: dict[str, Any]) -> Event:
    """Decode a received sample into an :class:`Event`."""
    payload, metadata = split_event(decode_payload(received.raw), default_metadata, event_name)
    return Event(source_name_from_key(received.key_expr, realm, event_name), payload, metadata)

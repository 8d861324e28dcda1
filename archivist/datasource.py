"""Datasource readings: validate ``observable_data`` records and keep the newest one per source and observable.

A record that is not a map, lacks ``id`` or ``time`` or has a field of the wrong type is skipped and counted by
reason, so one bad datasource never spoils what the others report.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

import zenoh

from .decode import decode_payload
from .errors import DecodeError
from .event import Received, is_record_time, source_name_from_key
from .source import Subscription, ZenohConfig

log = logging.getLogger(__name__)

EVENT_NAME = "observable_data"
NO_UNIT = "None"  # what heros sends for an unset unit


class RecordError(ValueError):
    """One ``observable_data`` record is unusable; ``reason`` is the counter label."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Reading:
    """One validated record. ``value``/``unit`` are the calibrated ones when ``calibrated``, else the raw ones;
    ``number``/``raw_number`` are those values as floats (None if not numeric), converted once on arrival, not
    at every scrape."""

    id: str
    time: float
    value: Any
    unit: str
    raw_value: Any
    raw_unit: str
    inbound: int
    calibrated: bool
    record: dict[str, Any]
    number: float | None
    raw_number: float | None


def numeric(value: Any) -> float | None:
    """``value`` as a float when it is a number or a bool (1/0), else None."""
    if isinstance(value, bool | int | float):
        try:
            return float(value)
        except OverflowError:  # an int beyond float range
            return None
    return None


def _shown(value: Any) -> str:
    """``value`` for a message, cut at 80 characters; CBOR bignums decode to ints too long for ``repr``."""
    try:
        return f"{value!r:.80}"
    except ValueError:  # more digits than Python turns into text (sys.get_int_max_str_digits)
        return f"a {type(value).__name__} too large to show"


def parse_record(record: Any) -> Reading:
    """Validate one record of an ``observable_data`` list (heros' DatasourceReturnValue); raise RecordError."""
    if not isinstance(record, dict):
        raise RecordError("not_a_map", f"record is {type(record).__name__}, not a map")
    missing = [key for key in ("id", "time") if key not in record]
    if missing:
        raise RecordError("missing_field", f"record lacks {', '.join(missing)}")
    ident, when = record["id"], record["time"]
    if not isinstance(ident, str) or not ident:
        raise RecordError("wrong_type", f"id must be a non-empty string, got {_shown(ident)}")
    if not is_record_time(when):
        raise RecordError("wrong_type", f"{ident!r:.80}: time must be a finite number, got {_shown(when)}")
    unit, raw_unit = record.get("unit", NO_UNIT), record.get("raw_unit", NO_UNIT)
    inbound, calibrated = record.get("inbound", -1), record.get("calibrated", False)
    if not isinstance(unit, str) or not isinstance(raw_unit, str):
        raise RecordError("wrong_type", f"{ident!r:.80}: unit and raw_unit must be strings")
    if isinstance(inbound, bool) or not isinstance(inbound, int):
        raise RecordError("wrong_type", f"{ident!r:.80}: inbound must be an integer, got {_shown(inbound)}")
    if numeric(inbound) is None:
        raise RecordError("wrong_type", f"{ident!r:.80}: inbound is an integer beyond float range")
    if not isinstance(calibrated, bool):
        raise RecordError("wrong_type", f"{ident!r:.80}: calibrated must be a bool, got {_shown(calibrated)}")
    raw_value = record.get("raw_value")
    value = record.get("value") if calibrated else raw_value
    return Reading(
        id=ident,
        time=float(when),
        value=value,
        unit=unit if calibrated else raw_unit,
        raw_value=raw_value,
        raw_unit=raw_unit,
        inbound=inbound,
        calibrated=calibrated,
        record=record,
        number=numeric(value),
        raw_number=numeric(raw_value),
    )


class DatasourceCache:
    """The newest reading per source and observable id; thread-safe, fed from zenoh's callback thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._readings: dict[str, dict[str, Reading]] = {}
        self._skipped: Counter[str] = Counter()
        self._warned: set[tuple[str, str]] = set()

    def update(self, source: str, value: Any) -> int:
        """Take one decoded ``observable_data`` value from ``source``; returns how many records were accepted.

        A reading replaces the cached one only if it is at least as recent (by its ``time``).
        """
        if not isinstance(value, list):
            self.skip(source, "not_a_list", f"observable_data is {type(value).__name__}, not a list of records")
            return 0
        accepted = 0
        with self._lock:
            readings = self._readings.setdefault(source, {})
            for record in value:
                try:
                    reading = parse_record(record)
                except RecordError as exc:
                    self._skip_locked(source, exc.reason, str(exc))
                    continue
                if (reading.number is None and reading.value is not None) or (
                    reading.raw_number is None and reading.raw_value is not None
                ):
                    self._skip_locked(source, "non_numeric_value", f"{reading.id!r:.80}: value is not a number")
                previous = readings.get(reading.id)
                if previous is not None and previous.time > reading.time:
                    self._skipped["outdated"] += 1
                    continue
                readings[reading.id] = reading
                accepted += 1
            if not readings:
                del self._readings[source]
        return accepted

    def feed(self, received: Received, realm: str) -> None:
        """Decode a received ``observable_data`` sample (with the one decoder) and take it."""
        source = source_name_from_key(received.key_expr, realm, EVENT_NAME)
        try:
            value = decode_payload(received.raw)
        except DecodeError as exc:
            self.skip(source, "undecodable", str(exc))
            return
        self.update(source, value)

    def skip(self, source: str, reason: str, message: str) -> None:
        with self._lock:
            self._skip_locked(source, reason, message)

    def _skip_locked(self, source: str, reason: str, message: str) -> None:
        self._skipped[reason] += 1
        level = logging.DEBUG if (source, reason) in self._warned else logging.WARNING
        self._warned.add((source, reason))
        log.log(level, "observable_data from %r: record skipped (%s): %s", source, reason, message)

    def readings(self) -> list[tuple[str, tuple[Reading, ...]]]:
        """Every cached reading, a snapshot, per source (one tuple each, not one object per reading to collect)."""
        with self._lock:
            return [(source, tuple(by_id.values())) for source, by_id in self._readings.items()]

    def records(self) -> dict[str, tuple[dict[str, Any], ...]]:
        """The cached records as received, per source (herostools' ``get_cache()`` shape)."""
        with self._lock:
            return {source: tuple(dict(r.record) for r in by_id.values()) for source, by_id in self._readings.items()}

    def skipped(self) -> dict[str, int]:
        """Records (or, for ``non_numeric_value``, values) skipped so far, by reason."""
        with self._lock:
            return dict(self._skipped)

    def clear(self) -> None:
        with self._lock:
            self._readings.clear()


class DatasourceFeed:
    """Keeps a cache up to date from the ``observable_data`` events of the HEROs matching ``object_selector``."""

    def __init__(
        self,
        cache: DatasourceCache,
        *,
        object_selector: str = "*",
        realm: str = "heros",
        zenoh_config: ZenohConfig = None,
        session: zenoh.Session | None = None,
    ) -> None:
        def deliver(received: Received) -> None:
            cache.feed(received, realm)

        self._subscription = Subscription(
            deliver,
            realm=realm,
            object_selector=object_selector,
            event_name=EVENT_NAME,
            zenoh_config=zenoh_config,
            session=session,
        )
        self.key_expr = self._subscription.key_expr

    def close(self) -> None:
        self._subscription.close()

"""Datasource readings: validate ``observable_data`` records and keep the newest one per source and observable.

A record that is not a map, lacks ``id`` or ``time`` or has a field of the wrong type is skipped and counted by
reason, so one bad datasource never spoils what the others report, and the event that held it is kept in the
spool.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import zenoh

from .decode import decode_payload
from .errors import DecodeError
from .event import Received, is_record_time, source_name_from_key
from .source import Subscription, ZenohConfig
from .spool import Spool, SpoolEntry, importable_class_name

log = logging.getLogger(__name__)

EVENT_NAME = "observable_data"
NO_UNIT = "None"  # what heros sends for an unset unit
FUTURE_TOLERANCE = 60.0  # seconds a cached reading's time may be ahead of this clock and still order readings


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

    def update(self, source: str, value: Any) -> list[RecordError]:
        """Take one decoded ``observable_data`` value from ``source``; returns what it refused as bad input.

        A reading replaces the cached one only if it is at least as recent (by its ``time``), unless the cached
        one is more than ``FUTURE_TOLERANCE`` ahead of this machine's clock (a time in ms, a clock jump): its
        time cannot order readings then, and one such reading would otherwise hide the observable for good.
        An outdated reading, or a value that is not a number (the record is kept), is counted but not refused.
        """
        if not isinstance(value, list):
            refused = RecordError("not_a_list", f"observable_data is {type(value).__name__}, not a list of records")
            self.skip(source, refused)
            return [refused]
        refusals = []
        future = time.time() + FUTURE_TOLERANCE
        with self._lock:
            readings = self._readings.setdefault(source, {})
            for record in value:
                try:
                    reading = parse_record(record)
                except RecordError as exc:
                    self._skip_locked(source, exc)
                    refusals.append(exc)
                    continue
                if (reading.number is None and reading.value is not None) or (
                    reading.raw_number is None and reading.raw_value is not None
                ):
                    self._skip_locked(
                        source, RecordError("non_numeric_value", f"{reading.id!r:.80}: value is not a number")
                    )
                previous = readings.get(reading.id)
                if previous is not None and future >= previous.time > reading.time:
                    self._skipped["outdated"] += 1
                    continue
                readings[reading.id] = reading
            if not readings:
                del self._readings[source]
        return refusals

    def feed(self, received: Received, realm: str) -> list[RecordError]:
        """Decode a received ``observable_data`` sample (with the one decoder) and take it; returns what it
        refused as bad input."""
        source = source_name_from_key(received.key_expr, realm, EVENT_NAME)
        try:
            value = decode_payload(received.raw)
        except DecodeError as exc:
            refused = RecordError("undecodable", str(exc))
            self.skip(source, refused)
            return [refused]
        return self.update(source, value)

    def skip(self, source: str, refused: RecordError) -> None:
        with self._lock:
            self._skip_locked(source, refused)

    def _skip_locked(self, source: str, refused: RecordError) -> None:
        self._skipped[refused.reason] += 1
        level = logging.DEBUG if (source, refused.reason) in self._warned else logging.WARNING
        self._warned.add((source, refused.reason))
        log.log(level, "observable_data from %r: record skipped (%s): %s", source, refused.reason, refused)

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


class RefusedEvents:
    """Keeps each ``observable_data`` event that held bad input in the spool, whole, as archivers keep an event
    they could not write: counted and logged is not enough, the bytes are what tells a datasource's author what
    went wrong. ``archivist replay`` leaves such entries for a person to read (a reading is a value of its
    moment, not a file to deliver later)."""

    SHOWN = 3  # refused records described in an entry's error

    def __init__(self, spool_dir: str | None, observer: str, observer_class: type) -> None:
        self.spool = Spool(spool_dir)
        self.observer = observer
        self.observer_class = importable_class_name(observer_class)
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter({"spooled": 0, "spool_failed": 0})
        self._warned: set[str] = set()

    def keep(self, received: Received, refusals: list[RecordError]) -> None:
        described = "; ".join(f"{refused.reason}: {refused}" for refused in refusals[: self.SHOWN])
        if len(refusals) > self.SHOWN:
            described += f"; and {len(refusals) - self.SHOWN} more"
        path = self.spool.keep(
            SpoolEntry(
                archiver=self.observer,
                archiver_class=self.observer_class,
                settings={},
                key_expr=received.key_expr,
                payload=received.raw,
                received_at=received.received_at,
                error=described,
                error_type=RecordError.__name__,
                attempts=1,
            )
        )
        with self._lock:
            self._counts["spooled" if path else "spool_failed"] += 1
            if path is None:  # Spool.keep said so, at CRITICAL
                return
            first = received.key_expr not in self._warned
            self._warned.add(received.key_expr)
        log.log(
            logging.WARNING if first else logging.DEBUG,
            "%s: observable_data from %s refused (%s); kept in the spool as %s",
            self.observer,
            received.key_expr,
            described,
            path,
        )

    def counts(self) -> dict[str, int]:
        """Refused events ``spooled`` and those that could not be (``spool_failed``)."""
        with self._lock:
            return dict(self._counts)


class DatasourceFeed:
    """Keeps a cache up to date from the ``observable_data`` events of the HEROs matching ``object_selector``;
    events holding bad input go to ``refused``."""

    def __init__(
        self,
        cache: DatasourceCache,
        *,
        object_selector: str = "*",
        realm: str = "heros",
        zenoh_config: ZenohConfig = None,
        session: zenoh.Session | None = None,
        refused: RefusedEvents,
    ) -> None:
        def deliver(received: Received) -> None:
            if refusals := cache.feed(received, realm):
                refused.keep(received, refusals)

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

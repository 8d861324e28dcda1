"""Prometheus collectors: datasource readings (herostools' series) and every live archiver's own counters.

Collectors only yield metric families at scrape time, from the cache and from ``Archiver.stats()``; exposition
and escaping are prometheus_client's, serving is :mod:`archivist.metrics_server`'s. Per-reading work is kept out
of the scrape: values are converted when a reading arrives, names and labels made once per distinct series.
"""

from __future__ import annotations

import math
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample

from .datasource import NO_UNIT, DatasourceCache, Reading
from .errors import ConfigError

if TYPE_CHECKING:
    from .archivers import Archiver

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
WRITE_LATENCY_HELP = "Seconds from the start of an event's write to its last file stored, retries included"
WRITE_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)

_DATASOURCE_HELP = {  # short: every series is a family of its own, so this text is repeated for each
    "inbound": "HEROS datasource inbound level",
    "value": "HEROS datasource value",
    "raw_value": "HEROS datasource raw value",
}


def metric_name(text: str) -> str:
    """herostools' series name: lower case, every run of characters outside ``[a-z0-9]`` one ``_``, no ``_`` at
    either end; a leading digit gets a ``_`` in front, since a Prometheus name cannot start with one."""
    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return f"_{name}" if name[:1].isdigit() else name


def unit_label(unit: str) -> str:
    """herostools' unit label: ``µ`` becomes ``u`` (µA → uA); everything else is kept and escaped on exposition."""
    return unit.replace("µ", "u").replace("μ", "u")  # the micro sign and the Greek mu


def check_labels(labels: dict[str, Any] | None) -> dict[str, str]:
    """Global labels as strings, with names Prometheus accepts; raise ConfigError otherwise."""
    if labels is None:
        return {}
    if not isinstance(labels, dict):
        raise ConfigError("labels must be a map of label names to values")
    for name in labels:
        if not isinstance(name, str) or not LABEL_NAME.match(name) or name.startswith("__"):
            raise ConfigError(f"labels: {name!r} is not a Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)")
    return {name: str(value) for name, value in labels.items()}


_Series = tuple[tuple[str, str, dict[str, str]], ...]  # (name, help, labels) of inbound, value and raw_value


class DatasourceCollector(Collector):
    """herostools' series per source ``P`` and observable ``K``: ``P_K_inbound``, ``P_K_value``, ``P_K_raw_value``.

    Labels: the global ``labels``, ``prefix="P"``, ``key="K"`` and ``unit`` unless it is ``"None"``. Readings
    whose time is more than ``max_age`` seconds from now are left out (Prometheus drops whole scrapes with
    far-off timestamps); ``timestamps`` exposes each reading's own time as the sample timestamp.
    """

    def __init__(
        self,
        cache: DatasourceCache,
        *,
        labels: dict[str, Any] | None = None,
        max_age: float | None = 600,
        timestamps: bool = False,
        name: str = "datasource",
    ) -> None:
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0):
            raise ConfigError("max_age must be a number of seconds > 0, or null for no limit")
        self.cache = cache
        self.labels = check_labels(labels)
        self.max_age = max_age
        self.timestamps = bool(timestamps)
        self.name = name
        self._known: dict[tuple[str, str, str, str], _Series] = {}  # (source, id, unit, raw_unit) -> series

    def _series(self, source: str, ident: str, unit: str, raw_unit: str) -> _Series:
        base = metric_name(f"{source}_{ident}")
        labels = self.labels | {"prefix": source, "key": ident}
        return tuple(
            (f"{base}_{kind}", _DATASOURCE_HELP[kind], labels if u == NO_UNIT else labels | {"unit": unit_label(u)})
            for kind, u in (("inbound", NO_UNIT), ("value", unit), ("raw_value", raw_unit))
        )

    def collect(self) -> Iterator[Metric]:
        now, max_age, timestamps = time.time(), self.max_age, self.timestamps
        known, seen = self._known, {}
        fresh: list[Reading] = []
        named: list[_Series] = []  # the series of each fresh reading
        stale = 0
        for source, readings in self.cache.readings():
            for reading in readings:
                if max_age is not None and abs(now - reading.time) > max_age:
                    stale += 1
                    continue
                key = (source, reading.id, reading.unit, reading.raw_unit)
                seen[key] = series = known.get(key) or self._series(*key)
                named.append(series)
                fresh.append(reading)
        self._known = seen  # only the series of readings still cached are kept

        def samples() -> Iterator[tuple[str, str, Sample]]:
            for series, reading in zip(named, fresh, strict=True):
                timestamp = reading.time if timestamps else None
                numbers = (float(reading.inbound), reading.number, reading.raw_number)
                for (name, documentation, labels), number in zip(series, numbers, strict=True):
                    if number is not None:
                        yield name, documentation, Sample(name, labels, number, timestamp)

        # Families are made as the exposition asks for them, so that each is freed once written: 30,000 families
        # alive at once would make every scrape pay a full garbage collection. Names can collide (herostools'
        # names do): such a family holds every sample of its name, in the place of its first.
        counts = Counter(name for series in named for name, _, _ in series)
        shared: dict[str, Metric] = {}
        if len(counts) < 3 * len(named):
            for name, documentation, sample in samples():
                if counts[name] > 1:
                    shared.setdefault(name, Metric(name, documentation, "gauge")).samples.append(sample)
        for name, documentation, sample in samples():
            if counts[name] == 1:
                family = Metric(name, documentation, "gauge")
                family.samples.append(sample)
                yield family
            elif name in shared:
                yield shared.pop(name)

        skipped = CounterMetricFamily(
            "archivist_datasource_records_skipped",
            "observable_data records (or values) skipped, by reason",
            labels=("observer", "reason"),
        )
        for reason, count in sorted(self.cache.skipped().items()):
            skipped.add_metric((self.name, reason), count)
        yield skipped
        old = GaugeMetricFamily(
            "archivist_datasource_stale_readings",
            "Cached readings left out of the exposition because they are older than max_age",
            labels=("observer",),
        )
        old.add_metric((self.name,), stale)
        yield old


# -- live objects a metrics endpoint serves -----------------------------------------------------------------------

_archivers: weakref.WeakSet[Archiver] = weakref.WeakSet()
_collectors: weakref.WeakSet[Collector] = weakref.WeakSet()
_lock = threading.Lock()


def register_archiver(archiver: Archiver) -> None:
    """Called by an archiver once it listens; it leaves when it stops (or is garbage collected)."""
    with _lock:
        _archivers.add(archiver)


def unregister_archiver(archiver: Archiver) -> None:
    with _lock:
        _archivers.discard(archiver)


def live_archivers() -> list[Archiver]:
    with _lock:
        return sorted(_archivers, key=lambda archiver: archiver.name)


def register_collector(collector: Collector) -> None:
    """A running state machine's collector, served by ``archivist run --metrics-port`` too."""
    with _lock:
        _collectors.add(collector)


def unregister_collector(collector: Collector) -> None:
    with _lock:
        _collectors.discard(collector)


def write_latency_histogram() -> Histogram:
    """An archiver's own, unregistered histogram of the seconds one event takes to be written."""
    return Histogram(
        "archivist_write_latency_seconds",
        WRITE_LATENCY_HELP,
        registry=None,
        buckets=WRITE_LATENCY_BUCKETS,
    )


_COUNTERS = (
    ("archivist_events_received", "received", "Events received from zenoh"),
    ("archivist_events_overflowed", "overflowed", "Events that found the queue full and waited in the disk buffer"),
    ("archivist_events_written", "written", "Events written completely"),
    ("archivist_events_failed", "failed", "Events not written (then spooled)"),
    ("archivist_events_spooled", "spooled", "Events kept in the spool"),
    ("archivist_spool_failures", "spool_failed", "Events that could not even be spooled (lost)"),
    ("archivist_events_replayed", "replayed", "Spooled events delivered by a replay"),
    ("archivist_write_retries", "retries", "Write attempts retried"),
    ("archivist_files_written", "files_written", "Files written"),
    ("archivist_bytes_written", "bytes_written", "Bytes written"),
)
_GAUGES = (
    ("archivist_queue_events", "queued", "Events waiting in the queue"),
    ("archivist_queue_bytes", "queued_bytes", "Bytes of the events waiting in the queue"),
    ("archivist_buffered_events", "buffered", "Events waiting in the disk buffer"),
    ("archivist_oldest_queued_event_age_seconds", "oldest_queued_age", "Seconds the oldest queued event has waited"),
)


class ArchiverCollector(Collector):
    """Every live archiver's ``stats()``, read at scrape time, labelled ``archiver="<name>"``."""

    def __init__(self, archivers: Callable[[], Iterable[Archiver]] = live_archivers) -> None:
        self._archivers = archivers

    def collect(self) -> Iterator[Metric]:
        archivers = [(archiver, archiver.stats()) for archiver in self._archivers()]
        for name, key, documentation in _COUNTERS:
            family = CounterMetricFamily(name, documentation, labels=("archiver",))
            for archiver, stats in archivers:
                family.add_metric((archiver.name,), stats[key])
            yield family
        errors = CounterMetricFamily(
            "archivist_errors", "Events not written, by error type", labels=("archiver", "type")
        )
        for archiver, stats in archivers:
            for kind, count in sorted(stats["errors"].items()):
                errors.add_metric((archiver.name, kind), count)
        yield errors
        for name, key, documentation in _GAUGES:
            family = GaugeMetricFamily(name, documentation, labels=("archiver",))
            for archiver, stats in archivers:
                family.add_metric((archiver.name,), stats[key])
            yield family
        latency = Metric("archivist_write_latency_seconds", WRITE_LATENCY_HELP, "histogram")
        for archiver, _ in archivers:
            for metric in archiver.write_latency.collect():
                latency.samples += [s._replace(labels={"archiver": archiver.name} | s.labels) for s in metric.samples]
        yield latency


class LiveCollectors(Collector):
    """The collectors of every running state machine, as one: families of the same name merged, series kept once."""

    def collect(self) -> Iterator[Metric]:
        with _lock:
            collectors = list(_collectors)
        if len(collectors) == 1:  # the usual case: nothing to merge, and each family is freed once written
            yield from collectors[0].collect()
            return
        merged: dict[str, Metric] = {}
        seen: set[tuple[str, tuple[tuple[str, str], ...]]] = set()
        for collector in collectors:
            for family in collector.collect():
                target = merged.setdefault(family.name, Metric(family.name, family.documentation, family.type))
                for sample in family.samples:
                    key = (sample.name, tuple(sorted(sample.labels.items())))
                    if key not in seen:
                        seen.add(key)
                        target.samples.append(sample)
        yield from merged.values()


def metrics_registry(*collectors: Collector) -> CollectorRegistry:
    """A registry of ``collectors`` alone (no process metrics), described lazily at scrape time."""
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)
    return registry


class SpoolHealth:
    """``/healthz``: not ready while an archiver's spool is growing.

    Growing means its ``spooled`` count rose within the last ``window`` seconds, as seen by the checks
    themselves: each check compares with the count of the previous one (an archiver first seen with events
    already spooled counts as growing), so a spool that grows between two checks is always noticed.
    """

    def __init__(self, window: float = 60.0, archivers: Callable[[], Iterable[Archiver]] = live_archivers) -> None:
        self.window = window
        self._archivers = archivers
        self._lock = threading.Lock()
        self._seen: dict[str, tuple[int, float]] = {}  # archiver name -> (spooled, when it last rose)

    def check(self) -> tuple[bool, str]:
        """(ready, one line saying why)."""
        now = time.monotonic()
        growing = []
        with self._lock:
            for archiver in self._archivers():
                spooled = int(archiver.stats()["spooled"])
                count, rose_at = self._seen.get(archiver.name, (0, -math.inf))
                if spooled > count:
                    rose_at = now
                self._seen[archiver.name] = (spooled, rose_at)
                if now - rose_at < self.window:
                    growing.append(archiver.name)
        if growing:
            return False, f"spool growing: {', '.join(growing)}"
        return True, "ok"

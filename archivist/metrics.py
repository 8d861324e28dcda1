"""Prometheus collectors: datasource readings (herostools' series) and every live archiver's own counters.

Collectors only yield metric families at scrape time, from the cache and from ``Archiver.stats()``; exposition
and escaping are prometheus_client's, serving is :mod:`archivist.metrics_server`'s. Per-reading work is kept out
of the scrape: values are converted when a reading arrives, names and labels made once per distinct series.
"""

from __future__ import annotations

import functools
import itertools
import math
import operator
import re
import threading
import time
import weakref
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from .datasource import NO_UNIT, DatasourceCache, Reading, RefusedEvents
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
_REFUSED_COUNTERS = (  # (name, RefusedEvents outcome, help), like the archivers' spool counters
    ("archivist_datasource_events_spooled", "spooled", "observable_data events holding bad input, kept in the spool"),
    (
        "archivist_datasource_spool_failures",
        "spool_failed",
        "observable_data events holding bad input that could not even be spooled (lost)",
    ),
)


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
_Pairs = Iterable[tuple[_Series, Reading]]
_Layout = tuple[str, str, str, bool, bool]  # a reading's id, units and which of its values are missing
Encoder = Callable[[Collector], bytes]  # generate_latest, or what prometheus_client's choose_encoder picks
_ENCODERS_KEPT = 4  # texts are kept for this many encoders (formats a scraper asked for), the newest
# Every sample's value in a source's text written once more, to find where values go: a number no reading has.
_MARK = -1.2345678901234567e-300
_MARK_TEXT = floatToGoString(_MARK)
# floatToGoString writes a finite float below 1e6 as repr does (it writes the exponent sooner than Python only
# for larger ones); checked here so that a prometheus_client writing values otherwise is always asked.
_GO_BELOW = 1e6
_REPR_IS_GO = all(
    floatToGoString(x) == repr(x) for x in (0.0, -0.0, 0.1, 1e-300, -1e300, 123.456, 999999.9999999999, -1e7)
)


@dataclass(slots=True)
class _Source:
    """A source's readings within ``max_age`` and their series: the same tuple object of series while the source
    sends the same observables with the same units and missing values."""

    name: str
    readings: tuple[Reading, ...]
    series: tuple[_Series, ...]

    def pairs(self) -> Iterator[tuple[_Series, Reading]]:
        return zip(self.series, self.readings, strict=True)


@dataclass(slots=True)
class _Part:
    """One source's part of a scrape as an encoder wrote it, and what it was written from. ``template``: the text
    cut where each sample's value goes, with a slot (None) for it between the pieces, so that new values of the
    same series are put in without writing the rest again (None where that cannot be done for this source and
    encoder)."""

    readings: tuple[Reading, ...]
    text: bytes
    series: tuple[_Series, ...] | None
    template: list[str | None] | None


def _go_floats(numbers: list[float]) -> Iterable[str]:
    """Each number as prometheus_client's ``floatToGoString`` writes it; by ``repr`` (up to four times as fast) where
    that is the same: no NaN or infinity (their sum is finite) and none from ``_GO_BELOW`` on."""
    if _REPR_IS_GO and numbers and max(numbers) < _GO_BELOW and math.isfinite(sum(numbers)):
        return map(repr, map(float, numbers))
    return map(floatToGoString, numbers)


def _template(pieces: list[str]) -> list[str | None]:
    template: list[str | None] = [None] * (2 * len(pieces) - 1)
    template[::2] = pieces
    return template


def _spliced(template: list[str | None], numbers: list[float]) -> bytes:
    """``template`` with ``numbers`` in its slots, each written as prometheus_client writes values."""
    text = template.copy()
    text[1::2] = _go_floats(numbers)  # a ValueError unless there are as many numbers as slots
    return "".join(text).encode()  # type: ignore[arg-type]  # every slot is filled


class _Families(Collector):
    """Families handed to an encoder as they come."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self._families)


def _encoder_key(encoder: Encoder) -> Hashable:
    if isinstance(encoder, functools.partial):  # choose_encoder's, e.g. OpenMetrics with an escaping scheme
        return encoder.func, encoder.args, tuple(sorted(encoder.keywords.items()))
    return encoder


class DatasourceCollector(Collector):
    """herostools' series per source ``P`` and observable ``K``: ``P_K_inbound``, ``P_K_value``, ``P_K_raw_value``.

    Labels: the global ``labels``, ``prefix="P"``, ``key="K"`` and ``unit`` unless it is ``"None"``. Readings
    whose time is more than ``max_age`` seconds from now are left out (Prometheus drops whole scrapes with
    far-off timestamps); ``timestamps`` exposes each reading's own time as the sample timestamp.

    ``exposition(encoder)`` returns what ``encoder(collector)`` does, keeping each source's text until its
    readings change: writing the text is most of a scrape, and a source that sent nothing new since the last
    scrape need not be written again. When only values changed (the same series, no timestamps), the new values
    are put into the kept text in their places.
    """

    def __init__(
        self,
        cache: DatasourceCache,
        *,
        labels: dict[str, Any] | None = None,
        max_age: float | None = 600,
        timestamps: bool = False,
        name: str = "datasource",
        refused: RefusedEvents | None = None,
    ) -> None:
        if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, int | float) or max_age <= 0):
            raise ConfigError("max_age must be a number of seconds > 0, or null for no limit")
        self.cache = cache
        self._labels = check_labels(labels)
        self.max_age = max_age
        self._timestamps = bool(timestamps)
        self.name = name
        self._refused = refused
        self._layouts: dict[str, tuple[list[_Layout], tuple[_Series, ...]]] = {}  # source -> its readings' series
        self._shared_names: set[str] = set()  # names of more than one of those series
        self._texts: dict[Hashable, dict[str, _Part]] = {}  # encoder -> source -> its text
        self._lock = threading.Lock()

    @property
    def labels(self) -> dict[str, str]:
        """The global labels; fixed, since the series made with them and the text written are kept."""
        return dict(self._labels)

    @property
    def timestamps(self) -> bool:
        return self._timestamps

    def _series(self, source: str, ident: str, unit: str, raw_unit: str) -> _Series:
        base = metric_name(f"{source}_{ident}")
        labels = self._labels | {"prefix": source, "key": ident}
        return tuple(
            (f"{base}_{kind}", _DATASOURCE_HELP[kind], labels if u == NO_UNIT else labels | {"unit": unit_label(u)})
            for kind, u in (("inbound", NO_UNIT), ("value", unit), ("raw_value", raw_unit))
        )

    def _grouped(self) -> tuple[list[_Source], list[tuple[_Series, Reading]], int]:
        """The readings within ``max_age`` with their series, per source; apart, those of every source with a
        series name another series has too (herostools' names can collide); and how many were left out."""
        now, max_age = time.time(), self.max_age
        with self._lock:
            kept = self._layouts
        layouts: dict[str, tuple[list[_Layout], tuple[_Series, ...]]] = {}
        sources: list[_Source] = []
        stale = 0
        for source, readings in self.cache.readings():
            if max_age is not None and not _within(readings, now - max_age, now + max_age):
                fresh = tuple(reading for reading in readings if abs(now - reading.time) <= max_age)
                stale += len(readings) - len(fresh)
                readings = fresh
            if not readings:
                continue
            # which values exist is part of the layout: the same series object, the same text but for the values
            layout = [(r.id, r.unit, r.raw_unit, r.number is None, r.raw_number is None) for r in readings]
            same = kept.get(source)
            if same is None or same[0] != layout:
                same = layout, tuple(self._series(source, *observable[:3]) for observable in layout)
            layouts[source] = same
            sources.append(_Source(source, readings, same[1]))
        with self._lock:
            if layouts.keys() != self._layouts.keys() or any(
                series is not self._layouts[source][1] for source, (_, series) in layouts.items()
            ):  # names counted again only when the series are not the same
                counts = Counter(name for _, series in layouts.values() for each in series for name, _, _ in each)
                self._shared_names = {name for name, count in counts.items() if count > 1}
            self._layouts = layouts  # only the series of readings still cached are kept
            shared_names = self._shared_names
        if not shared_names:  # the usual case
            return sources, [], stale
        clean: list[_Source] = []
        shared: list[tuple[_Series, Reading]] = []
        for each in sources:
            if any(name in shared_names for series in each.series for name, _, _ in series):
                shared += each.pairs()
            else:
                clean.append(each)
        return clean, shared, stale

    def _families(self, pairs: _Pairs, *, merge: bool = False, marked: bool = False) -> Iterator[Metric]:
        """A family per series, made as the encoder asks for it so that each is freed once written (30,000
        families alive at once made every scrape pay a full garbage collection); with ``merge``, a family per
        name, holding every sample of that name; ``marked``: every value ``_MARK``."""
        merged: dict[str, Metric] = {}
        for series, reading in pairs:
            timestamp = reading.time if self._timestamps else None
            for (name, documentation, labels), number in zip(series, _numbers(reading), strict=True):
                if number is None:
                    continue
                sample = Sample(name, labels, _MARK if marked else number, timestamp)
                if merge:
                    merged.setdefault(name, Metric(name, documentation, "gauge")).samples.append(sample)
                else:
                    family = Metric(name, documentation, "gauge")
                    family.samples.append(sample)
                    yield family
        yield from merged.values()

    def _own(self, stale: int) -> Iterator[Metric]:
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
        if self._refused is not None:
            counts = self._refused.counts()
            for name, outcome, documentation in _REFUSED_COUNTERS:
                family = CounterMetricFamily(name, documentation, labels=("observer",))
                family.add_metric((self.name,), counts[outcome])
                yield family

    def collect(self) -> Iterator[Metric]:
        clean, shared, stale = self._grouped()
        for source in clean:
            yield from self._families(source.pairs())
        yield from self._families(shared, merge=True)
        yield from self._own(stale)

    def exposition(self, encoder: Encoder = generate_latest) -> bytes:
        """``encoder(self)``: the same bytes, each source's part kept from the previous scrape by the same
        encoder while the source's readings are the very same, or its new values put into it (see ``_part``);
        the sources sharing a name are written anew."""
        clean, shared, stale = self._grouped()
        eof = encoder(_Families(()))  # OpenMetrics ends with "# EOF": once, after the last part
        key = _encoder_key(encoder)
        with self._lock:
            kept = self._texts.get(key, {})
        parts: dict[str, _Part] = {}
        for source in clean:
            part = kept.get(source.name)
            if part is None or not _same(part.readings, source.readings):
                part = self._part(encoder, eof, source, part)
            parts[source.name] = part
        rest = encoder(_Families(itertools.chain(self._families(shared, merge=True), self._own(stale))))
        with self._lock:
            self._texts.pop(key, None)
            self._texts[key] = parts  # the texts of sources no longer cached go
            while len(self._texts) > _ENCODERS_KEPT:
                del self._texts[next(iter(self._texts))]
        return b"".join([*(part.text for part in parts.values()), rest])  # one copy of the whole text

    def _part(self, encoder: Encoder, eof: bytes, source: _Source, kept: _Part | None) -> _Part:
        """A source's part for its readings: the new values put into the kept text where only values changed,
        else written by the encoder, once more with marked values to find where values go next time. That cut
        is kept only where putting these readings' values in gives exactly the encoder's text."""
        if self._timestamps:  # every new reading changes its timestamp too, not only values
            text = encoder(_Families(self._families(source.pairs()))).removesuffix(eof)
            return _Part(source.readings, text, None, None)
        values = itertools.chain.from_iterable(map(_numbers, source.readings))
        numbers = [number for number in values if number is not None]
        if kept is not None and kept.template is not None and kept.series is source.series:
            return _Part(source.readings, _spliced(kept.template, numbers), source.series, kept.template)
        text = encoder(_Families(self._families(source.pairs()))).removesuffix(eof)
        marked = encoder(_Families(self._families(source.pairs(), marked=True))).removesuffix(eof)
        pieces = marked.decode().split(_MARK_TEXT)
        template = _template(pieces) if len(pieces) == len(numbers) + 1 else None  # else a label holds the mark
        if template is not None and _spliced(template, numbers) != text:
            template = None  # the encoder writes values otherwise
        return _Part(source.readings, text, source.series, template)


def _same(kept: tuple[Reading, ...], readings: tuple[Reading, ...]) -> bool:
    """The very same reading objects: the cache replaces a reading by a new one whenever one arrives."""
    return len(kept) == len(readings) and all(map(operator.is_, kept, readings))


_TIME = operator.attrgetter("time")


def _within(readings: tuple[Reading, ...], earliest: float, latest: float) -> bool:
    """Every reading's time within ``[earliest, latest]``: the usual case, found without a step per reading."""
    times = list(map(_TIME, readings))
    return earliest <= min(times) and max(times) <= latest


# The values of a reading's series: inbound, value and raw_value (None: that series is left out).
_numbers: Callable[[Reading], tuple[int, float | None, float | None]] = operator.attrgetter(
    "inbound", "number", "raw_number"
)


def exposition(collectors: Iterable[Collector], encoder: Encoder = generate_latest) -> bytes:
    """``encoder`` applied to ``collectors`` as one registry; a collector with an ``exposition`` of its own
    (a :class:`DatasourceCollector`, which keeps text between scrapes) is asked for its part."""
    eof = encoder(_Families(()))
    parts = [
        (collector.exposition(encoder) if hasattr(collector, "exposition") else encoder(collector)).removesuffix(eof)
        for collector in collectors
    ]
    return b"".join(parts) + eof


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

    def exposition(self, encoder: Encoder = generate_latest) -> bytes:
        """``encoder(self)``; with one state machine, its own exposition (which keeps text between scrapes)."""
        with _lock:
            collectors = list(_collectors)
        return exposition(collectors, encoder) if len(collectors) == 1 else encoder(self)


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

"""The datasource cache, its collector and the endpoint, without zenoh: ordering, max_age, timestamps, names, bad
input, text kept between scrapes."""

from __future__ import annotations

import gzip
import time
import urllib.request
from pathlib import Path

import cbor2
import pytest
from prometheus_client import generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from archivist import ConfigError, HERODatasourceStateMachine, MetricsServer, Received, Spool
from archivist.datasource import DatasourceCache, RecordError, RefusedEvents
from archivist.metrics import (
    _MARK,
    ArchiverCollector,
    DatasourceCollector,
    LiveCollectors,
    _Families,
    metric_name,
    metrics_registry,
    register_collector,
    unregister_collector,
)
from tests.metrics_support import OPENMETRICS, fetch, scrape, value


def reading(ident: str, when: float, raw_value: object, **extra: object) -> dict[str, object]:
    return {
        "id": ident,
        "time": when,
        "value": None,
        "unit": "None",
        "raw_value": raw_value,
        "raw_unit": "None",
    } | extra


def samples(collector: DatasourceCollector) -> dict[tuple[str, frozenset[tuple[str, str]]], tuple[float, float | None]]:
    return {
        (s.name, frozenset(s.labels.items())): (s.value, s.timestamp)
        for family in collector.collect()
        for s in family.samples
    }


def test_a_newer_reading_replaces_an_older_one_never_the_reverse() -> None:
    cache, now = DatasourceCache(), time.time()
    cache.update("dev", [reading("t", now, 2.0)])
    cache.update("dev", [reading("t", now - 1, 1.0)])
    assert cache.records() == {"dev": (reading("t", now, 2.0),)}
    cache.update("dev", [reading("t", now + 1, 3.0)])
    assert cache.records()["dev"][0]["raw_value"] == 3.0
    assert cache.skipped() == {"outdated": 1}


def test_a_reading_from_the_future_does_not_hide_the_observable_for_good() -> None:
    """A time in milliseconds, or a clock that jumped: such a cached reading cannot order readings, so the next
    one (on time) replaces it and the observable is served again."""
    cache, now = DatasourceCache(), time.time()
    cache.update("dev", [reading("t", now * 1000, 1.0)])
    cache.update("dev", [reading("t", now, 2.0)])
    assert cache.records()["dev"][0]["raw_value"] == 2.0
    exposed = samples(DatasourceCollector(cache))
    assert exposed[("dev_t_raw_value", frozenset({"prefix": "dev", "key": "t"}.items()))][0] == 2.0
    cache.update("dev", [reading("t", now + 30, 3.0)])  # a clock a little ahead still orders readings
    cache.update("dev", [reading("t", now + 1, 4.0)])
    assert cache.records()["dev"][0]["raw_value"] == 3.0 and cache.skipped() == {"outdated": 1}


def test_max_age_and_timestamps() -> None:
    """Readings further than max_age from now, past or (a clock set wrong) future, are left out and counted."""
    cache, now = DatasourceCache(), time.time()
    cache.update("dev", [reading("fresh", now - 5, 1.0), reading("old", now - 100, 2.0)])
    cache.update("ahead", [reading("t", now + 100, 3.0)])
    cache.update("late", [reading("t", now + 30, 4.0)])  # within max_age: a clock a little ahead is fine
    labels = frozenset({"prefix": "dev", "key": "fresh"}.items())
    exposed = samples(DatasourceCollector(cache, max_age=60, timestamps=True))
    assert exposed[("dev_fresh_raw_value", labels)] == (1.0, now - 5)
    assert exposed[("late_t_raw_value", frozenset({"prefix": "late", "key": "t"}.items()))] == (4.0, now + 30)
    assert not any(name.startswith(("dev_old", "ahead_")) for name, _ in exposed)
    assert exposed[("archivist_datasource_stale_readings", frozenset({"observer": "datasource"}.items()))][0] == 2
    unlimited = samples(DatasourceCollector(cache, max_age=None))
    assert unlimited[("dev_old_raw_value", frozenset({"prefix": "dev", "key": "old"}.items()))] == (2.0, None)


def test_calibrated_values_bools_and_units() -> None:
    cache, now = DatasourceCache(), time.time()
    cache.update(
        "dev",
        [
            reading("i", now, 0.5, value=500.0, unit="mA", raw_unit="A", calibrated=True, inbound=2),
            reading("raw", now, 7, value=99.0, unit="ignored", raw_unit="µV"),  # not calibrated: value is raw
            reading("flag", now, False),
        ],
    )
    exposed = samples(DatasourceCollector(cache))
    key = {"prefix": "dev", "key": "i"}
    assert exposed[("dev_i_inbound", frozenset(key.items()))][0] == 2
    assert exposed[("dev_i_value", frozenset((key | {"unit": "mA"}).items()))][0] == 500.0
    assert exposed[("dev_i_raw_value", frozenset((key | {"unit": "A"}).items()))][0] == 0.5
    raw = {"prefix": "dev", "key": "raw", "unit": "uV"}
    assert exposed[("dev_raw_value", frozenset(raw.items()))][0] == 7.0
    assert exposed[("dev_flag_value", frozenset({"prefix": "dev", "key": "flag"}.items()))][0] == 0.0


@pytest.mark.parametrize(
    ("text", "name"),
    [
        ("Dev-1_Temp (°C)", "dev_1_temp_c"),
        ("__a__b__", "a_b"),
        ("3rd/probe", "_3rd_probe"),
        ("µ-current", "current"),
        ("Grüße", "gr_e"),
    ],
)
def test_metric_names_follow_herostools_but_are_always_valid(text: str, name: str) -> None:
    assert metric_name(text) == name


def test_bad_payloads_are_counted_and_refused() -> None:
    cache, now = DatasourceCache(), time.time()

    def feed(payload: bytes) -> list[str]:
        return [
            refused.reason for refused in cache.feed(Received("@object/heros/dev/observable_data", payload), "heros")
        ]

    assert feed(b"\xff\x00") == ["undecodable"]
    assert feed(cbor2.dumps({"not": "a list"})) == ["not_a_list"]
    assert feed(cbor2.dumps([{"id": "x", "time": True}, reading("t", now, 1.0), "text"])) == ["wrong_type", "not_a_map"]
    assert cache.skipped() == {"undecodable": 1, "not_a_list": 1, "wrong_type": 1, "not_a_map": 1}
    # neither an outdated reading nor a value that is not a number is bad input: the record was good
    assert feed(cbor2.dumps([reading("t", now - 1, 2.0), reading("s", now, "on")])) == []
    assert cache.skipped() == {
        "undecodable": 1,
        "not_a_list": 1,
        "wrong_type": 1,
        "not_a_map": 1,
        "outdated": 1,
        "non_numeric_value": 1,
    }
    assert {record["id"] for record in cache.records()["dev"]} == {"t", "s"}


def test_a_refused_event_that_cannot_be_spooled_is_counted_as_lost(tmp_path: Path, blocker: Path, caplog) -> None:
    refused = RefusedEvents(str(blocker / "spool"), "observer-1", HERODatasourceStateMachine)
    received = Received("@object/heros/dev/observable_data", b"\xff")
    refused.keep(received, [RecordError("undecodable", "not CBOR")])
    assert refused.counts() == {"spooled": 0, "spool_failed": 1}
    assert [r.levelname for r in caplog.records if "could not be spooled" in r.getMessage()] == ["CRITICAL"]

    refused = RefusedEvents(str(tmp_path / "spool"), "observer-1", HERODatasourceStateMachine)
    refused.keep(received, [RecordError("undecodable", "not CBOR")])
    assert refused.counts() == {"spooled": 1, "spool_failed": 0}
    ((_, entry),) = Spool(tmp_path / "spool").entries()
    assert (entry.payload, entry.error, entry.archiver) == (b"\xff", "undecodable: not CBOR", "observer-1")
    exposed = samples(DatasourceCollector(DatasourceCache(), name="observer-1", refused=refused))
    assert exposed[("archivist_datasource_events_spooled_total", frozenset({"observer": "observer-1"}.items()))][0] == 1


def test_integers_beyond_float_range_are_skipped_and_the_scrape_goes_on() -> None:
    """CBOR bignums decode to ints of any size; as an inbound count one broke every scrape, as a time the update,
    and one too long to write as text broke the update wherever a message showed it."""
    cache, now = DatasourceCache(), time.time()
    huge = cbor2.loads(cbor2.dumps(10**5000))  # more digits than Python turns into text by default
    records = [reading("a", now, 1.0, inbound=huge), reading("b", huge, 1.0), reading("t", now, 2.0, inbound=3)]
    records += [reading(huge, now, 1.0), reading("c", now, 1.0, calibrated=huge)]  # shown in their messages
    records.append(reading("d", now, 1.0, inbound=[huge]))
    cache.update("dev", records)
    assert cache.skipped() == {"wrong_type": 5}
    exposed = samples(DatasourceCollector(cache))
    assert exposed[("dev_t_inbound", frozenset({"prefix": "dev", "key": "t"}.items()))] == (3, None)
    assert not any(name.startswith(("dev_a_", "dev_b_", "dev_c_", "dev_d_")) for name, _ in exposed)


def test_colliding_names_are_one_family() -> None:
    cache, now = DatasourceCache(), time.time()
    cache.update("a-b", [reading("c", now, 1.0)])
    cache.update("a", [reading("b_c", now, 2.0)])
    text = generate_latest(metrics_registry(DatasourceCollector(cache))).decode()
    assert text.count("# TYPE a_b_c_raw_value gauge") == 1
    assert 'a_b_c_raw_value{key="c",prefix="a-b"} 1.0' in text and 'a_b_c_raw_value{key="b_c",prefix="a"} 2.0' in text


def test_colliding_names_of_different_kinds_are_one_family_in_the_place_of_the_first() -> None:
    cache, now = DatasourceCache(), time.time()
    cache.update("p", [reading("x_raw", now, None, value=1.0, calibrated=True), reading("x", now, 2.0)])
    text = generate_latest(metrics_registry(DatasourceCollector(cache))).decode()
    families = [line.split()[2] for line in text.splitlines() if line.startswith("# TYPE")]
    assert families[:4] == ["p_x_raw_inbound", "p_x_raw_value", "p_x_inbound", "p_x_value"]
    assert "# HELP p_x_raw_value HEROS datasource value\n" in text  # the first series' help
    assert 'p_x_raw_value{key="x_raw",prefix="p"} 1.0\np_x_raw_value{key="x",prefix="p"} 2.0\n' in text


def test_series_follow_their_readings_from_one_scrape_to_the_next() -> None:
    cache, now = DatasourceCache(), time.time()
    collector = DatasourceCollector(cache, labels={"lab": "B1"})
    cache.update("dev", [reading("t", now, 1.0, raw_unit="µA")])
    key = {"lab": "B1", "prefix": "dev", "key": "t"}
    assert samples(collector)[("dev_t_raw_value", frozenset((key | {"unit": "uA"}).items()))] == (1.0, None)
    cache.update("dev", [reading("t", now + 1, 2.0, raw_unit="None")])  # a new unit: the labels change with it
    exposed = samples(collector)
    assert exposed[("dev_t_raw_value", frozenset(key.items()))] == (2.0, None)
    assert not any(labels == frozenset((key | {"unit": "uA"}).items()) for _, labels in exposed)
    cache.update("dev", [reading("t", now + 2, "text")])  # no longer a number: no raw_value series
    assert not any(name == "dev_t_raw_value" for name, _ in samples(collector))
    cache.clear()
    assert not any(name.startswith("dev_") for name, _ in samples(collector))


@pytest.mark.parametrize("labels", [{"bad-name": "x"}, {"__reserved": "x"}, {"1st": "x"}, ["lab"]])
def test_global_label_names_are_checked(labels: object) -> None:
    with pytest.raises(ConfigError, match="label"):
        DatasourceCollector(DatasourceCache(), labels=labels)


def test_labels_and_timestamps_stay_as_the_collector_was_made() -> None:
    """Series and text made with them are kept, so changing them later would leave scrapes with the old ones."""
    cache = DatasourceCache()
    cache.update("dev", [reading("t", time.time(), 1.0)])
    collector = DatasourceCollector(cache, labels={"lab": "B1"})
    before = collector.exposition()
    collector.labels["lab"] = "B2"  # a copy
    with pytest.raises(AttributeError):
        collector.labels = {"lab": "B2"}
    with pytest.raises(AttributeError):
        collector.timestamps = True
    assert collector.exposition() == before == generate_latest(collector)
    assert b'lab="B1"' in before


def test_one_endpoint_for_two_state_machines_shows_each_series_once() -> None:
    """``archivist run --metrics-port`` serves every state machine; a series two of them cache appears once."""
    now, first, second = time.time(), DatasourceCache(), DatasourceCache()
    first.update("dev", [reading("t", now, 1.0)])
    second.update("dev", [reading("t", now, 1.0)])
    second.update("other", [reading("p", now, 2.0)])
    collectors = [DatasourceCollector(first, name="a"), DatasourceCollector(second, name="b")]
    for collector in collectors:
        register_collector(collector)
    try:
        text = generate_latest(metrics_registry(LiveCollectors())).decode()
    finally:
        for collector in collectors:
            unregister_collector(collector)
    families = {family.name: family for family in text_string_to_metric_families(text)}
    assert [sample.value for sample in families["dev_t_raw_value"].samples] == [1.0]
    assert [sample.value for sample in families["other_p_raw_value"].samples] == [2.0]
    assert text.count("# TYPE dev_t_raw_value gauge") == 1


VALUES = [float("nan"), float("inf"), -0.0, 0.0, 1e22, 12345678901, -2.5e-7, True, 0.1 + 0.2]
VALUES += [999999.9999999999, 1e6, 1234567.5, -1234567.0, 1e16]  # prometheus_client writes exponents from 1e6 on
ENCODERS = {"text": (None, generate_latest), "OpenMetrics": (OPENMETRICS, generate_openmetrics)}


@pytest.mark.parametrize("timestamps", [True, False], ids=["timestamps", "no-timestamps"])
@pytest.mark.parametrize("format_name", ENCODERS)
def test_each_scrape_shows_the_cache_as_it_is_then(format_name: str, timestamps: bool) -> None:
    """The endpoint keeps each source's text between scrapes, and puts new values into it where only values
    changed; whatever changed in between, a scrape is exactly what prometheus_client writes for the cache at that
    moment (and OpenMetrics ends with one ``# EOF``)."""
    accept, encoder = ENCODERS[format_name]
    cache, now = DatasourceCache(), time.time()
    collector = DatasourceCollector(cache, labels={"lab": "B1"}, max_age=60, timestamps=timestamps)
    own = ArchiverCollector(lambda: [])
    server = MetricsServer(collector, own, port=0)
    marked = f"x{floatToGoString(_MARK)}"  # a label with the text that marks where values go: no splicing there
    steps = [
        lambda: cache.update("dev", [reading("t", now, 1.0), reading("p", now, 5.0, raw_unit="µA")]),
        lambda: cache.update("other", [reading("x", now, 3.0)]),  # a new source; "dev" is unchanged
        lambda: cache.update("dev", [reading("t", now + 1, 2.0)]),  # one value of "dev" changes
        *(  # values only, written as prometheus_client writes each
            lambda number=number, n=n: cache.update("dev", [reading("t", now + 2 + n, number)])
            for n, number in enumerate(VALUES)
        ),
        lambda: cache.update("dev", [reading("p", now + 1, 6.0)]),  # a unit changes with it: new labels
        lambda: cache.update("dev", [reading("t", now + 20, 3.0, value=30.0, unit="K", calibrated=True)]),
        lambda: cache.update("dev", [reading("t", now + 21, "text", value=31.0, unit="K", calibrated=True)]),
        lambda: cache.update("m", [reading(marked, now, 1.0), reading("y", now, 2.0)]),
        lambda: cache.update("m", [reading(marked, now + 1, 1.5), reading("y", now + 1, 2.5)]),
        lambda: cache.update("a-b", [reading("c", now, 7.0)]),  # a name another source has too (below)
        lambda: cache.update("a", [reading("b_c", now, 8.0)]),
        lambda: cache.update("other", [reading("old", now - 100, 4.0)]),  # older than max_age: left out
        lambda: cache.update("other", [reading("x", now + 2, "text")]),  # no longer a number
        cache.clear,
    ]
    try:
        for step in steps:
            step()
            status, _, body = fetch(server.url, accept)
            assert status == 200
            assert body == encoder(metrics_registry(collector, own)).decode()
            assert body.count("# EOF") == (format_name == "OpenMetrics")
            assert body == fetch(server.url, accept)[2]  # the same again, now from the kept text
    finally:
        server.close()


def test_new_values_of_the_same_series_are_not_written_again_by_the_encoder() -> None:
    """Where only values changed, prometheus_client writes nothing of that source again (what makes a scrape of a
    cache whose every value is new cheap); a new series is written by it."""
    cache, now, sources = DatasourceCache(), time.time(), [f"dev{n}" for n in range(5)]
    collector, written = DatasourceCollector(cache), []

    def counting(registry: Collector) -> bytes:
        families = list(registry.collect())
        written.extend(family.name for family in families)
        return generate_latest(_Families(families))

    for n in range(3):
        for source in sources:
            cache.update(source, [reading("t", now + n, float(n)), reading("p", now + n, -float(n))])
        written.clear()
        assert collector.exposition(counting) == generate_latest(collector)
        if n:
            assert not any(name.startswith("dev") for name in written)
    cache.update("dev0", [reading("q", now + 5, 1.0)])
    written.clear()
    assert collector.exposition(counting) == generate_latest(collector)
    assert {name for name in written if name.startswith("dev")} == {
        f"dev0_{key}_{kind}" for key in "tpq" for kind in ("inbound", "value", "raw_value")
    }


def test_an_encoder_that_writes_values_its_own_way_is_asked_every_time() -> None:
    """Values are put into kept text only where that gives exactly what the encoder writes."""
    cache, now = DatasourceCache(), time.time()
    collector = DatasourceCollector(cache)

    def plain(registry: Collector) -> bytes:  # Python's repr, where prometheus_client writes 1.234567e+06
        return "".join(f"{s.name} {s.value!r}\n" for family in registry.collect() for s in family.samples).encode()

    for n in range(3):
        cache.update("dev", [reading("t", now + n, 1234567.0 + n)])
        assert collector.exposition(plain) == plain(collector)


def test_a_reading_that_ages_past_max_age_leaves_the_scrape() -> None:
    cache = DatasourceCache()
    server = MetricsServer(DatasourceCollector(cache, max_age=1), port=0)
    try:
        cache.update("dev", [reading("t", time.time(), 1.0)])
        assert value(scrape(server.url), "dev_t_raw_value", prefix="dev", key="t") == 1.0
        deadline = time.monotonic() + 10
        while (exposed := scrape(server.url)) and value(exposed, "dev_t_raw_value", prefix="dev", key="t") is not None:
            assert time.monotonic() < deadline, "the reading stayed in the scrape after max_age"
        assert value(exposed, "archivist_datasource_stale_readings", observer="datasource") == 1
    finally:
        server.close()


def test_a_scrape_is_gzipped_when_the_scraper_accepts_it() -> None:
    cache = DatasourceCache()
    cache.update("dev", [reading(f"t{i}", time.time(), float(i)) for i in range(100)])
    collector = DatasourceCollector(cache)
    server = MetricsServer(collector, port=0)
    try:
        request = urllib.request.Request(server.url, headers={"Accept-Encoding": "gzip"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.headers["Content-Encoding"] == "gzip"
            assert gzip.decompress(response.read()) == generate_latest(collector)
    finally:
        server.close()


def test_a_scrape_can_ask_for_some_families_by_name() -> None:
    cache = DatasourceCache()
    cache.update("dev", [reading("t", time.time(), 1.0), reading("p", time.time(), 2.0)])
    server = MetricsServer(DatasourceCollector(cache), port=0)
    try:
        exposed = scrape(server.url + "?name%5B%5D=dev_t_raw_value&name%5B%5D=dev_p_inbound")
    finally:
        server.close()
    assert sorted(name for name, _ in exposed) == ["dev_p_inbound", "dev_t_raw_value"]

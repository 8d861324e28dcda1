"""HERODatasourceStateMachine and PrometheusPusher fed by real heros datasource HEROs, read by real Prometheus parts."""

from __future__ import annotations

import logging
import time
import urllib.error
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from archivist import HERODatasourceStateMachine, PrometheusPusher, Spool, decode_payload
from tests import support
from tests.fixtures.prometheus import query
from tests.metrics_support import OPENMETRICS, fetch, promtool_check, scrape, value

LABELS = {"lab": "B1", "site": 'main "hall"'}
THERMO = {"temperature": [21.5, "degC"], "heater": True}
CALIBRATION = {"temperature": {"conversion": "x + 273.15", "unit": "K", "boundaries": [[290, 300]]}}


@pytest.fixture
def state_machine(zenoh_config: dict[str, Any], spool_dir) -> Iterator[Callable[..., HERODatasourceStateMachine]]:
    started: list[HERODatasourceStateMachine] = []

    def start(**kwargs: Any) -> HERODatasourceStateMachine:
        kwargs = {
            "http_port": support.free_port(),
            "bind_address": "127.0.0.1",
            "zenoh_config": zenoh_config,
            "spool_dir": str(spool_dir),
        } | kwargs
        machine = HERODatasourceStateMachine(**kwargs)
        started.append(machine)
        return machine

    yield start
    for machine in started:
        machine.stop()


def series(source: str, key: str, **extra: str) -> dict[str, str]:
    return LABELS | {"prefix": source, "key": key} | extra


def test_serves_the_readings_of_a_real_datasource_hero(
    state_machine, heros_emitter, zenoh_port: int, spool_dir
) -> None:
    machine = state_machine(labels=LABELS)
    peer = heros_emitter("peer", zenoh_port)
    published = peer.datasource("thermo-1", THERMO, observables=CALIBRATION)
    kelvin = next(record["value"] for record in published if record["id"] == "temperature")

    heater = series("thermo-1", "heater")
    support.wait_until(
        lambda: value(scrape(machine.url), "thermo_1_heater_raw_value", **heater) is not None, what="the series"
    )
    samples = scrape(machine.url)
    assert value(samples, "thermo_1_temperature_inbound", **series("thermo-1", "temperature")) == 0
    assert value(samples, "thermo_1_temperature_value", **series("thermo-1", "temperature", unit="K")) == kelvin
    assert value(samples, "thermo_1_temperature_raw_value", **series("thermo-1", "temperature", unit="degC")) == 21.5
    assert value(samples, "thermo_1_heater_inbound", **series("thermo-1", "heater")) == -1
    assert value(samples, "thermo_1_heater_value", **series("thermo-1", "heater")) == 1.0
    assert value(samples, "thermo_1_heater_raw_value", **series("thermo-1", "heater")) == 1.0
    assert machine.get_cache() == {"thermo-1": tuple(published)}

    peer.datasource("thermo-1", {"temperature": [22.5, "degC"]})
    support.wait_until(
        lambda: (
            value(
                scrape(machine.url), "thermo_1_temperature_raw_value", **series("thermo-1", "temperature", unit="degC")
            )
            == 22.5
        ),
        what="the newer reading",
    )
    assert value(scrape(machine.url), "archivist_datasource_events_spooled_total", observer=machine.name) == 0
    assert len(Spool(spool_dir)) == 0  # good events are not kept
    machine.clear()
    assert machine.get_cache() == {}


HOSTILE = [  # (id, raw_unit, series name, unit label)
    ('quote"x', 'V"olt', "peer_quote_x", 'V"olt'),
    ("back\\slash", "a\\b", "peer_back_slash", "a\\b"),
    ("new\nline", "line\nbreak", "peer_new_line", "line\nbreak"),
    ("µ-current", "µA", "peer_current", "uA"),
    ("Grüße ☃ 温度", "°C ☃ Ω", "peer_gr_e", "°C ☃ Ω"),
]


def test_hostile_ids_and_units_never_break_a_scrape(state_machine, heros_emitter, zenoh_port: int, spool_dir) -> None:
    machine = state_machine(labels=LABELS)
    peer = heros_emitter("peer", zenoh_port)
    now = time.time()
    good = [
        {"id": ident, "time": now, "value": None, "unit": "None", "raw_value": 1.5, "raw_unit": unit, "inbound": 0}
        | {"calibrated": False}
        for ident, unit, _, _ in HOSTILE
    ]
    bad = [
        "not a map",
        {"time": now, "raw_value": 1},
        {"id": "no_time", "raw_value": 1},
        {"id": 5, "time": now},
        {"id": "bad_time", "time": "yesterday"},
        {"id": "text_value", "time": now, "raw_value": "hello", "raw_unit": "None"},
        {"id": "old", "time": now - 3600, "raw_value": 1.0},
    ]
    peer.wait_subscribers("observable_data")
    events = [good + bad, {"no": "list"}]
    peer.emit("observable_data", [{"form": "value", "value": event} for event in events])

    def skipped(reason: str) -> float | None:
        return value(
            scrape(machine.url), "archivist_datasource_records_skipped_total", observer=machine.name, reason=reason
        )

    support.wait_until(lambda: skipped("not_a_list") == 1, what="the second event counted")
    status, content_type, text = fetch(machine.url)
    assert status == 200 and content_type.startswith("text/plain; version=0.0.4")
    checked = promtool_check(text)
    assert checked.returncode == 0, checked.stdout + checked.stderr

    for accept in (None, OPENMETRICS):
        samples = scrape(machine.url, accept)
        for ident, _, name, unit in HOSTILE:
            assert value(samples, f"{name}_raw_value", **series("peer", ident, unit=unit)) == 1.5, (accept, ident)
            assert value(samples, f"{name}_inbound", **series("peer", ident)) == 0
        counts = {
            reason: skipped(reason) for reason in ("not_a_map", "missing_field", "wrong_type", "non_numeric_value")
        }
        assert counts == {"not_a_map": 1, "missing_field": 2, "wrong_type": 2, "non_numeric_value": 1}
        assert value(samples, "peer_text_value_inbound", **series("peer", "text_value")) == -1
        assert not any(name == "peer_text_value_raw_value" or name.startswith("peer_old_") for name, _ in samples)
        assert value(samples, "archivist_datasource_stale_readings", observer=machine.name) == 1

    status, content_type, text = fetch(machine.url, OPENMETRICS)
    assert content_type.startswith("application/openmetrics-text") and text.endswith("# EOF\n")

    # both events, each holding bad input, are kept whole in the spool, with what was wrong
    assert value(samples, "archivist_datasource_events_spooled_total", observer=machine.name) == 2
    assert value(samples, "archivist_datasource_spool_failures_total", observer=machine.name) == 0
    entries = [entry for _, entry in Spool(spool_dir).entries()]
    assert [decode_payload(entry.payload) for entry in entries] == events
    assert {(entry.archiver, entry.archiver_class) for entry in entries} == {
        (machine.name, "archivist.statemachine.HERODatasourceStateMachine")
    }
    assert entries[0].error.startswith("not_a_map: record is str, not a map; missing_field: record lacks id; ")
    assert entries[0].error.endswith("; and 2 more") and entries[1].error.startswith("not_a_list: ")


def test_a_real_prometheus_scrapes_the_series(state_machine, heros_emitter, zenoh_port: int, prometheus_server) -> None:
    machine = state_machine(labels=LABELS)
    peer = heros_emitter("peer", zenoh_port)
    unit = 'd"eg\\C\nµ☃'
    peer.datasource("thermo-1", {"temperature": [21.5, unit]})
    prometheus = prometheus_server([f"127.0.0.1:{machine.port}"])

    result = support.wait_until(
        lambda: query(prometheus, "thermo_1_temperature_raw_value"), timeout=30, what="Prometheus to have the series"
    )
    assert len(result) == 1
    assert result[0]["metric"] == {
        "__name__": "thermo_1_temperature_raw_value",
        "instance": f"127.0.0.1:{machine.port}",
        "job": "archivist",
        **series("thermo-1", "temperature", unit='d"eg\\C\nu☃'),
    }
    assert float(result[0]["value"][1]) == 21.5


def test_a_real_push_gateway_receives_the_series(zenoh_config, heros_emitter, zenoh_port: int, pushgateway) -> None:
    pusher = PrometheusPusher(
        metrics_path=f"{pushgateway.url}/metrics",
        interval=0.2,
        labels={"job": "lab-b1", "site": "B1"},
        grouping_key={"instance": "archivist-1"},
        zenoh_config=zenoh_config,
    )
    try:
        peer = heros_emitter("peer", zenoh_port)
        peer.datasource("thermo-1", {"temperature": [21.5, "µA"]})
        labels = {"job": "lab-b1", "instance": "archivist-1", "site": "B1", "prefix": "thermo-1", "key": "temperature"}
        pushed = support.wait_until(
            lambda: value(scrape(f"{pushgateway.url}/metrics"), "thermo_1_temperature_raw_value", **labels, unit="uA"),
            what="the series on the push gateway",
        )
        assert pushed == 21.5
    finally:
        pusher.stop()


def test_a_push_gateway_that_is_down_is_logged_once_per_outage(zenoh_config, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="archivist")
    pusher = PrometheusPusher(metrics_path=f"127.0.0.1:{support.free_port()}", interval=0.05, zenoh_config=zenoh_config)
    try:
        support.wait_until(lambda: pusher.failed_pushes >= 3, what="three failed pushes")
    finally:
        pusher.stop()
    warnings = [record for record in caplog.records if "cannot push" in record.getMessage()]
    assert len(warnings) == 1 and pusher.pushes == 0


def test_stop_frees_the_port(state_machine) -> None:
    machine = state_machine()
    assert fetch(f"http://127.0.0.1:{machine.port}/healthz")[:3:2] == (200, "ok\n")
    assert fetch(f"http://127.0.0.1:{machine.port}/nothing")[0] == 404
    machine.stop()
    machine.stop()
    with pytest.raises(urllib.error.URLError):
        fetch(f"http://127.0.0.1:{machine.port}/healthz")
    again = state_machine(http_port=machine.port)  # the port can be served again at once
    assert fetch(f"http://127.0.0.1:{again.port}/healthz")[0] == 200

"""archivist's own metrics: every archiver's counters, queue and write latency, /healthz, and `run --metrics-port`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import urllib.error
from pathlib import Path
from typing import Any

import pytest

from archivist import JsonArchiver
from archivist.metrics_server import serve_process_metrics
from tests import support
from tests.metrics_support import fetch, promtool_check, scrape, value


@pytest.fixture
def endpoint():
    server = serve_process_metrics(0, "127.0.0.1", health_window=0.5)
    yield server
    server.close()


def test_archiver_metrics_match_its_stats(make_archiver, heros_emitter, zenoh_port: int, tmp_path: Path, endpoint):
    archiver = make_archiver(
        JsonArchiver,
        save_template=str(tmp_path) + "/out/{{ n }}.json",
        object_selector="peer",
        event_name="json_data",
        name='json "archiver"',
    )
    peer = heros_emitter("peer", zenoh_port)
    peer.wait_subscribers("json_data")
    peer.emit("json_data", [{"form": "dict", "value": {"n": n}} for n in range(3)])
    support.wait_until(lambda: archiver.stats()["written"] == 3 and archiver.is_queue_drained(), what="3 events")

    stats = archiver.stats()
    samples = scrape(endpoint.url)
    mine = {"archiver": archiver.name}
    for name, key in [
        ("archivist_events_received_total", "received"),
        ("archivist_events_written_total", "written"),
        ("archivist_events_failed_total", "failed"),
        ("archivist_events_spooled_total", "spooled"),
        ("archivist_write_retries_total", "retries"),
        ("archivist_files_written_total", "files_written"),
        ("archivist_bytes_written_total", "bytes_written"),
        ("archivist_queue_events", "queued"),
        ("archivist_queue_bytes", "queued_bytes"),
        ("archivist_oldest_queued_event_age_seconds", "oldest_queued_age"),
    ]:
        assert value(samples, name, **mine) == stats[key], name
    assert stats["bytes_written"] == sum(path.stat().st_size for path in (tmp_path / "out").iterdir())
    assert value(samples, "archivist_write_latency_seconds_count", **mine) == 3
    assert value(samples, "archivist_write_latency_seconds_bucket", **mine, le="+Inf") == 3
    checked = promtool_check(fetch(endpoint.url)[2])
    assert checked.returncode == 0, checked.stdout + checked.stderr

    archiver.stop()
    assert value(scrape(endpoint.url), "archivist_events_written_total", **mine) is None  # stopped: gone


def test_healthz_is_not_ready_while_a_spool_grows(make_archiver, heros_emitter, zenoh_port: int, endpoint):
    archiver = make_archiver(
        JsonArchiver, save_template="{{ missing }}.json", object_selector="peer", event_name="json_data", name="broken"
    )
    healthz = endpoint.url.replace("/metrics", "/healthz")
    assert fetch(healthz)[::2] == (200, "ok\n")
    peer = heros_emitter("peer", zenoh_port)
    peer.wait_subscribers("json_data")
    peer.emit("json_data", [{"form": "dict", "value": {"n": 1}}])
    support.wait_until(lambda: archiver.stats()["spooled"] == 1, what="the event spooled")

    assert fetch(healthz)[::2] == (503, "spool growing: broken\n")
    support.wait_until(lambda: fetch(healthz)[0] == 200, what="ready again once the spool stopped growing")


def test_run_serves_archivers_and_state_machines_on_one_port(tmp_path: Path, heros_emitter, zenoh_port: int) -> None:
    zenoh_config = support.loopback_zenoh_config(listen_port=zenoh_port)
    metrics_port, machine_port = support.free_port(), support.free_port()
    config: list[dict[str, Any]] = [
        {
            "_id": "json-archiver",
            "classname": "herostools.actor.JsonArchiver",
            "arguments": {
                "object_selector": "peer",
                "event_name": "json_data",
                "save_template": str(tmp_path) + "/out/{{ n }}.json",
                "spool_dir": str(tmp_path / "spool"),
            },
        },
        {
            "_id": "lab-state",
            "classname": "herostools.actor.HERODatasourceStateMachine",
            "arguments": {
                "loop": "@_boss_loop",  # what a BOSS config passes; archivist run has no loop to give
                "http_port": machine_port,
                "bind_address": "127.0.0.1",
                "labels": {"lab": "B1"},
            },
        },
    ]
    (tmp_path / "config.json").write_text(json.dumps(config))
    argv = [
        sys.executable,
        "-m",
        "archivist",
        "run",
        str(tmp_path / "config.json"),
        "--metrics-port",
        str(metrics_port),
    ]
    argv += ["--zenoh-config", json.dumps(zenoh_config)]
    with (tmp_path / "run.log").open("w") as log:
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        process_url = f"http://127.0.0.1:{metrics_port}/metrics"
        machine_url = f"http://127.0.0.1:{machine_port}/metrics"
        support.wait_until(lambda: _answers(machine_url) and _answers(process_url), what="both endpoints")
        peer = heros_emitter("peer", zenoh_port)
        peer.wait_subscribers("json_data")
        peer.emit("json_data", [{"form": "dict", "value": {"n": 1}}])
        peer.datasource("thermo-1", {"temperature": [21.5, "degC"]})
        labels = {"lab": "B1", "prefix": "thermo-1", "key": "temperature", "unit": "degC"}
        for url in (process_url, machine_url):
            support.wait_until(
                lambda url=url: (
                    value(scrape(url), "archivist_events_written_total", archiver="json-archiver") == 1
                    and value(scrape(url), "thermo_1_temperature_raw_value", **labels) == 21.5
                ),
                what=f"both kinds of series on {url}",
            )
    finally:
        process.send_signal(signal.SIGTERM)
        returncode = process.wait(timeout=60)
    assert returncode == 0, (tmp_path / "run.log").read_text()
    assert not _answers(process_url) and not _answers(machine_url)


def _answers(url: str) -> bool:
    try:
        return fetch(url)[0] == 200
    except urllib.error.URLError:
        return False

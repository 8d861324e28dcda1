"""Real BOSS (heros-boss) starts an archivist archiver from the seed's config, exposes it as a HERO and stops it."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zenoh

from archivist import Spool
from tests import support
from tests.metrics_support import fetch, scrape, value
from tests.peers.specs import array_spec, burst_frame

pytest.importorskip("boss.starter", reason="heros-boss is not installed (pip install -e '.[test]')")

SEED_TEMPLATE = "{{ file_path }}/testimg-{{ '%04d' % ( frame / 2 ) |round(0, 'floor') }}-{{ frame % 2 }}.npy"


@pytest.fixture
def router(zenoh_port: int) -> Iterator[int]:
    """A zenoh router on 127.0.0.1 that BOSS, the emitter and the test connect to, as in a lab."""
    config = support.loopback_zenoh_config(listen_port=zenoh_port) | {"mode": "router"}
    session = zenoh.open(zenoh.Config.from_json5(json.dumps(config)))
    yield zenoh_port
    session.close()


def _member_config(router: int, listen_port: int = 0) -> dict[str, Any]:
    """A peer that connects to the router and listens on loopback (port 0: any free port).

    Peers mesh directly (the router only introduces them), so each needs a listener.
    """
    config = support.loopback_zenoh_config(connect_port=router)
    config["listen"]["endpoints"] = [f"tcp/127.0.0.1:{listen_port}"]
    return config


@pytest.fixture
def boss(tmp_path: Path, router: int) -> Iterator[Callable[[dict[str, Any]], subprocess.Popen[str]]]:
    """Start `python -m boss.starter -u CONFIG` (one object per file) with HEROS_ZENOH_CONFIG on the router."""
    started: list[subprocess.Popen[str]] = []

    def start(config: dict[str, Any], *, shared_memory_off: bool = True) -> subprocess.Popen[str]:
        path = tmp_path / "boss.json"
        path.write_text(json.dumps(config))
        # A fixed listen port, as on a lab host: the archiver must share the HERO's session, not open a second
        # one that fails to bind the same port.
        member = _member_config(router, support.free_port())
        if shared_memory_off:  # as docs/deployment.md says to: the HERO's session is heros', opened before ours
            member["transport"] = {"shared_memory": {"enabled": False}}
        env = os.environ | {"HEROS_ZENOH_CONFIG": json.dumps(member)}
        with (tmp_path / "boss.log").open("w") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", "boss.starter", "-u", path.as_uri()],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # its own process group, with BOSS's worker processes
            )
        started.append(proc)
        return proc

    yield start
    for proc in started:  # BOSS and any worker it left behind (a killed BOSS does not stop its workers)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


@pytest.fixture
def remote_hero(router: int) -> Iterator[Callable[[str], Any]]:
    """heros.RemoteHERO(name) over the loopback router, with its own session manager."""
    from heros import RemoteHERO
    from heros.zenoh import ZenohSessionManager

    sessions = ZenohSessionManager(_member_config(router))
    heros_made: list[Any] = []

    def connect(name: str) -> Any:
        hero = support.wait_until(lambda: _try_remote(RemoteHERO, name, sessions), what=f"HERO {name}")
        heros_made.append(hero)
        return hero

    yield connect
    for hero in heros_made:
        hero._destroy_hero()
    sessions.force_close()


def _try_remote(cls: type, name: str, sessions: Any) -> Any:
    try:
        return cls(name, session_manager=sessions)
    except NameError:
        return None


def test_boss_runs_the_seed_config_and_drains_on_stop(boss, heros_emitter, remote_hero, router, tmp_path) -> None:
    images = tmp_path / "images"
    count, shape = 40, [256, 256]
    proc = boss(
        {
            "_id": "my-camera-capturer",
            "classname": "archivist.ArrayArchiver",
            "arguments": {
                "object_selector": "my-camera",
                "event_name": "acquisition_data",
                "default_metadata": {"file_path": str(images)},
                "save_template": SEED_TEMPLATE,
                "spool_dir": str(tmp_path / "spool"),
                "workers": 1,
                "shutdown_timeout": 4,
            },
        }
    )
    archiver = remote_hero("my-camera-capturer")
    emitter = heros_emitter("my-camera", router)
    emitter.wait_subscribers("acquisition_data")
    emitter.burst("acquisition_data", count, shape, "uint16")
    # no "frame": the template cannot render, so this event goes to the spool, under the _id
    emitter.emit("acquisition_data", [{"form": "tuple", "data": array_spec([2, 2], "uint16"), "metadata": {}}])
    support.wait_until(lambda: archiver.stats()["received"] == count + 1, what=f"{count + 1} events received")
    assert archiver.describe().startswith("@object/heros/my-camera/acquisition_data -> ")

    queued = archiver.stats()["queued"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, (tmp_path / "boss.log").read_text()[-3000:]
    print(f"{queued} event(s) queued when BOSS was stopped")
    log = (tmp_path / "boss.log").read_text()
    assert f"my-camera-capturer: stopped: {count} written, 1 failed (1 spooled)" in log  # _teardown ran
    assert "shared-memory" not in log  # $HEROS_ZENOH_CONFIG turns it off
    names = sorted(f"testimg-{frame // 2:04d}-{frame % 2}.npy" for frame in range(count))
    assert sorted(p.name for p in images.iterdir()) == names
    for frame in (0, count - 1):
        np.testing.assert_array_equal(
            np.load(images / f"testimg-{frame // 2:04d}-{frame % 2}.npy"), burst_frame(frame, shape, "uint16")
        )
    [(_, entry)] = Spool(tmp_path / "spool").entries()
    assert (entry.archiver, entry.archiver_class) == ("my-camera-capturer", "archivist.archivers.ArrayArchiver")
    assert entry.error_type == "TemplateRenderError" and "'frame' is undefined" in entry.error


def test_boss_runs_the_state_machine_on_its_loop(boss, heros_emitter, remote_hero, router, tmp_path) -> None:
    port = support.free_port()
    proc = boss(
        {
            "_id": "datasource-metrics",
            "classname": "archivist.HERODatasourceStateMachine",
            "arguments": {
                "loop": "@_boss_loop",
                "http_port": port,
                "bind_address": "127.0.0.1",
                "labels": {"lab": "B1"},
            },
        }
    )
    machine = remote_hero("datasource-metrics")
    emitter = heros_emitter("peer", router)
    emitter.datasource("thermo-1", {"temperature": [21.5, "degC"]})
    url = f"http://127.0.0.1:{port}/metrics"
    labels = {"lab": "B1", "prefix": "thermo-1", "key": "temperature", "unit": "degC"}
    support.wait_until(lambda: value(scrape(url), "thermo_1_temperature_raw_value", **labels) == 21.5, what="series")
    assert [record["raw_value"] for record in machine.get_cache()["thermo-1"]] == [21.5]
    # named by its _id, which BOSS gives the HERO after the state machine is made
    assert value(scrape(url), "archivist_datasource_stale_readings", observer="datasource-metrics") == 0

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 0, (tmp_path / "boss.log").read_text()[-3000:]
    with pytest.raises(OSError):
        fetch(url)


def test_built_as_boss_builds_it_an_archiver_is_named_by_its_id_and_keeps_its_realm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """heros makes the HERO after the archiver: the archiver listens only then (BOSS calls _setup), under the
    _id (which names its disk buffer and spool entries) and on the HERO's session, and heros setting the HERO's
    realm does not change the realm the archiver names sources by."""
    from boss.factory import HEROFactory
    from heros import serdes

    from archivist import Received

    monkeypatch.setenv("HEROS_ZENOH_CONFIG", json.dumps(support.loopback_zenoh_config(listen_port=0)))
    arguments = {"object_selector": "cam", "event_name": "acquisition_data", "realm": "lab", "spool_dir": str(tmp_path)}
    made = [
        HEROFactory.build(
            "archivist.ArrayArchiver", _id, arguments | {"save_template": f"{tmp_path}/{_id}/{{{{ source_name }}}}.npy"}
        )
        for _id in ("cam-local", "cam-nas")
    ]
    try:
        assert [archiver.name for archiver in made] == ["cam-local", "cam-nas"]
        assert [archiver._subscription._pool_key for archiver in made] == [None, None]  # the HERO's session
        folders = {archiver._buffer.directory.name.rsplit("-", 2)[0] for archiver in made}
        assert len(folders) == 2 and all(folder.startswith("cam-") for folder in folders)
        payload = serdes.serialize((np.zeros(2, "uint8"), {}))
        made[0]._write_event(Received("@object/lab/cam/acquisition_data", payload))
        assert (tmp_path / "cam-local" / "cam.npy").is_file()
    finally:
        for archiver in made:
            archiver._teardown()
            archiver._destroy_hero()


def test_boss_warns_when_the_heros_session_keeps_zenohs_shared_memory(boss, remote_hero, tmp_path) -> None:
    """Under BOSS the archiver listens on the HERO's session, which heros opened from $HEROS_ZENOH_CONFIG with zenoh's
    shared memory on: archivist cannot turn it off there, so it says how to (docs/reliability.md)."""
    boss(
        {
            "_id": "cam-archiver",
            "classname": "archivist.ArrayArchiver",
            "arguments": {
                "object_selector": "cam",
                "event_name": "acquisition_data",
                "save_template": str(tmp_path / "out" / "{{ frame }}.npy"),
                "spool_dir": str(tmp_path / "spool"),
            },
        },
        shared_memory_off=False,
    )
    remote_hero("cam-archiver")
    log = tmp_path / "boss.log"
    support.wait_until(lambda: "transport: { shared_memory: { enabled: false } }" in log.read_text(), what="warning")
    assert log.read_text().count("zenoh's shared-memory transport is on") == 1

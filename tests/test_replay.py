"""The spool and replay: events that could not be written are delivered later, once, by `archivist replay`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cbor2
import numpy as np
import pytest

from archivist import ArrayArchiver, EventFailed, HERODatasourceStateMachine, JsonArchiver, Received, Spool, SpoolEntry
from archivist.config import ObjectConfig
from archivist.datasource import RecordError, RefusedEvents
from archivist.replay import replay
from tests import support
from tests.peers.specs import burst_frame

SHAPE = [32, 32]


def _archivist(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "archivist", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def full_filesystem(tmp_path: Path):
    """A destination that cannot take more data, and a function that makes it writable again.

    As root: a 1 MiB tmpfs filled to the brim (root ignores permissions); otherwise a read-only folder.
    """
    target = tmp_path / "dest"
    target.mkdir()
    if os.geteuid() != 0:
        target.chmod(0o555)
        yield target, lambda: target.chmod(0o755)
        target.chmod(0o755)
        return
    mount = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(target)], capture_output=True)
    if mount.returncode != 0:
        if support.REQUIRE_INTEGRATION:
            pytest.fail(f"cannot mount a small tmpfs: {mount.stderr!r}")
        pytest.skip(f"cannot mount a small tmpfs: {mount.stderr!r}")
    filler = target / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    yield target, filler.unlink
    subprocess.run(["umount", "-l", str(target)], check=False)


def test_unwritable_destination_then_replay(make_archiver, heros_emitter, zenoh_port, spool_dir, full_filesystem):
    dest, make_writable = full_filesystem
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name="acquisition_data",
        save_template=str(dest) + "/{{ run }}/{{ frame }}.npy",
        max_retries=2,
        name="cam-capturer",
    )
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    emitter.burst("acquisition_data", 10, SHAPE, "uint16", metadata={"run": "r1"})
    support.wait_until(lambda: archiver.stats()["spooled"] == 10, what="10 events spooled")
    stats = archiver.stats()
    assert stats["written"] == 0 and stats["failed"] == 10 and stats["retries"] == 20
    assert len(Spool(spool_dir)) == 10

    make_writable()
    result = _archivist("replay", str(spool_dir))
    assert result.returncode == 0, result.stderr
    assert "replayed 10 of 10 event(s)" in result.stdout
    assert len(Spool(spool_dir)) == 0
    for frame in range(10):
        np.testing.assert_array_equal(np.load(dest / "r1" / f"{frame}.npy"), burst_frame(frame, SHAPE, "uint16"))
    assert sorted(p.name for p in (dest / "r1").iterdir()) == sorted(f"{i}.npy" for i in range(10))

    again = _archivist("replay", str(spool_dir))  # safe to run twice: nothing left, nothing written twice
    assert again.returncode == 0 and "replayed 0 of 0 event(s)" in again.stdout
    assert len(list((dest / "r1").iterdir())) == 10


def test_replay_with_a_fixed_template(make_archiver, heros_emitter, zenoh_port, spool_dir, tmp_path):
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name="acquisition_data",
        save_template=str(tmp_path / "out") + "/{{ shot }}.npy",  # the events carry 'frame', not 'shot'
        name="cam-capturer",
    )
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    emitter.burst("acquisition_data", 5, SHAPE, "uint16")
    support.wait_until(lambda: archiver.stats()["spooled"] == 5, what="5 events spooled")
    assert {entry.error_type for _, entry in Spool(spool_dir).entries()} == {"TemplateRenderError"}

    # replaying unchanged fails again and keeps every entry, with the error
    result = _archivist("replay", str(spool_dir))
    assert result.returncode == 1 and "'shot' is undefined" in result.stderr
    assert "replayed 0 of 5" in result.stdout and len(Spool(spool_dir)) == 5

    config = tmp_path / "fixed.json"
    config.write_text(
        json.dumps(
            {
                "_id": "cam-capturer",
                "classname": "herostools.actor.ArrayArchiver",
                "arguments": {
                    "object_selector": "cam",
                    "event_name": "acquisition_data",
                    "save_template": str(tmp_path / "out") + "/{{ frame }}.npy",
                },
            }
        )
    )
    result = _archivist("replay", str(spool_dir), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [f"{i}.npy" for i in range(5)]


def test_split_event_replays_only_the_missing_items(make_archiver, raw_publisher, spool_dir, tmp_path):
    from heros import serdes

    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name="acquisition_data",
        split_data_array=True,
        save_template=str(tmp_path / "out") + "/{{ names[_split_index] }}.npy",
    )
    publisher = raw_publisher.declare_publisher("@object/heros/cam/acquisition_data")
    support.wait_until(lambda: publisher.matching_status.matching, what="the archiver to match")
    frames = np.arange(12, dtype="int16").reshape(3, 4)
    publisher.put(serdes.serialize((frames, {"names": ["a", "b"]})))  # no name for item 2
    support.wait_until(lambda: archiver.stats()["spooled"] == 1, what="the event spooled")
    ((_, entry),) = Spool(spool_dir).entries()
    assert entry.pending_items == [2]

    fixed = dict(entry.settings, save_template=str(tmp_path / "out") + "/{{ _split_index }}.npy")
    report = replay(spool_dir, [ObjectConfig("fixed", "archivist.ArrayArchiver", fixed, "test")])
    assert report.delivered == 1 and report.failures == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["2.npy", "a.npy", "b.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "out" / "2.npy"), frames[2])


def test_redeliver_writes_now_and_counts_what_it_replayed(tmp_path: Path, spool_dir: Path) -> None:
    template, spool = str(tmp_path / "{{ n }}.json"), str(spool_dir)
    archiver = JsonArchiver(template, object_selector="s", event_name="json_data", spool_dir=spool, listen=False)
    archiver.redeliver(Received("@object/heros/s/json_data", cbor2.dumps({"n": 1})))
    archiver.redeliver(Received("@object/heros/s/json_data", cbor2.dumps({"n": 1})))  # stored already: not again
    assert json.loads((tmp_path / "1.json").read_text()) == {"n": 1} and not (tmp_path / "1.1.json").exists()
    with pytest.raises(EventFailed, match="'n' is undefined"):
        archiver.redeliver(Received("@object/heros/s/json_data", cbor2.dumps({"m": 2})))
    stats = archiver.stats()
    assert (stats["replayed"], stats["written"], stats["failed"], stats["spooled"]) == (2, 2, 0, 0)


def test_replay_leaves_what_a_metrics_observer_refused_for_a_person_to_read(tmp_path: Path, spool_dir: Path) -> None:
    refused = RefusedEvents(str(spool_dir), "observer-1", HERODatasourceStateMachine)
    refused.keep(Received("@object/heros/dev/observable_data", b"\xff"), [RecordError("undecodable", "not CBOR")])
    Spool(spool_dir).put(
        SpoolEntry(
            archiver="dicts",
            archiver_class="archivist.archivers.JsonArchiver",
            settings={},
            key_expr="@object/heros/s/json_data",
            payload=cbor2.dumps({"n": 1}),
            received_at=0.0,
            error="the disk was full",
            error_type="OSError",
            attempts=3,
        )
    )
    config = tmp_path / "dicts.json"  # one archiver: it takes every entry, but not the observer's
    arguments = {"object_selector": "s", "event_name": "json_data", "save_template": str(tmp_path / "{{ n }}.json")}
    config.write_text(json.dumps({"_id": "dicts", "classname": "archivist.JsonArchiver", "arguments": arguments}))

    result = _archivist("replay", str(spool_dir), "--config", str(config))
    assert result.returncode == 0, result.stderr
    assert "replayed 1 of 2 event(s)" in result.stdout and "1 bad observable_data event(s) to read" in result.stdout
    assert "not replayable, refused by observer-1: undecodable: not CBOR" in result.stderr
    assert json.loads((tmp_path / "1.json").read_text()) == {"n": 1}
    ((_, left),) = Spool(spool_dir).entries()
    assert (left.archiver, left.payload) == ("observer-1", b"\xff")

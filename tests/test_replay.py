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
from heros import serdes

from archivist import ArrayArchiver, EventFailed, HERODatasourceStateMachine, JsonArchiver, Received, Spool, SpoolEntry
from archivist.config import ObjectConfig, load_config
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


T = "{{ source_name }}/{{ frame }}.npy"


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def _spool_frame(spool_dir: Path, frame: int, root: Path, *, realm: str = "heros", cls: str = "ArrayArchiver") -> None:
    """A spooled camera frame, as an ArrayArchiver named "cam" records it."""
    settings = {
        "save_template": T,
        "object_selector": "cam",
        "event_name": "acquisition_data",
        "default_metadata": {},
        "realm": realm,
        "root": str(root),
        "on_exists": "suffix",
        "max_retries": 0,
        "split_data_array": False,
    }
    Spool(spool_dir).put(
        SpoolEntry(
            archiver="cam",
            archiver_class=f"archivist.archivers.{cls}" if "." not in cls else cls,
            settings=settings,
            key_expr=f"@object/{realm}/cam/acquisition_data",
            payload=serdes.serialize((np.full(4, frame, dtype="uint16"), {"frame": frame})),
            received_at=float(frame),
            error="the disk was full",
            error_type="OSError",
            attempts=1,
        )
    )


def _config(path: Path, *objects: tuple[str, str, dict]) -> list[ObjectConfig]:
    path.write_text(json.dumps([{"_id": i, "classname": c, "arguments": a} for i, c, a in objects]))
    return load_config(path)


def test_each_entry_is_replayed_with_the_settings_recorded_with_it(tmp_path: Path, spool_dir: Path) -> None:
    _spool_frame(spool_dir, 1, tmp_path / "A")  # the same archiver, its root changed between the two events
    _spool_frame(spool_dir, 2, tmp_path / "B")
    report = replay(spool_dir)
    assert report.delivered == 2 and report.failures == []
    assert np.load(tmp_path / "A" / "cam" / "1.npy")[0] == 1 and np.load(tmp_path / "B" / "cam" / "2.npy")[0] == 2
    assert not (tmp_path / "A" / "cam" / "2.npy").exists()


def test_a_config_without_a_realm_replays_under_the_realm_recorded(tmp_path: Path, spool_dir: Path) -> None:
    _spool_frame(spool_dir, 3, tmp_path / "A", realm="lab")
    arguments = {"object_selector": "cam", "event_name": "acquisition_data", "root": str(tmp_path / "C")}
    configs = _config(tmp_path / "c.json", ("cam", "archivist.ArrayArchiver", arguments | {"save_template": T}))
    assert replay(spool_dir, configs).delivered == 1
    assert _files(tmp_path / "C") == ["cam/3.npy"]  # the source's name, not the whole key


def test_only_archivers_of_a_config_take_entries(tmp_path: Path, spool_dir: Path) -> None:
    _spool_frame(spool_dir, 4, tmp_path / "A")
    metrics = ("metrics", "herostools.actor.HERODatasourceStateMachine", {"http_port": 9999})
    arguments = {"object_selector": "cam", "event_name": "acquisition_data", "root": str(tmp_path / "C")}
    fixed = ("fixed", "archivist.ArrayArchiver", arguments | {"save_template": T})
    # a state machine beside the one archiver does not stop it from taking every entry ...
    assert replay(spool_dir, _config(tmp_path / "both.json", fixed, metrics)).delivered == 1
    assert _files(tmp_path / "C") == ["cam/4.npy"]
    # ... and a config of a state machine alone builds nothing: the entry's own settings apply
    _spool_frame(spool_dir, 5, tmp_path / "A")
    assert replay(spool_dir, _config(tmp_path / "metrics.json", metrics)).delivered == 1
    assert _files(tmp_path / "A") == ["cam/5.npy"]


def test_an_entry_whose_archiver_cannot_be_built_stays_and_the_rest_is_replayed(
    tmp_path: Path, spool_dir: Path
) -> None:
    _spool_frame(spool_dir, 6, tmp_path / "A", cls="mylab.archivers.FrameArchiver")
    _spool_frame(spool_dir, 7, tmp_path / "A")
    report = replay(spool_dir)
    assert report.delivered == 1 and _files(tmp_path / "A") == ["cam/7.npy"]
    ((_, error),) = report.failures
    assert "'mylab.archivers.FrameArchiver' is not an archivist class" in error
    assert [entry.archiver_class for _, entry in Spool(spool_dir).entries()] == ["mylab.archivers.FrameArchiver"]

"""Bad events are reported, counted and spooled; nothing lands outside the destination; good events go on."""

from __future__ import annotations

import logging
from pathlib import Path

import cbor2
import numpy as np
import pytest

from archivist import ArrayArchiver, JsonArchiver, Spool
from tests import support
from tests.peers.specs import array_spec, make_array

GOOD = array_spec([2, 3], "int16", fill="random", seed=1)


def _files(root: Path) -> list[str]:
    """Files under root, except the emitter peers' logs."""
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.suffix != ".log")


def _only_entry(spool_dir: Path):
    entries = list(Spool(spool_dir).entries())
    assert len(entries) == 1
    return entries[0][1]


@pytest.fixture
def frames_archiver(make_archiver, tmp_path: Path):
    return make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name="acquisition_data",
        root=str(tmp_path / "archive"),
        save_template="{{ folder }}/{{ frame }}.npy",
    )


def _send_bad_then_good(heros_emitter, zenoh_port, bad: dict) -> None:
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    good = {"form": "tuple", "data": GOOD, "metadata": {"folder": "ok", "frame": 1}}
    emitter.emit("acquisition_data", [bad, good])


def _assert_only_good_written(archiver, tmp_path: Path, failed: int = 1) -> None:
    stats = archiver.stats
    support.wait_until(lambda: stats()["written"] == 1 and stats()["failed"] == failed, what="good and bad counted")
    assert archiver.drain(10)
    assert _files(tmp_path / "archive") == ["ok/1.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "archive" / "ok" / "1.npy"), make_array(GOOD))


@pytest.mark.parametrize(
    ("metadata", "error_type", "message"),
    [
        ({"frame": 0}, "TemplateRenderError", "'folder' is undefined"),
        ({"folder": "../../escaped", "frame": 0}, "UnsafePathError", "'..' segment"),
        ({"folder": "/tmp/elsewhere", "frame": 0}, "UnsafePathError", "outside the root"),
        ({"folder": "a\nb", "frame": 0}, "UnsafePathError", "control character"),
    ],
    ids=["missing-variable", "dotdot", "outside-root", "newline"],
)
def test_bad_metadata_is_spooled(
    frames_archiver, heros_emitter, zenoh_port, tmp_path, spool_dir, caplog, metadata, error_type, message
) -> None:
    caplog.set_level(logging.ERROR, logger="archivist")
    _send_bad_then_good(heros_emitter, zenoh_port, {"form": "tuple", "data": GOOD, "metadata": metadata})
    _assert_only_good_written(frames_archiver, tmp_path)
    assert _files(tmp_path) == ["archive/ok/1.npy", *(f"spool/{p.name}" for p in spool_dir.iterdir())]
    assert frames_archiver.stats()["errors"] == {error_type: 1}
    assert frames_archiver.stats()["spooled"] == 1
    entry = _only_entry(spool_dir)
    assert entry.error_type == error_type and message in entry.error
    assert entry.key_expr == "@object/heros/cam/acquisition_data"
    _data, sent_metadata = cbor2.loads(entry.payload)  # the payload exactly as received, ready for replay
    assert sent_metadata == metadata
    assert any(message in record.getMessage() and "spool" in record.getMessage() for record in caplog.records)


def test_payload_that_is_not_an_array(frames_archiver, heros_emitter, zenoh_port, tmp_path, spool_dir) -> None:
    bad = {"form": "tuple", "data": {"not": "an array"}, "metadata": {"folder": "ok", "frame": 0}}
    _send_bad_then_good(heros_emitter, zenoh_port, bad)
    _assert_only_good_written(frames_archiver, tmp_path)
    entry = _only_entry(spool_dir)
    assert entry.error_type == "PayloadError" and "numpy array" in entry.error
    assert entry.destination == str(tmp_path / "archive" / "ok" / "0.npy")


GARBAGE = [
    b"\xff\x00\x9f not cbor",  # a lone CBOR break marker followed by junk
    cbor2.dumps([b"\x00" * 64, {"frame": 3}])[:-5],  # truncated
    cbor2.dumps(cbor2.CBORTag(4242, [[4, 4], b"uint16", b"\x00" * 7])),  # array data of the wrong size
    cbor2.dumps(cbor2.CBORTag(4242, [[2], b"no-such-dtype", b"\x00" * 2])),
]


def test_malformed_cbor(frames_archiver, raw_publisher, heros_emitter, zenoh_port, tmp_path, spool_dir) -> None:
    publisher = raw_publisher.declare_publisher("@object/heros/cam/acquisition_data")
    support.wait_until(lambda: publisher.matching_status.matching, what="the archiver to match the raw publisher")
    for garbage in GARBAGE:
        publisher.put(garbage)
    support.wait_until(lambda: frames_archiver.stats()["failed"] == len(GARBAGE), what="the garbage to be rejected")
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    emitter.emit("acquisition_data", [{"form": "tuple", "data": GOOD, "metadata": {"folder": "ok", "frame": 1}}])
    _assert_only_good_written(frames_archiver, tmp_path, failed=len(GARBAGE))
    entries = [entry for _, entry in Spool(spool_dir).entries()]
    assert sorted(entry.payload for entry in entries) == sorted(GARBAGE)
    assert {entry.error_type for entry in entries} == {"DecodeError"}
    assert frames_archiver.stats()["errors"] == {"DecodeError": len(GARBAGE)}


def test_event_value_of_the_wrong_shape(make_archiver, raw_publisher, tmp_path, spool_dir) -> None:
    archiver = make_archiver(
        JsonArchiver, object_selector="s", event_name="json_data", save_template=str(tmp_path / "x.json")
    )
    publisher = raw_publisher.declare_publisher("@object/heros/s/json_data")
    support.wait_until(lambda: publisher.matching_status.matching, what="the archiver to match the raw publisher")
    publisher.put(cbor2.dumps([1, 2, 3]))
    support.wait_until(lambda: archiver.stats()["failed"] == 1, what="the event to be rejected")
    entry = _only_entry(spool_dir)
    assert entry.error_type == "PayloadError" and "(data, metadata) pair or a map" in entry.error
    assert not (tmp_path / "x.json").exists()


def test_a_failed_event_the_spool_cannot_take_is_counted_as_lost(
    make_archiver, heros_emitter, zenoh_port, tmp_path, blocker, caplog
) -> None:
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name="acquisition_data",
        root=str(tmp_path / "archive"),
        save_template="{{ folder }}/{{ frame }}.npy",
        spool_dir=str(blocker / "spool"),
    )
    _send_bad_then_good(heros_emitter, zenoh_port, {"form": "tuple", "data": GOOD, "metadata": {"frame": 0}})
    _assert_only_good_written(archiver, tmp_path)  # and the service goes on
    stats = archiver.stats()
    assert (stats["spooled"], stats["spool_failed"]) == (0, 1)
    (lost,) = [record for record in caplog.records if "could not be spooled" in record.getMessage()]
    assert lost.levelname == "CRITICAL" and "'folder' is undefined" in lost.getMessage()

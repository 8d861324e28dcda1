"""The disk buffer: events wait on local disk in arrival order, and a killed process's buffer is recovered."""

from __future__ import annotations

import errno
import json
import os
import threading

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem
from heros import serdes

from archivist import JsonArchiver, Spool
from archivist.buffer import DiskBuffer, recover_buffers
from archivist.decode import decode_payload
from archivist.event import Received
from archivist.pipeline import Pipeline
from tests import support


def _event(i: int, size: int = 100) -> Received:
    return Received(f"@object/heros/cam{i % 3}/acquisition_data", bytes([i % 256]) * size, 1000.0 + i)


def test_events_come_back_in_order_across_segments(tmp_path) -> None:
    buffer = DiskBuffer(tmp_path / "buf", segment_bytes=1000)
    assert not (tmp_path / "buf").exists(), "nothing is created until an event waits"
    for i in range(30):
        buffer.append(_event(i))
    assert len(buffer) == 30 and len(list((tmp_path / "buf").glob("*.seg"))) > 3
    assert buffer.oldest_received_at() == 1000.0
    popped = [buffer.pop() for _ in range(30)]
    assert popped == [_event(i) for i in range(30)] and buffer.pop() is None
    assert len(list((tmp_path / "buf").glob("*.seg"))) > 3, "segments stay while their events are being written"
    for received in popped[:15]:
        buffer.done(received)
    assert 0 < len(list((tmp_path / "buf").glob("*.seg"))) < 4, "segments whose events are all handled are removed"
    for received in popped[15:]:
        buffer.done(received)
    assert list((tmp_path / "buf").glob("*.seg")) == []
    buffer.close()
    assert not (tmp_path / "buf").exists(), "an empty buffer leaves no trace"


def _pop_all(buffer: DiskBuffer) -> list[Received]:
    """Every event, each handled as a writer handles it."""
    popped = []
    while (received := buffer.pop()) is not None:
        popped.append(received)
        buffer.done(received)
    return popped


@pytest.mark.parametrize("failing", [0, 1], ids=["first-segment", "next-segment"])
def test_a_segment_that_cannot_be_opened_fails_one_append_and_no_other(tmp_path, monkeypatch, failing) -> None:
    """Out of file descriptors or disk space for a moment: that event is refused (its caller spools it); the
    buffer must not close another file's descriptor, skip a segment or lock itself out."""
    buffer = DiskBuffer(tmp_path / "buf", segment_bytes=100)
    if failing:
        buffer.append(_event(0))  # fills segment 0
    opened = DiskBuffer._open_segment

    def fail_once(self, segment):
        monkeypatch.setattr(DiskBuffer, "_open_segment", opened)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr(DiskBuffer, "_open_segment", fail_once)
    with pytest.raises(OSError, match="Too many open files"):
        buffer.append(_event(1))
    bystander = os.open(tmp_path, os.O_RDONLY)  # takes the number a closed descriptor would have had
    buffer.append(_event(2))
    buffer.append(_event(3))
    os.fstat(bystander)  # still open
    os.close(bystander)
    assert _pop_all(buffer) == [_event(i) for i in ([0, 2, 3] if failing else [2, 3])]
    buffer.close()
    assert not (tmp_path / "buf").exists()


def test_a_pop_that_fails_leaves_the_event_and_the_position_as_they_were(tmp_path, monkeypatch) -> None:
    """Out of file descriptors for a moment: the event is popped again next time, and the position moves on."""
    buffer = DiskBuffer(tmp_path / "buf", segment_bytes=300)
    for i in range(4):
        buffer.append(_event(i))
    dup = os.dup

    def fail_once(fd):
        monkeypatch.setattr("archivist.buffer.os.dup", dup)
        raise OSError(errno.EMFILE, "Too many open files")

    monkeypatch.setattr("archivist.buffer.os.dup", fail_once)
    with pytest.raises(OSError, match="Too many open files"):
        buffer.pop()
    assert _pop_all(buffer) == [_event(i) for i in range(4)]
    assert list((tmp_path / "buf").glob("*.seg")) == [], "every event handled: nothing left on disk"
    buffer.close()
    assert not (tmp_path / "buf").exists()


def test_an_event_its_handler_could_not_keep_stays_on_disk(tmp_path) -> None:
    """A writer whose event could not be written nor spooled (a full disk) leaves it in the buffer's files, for
    the next start to recover, instead of dropping it."""
    buffer = DiskBuffer(tmp_path / "cam-1-a")
    gate = threading.Event()
    handled: list[int] = []

    def handle(item: Received) -> bool:
        gate.wait()
        handled.append(item.raw[0])
        return item.raw[0] != 3  # event 3: neither written nor spooled

    pipeline: Pipeline[Received] = Pipeline(handle, workers=1, max_events=1, max_bytes=10**6, overflow=buffer)
    for i in range(6):
        pipeline.submit(_event(i), 100)
    gate.set()
    assert pipeline.drain(10) and handled == list(range(6))
    pipeline.close()
    pipeline.join()
    buffer.close()
    assert (tmp_path / "cam-1-a").is_dir()
    assert _recovered(tmp_path)[0] == _event(3)


def _recovered(tmp_path, prefix: str = "cam", refuse_at: int | None = None) -> list[Received]:
    """What recover_buffers hands over; ``refuse_at``: the spool cannot take that event."""
    kept: list[Received] = []

    def keep(received: Received) -> bool:
        if refuse_at is not None and received.received_at == 1000.0 + refuse_at:
            return False
        kept.append(received)
        return True

    recover_buffers(tmp_path, prefix, keep)
    return kept


def test_a_killed_process_leaves_events_that_the_next_one_recovers(tmp_path, caplog) -> None:
    dead = DiskBuffer(tmp_path / "cam-123-abc", segment_bytes=300)
    for i in range(8):
        dead.append(_event(i))
    handled = dead.pop()
    dead.done(handled)  # written
    dead.pop(), dead.pop()  # being written when the process was killed
    live = DiskBuffer(tmp_path / "cam-456-def")
    live.append(_event(99))
    # a crash cut the last record short
    last = sorted((tmp_path / "cam-123-abc").glob("*.seg"))[-1]
    with open(last, "ab") as segment:
        segment.write(b"\x10\x00")

    assert _recovered(tmp_path) == [], "a buffer whose process lives is not touched"
    dead._lock_file.close()  # what the kernel does when the process dies

    # events handed out but not yet handled come back, for a replay that recognises one it stored; the handled
    # one does not
    assert _recovered(tmp_path) == [_event(i) for i in range(1, 8)]
    assert "its last 2 bytes are an event cut short by a crash" in caplog.text
    assert [p.name for p in tmp_path.iterdir()] == ["cam-456-def"]
    assert live.pop() == _event(99)
    live.close()


def test_a_recovery_the_spool_cannot_take_stops_and_the_next_one_goes_on(tmp_path) -> None:
    dead = DiskBuffer(tmp_path / "cam-1-a", segment_bytes=300)
    for i in range(6):
        dead.append(_event(i))
    dead._lock_file.close()
    assert _recovered(tmp_path, refuse_at=3) == [_event(i) for i in range(3)]
    assert (tmp_path / "cam-1-a").is_dir(), "what the spool could not take stays on disk"
    assert _recovered(tmp_path) == [_event(i) for i in range(3, 6)]
    assert not (tmp_path / "cam-1-a").exists()


def _failing_writev(monkeypatch, fails) -> None:
    """os.writev for the disk buffer that, for the records ``fails(payload)`` picks, writes half a record and then
    finds the disk full."""
    writev = os.writev

    def full_disk(fd, views):
        if fails(bytes(views[-1])):
            os.write(fd, b"".join(bytes(view) for view in views)[:30])
            raise OSError(errno.ENOSPC, "No space left on device")
        return writev(fd, views)

    monkeypatch.setattr("archivist.buffer.os.writev", full_disk)


def test_a_record_the_full_disk_cut_short_leaves_no_trace(tmp_path, monkeypatch) -> None:
    buffer = DiskBuffer(tmp_path / "buf")
    _failing_writev(monkeypatch, lambda payload: payload[0] == 1)
    for i in range(3):
        if i == 1:
            with pytest.raises(OSError, match="No space left"):
                buffer.append(_event(i))
        else:
            buffer.append(_event(i))
    assert len(buffer) == 2 and _pop_all(buffer) == [_event(0), _event(2)]
    buffer.close()


def test_a_full_pipeline_overflows_to_the_buffer_without_waiting_and_in_order(tmp_path) -> None:
    gate = threading.Event()
    handled: list[int] = []
    buffer = DiskBuffer(tmp_path / "buf")
    pipeline: Pipeline[Received] = Pipeline(
        lambda item: (gate.wait(), handled.append(item.raw[0])),
        workers=1,
        max_events=2,
        max_bytes=10**6,
        overflow=buffer,
    )
    pipeline.submit(_event(0), 100)
    support.wait_until(lambda: pipeline.depth == (0, 0), what="the writer to take the first event")
    for i in range(1, 10):
        pipeline.submit(_event(i), 100)  # never waits, although the writer is stuck
    assert pipeline.depth == (2, 200) and pipeline.overflowed == 7 and len(buffer) == 7
    gate.set()
    assert pipeline.drain(10) and handled == list(range(10))
    pipeline.close()
    buffer.close()


class GatedFileSystem(MemoryFileSystem):
    """Memory storage whose writes wait for ``gate``: a store that has stalled."""

    protocol = "gated"
    gate = threading.Event()

    def _open(self, path, mode="rb", **kwargs):
        if "w" in mode:
            GatedFileSystem.gate.wait(30)
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("gated", GatedFileSystem, clobber=True)


def _stalled_archiver_fed(make_archiver, raw_publisher, folder: str, count: int) -> JsonArchiver:
    """A JsonArchiver whose store has stalled (queue of 2, one writer), once it received ``count`` events ``{"n": n}``:
    the rest wait in the disk buffer."""
    GatedFileSystem.gate.clear()
    archiver = make_archiver(
        JsonArchiver,
        object_selector="s",
        event_name="json_data",
        save_template=f"gated://{folder}/{{{{ n }}}}.json",
        queue_max_events=2,
        workers=1,
    )
    publisher = raw_publisher.declare_publisher("@object/heros/s/json_data")
    support.wait_until(lambda: publisher.matching_status.matching, what="the archiver to match")
    for n in range(count):
        publisher.put(serdes.serialize({"n": n}))
    support.wait_until(lambda: archiver.stats()["received"] == count, what=f"{count} events received")
    return archiver


def test_stop_spools_what_still_waits_on_disk(make_archiver, raw_publisher, spool_dir) -> None:
    archiver = _stalled_archiver_fed(make_archiver, raw_publisher, "stop-test", 20)
    assert archiver.stats()["buffered"] > 0 and (spool_dir / ".buffer").is_dir()

    threading.Timer(0.5, GatedFileSystem.gate.set).start()  # the write in flight finishes after the deadline
    assert not archiver.stop(timeout=0.1)
    assert archiver.is_queue_drained(), "spooled events still count as queued"
    stats = archiver.stats()
    spooled = sorted(decode_payload(entry.payload)["n"] for _, entry in Spool(spool_dir).entries())
    assert stats["written"] + len(spooled) == 20 and stats["spooled"] == len(spooled) >= 17
    assert {entry.error_type for _, entry in Spool(spool_dir).entries()} == {"ShutdownError"}
    assert not (spool_dir / ".buffer").exists()


def test_what_stop_cannot_spool_stays_in_the_disk_buffer_for_the_next_start(
    make_archiver, raw_publisher, spool_dir, monkeypatch
) -> None:
    archiver = _stalled_archiver_fed(make_archiver, raw_publisher, "stop-full-spool", 12)
    buffered = archiver.stats()["buffered"]
    assert buffered > 0
    put = Spool.put
    monkeypatch.setattr(Spool, "put", lambda *_: (_ for _ in ()).throw(OSError(errno.ENOSPC, "No space left")))
    threading.Timer(0.3, GatedFileSystem.gate.set).start()
    assert not archiver.stop(timeout=0.1)
    assert archiver.stats()["spool_failed"] >= 1 and (spool_dir / ".buffer").is_dir(), "nothing deleted"

    monkeypatch.setattr(Spool, "put", put)  # space again: the next start of the same archiver takes them
    make_archiver(
        JsonArchiver,
        object_selector="s",
        event_name="json_data",
        save_template="gated://stop-full-spool/{{ n }}.json",
        name=archiver.name,
    )
    spooled = sorted(decode_payload(entry.payload)["n"] for _, entry in Spool(spool_dir).entries())
    assert spooled == list(range(12 - buffered, 12)), "every event that waited on disk is kept"
    assert not (spool_dir / ".buffer").exists()


def test_stop_spools_the_queued_events_before_it_waits_for_the_write_in_flight(
    make_archiver, raw_publisher, spool_dir
) -> None:
    """A write in flight may take its retries; meanwhile the queued events must already be safe in the spool, in
    case the process is killed while stop() waits."""
    archiver = _stalled_archiver_fed(make_archiver, raw_publisher, "stop-order", 1)
    support.wait_until(lambda: archiver.stats()["queued"] == 0, what="the writer to take the first event")
    publisher = raw_publisher.declare_publisher("@object/heros/s/json_data")
    for n in (1, 2):
        publisher.put(serdes.serialize({"n": n}))
    support.wait_until(lambda: archiver.stats()["queued"] == 2, what="two events queued in memory")
    stopper = threading.Thread(target=archiver.stop, kwargs={"timeout": 0.1})
    stopper.start()
    try:
        support.wait_until(lambda: len(Spool(spool_dir)) == 2, what="the queued events spooled")
        assert stopper.is_alive()  # still waiting for the write in flight
    finally:
        GatedFileSystem.gate.set()
        stopper.join(10)
    assert sorted(decode_payload(entry.payload)["n"] for _, entry in Spool(spool_dir).entries()) == [1, 2]
    assert archiver.stats()["written"] == 1


def test_an_event_the_full_disk_cannot_buffer_is_spooled_and_the_rest_archived(
    make_archiver, raw_publisher, spool_dir, monkeypatch
) -> None:
    _failing_writev(monkeypatch, lambda payload: decode_payload(payload) == {"n": 4})
    archiver = _stalled_archiver_fed(make_archiver, raw_publisher, "full-disk", 8)
    GatedFileSystem.gate.set()
    support.wait_until(lambda: archiver.is_queue_drained(), what="the queue and the disk buffer to drain")
    stats = archiver.stats()
    assert stats["written"] == 7 and stats["spooled"] == 1 and stats["errors"] == {"QueueFullError": 1}
    fs = fsspec.filesystem("gated")
    assert {n: json.loads(fs.cat(f"gated://full-disk/{n}.json")) for n in range(8) if n != 4} == {
        n: {"n": n} for n in range(8) if n != 4
    }
    [(_, entry)] = Spool(spool_dir).entries()
    assert decode_payload(entry.payload) == {"n": 4} and entry.error_type == "QueueFullError"
    assert "No space left" in entry.error

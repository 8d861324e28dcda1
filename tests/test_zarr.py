"""ZarrArchiver: a real heros emitter streams frames into zarr v3 stores (local disk, moto S3); append safety."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
import zarr.storage
from zarr.core.sync import sync

from archivist import ConfigError, Spool, UnsafePathError, ZarrArchiver, zarr_store
from archivist.config import ObjectConfig
from archivist.replay import replay
from archivist.zarr_archiver import ArrivalOrder, array_path
from archivist.zarr_store import ZarrStore, _append_frames, _Frame, _Target
from tests import support
from tests.peers.specs import array_spec, burst_frame, make_array

EVENT = "acquisition_data"
SHAPE = [8, 12]


@pytest.fixture(params=["local", "s3"])
def destination(request, tmp_path: Path) -> tuple[str, dict[str, Any] | None]:
    """A store template ending in ``{{ run }}.zarr``, and the storage_options to read it back."""
    if request.param == "local":
        return str(tmp_path / "out") + "/{{ run }}.zarr", None
    bucket, options, _ = request.getfixturevalue("s3_bucket")
    return f"s3://{bucket}/data/{{{{ run }}}}.zarr", options


def _open(store: str, path: str, options: dict[str, Any] | None) -> zarr.Array:
    node = zarr.open(store, path=path, mode="r", storage_options=options) if options else zarr.open(store, path=path)
    assert isinstance(node, zarr.Array)
    return node


def _frame_metadata(store: str, path: str, options: dict[str, Any] | None) -> list[dict[str, Any]]:
    frames, records = _open(store, path, options), _open(store, path + "_metadata", options)
    return [json.loads(text) for text in records[: frames.shape[0]].tolist()]


def test_append_stream_is_one_array_in_order(make_archiver, heros_emitter, zenoh_port, destination) -> None:
    template, options = destination
    frames = 40
    archiver = make_archiver(
        ZarrArchiver,
        object_selector="cam",
        event_name=EVENT,
        store_template=template,
        array_path_template="{{ source_name }}/frames",
        append_dim=0,
        frames_per_chunk=8,
        storage_options=options,
        queue_max_events=2,  # most of the burst waits in the disk buffer, and must keep its order there
    )
    assert archiver._pipeline.workers == 16  # a batch holds one frame per writer thread: enough to fill a chunk
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers(EVENT)
    emitter.burst(EVENT, frames, SHAPE, "uint16", metadata={"run": "r7", "exposure": 0.5})
    support.wait_until(lambda: archiver.stats()["written"] == frames, what=f"{frames} frames appended")

    store = template.replace("{{ run }}", "r7")
    data = _open(store, "cam/frames", options)
    assert data.shape == (frames, *SHAPE) and data.dtype == np.uint16 and data.chunks == (8, *SHAPE)
    for index, frame in enumerate(data[:]):
        np.testing.assert_array_equal(frame, burst_frame(index, SHAPE, "uint16"))
    assert _frame_metadata(store, "cam/frames", options) == [
        {"run": "r7", "exposure": 0.5, "frame": index} for index in range(frames)
    ]
    assert data.attrs["archivist"] == {"append_dim": 0, "frame_metadata": "frames_metadata"}
    assert archiver.stats()["failed"] == 0 and archiver.stats()["overflowed"] > 0


def test_default_mode_one_array_per_event(make_archiver, heros_emitter, zenoh_port, destination) -> None:
    template, options = destination
    archiver = make_archiver(
        ZarrArchiver,
        object_selector="spectrometer",
        event_name=EVENT,
        default_metadata={"run": "r1"},
        store_template=template,
        array_path_template="{{ source_name }}/shot{{ shot }}",
        storage_options=options,
    )
    emitter = heros_emitter("spectrometer", zenoh_port)
    emitter.wait_subscribers(EVENT)
    specs = [
        array_spec([3, 5], "float32", fill="random", seed=1),
        array_spec([7], "int64", fill="random", seed=2),
        array_spec([3, 5], "float32", fill="random", seed=3),  # the first one's kind of array, other attributes
    ]
    metadata = [
        {"shot": 1, "gain": {"__int64__": 12}, "bad": {"__float__": "nan"}},
        {"shot": 2, "label": "µ ✓"},
        {"shot": 3},
    ]
    emitter.emit(EVENT, [{"form": "tuple", "data": s, "metadata": m} for s, m in zip(specs, metadata, strict=True)])
    support.wait_until(lambda: archiver.stats()["written"] == 3, what="3 arrays written")

    store = template.replace("{{ run }}", "r1")
    first, second, third = (_open(store, f"spectrometer/shot{n}", options) for n in (1, 2, 3))
    assert first.shape == third.shape == (3, 5) and first.dtype == third.dtype == np.float32
    assert second.shape == (7,) and second.dtype == np.int64
    for array, spec in zip((first, second, third), specs, strict=True):
        np.testing.assert_array_equal(array[...], make_array(spec))
    assert first.attrs.asdict() == {"run": "r1", "shot": 1, "gain": 12, "bad": None}
    assert second.attrs.asdict() == {"run": "r1", "shot": 2, "label": "µ ✓"}
    assert third.attrs.asdict() == {"run": "r1", "shot": 3}
    # the arrays are members of the groups above them, as zarr users find them
    group = zarr.open_group(store, path="spectrometer", mode="r", **({"storage_options": options} if options else {}))
    assert sorted(group.array_keys()) == ["shot1", "shot2", "shot3"]


def test_mismatched_frame_is_spooled_and_the_array_is_intact(
    make_archiver, raw_publisher, spool_dir, tmp_path: Path
) -> None:
    from heros import serdes

    archiver = make_archiver(
        ZarrArchiver,
        object_selector="cam",
        event_name=EVENT,
        store_template=str(tmp_path / "run.zarr"),
        array_path_template="frames",
        append_dim=0,
        workers=1,
    )
    publisher = raw_publisher.declare_publisher(f"@object/heros/cam/{EVENT}")
    support.wait_until(lambda: publisher.matching_status.matching, what="the archiver to match")
    good = [np.full((4, 6), n, dtype="uint16") for n in range(3)]
    for n, frame in enumerate(good[:2]):
        publisher.put(serdes.serialize((frame, {"n": n})))
    publisher.put(serdes.serialize((np.zeros((4, 5), dtype="uint16"), {"n": "wrong shape"})))
    publisher.put(serdes.serialize((np.zeros((4, 6), dtype="float32"), {"n": "wrong dtype"})))
    publisher.put(serdes.serialize((good[2], {"n": 2})))
    support.wait_until(lambda: archiver.stats()["written"] == 3, what="the good frames appended")
    support.wait_until(lambda: archiver.stats()["spooled"] == 2, what="the bad frames spooled")

    data = zarr.open_array(str(tmp_path / "run.zarr"), path="frames", mode="r")
    assert data.shape == (3, 4, 6) and data.dtype == np.uint16
    np.testing.assert_array_equal(data[:], np.stack(good))
    assert _frame_metadata(str(tmp_path / "run.zarr"), "frames", None) == [{"n": 0}, {"n": 1}, {"n": 2}]
    entries = [entry for _, entry in Spool(spool_dir).entries()]
    assert {entry.error_type for entry in entries} == {"PayloadError"}
    assert any("frame of shape (4, 5) and dtype uint16 does not fit" in entry.error for entry in entries)
    assert any("dtype float32 does not fit" in entry.error and "uint16" in entry.error for entry in entries)
    assert archiver.stats()["retries"] == 0  # a mismatch is permanent: not retried


def test_two_sources_append_to_two_arrays_at_once(make_archiver, heros_emitter, zenoh_port, tmp_path: Path) -> None:
    frames = 30
    archiver = make_archiver(
        ZarrArchiver,
        object_selector="*",
        event_name=EVENT,
        store_template=str(tmp_path / "{{ run }}.zarr"),
        array_path_template="{{ source_name }}",
        append_dim=0,
    )
    emitters = [heros_emitter(name, zenoh_port) for name in ("cam-a", "cam-b")]
    for emitter in emitters:
        emitter.wait_subscribers(EVENT)
    shapes = {"cam-a": [6, 4], "cam-b": [3, 3]}
    _run_all(
        [
            threading.Thread(target=e.burst, args=(EVENT, frames, shapes[e.name], "int32", {"run": "r"}))
            for e in emitters
        ]
    )
    support.wait_until(lambda: archiver.stats()["written"] == 2 * frames, what="both streams appended")

    for name, shape in shapes.items():
        data = zarr.open_array(str(tmp_path / "r.zarr"), path=name, mode="r")
        assert data.shape == (frames, *shape) and data.dtype == np.int32
        np.testing.assert_array_equal(data[:], np.stack([burst_frame(i, shape, "int32") for i in range(frames)]))
        records = _frame_metadata(str(tmp_path / "r.zarr"), name, None)
        assert records == [{"run": "r", "frame": i} for i in range(frames)]


def test_failed_appends_are_replayed_with_the_recorded_settings(
    make_archiver, heros_emitter, zenoh_port, spool_dir, tmp_path: Path, blocker: Path
) -> None:
    archiver = make_archiver(
        ZarrArchiver,
        object_selector="cam",
        event_name=EVENT,
        store_template=str(blocker / "{{ run }}.zarr"),
        array_path_template="frames",
        append_dim=0,
        frames_per_chunk=4,
        max_retries=1,
        name="cam-zarr",
    )
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers(EVENT)
    emitter.burst(EVENT, 6, SHAPE, "uint8", metadata={"run": "r2"})
    support.wait_until(lambda: archiver.stats()["spooled"] == 6, what="6 frames spooled")
    ((_, entry), *_) = Spool(spool_dir).entries()
    assert entry.error_type == "WriteError" and entry.archiver_class == "archivist.zarr_archiver.ZarrArchiver"
    assert entry.settings["store_template"] == str(blocker / "{{ run }}.zarr") and "save_template" not in entry.settings
    assert entry.settings["append_dim"] == 0 and entry.settings["frames_per_chunk"] == 4

    blocker.unlink()
    report = replay(spool_dir)
    assert report.delivered == 6 and report.failures == [] and len(Spool(spool_dir)) == 0
    data = zarr.open_array(str(blocker / "r2.zarr"), path="frames", mode="r")
    assert data.shape == (6, *SHAPE) and data.chunks == (4, *SHAPE)
    records = _frame_metadata(str(blocker / "r2.zarr"), "frames", None)
    assert sorted(record["frame"] for record in records) == list(range(6))
    for index, record in enumerate(records):  # replayed in spool order: each frame still has its own metadata
        np.testing.assert_array_equal(data[index], burst_frame(record["frame"], SHAPE, "uint8"))

    assert replay(spool_dir).entries == 0  # nothing left: nothing appended twice
    assert zarr.open_array(str(blocker / "r2.zarr"), path="frames", mode="r").shape[0] == 6


def test_herostools_classname_and_config_errors(tmp_path: Path) -> None:
    common = {"object_selector": "cam", "event_name": EVENT, "listen": False, "spool_dir": str(tmp_path)}
    assert ObjectConfig("z", "herostools.actor.ZarrArchiver", {}, "t").resolve_class() is ZarrArchiver
    for bad, message in (
        ({"append_dim": 1}, "append_dim must be None or 0"),
        ({"frames_per_chunk": 0}, "frames_per_chunk"),
        ({"compressors": {"name": "no-such-codec"}}, "compressors"),
        ({"array_path_template": "{{ x"}, "array_path_template: invalid Jinja template"),
        ({"store_template": ""}, "store_template must be"),
    ):
        arguments = {"store_template": "a.zarr", "array_path_template": "x"} | common | bad
        with pytest.raises(ConfigError, match=message):
            ZarrArchiver(**arguments)


@pytest.mark.parametrize("path", ["../x", "a/../../x", "/abs/x", "s3://bucket/x", "a//b", "a/./b", "__meta"])
def test_unsafe_array_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafePathError):
        array_path(path)


class _FailingChunks(zarr.storage.MemoryStore):
    """A memory store whose chunk writes fail while ``failing`` is set, like a storage outage mid-append."""

    failing = False

    async def set(self, key: str, value: Any) -> None:
        if self.failing and "/c/" in key:
            raise ConnectionError("storage went away")
        await super().set(key, value)


def test_a_failed_append_never_claims_the_frame() -> None:
    store = _FailingChunks()
    frames = zarr.create_array(store, name="frames", shape=(0, 2), dtype="uint8", chunks=(2, 2))
    records = zarr.create_array(store, name="frames_metadata", shape=(0,), dtype=str, chunks=(2,))
    sync(_append_frames(frames, records, 0, [np.ones(2, dtype="uint8")], ['{"n": 0}'], (None, None)))
    second = [np.full(2, 2, dtype="uint8")], ['{"n": 1}'], (None, None)
    store.failing = True
    with pytest.raises(ConnectionError):
        sync(_append_frames(frames, records, 1, *second))
    assert zarr.open_array(store, path="frames", mode="r").shape == (1, 2)  # zarr's Array.append would claim 2
    store.failing = False
    sync(_append_frames(frames, records, 1, *second))  # the tails are unknown: frame 0 is read back, kept
    np.testing.assert_array_equal(zarr.open_array(store, path="frames", mode="r")[:], [[1, 1], [2, 2]])
    assert zarr.open_array(store, path="frames_metadata", mode="r")[:2].tolist() == ['{"n": 0}', '{"n": 1}']


def _run_all(threads: list[threading.Thread]) -> None:
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)
    assert not any(thread.is_alive() for thread in threads), "a writer is stuck waiting for its turn"


def test_arrival_order_lets_events_pass_in_the_order_they_arrived() -> None:
    order = ArrivalOrder()
    tokens = list(range(40))
    for token in tokens:
        order.arrived(token)
    order.leave(7)  # failed before it got there: nobody waits for it
    passed: list[int] = []

    def write(token: int) -> None:
        with order.first(token):
            passed.append(token)

    _run_all([threading.Thread(target=write, args=(token,)) for token in reversed(tokens) if token != 7])
    assert passed == [token for token in tokens if token != 7]
    with order.first(object()):  # a replayed event never arrived: it passes at once
        pass


def test_a_batch_appends_every_fitting_frame_in_order(tmp_path: Path) -> None:
    """What a writer does when several frames wait for the array: one commit; a misfit fails alone."""
    store = ZarrStore()
    target = _Target()
    batch = [_Frame(np.full((2, 3), n, dtype="int16"), json.dumps({"n": n}), False) for n in range(5)]
    batch.insert(2, _Frame(np.zeros((3, 2), dtype="int16"), "{}", False))
    target.waiting.extend(batch)
    store._append_waiting(str(tmp_path / "b.zarr"), "frames", target)
    assert all(waiting.done for waiting in batch) and not target.waiting
    assert "does not fit" in str(batch[2].error) and batch[2].result is None
    assert [w.result.url.rsplit("[", 1)[1] for w in batch if w.result] == ["0]", "1]", "2]", "3]", "4]"]
    data = zarr.open_array(str(tmp_path / "b.zarr"), path="frames", mode="r")
    np.testing.assert_array_equal(data[:, 0, 0], [0, 1, 2, 3, 4])
    assert _frame_metadata(str(tmp_path / "b.zarr"), "frames", None) == [{"n": n} for n in range(5)]


def test_batches_across_chunk_boundaries_keep_every_frame(tmp_path: Path) -> None:
    """Chunks are written whole, the frames after the last boundary again with the next batch: from memory
    while the writer appends, read back by a new writer that finds a partly filled chunk."""
    url, sizes, n = str(tmp_path / "b.zarr"), [3, 6, 1, 1, 5], 0
    for store in (ZarrStore(frames_per_chunk=4), ZarrStore(frames_per_chunk=4)):  # the second starts unknowing
        target = _Target()
        for size in sizes:
            target.waiting.extend(
                _Frame(np.full((2, 3), n + k, "int16"), json.dumps({"n": n + k}), False) for k in range(size)
            )
            store._append_waiting(url, "frames", target)
            n += size
        assert target.tails[0] is not None and len(target.tails[0]) == n % 4
    data = zarr.open_array(url, path="frames", mode="r")
    assert data.shape == (n, 2, 3) and data.chunks == (4, 2, 3)
    assert zarr.open_array(url, path="frames_metadata", mode="r").chunks == (1024,)  # whatever frames_per_chunk
    np.testing.assert_array_equal(data[:, 1, 2], range(n))
    assert _frame_metadata(url, "frames", None) == [{"n": k} for k in range(n)]


@pytest.mark.parametrize(
    "layout",
    [{"chunks": (3, 2, 3)}, {"chunks": (1, 3, 3), "shards": (2, 6, 6)}],
    ids=["chunks-across-the-frame", "sharded"],
)
def test_arrays_made_elsewhere_are_appended_to_whatever_their_chunking(tmp_path: Path, layout: dict) -> None:
    """An array another program made may split each frame into chunks, or be sharded: a batch is cut at shard
    boundaries, not at inner chunks (two chunks of one shard written at once lost frames), and every frame
    reads back."""
    url = str(tmp_path / "elsewhere.zarr")
    zarr.create_array(url, name="frames", shape=(0, 5, 4), dtype="uint16", fill_value=7, **layout)
    store, target = ZarrStore(frames_per_chunk=4), _Target()
    frames = [np.arange(20, dtype="uint16").reshape(5, 4) * (n + 1) for n in range(7)]
    for size in (1, 4, 2):
        target.waiting.extend(_Frame(frames.pop(0), json.dumps({"n": size}), False) for _ in range(size))
        store._append_waiting(url, "frames", target)
    data = zarr.open_array(url, path="frames", mode="r")
    expected = [np.arange(20, dtype="uint16").reshape(5, 4) * (n + 1) for n in range(7)]
    assert data.shape == (7, 5, 4)
    np.testing.assert_array_equal(data[:], np.stack(expected))


def test_frames_on_their_way_join_the_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under a backlog the first frame does not leave alone: the writer waits for the frames being prepared."""
    monkeypatch.setattr(zarr_store, "BATCH_LINGER", 60.0)  # only their arrival may end the wait
    store, order, batches = ZarrStore(frames_per_chunk=8), ArrivalOrder(), []
    append_once = store._append_once
    monkeypatch.setattr(store, "_append_once", lambda *args: batches.append(len(args[3])) or append_once(*args))
    for token in range(8):
        order.arrived(token)
    results: dict[int, str] = {}

    def append(n: int) -> None:
        frame = np.full((2, 3), n, dtype="int16")
        written = store.append(
            str(tmp_path / "b.zarr"),
            "frames",
            frame,
            json.dumps({"n": n}),
            place=order.first(n),
            coming=lambda k: k < 8,
        )
        results[n] = written.url

    _run_all([threading.Thread(target=append, args=(n,)) for n in range(8)])
    assert batches == [8]
    assert [results[n].rsplit("[", 1)[1] for n in range(8)] == [f"{n}]" for n in range(8)]
    data = zarr.open_array(str(tmp_path / "b.zarr"), path="frames", mode="r")
    np.testing.assert_array_equal(data[:, 0, 0], range(8))


# zarr warns that structured dtypes have no zarr v3 specification yet; storing them is what is tested here
@pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")
def test_default_mode_keeps_each_kind_of_array_apart(tmp_path: Path) -> None:
    """The metadata of a kind of array is made once and reused: each array still gets its own dtype, shape and
    attributes, whatever the dtype (structured dtypes once failed here)."""
    store, url = ZarrStore(), str(tmp_path / "s.zarr")
    arrays = {
        "u2": np.arange(6, dtype="<u2").reshape(2, 3),
        "u2-again": np.arange(6, 12, dtype="<u2").reshape(2, 3),
        "big-endian": np.arange(4, dtype=">u2"),
        "fields": np.array([(1, 2.5), (3, 4.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
        "fields-again": np.array([(5, 6.5)], dtype=[("a", "<i4"), ("b", "<f8")]),
    }
    for name, array in arrays.items():
        store.write(url, f"shots/{name}", array, {"name": name})
    group = zarr.open_group(url, path="shots", mode="r")
    assert sorted(group.array_keys()) == sorted(arrays)
    for name, array in arrays.items():
        stored = group[name]
        assert stored.shape == array.shape and stored.attrs.asdict() == {"name": name}
        assert stored[...].tolist() == array.tolist()


def test_default_mode_on_exists_and_resume(tmp_path: Path) -> None:
    from heros import serdes

    from archivist import Received

    def archiver(on_exists: str) -> ZarrArchiver:
        return ZarrArchiver(
            str(tmp_path / "s.zarr"),
            "shot{{ shot }}",
            object_selector="cam",
            event_name=EVENT,
            on_exists=on_exists,
            listen=False,
            spool_dir=str(tmp_path / "spool"),
        )

    def event(value: int) -> Received:
        return Received(f"@object/heros/cam/{EVENT}", serdes.serialize((np.full(3, value), {"shot": 1})))

    suffix = archiver("suffix")
    suffix._write_event(event(1))
    suffix._write_event(event(2))
    assert suffix.stats()["suffixed"] == 1
    suffix._write_event(event(2), resume=True)  # a replay of an event stored after all: not stored again
    group = zarr.open_group(str(tmp_path / "s.zarr"), mode="r")
    assert sorted(group.array_keys()) == ["shot1", "shot1.1"]
    assert group["shot1"][0] == 1 and group["shot1.1"][0] == 2

    with pytest.raises(Exception, match="exists and on_exists='error'"):
        archiver("error")._write_event(event(3))
    archiver("overwrite")._write_event(event(4))
    np.testing.assert_array_equal(zarr.open_array(str(tmp_path / "s.zarr"), path="shot1", mode="r")[:], [4, 4, 4])


def test_big_endian_frames_fit_an_array_opened_again(tmp_path: Path) -> None:
    """heros keeps a frame's byte order (``>u2``) and zarr reads an array back in native order: frames still
    fit an array opened again (a new run, or the retry after any error), and a resumed write of an array
    finds it stored rather than writing a second copy."""
    url = str(tmp_path / "b.zarr")
    frames = [(np.arange(6).reshape(2, 3) * 1000 + n).astype(">u2") for n in range(3)]
    for n, frame in enumerate(frames):  # each store opens the array again
        ZarrStore(frames_per_chunk=2).append(url, "frames", frame, json.dumps({"n": n}))
    data = zarr.open_array(url, path="frames", mode="r")
    assert data.shape == (3, 2, 3) and data.dtype == np.uint16
    np.testing.assert_array_equal(data[:], np.stack(frames))
    assert _frame_metadata(url, "frames", None) == [{"n": n} for n in range(3)]

    first = ZarrStore().write(url, "shot1", frames[2], {"shot": 1})
    again = ZarrStore().write(url, "shot1", frames[2], {"shot": 1}, resume=True)
    assert again.url == first.url and not again.suffixed
    assert sorted(zarr.open_group(url, mode="r").array_keys()) == ["frames", "frames_metadata", "shot1"]
    np.testing.assert_array_equal(zarr.open_array(url, path="shot1", mode="r")[...], frames[2])


@pytest.mark.parametrize("metadata", [False, True], ids=["no-metadata-array", "empty-metadata-array"])
def test_frames_appended_elsewhere_get_empty_records(tmp_path: Path, metadata: bool) -> None:
    """An array made elsewhere holds frames but no records: they read as empty (no metadata), and the records
    of appended frames go at their own index, neither over the earlier ones nor copied across them. An empty
    metadata array beside it (what such an append left before) is the same case."""
    url = str(tmp_path / "x.zarr")
    made = zarr.create_array(url, name="frames", shape=(3, 2, 2), dtype="uint8", chunks=(4, 2, 2))
    made[:] = np.arange(3, dtype="uint8")[:, None, None]
    if metadata:
        zarr.create_array(url, name="frames_metadata", shape=(0,), dtype=str, chunks=(1024,))
    store, target = ZarrStore(frames_per_chunk=4), _Target()
    assert store.append(url, "frames", np.full((2, 2), 3, "uint8"), '{"n": 3}').url.endswith("[3]")
    batch = [_Frame(np.full((2, 2), n, "uint8"), json.dumps({"n": n}), False) for n in (4, 5)]
    target.waiting.extend(batch)
    store._append_waiting(url, "frames", target)
    assert [waiting.error for waiting in batch] == [None, None]
    data = zarr.open_array(url, path="frames", mode="r")
    assert data.shape == (6, 2, 2)
    np.testing.assert_array_equal(data[:, 0, 0], range(6))
    records = zarr.open_array(url, path="frames_metadata", mode="r")[:6].tolist()
    assert records == ["", "", "", '{"n": 3}', '{"n": 4}', '{"n": 5}']


def test_a_replayed_frame_whose_append_was_committed_is_not_appended_again(
    tmp_path: Path, spool_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An append is committed but its reply is lost and the storage stays down for the retries: the frame is
    spooled with the index it may be stored at (``store :: frames[1]``). Frames appended once the storage is
    back make it not the last; the replay looks at that index, finds it there and appends nothing."""
    from heros import serdes

    from archivist import Received

    url, outage = str(tmp_path / "r.zarr"), {"mode": ""}
    local_set, local_get = zarr.storage.LocalStore.set, zarr.storage.LocalStore.get

    async def set_and_lose_reply(self: zarr.storage.LocalStore, key: str, value: Any) -> None:
        await local_set(self, key, value)
        if outage["mode"] == "lose-reply" and key == "frames/zarr.json":  # the commit is stored, then down
            outage["mode"] = "down"
            raise ConnectionError("connection reset")

    async def get_unless_down(self: zarr.storage.LocalStore, key: str, *args: Any, **kwargs: Any) -> Any:
        if outage["mode"] == "down":
            raise ConnectionError("network unreachable")
        return await local_get(self, key, *args, **kwargs)

    monkeypatch.setattr(zarr.storage.LocalStore, "set", set_and_lose_reply)
    monkeypatch.setattr(zarr.storage.LocalStore, "get", get_unless_down)
    archiver = ZarrArchiver(
        url,
        "frames",
        append_dim=0,
        object_selector="cam",
        event_name=EVENT,
        listen=False,
        spool_dir=str(spool_dir),
        max_retries=2,
        retry_wait_min=0,
        retry_wait_max=0,
    )

    def event(n: int) -> Received:
        frame = np.full((2, 2), n, dtype="uint8")
        return Received(f"@object/heros/cam/{EVENT}", serdes.serialize((frame, {"n": n})), 1000.0 + n)

    archiver._archive(event(9))
    outage["mode"] = "lose-reply"
    archiver._archive(event(0))
    outage["mode"] = ""
    archiver._archive(event(1))
    archiver._archive(event(2))
    ((_, entry),) = Spool(spool_dir).entries()
    assert entry.error_type == "WriteError" and entry.destination == f"{url} :: frames[1]"

    report = replay(spool_dir)
    assert report.delivered == 1 and report.failures == [] and len(Spool(spool_dir)) == 0
    data = zarr.open_array(url, path="frames", mode="r")
    assert data.shape == (4, 2, 2)
    np.testing.assert_array_equal(data[:, 0, 0], [9, 0, 1, 2])
    assert _frame_metadata(url, "frames", None) == [{"n": n} for n in (9, 0, 1, 2)]


def test_every_event_a_killed_zarr_archiver_left_on_disk_is_spooled_at_the_next_start(
    make_archiver, spool_dir: Path, tmp_path: Path
) -> None:
    """ZarrArchiver adds to how an event fails; the next start moves each buffered event to the spool, not the
    first alone."""
    from heros import serdes

    from archivist import Received
    from archivist.archivers import _folder_name
    from archivist.buffer import DiskBuffer

    name = "zcam"
    dead = DiskBuffer(spool_dir / ".buffer" / f"{_folder_name(name)}-1-dead")
    for n in range(3):
        frame = np.full((2, 2), n, dtype="uint8")
        dead.append(Received(f"@object/heros/cam/{EVENT}", serdes.serialize((frame, {"n": n})), 1000.0 + n))
    dead._lock_file.close()  # what the kernel does when the process dies
    make_archiver(
        ZarrArchiver,
        store_template=str(tmp_path / "z.zarr"),
        array_path_template="frames",
        append_dim=0,
        name=name,
        object_selector="cam",
        event_name=EVENT,
    )
    entries = [entry for _, entry in Spool(spool_dir).entries()]
    assert [serdes.deserialize(entry.payload)[1]["n"] for entry in entries] == [0, 1, 2]
    assert {entry.error_type for entry in entries} == {"InterruptedArchiverError"}
    assert not (spool_dir / ".buffer").exists()

"""End to end: a real heros emitter process publishes over loopback zenoh, archivist writes the files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from archivist import ArrayArchiver, JsonArchiver
from tests import support
from tests.peers.specs import array_spec, make_array

SEED_TEMPLATE = "{{ file_path }}/testimg-{{ '%04d' % ( frame / 2 ) |round(0, 'floor') }}-{{ frame % 2 }}.npy"


FRAMES = [([4, 6], "uint16"), ([256, 512], "uint16"), ([300, 301], ">f8")]


@pytest.mark.parametrize(("shape", "dtype"), FRAMES, ids=["small", "256kib", "700kib-big-endian"])
def test_seed_example_writes_the_seed_file_names(
    shape: list[int], dtype: str, make_archiver, heros_emitter, zenoh_port, tmp_path: Path
) -> None:
    """The seed's template gives the seed's names; frames over 64 KiB, read in place from the received message
    (docs/formats.md), arrive byte for byte like small ones."""
    images = tmp_path / "images"
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="my-camera",
        event_name="acquisition_data",
        default_metadata={"file_path": str(images)},
        save_template=SEED_TEMPLATE,
    )
    emitter = heros_emitter("my-camera", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    specs = [array_spec(shape, dtype, fill="random", seed=frame) for frame in range(4)]
    emitter.emit(
        "acquisition_data",
        [{"form": "tuple", "data": spec, "metadata": {"frame": frame}} for frame, spec in enumerate(specs)],
    )
    support.wait_until(lambda: archiver.stats()["written"] == 4, what="4 frames written")
    assert archiver.drain(10)

    expected_names = ["testimg-0000-0.npy", "testimg-0000-1.npy", "testimg-0001-0.npy", "testimg-0001-1.npy"]
    assert sorted(p.name for p in images.iterdir()) == expected_names
    for frame, name in enumerate(expected_names):
        saved = np.load(images / name)
        assert saved.dtype == np.dtype(dtype) and saved.shape == tuple(shape)
        np.testing.assert_array_equal(saved, make_array(specs[frame]))
    stats = archiver.stats()
    assert stats["received"] == 4 and stats["failed"] == 0 and stats["files_written"] == 4
    assert stats["bytes_written"] == sum((images / n).stat().st_size for n in expected_names)


def test_dict_form_and_source_name_wildcard(make_archiver, heros_emitter, zenoh_port, tmp_path: Path) -> None:
    archiver = make_archiver(
        JsonArchiver,
        object_selector="*",
        event_name="json_data",
        default_metadata={"run": "r1"},
        save_template=str(tmp_path) + "/{{ run }}/{{ source_name }}/{{ shot }}.json",
    )
    emitter = heros_emitter("spectrometer", zenoh_port)
    emitter.wait_subscribers("json_data")
    value = {
        "shot": 7,
        "counts": array_spec([2, 3], "int32"),
        "wavelengths": array_spec([3], "float64"),
        "gain": {"__int64__": 12},
        "bad": {"__float__": "nan"},
        "label": "µ-run ✓",
    }
    emitter.emit("json_data", [{"form": "dict", "value": value}])
    support.wait_until(lambda: archiver.stats()["written"] == 1, what="1 json written")

    path = tmp_path / "r1" / "spectrometer" / "7.json"
    raw = path.read_bytes()
    assert json.loads(raw.decode("utf-8")) == {
        "shot": 7,
        "counts": [[0, 1, 2], [3, 4, 5]],
        "wavelengths": [0.0, 1.0, 2.0],
        "gain": 12,
        "bad": None,
        "label": "µ-run ✓",
    }


def test_json_tuple_form_with_merged_metadata(make_archiver, heros_emitter, zenoh_port, tmp_path: Path) -> None:
    archiver = make_archiver(
        JsonArchiver,
        object_selector="sensor",
        event_name="json_data",
        merge_metadata=True,
        default_metadata={"lab": "B2"},
        save_template=str(tmp_path) + "/{{ lab }}-{{ seq }}.json",
    )
    emitter = heros_emitter("sensor", zenoh_port)
    emitter.wait_subscribers("json_data")
    emitter.emit(
        "json_data",
        [
            {"form": "tuple", "data": {"t": 21.5, "trace": array_spec([3], "float32")}, "metadata": {"seq": 1}},
            {"form": "tuple", "data": [1, 2, 3], "metadata": {"seq": 2}},
        ],
    )
    support.wait_until(lambda: archiver.stats()["written"] == 2, what="2 json written")
    assert json.loads((tmp_path / "B2-1.json").read_text()) == {
        "t": 21.5,
        "trace": [0.0, 1.0, 2.0],
        "metadata": {"lab": "B2", "seq": 1},
    }
    assert json.loads((tmp_path / "B2-2.json").read_text()) == {"data": [1, 2, 3], "metadata": {"lab": "B2", "seq": 2}}


def test_datasource_readings_to_json(make_archiver, heros_emitter, zenoh_port, tmp_path: Path) -> None:
    """A real LocalDatasourceHERO with two observables: the file holds both records, named by the newest time."""
    archiver = make_archiver(
        JsonArchiver,
        object_selector="thermo-$*",
        event_name="observable_data",
        save_template=str(tmp_path) + "/{{ source_name }}/{{ time | int }}.json",
    )
    published = heros_emitter("peer", zenoh_port).datasource("thermo-1", {"temperature": [21.5, "degC"], "heater": 1.0})
    support.wait_until(lambda: archiver.stats()["written"] == 1, what="the readings written")
    [written] = (tmp_path / "thermo-1").iterdir()
    assert written.name == f"{int(max(record['time'] for record in published))}.json"
    assert json.loads(written.read_text()) == published


def test_split_data_array_writes_one_file_per_frame(make_archiver, heros_emitter, zenoh_port, tmp_path: Path) -> None:
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name="acquisition_data",
        split_data_array=True,
        save_template=str(tmp_path) + "/{{ source_name }}/burst{{ burst }}-{{ _split_index }}.npy",
    )
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    spec = array_spec([3, 2, 5], "float32", fill="random", seed=9)
    emitter.emit("acquisition_data", [{"form": "tuple", "data": spec, "metadata": {"burst": 4}}])
    support.wait_until(lambda: archiver.stats()["written"] == 1, what="the split event written")

    sent = make_array(spec)
    for index in range(3):
        saved = np.load(tmp_path / "cam" / f"burst4-{index}.npy")
        assert saved.dtype == np.float32 and saved.shape == (2, 5)
        np.testing.assert_array_equal(saved, sent[index])
    assert archiver.stats()["files_written"] == 3


def test_existing_file_is_never_overwritten(make_archiver, heros_emitter, zenoh_port, tmp_path: Path) -> None:
    existing = tmp_path / "frame.npy"
    existing.write_bytes(b"precious")
    archiver = make_archiver(
        ArrayArchiver, object_selector="cam", event_name="acquisition_data", save_template=str(existing)
    )
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    spec = array_spec([2, 2], "uint8")
    emitter.emit("acquisition_data", [{"form": "tuple", "data": spec, "metadata": {}}] * 2)
    support.wait_until(lambda: archiver.stats()["written"] == 2, what="2 frames written")

    assert existing.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.glob("frame*")) == ["frame.1.npy", "frame.2.npy", "frame.npy"]
    np.testing.assert_array_equal(np.load(tmp_path / "frame.2.npy"), make_array(spec))
    assert archiver.stats()["suffixed"] == 2

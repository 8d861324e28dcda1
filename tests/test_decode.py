"""HEROS CBOR decoding, checked against bytes made by the real heros package."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

import cbor2
import numpy as np
import pytest
from heros import serdes

import archivist.decode
from archivist import DecodeError, PayloadError, decode_payload, split_event

DTYPES = ["uint8", "uint16", "int32", "int64", "float32", "float64", "complex64", "bool"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_arrays_from_heros_round_trip_without_a_copy(dtype: str) -> None:
    array = (np.arange(24) % 7).astype(dtype).reshape(2, 3, 4)
    raw = serdes.serialize((array, {"frame": np.int64(3)}))
    data, metadata = decode_payload(raw)
    assert data.dtype == array.dtype and data.shape == (2, 3, 4)
    np.testing.assert_array_equal(data, array)
    assert not data.flags.owndata  # a view of the received bytes
    assert metadata == {"frame": 3}


def test_non_contiguous_and_zero_size_arrays() -> None:
    array = np.arange(20, dtype="float32").reshape(4, 5)[:, ::2]
    np.testing.assert_array_equal(decode_payload(serdes.serialize(array)), array)
    assert decode_payload(serdes.serialize(np.zeros((0, 3), "uint16"))).shape == (0, 3)


def test_unknown_and_hero_tags_do_not_crash() -> None:
    class Opaque:
        pass

    raw = serdes.serialize({"obj": Opaque(), "exc": ValueError("boom"), "custom": cbor2.CBORTag(77777, [1, 2])})
    value = decode_payload(raw)
    assert value["obj"].tag == 9001 and value["obj"].value[0].endswith("Opaque")
    assert value["exc"].tag == 9005
    assert value["custom"] == cbor2.CBORTag(77777, [1, 2])


@pytest.mark.parametrize(
    "raw",
    [b"", b"\xff", b"\x82\x01", cbor2.dumps(1) + b"\x00", cbor2.dumps(cbor2.CBORTag(4242, [[3], b"uint16", b"\0"]))],
    ids=["empty", "break", "truncated", "trailing", "short-array"],
)
def test_malformed_payloads_raise_decode_error(raw: bytes) -> None:
    with pytest.raises(DecodeError, match=r"malformed CBOR|invalid numpy array"):
        decode_payload(raw)


def frame_event(head: bytes, data: bytes, metadata: object = None, shape: object = None) -> bytes:
    """A (frame, metadata) message with the frame's byte string head written as given."""
    shape = [len(data) // 2] if shape is None else shape
    tagged = cbor2.dumps(shape) + cbor2.dumps(b"uint16") + head + data
    return b"\x82\xd9\x10\x92\x83" + tagged + cbor2.dumps({"frame": 1} if metadata is None else metadata)


LARGE = bytes(range(256)) * 512  # 128 KiB: more than cbor2 5 reads at once
HEAD = b"\x5a" + len(LARGE).to_bytes(4, "big")  # as cbor2 writes it


@pytest.fixture
def by_cbor2_alone(monkeypatch: pytest.MonkeyPatch) -> Callable[[bytes], Any]:
    """decode_payload with cbor2 decoding every message whole."""

    def decode(raw: bytes) -> Any:
        with monkeypatch.context() as patched:
            patched.setattr(archivist.decode, "_READ_AT_ONCE", math.inf)
            return decode_payload(raw)

    return decode


def is_view_of(frame: np.ndarray, raw: bytes) -> bool:
    return np.shares_memory(frame, np.frombuffer(raw, dtype=np.uint8))


@pytest.mark.parametrize(
    "raw",
    [
        serdes.serialize((np.arange(512 * 1024, dtype="uint16").reshape(512, 1024), {"frame": np.int64(7)})),
        serdes.serialize((np.arange(40000, dtype=">f8"), {"nested": {"t": 1.5, "hero": cbor2.CBORTag(9000, ["a"])}})),
        serdes.serialize((np.ones((2, 70000), dtype=bool), {})),
        frame_event(HEAD, LARGE),
        frame_event(b"\x5b" + len(LARGE).to_bytes(8, "big"), LARGE),  # a longer length field, valid CBOR too
        frame_event(HEAD, LARGE, metadata=[1, 2]),  # not a map: split_event's to refuse
    ],
    ids=["1mib-uint16", "big-endian-float", "bool", "4-byte-length", "8-byte-length", "list-metadata"],
)
def test_large_frames_are_views_of_the_message_itself(raw: bytes, by_cbor2_alone: Callable[[bytes], Any]) -> None:
    """cbor2 5 copies a byte string over 64 KiB piece by piece; a frame event's frame is read in place, and is
    what cbor2 decodes."""
    (frame, metadata), (expected, expected_metadata) = decode_payload(raw), by_cbor2_alone(raw)
    assert frame.dtype == expected.dtype and frame.shape == expected.shape
    np.testing.assert_array_equal(frame, expected)
    assert metadata == expected_metadata
    assert is_view_of(frame, raw) and not is_view_of(expected, raw)
    assert not frame.flags.writeable


def test_a_frame_in_chunks_is_decoded_by_cbor2(by_cbor2_alone: Callable[[bytes], Any]) -> None:
    raw = frame_event(b"\x5f" + cbor2.dumps(LARGE[:70000]) + cbor2.dumps(LARGE[70000:]) + b"\xff", b"", shape=[65536])
    frame, metadata = decode_payload(raw)
    np.testing.assert_array_equal(frame, np.frombuffer(LARGE, dtype="uint16"))
    assert metadata == {"frame": 1} and not is_view_of(frame, raw)


@pytest.mark.parametrize(
    "raw",
    [
        frame_event(HEAD, LARGE, shape=[3, 3]),
        frame_event(b"\x5a" + (len(LARGE) + 1).to_bytes(4, "big"), LARGE),  # a length past the end
        frame_event(HEAD, LARGE) + b"\x00",
        frame_event(HEAD, LARGE)[:-1],
        frame_event(b"\x7a" + len(LARGE).to_bytes(4, "big"), LARGE),  # a text string where the bytes go
    ],
    ids=["wrong-shape", "length-past-end", "trailing", "cut-short", "text"],
)
def test_malformed_frame_events_raise_what_cbor2_finds(raw: bytes, by_cbor2_alone: Callable[[bytes], Any]) -> None:
    with pytest.raises(DecodeError) as expected:
        by_cbor2_alone(raw)
    with pytest.raises(DecodeError, match=re.escape(str(expected.value))):
        decode_payload(raw)


def test_split_event_follows_herostools() -> None:
    defaults = {"run": 1, "frame": -1}
    assert split_event(["data", {"frame": 5}], defaults) == ("data", {"run": 1, "frame": 5})
    assert split_event({"frame": 5, "x": 1}, defaults) == ({"frame": 5, "x": 1}, {"run": 1, "frame": 5, "x": 1})
    for value in ([1, 2, 3], "text", [1, 2]):
        with pytest.raises(PayloadError):
            split_event(value, defaults)


def test_a_datasources_records_stay_whole() -> None:
    """observable_data with two observables looks like a (data, metadata) pair; it is the payload, whole."""
    records = [{"id": "a", "time": 10.0, "raw_value": 1.0}, {"id": "b", "time": 12.5, "raw_value": 2.0}]
    assert split_event(records, {"lab": "B2"}, "observable_data") == (records, {"lab": "B2", "time": 12.5})
    assert split_event(records, {}, "acquisition_data") == (records[0], records[1]), "other events: herostools' rule"
    odd = [{"id": "a", "time": True}, {"id": "b", "time": float("nan")}, {"id": "c", "time": 3.0}, {"id": "d"}]
    assert split_event(odd, {}, "observable_data") == (odd, {"time": 3.0})  # only finite numbers are times

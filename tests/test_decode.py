"""HEROS CBOR decoding, checked against bytes made by the real heros package."""

from __future__ import annotations

import cbor2
import numpy as np
import pytest
from heros import serdes

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

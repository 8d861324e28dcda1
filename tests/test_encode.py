"""Encoders: .npy that np.load reads back, JSON that any RFC 8259 parser reads back."""

from __future__ import annotations

import io
import json

import cbor2
import numpy as np
import pytest

from archivist import EncodeError, PayloadError, encode_json, encode_npy


def _npy(array) -> np.ndarray:
    return np.load(io.BytesIO(b"".join(bytes(chunk) for chunk in encode_npy(array))))


@pytest.mark.parametrize("dtype", ["uint8", ">u2", "<i4", "float16", "float64", "complex128", "bool", "U3"])
def test_npy_round_trip(dtype: str) -> None:
    array = (np.arange(12) % 5).astype(dtype).reshape(3, 4)
    saved = _npy(array)
    assert saved.dtype == array.dtype and saved.shape == array.shape
    np.testing.assert_array_equal(saved, array)


def test_npy_of_views_and_scalars() -> None:
    base = np.arange(30, dtype="int32").reshape(5, 6)
    for array in (base.T, base[::2, 1::2], np.asfortranarray(base), np.array(7.5), np.zeros((0, 4))):
        np.testing.assert_array_equal(_npy(array), array)


def test_npy_data_is_not_copied() -> None:
    array = np.arange(1000, dtype="uint16")
    _header, data = encode_npy(array)
    assert np.shares_memory(np.frombuffer(data, dtype="uint16"), array)


def test_npy_refuses_non_arrays() -> None:
    with pytest.raises(PayloadError, match="numpy array payload, got dict"):
        encode_npy({"a": 1})
    with pytest.raises(EncodeError):
        encode_npy(np.array([object()]))


def test_json_conversions() -> None:
    payload = {
        "array": np.array([[1, 2], [3, 4]], dtype="uint16"),
        "floats": np.array([1.5, np.nan, np.inf]),
        "scalar": np.float32(2.5),
        "int": np.int64(7),
        "bool": np.bool_(True),
        "nan": float("nan"),
        "ninf": float("-inf"),
        "complex": 1 + 2j,
        "bytes": b"\x00\x01",
        "tag": cbor2.CBORTag(9000, ["heros", "cam"]),
        3: "int key",
        "text": 'µ ✓ "quoted" \\ \n',
    }
    text = b"".join(encode_json(payload)).decode("utf-8")
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-RFC constant {c}")) == {
        "array": [[1, 2], [3, 4]],
        "floats": [1.5, None, None],
        "scalar": 2.5,
        "int": 7,
        "bool": True,
        "nan": None,
        "ninf": None,
        "complex": [1.0, 2.0],
        "bytes": "AAE=",
        "tag": {"cbor_tag": 9000, "value": ["heros", "cam"]},
        "3": "int key",
        "text": 'µ ✓ "quoted" \\ \n',
    }


def test_json_refuses_what_it_cannot_represent() -> None:
    with pytest.raises(EncodeError, match="no JSON form"):
        encode_json({"x": object()})
    with pytest.raises(EncodeError, match="collide as JSON keys"):  # one of the two values would be lost
        encode_json({1: "int key", "1": "str key"})


def test_npy_of_field_names_beyond_latin_1() -> None:
    """Format 1.0 headers are latin-1; numpy writes such names in format 3.0 (UTF-8), and so does archivist."""
    array = np.zeros(3, dtype=[("温度", "<f4"), ("x", "<i2")])
    array["x"] = [1, 2, 3]
    np.testing.assert_array_equal(_npy(array), array)

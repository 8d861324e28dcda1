"""HEROS CBOR decoding: the one place where bytes from the wire become Python objects."""

from __future__ import annotations

import io
from typing import Any

import cbor2
import numpy as np

from .errors import DecodeError

NDARRAY_TAG = 4242


def decode_payload(raw: bytes) -> Any:
    """Decode one HEROS CBOR message; numpy arrays (tag 4242) come back as read-only views of the bytes.

    No ``tag_hook`` is passed to cbor2, because its call signature changed between cbor2 5 and 6; unknown
    tags (HERO references 9000-9005 and any other) stay ``cbor2.CBORTag`` values instead of raising.
    """
    stream = io.BytesIO(raw)
    try:
        value = cbor2.CBORDecoder(stream).decode()
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise DecodeError(f"malformed CBOR payload ({len(raw)} bytes): {exc}") from exc
    if value is cbor2.break_marker or stream.tell() != len(raw):
        raise DecodeError(f"malformed CBOR payload ({len(raw)} bytes): not exactly one CBOR item")
    return _resolve_tags(value)


def _resolve_tags(value: Any) -> Any:
    if isinstance(value, cbor2.CBORTag):
        if value.tag == NDARRAY_TAG:
            return _ndarray_from_tag(value.value)
        return cbor2.CBORTag(value.tag, _resolve_tags(value.value))
    if isinstance(value, list):
        return [_resolve_tags(item) for item in value]
    if isinstance(value, dict):
        return {key: _resolve_tags(item) for key, item in value.items()}
    return value


def _ndarray_from_tag(value: Any) -> np.ndarray:
    """Rebuild an array from heros' ``[shape, dtype, data]`` without copying the data."""
    try:
        shape, dtype, data = value
        dtype = np.dtype(dtype.decode() if isinstance(dtype, bytes) else dtype)
        if dtype.hasobject:
            raise ValueError("object arrays cannot come from raw bytes")
        return np.frombuffer(data, dtype=dtype).reshape([int(n) for n in shape])
    except (TypeError, ValueError, AttributeError) as exc:
        raise DecodeError(f"invalid numpy array (CBOR tag {NDARRAY_TAG}): {exc}") from exc

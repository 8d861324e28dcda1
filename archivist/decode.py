"""HEROS CBOR decoding: the one place where bytes from the wire become Python objects."""

from __future__ import annotations

import io
from typing import Any

import cbor2
import numpy as np

from .errors import DecodeError

NDARRAY_TAG = 4242
# A frame event's head: a (data, metadata) pair (array of 2) whose data is a numpy array (tag 4242, array of 3).
_FRAME_EVENT = b"\x82\xd9\x10\x92\x83"
_READ_AT_ONCE = 65536  # cbor2 5 reads byte strings up to this long in one piece


def decode_payload(raw: bytes) -> Any:
    """Decode one HEROS CBOR message; numpy arrays (tag 4242) come back as read-only views of the bytes.

    No ``tag_hook`` is passed to cbor2, because its call signature changed between cbor2 5 and 6; unknown
    tags (HERO references 9000-9005 and any other) stay ``cbor2.CBORTag`` values instead of raising.
    """
    frame_event = _frame_event(raw) if len(raw) > _READ_AT_ONCE and raw.startswith(_FRAME_EVENT) else None
    if frame_event is not None:
        return frame_event
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


def _frame_event(raw: bytes) -> list[Any] | None:
    """``[frame, metadata]`` with the frame a view of ``raw`` itself, or None where the message is not exactly
    that layout (cbor2 then decodes all of it, and reports what is wrong).

    cbor2 5 reads a byte string longer than 64 KiB in 64 KiB pieces and joins them: 173 µs for a 1 MiB frame,
    where one copy takes 53 (heros pins cbor2 < 6, which reads it at once). So only the frame's byte string
    head is read here (RFC 8949, section 3.1); its shape and dtype, and the metadata, are decoded by cbor2.
    """
    stream = io.BytesIO(raw)  # shares raw's buffer, no copy
    stream.seek(len(_FRAME_EVENT))
    decoder = cbor2.CBORDecoder(stream)
    try:
        shape, dtype = decoder.decode(), decoder.decode()
        start, end = _byte_string(raw, stream.tell())
        stream.seek(end)
        metadata = decoder.decode()
        if stream.tell() != len(raw):
            return None
        frame = _ndarray_from_tag([shape, dtype, memoryview(raw)[start:end]])
    except (cbor2.CBORDecodeError, ValueError, TypeError, OverflowError, RecursionError, DecodeError):
        return None
    return [frame, _resolve_tags(metadata)]


def _byte_string(raw: bytes, head: int) -> tuple[int, int]:
    """Where the bytes of the definite-length byte string whose head is at ``head`` begin and end."""
    initial = raw[head] if head < len(raw) else 0
    major, info = initial >> 5, initial & 0x1F
    if major != 2 or info > 27:  # not a byte string, or one of indefinite length (in chunks)
        raise ValueError("not a definite-length byte string")
    size = 0 if info < 24 else 1 << (info - 24)  # the length follows in 1, 2, 4 or 8 bytes
    length = info if info < 24 else int.from_bytes(raw[head + 1 : head + 1 + size], "big")
    start = head + 1 + size
    if start + length > len(raw):
        raise ValueError("byte string cut short")
    return start, start + length

"""Encoders: turn a payload into the bytes of one archive file (.npy or .json)."""

from __future__ import annotations

import base64
import io
import json
import math
import warnings
from collections.abc import Mapping
from typing import Any

import cbor2
import numpy as np

from .errors import EncodeError, PayloadError

Chunks = list[bytes | memoryview]


def encode_npy(array: Any) -> Chunks:
    """The ``.npy`` header followed by the array's own buffer, so a large frame is never copied."""
    if not isinstance(array, np.ndarray):
        raise PayloadError(f"ArrayArchiver needs a numpy array payload, got {type(array).__name__}")
    if array.dtype.hasobject:
        raise EncodeError("object arrays cannot be stored as .npy")
    if not array.flags.c_contiguous:
        array = np.ascontiguousarray(array)  # the only copy, for views; np.ascontiguousarray turns 0-d into 1-d
    header = io.BytesIO()
    header_data = np.lib.format.header_data_from_array_1_0(array)
    try:
        np.lib.format.write_array_header_1_0(header, header_data)
    except UnicodeEncodeError:  # field names beyond latin-1: numpy picks format 3.0 (UTF-8), rare enough to copy
        whole = io.BytesIO()
        with warnings.catch_warnings():  # "format 3.0 ... can only be read by NumPy >= 1.17" (of 2019)
            warnings.simplefilter("ignore", UserWarning)
            np.lib.format.write_array(whole, array)
        return [whole.getvalue()]
    except ValueError:  # header too long for format 1.0 (very many dimensions or fields)
        header = io.BytesIO()
        np.lib.format.write_array_header_2_0(header, header_data)
    return [header.getvalue(), memoryview(array.reshape(-1).view(np.uint8))]


def encode_json(payload: Any) -> Chunks:
    """UTF-8 JSON (RFC 8259): arrays become nested lists, numpy scalars numbers, NaN and ±inf null."""
    try:
        text = json.dumps(json_safe(payload), ensure_ascii=False, allow_nan=False, indent=4)
    except (TypeError, ValueError, RecursionError) as exc:
        raise EncodeError(f"payload cannot be stored as JSON: {exc}") from exc
    return [text.encode("utf-8")]


def json_safe(value: Any) -> Any:
    """A copy of ``value`` made only of JSON types; documented in docs/formats.md."""
    if isinstance(value, str | bool | int) or value is None:
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Mapping):
        safe = {_json_key(key): json_safe(item) for key, item in value.items()}
        if len(safe) < len(value):  # 1 and "1" are one JSON key: one value would be lost without a word
            raise EncodeError(f"keys {sorted(map(repr, value))} collide as JSON keys (JSON keys are strings)")
        return safe
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    if isinstance(value, np.ndarray):
        items = value.tolist()
        return items if value.dtype.kind in "biu" else json_safe(items)
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, complex):
        return [json_safe(value.real), json_safe(value.imag)]
    if isinstance(value, cbor2.CBORTag):
        return {"cbor_tag": value.tag, "value": json_safe(value.value)}
    if hasattr(value, "isoformat"):
        return value.isoformat()
    raise EncodeError(f"no JSON form for a value of type {type(value).__name__}")


def _json_key(key: Any) -> str:
    return key if isinstance(key, str) else json.dumps(json_safe(key))

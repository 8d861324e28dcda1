"""JSON value specs shared by the emitter peer and the tests.

JSON cannot carry numpy arrays, numpy scalars or NaN, so tests describe such values with small
tagged dicts; both sides build them with the same code so tests can compare archived data with
exactly what was sent.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

ARRAY_TAG = "__array__"
INT64_TAG = "__int64__"
FLOAT_TAG = "__float__"


def array_spec(shape: Sequence[int], dtype: str, fill: str = "arange", seed: int = 0) -> dict[str, Any]:
    """The JSON spec of an array; pass it wherever a value is expected."""
    if fill not in ("arange", "random"):
        raise ValueError(f"unknown fill {fill!r}; use 'arange' or 'random'")
    shape_list = [int(n) for n in shape]
    return {ARRAY_TAG: {"shape": shape_list, "dtype": str(dtype), "fill": fill, "seed": int(seed)}}


def make_array(spec: dict[str, Any]) -> np.ndarray:
    """Build the array a spec describes, deterministically, so both ends get identical bytes."""
    inner = spec.get(ARRAY_TAG, spec)
    shape = tuple(int(n) for n in inner["shape"])
    dtype = np.dtype(inner["dtype"])
    fill = inner.get("fill", "arange")
    count = int(np.prod(shape, dtype=np.int64))
    if fill == "arange":
        return np.arange(count).reshape(shape).astype(dtype)
    if fill == "random":
        rng = np.random.default_rng(int(inner.get("seed", 0)))
        if dtype.kind in "iu":
            info = np.iinfo(dtype)
            return rng.integers(info.min, info.max, size=shape, dtype=dtype, endpoint=True)
        if dtype.kind == "f":
            return rng.random(size=shape).astype(dtype)
        if dtype.kind == "b":
            return rng.integers(0, 2, size=shape).astype(dtype)
        if dtype.kind == "c":
            return (rng.random(size=shape) + 1j * rng.random(size=shape)).astype(dtype)
        raise ValueError(f"random fill does not support dtype {dtype}")
    raise ValueError(f"unknown fill {fill!r}")


def decode_specs(value: Any) -> Any:
    """Replace every tagged spec inside a JSON value by the Python/numpy value it stands for."""
    if isinstance(value, dict):
        if len(value) == 1:
            ((key, inner),) = value.items()
            if key == ARRAY_TAG:
                return make_array(value)
            if key == INT64_TAG:
                return np.int64(inner)
            if key == FLOAT_TAG:
                return float(inner)
        return {k: decode_specs(v) for k, v in value.items()}
    if isinstance(value, list):
        return [decode_specs(v) for v in value]
    return value


def burst_frame(index: int, shape: Sequence[int], dtype: str) -> np.ndarray:
    """Frame `index` of a burst: constant `index % 65536` cast (wrapping) to dtype; cheap to build at rate."""
    fill = np.asarray(index % 65536).astype(dtype)
    return np.full(tuple(int(n) for n in shape), fill, dtype=dtype)

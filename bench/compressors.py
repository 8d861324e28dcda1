"""What ZarrArchiver's ``compressors`` cost per frame, on the benchmark's constant frames and on camera-like noise.

Run: ``.venv/bin/python bench/compressors.py [--shape 256 256] [--frames-per-chunk 16] [--repeat 10]``

The streaming benchmarks send constant frames (cheap to make at rate), which every codec squeezes to almost
nothing; a camera's frames carry noise, and compressing them can cost more CPU than the rest of an append.
Each codec is given as ZarrArchiver takes it (zarr's ``compressors``) and timed through zarr's own codec
pipeline: one chunk of ``frames-per-chunk`` uint16 frames written to an in-memory zarr array.
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from typing import Any

import numpy as np
import zarr
import zarr.storage

CODECS: dict[str, Any] = {
    "none": None,
    "auto (zstd, zarr's default)": "auto",
    "zstd level 1": {"name": "zstd", "configuration": {"level": 1}},
    "blosc zstd level 1, shuffle": {
        "name": "blosc",
        "configuration": {"cname": "zstd", "clevel": 1, "shuffle": "shuffle"},
    },
    "blosc lz4, shuffle": {
        "name": "blosc",
        "configuration": {"cname": "lz4", "clevel": 5, "shuffle": "shuffle"},
    },
}


def frames(kind: str, count: int, shape: list[int]) -> np.ndarray:
    if kind == "constant":
        return np.full((count, *shape), 7, dtype="uint16")
    noise = np.random.default_rng(0).normal(1000, 20, (count, *shape))  # a dark frame's read noise
    return noise.astype("uint16")


def measure(compressors: Any, chunk: np.ndarray, repeat: int) -> tuple[float, float]:
    """Seconds to write ``chunk`` as one chunk (median of ``repeat``), and the stored size's ratio to the raw."""
    stored_bytes: dict[str, Any] = {}
    store = zarr.storage.MemoryStore(stored_bytes)
    array = zarr.create_array(store, shape=chunk.shape, chunks=chunk.shape, dtype=chunk.dtype, compressors=compressors)
    array[...] = chunk  # a first write, untimed: zarr and the codec set themselves up
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        array[...] = chunk
        times.append(time.perf_counter() - started)
    stored = sum(len(value) for key, value in stored_bytes.items() if key.startswith("c/"))
    return float(np.median(times)), chunk.nbytes / stored


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--frames-per-chunk", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=10)
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/compressors.py", *sys.argv[1:]]))
    kib = int(np.prod(args.shape)) * 2 // 1024
    print(f"chunks of {args.frames_per_chunk} uint16 frames of {tuple(args.shape)} ({kib} KiB each)\n")
    print(f"{'compressors':30} {'frames':9} {'µs per frame':>12} {'ratio':>8}")
    for name, compressors in CODECS.items():
        for kind in ("constant", "noise"):
            seconds, ratio = measure(compressors, frames(kind, args.frames_per_chunk, args.shape), args.repeat)
            print(f"{name:30} {kind:9} {seconds / args.frames_per_chunk * 1e6:12.0f} {ratio:8.1f}")


if __name__ == "__main__":
    main()

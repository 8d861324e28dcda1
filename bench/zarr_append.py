"""Frames/s of ZarrArchiver's append mode beside ArrayArchiver's one ``.npy`` file per frame, on the same frames.

ZarrArchiver's default mode, an array per frame (herostools' layout), runs too (``zarr per frame``).

Run: ``.venv/bin/python bench/zarr_append.py [--frames 1000] [--shape 256 256] [--dtype uint16] [--workers 4]
[--frames-per-chunk 16] [--zarr-workers N] [--s3]``

Two feeds per archiver and storage:

- ``heros``: a real heros emitter process (tests/peers/emitter.py) bursts the frames over loopback zenoh to the
  archiver (ArrayArchiver with ``--workers`` writer threads; ZarrArchiver with ``--frames-per-chunk`` and, unless
  ``--zarr-workers``, the writer threads it starts for that by itself: 2 x 16); timed from the burst command
  until the archiver has written every frame. The emitter's own send rate is printed too: a row cannot be faster
  than it.
- ``direct``: the same frames, serialized beforehand, handed to the archiver's ``_write_event`` one after the
  other in one thread: the write path alone (decode, route, store), without zenoh or the queue.

Storage is a temporary folder on local disk and, with ``--s3``, a moto S3 server on 127.0.0.1 (moto answers
far slower than a real S3 or MinIO: compare the two archivers with each other, not with other setups).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the tests' emitter peer and loopback helpers

import numpy as np  # noqa: E402
import zarr  # noqa: E402
from heros import serdes  # noqa: E402

from archivist import Archiver, ArrayArchiver, Received, ZarrArchiver  # noqa: E402
from tests.fixtures.heros_peer import start_emitter  # noqa: E402
from tests.peers.specs import burst_frame  # noqa: E402
from tests.support import free_port, loopback_zenoh_config  # noqa: E402

EVENT = "acquisition_data"
KEY = f"@object/heros/cam/{EVENT}"
FRAMES_PER_CHUNK = 16  # ZarrArchiver then starts 2 x 16 writer threads by itself, so batches can fill chunks


def make_archiver(
    kind: str,
    base: str,
    options: dict[str, Any] | None,
    spool: str,
    port: int | None,
    workers: int,
    frames_per_chunk: int = FRAMES_PER_CHUNK,
    zarr_workers: int | None = None,
) -> Archiver:
    """``workers`` are the writer threads of ArrayArchiver and of ZarrArchiver with one array per frame; in append
    mode ZarrArchiver's are its own choice unless ``zarr_workers``."""
    common: dict[str, Any] = {
        "object_selector": "cam",
        "event_name": EVENT,
        "storage_options": options,
        "spool_dir": spool,
        "listen": port is not None,
        "zenoh_config": loopback_zenoh_config(listen_port=port) if port else None,
        "queue_max_events": 100_000,
        "queue_max_bytes": 2**31,
    }
    if kind == "zarr append":
        if zarr_workers:
            common["workers"] = zarr_workers
        return ZarrArchiver(base + "/run.zarr", "frames", append_dim=0, frames_per_chunk=frames_per_chunk, **common)
    if kind == "zarr per frame":  # herostools' layout: an array of its own per event (bench/run.py's zarr rows)
        return ZarrArchiver(base + "/run.zarr", "frames/{{ frame }}", workers=workers, **common)
    return ArrayArchiver(base + "/npy/{{ frame }}.npy", workers=workers, **common)


def check(kind: str, base: str, options: dict[str, Any] | None, frames: int) -> None:
    """The run stored every frame: the array's length, or the number of .npy files."""
    extra = {"storage_options": options} if options else {}
    if kind == "zarr append":
        assert zarr.open_array(base + "/run.zarr", path="frames", mode="r", **extra).shape[0] == frames
    elif kind == "zarr per frame":
        assert len(list(zarr.open_group(base + "/run.zarr", path="frames", mode="r", **extra).array_keys())) == frames
    else:
        import fsspec

        fs, path = fsspec.url_to_fs(base + "/npy", **(options or {}))
        assert len(fs.ls(path, detail=False)) == frames


def wait_written(archiver: Archiver, frames: int, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while (stats := archiver.stats())["written"] + stats["failed"] < frames:
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {stats['written']} of {frames} frames written after {timeout}s")
        time.sleep(0.005)
    if stats["failed"]:
        raise RuntimeError(f"{stats['failed']} frames failed: {stats['errors']}")


def run_heros(kind: str, base: str, options: dict[str, Any] | None, args: argparse.Namespace, scratch: Path) -> dict:
    port = free_port()
    archiver = make_archiver(
        kind, base, options, str(scratch / "spool"), port, args.workers, args.frames_per_chunk, args.zarr_workers
    )
    emitter = start_emitter("cam", port, log_dir=scratch)
    try:
        emitter.wait_subscribers(EVENT)
        started = time.perf_counter()
        emitter.burst(EVENT, args.frames, args.shape, args.dtype, timeout=600)
        sent = time.perf_counter() - started
        wait_written(archiver, args.frames)
        elapsed = time.perf_counter() - started
    finally:
        emitter.close()
        archiver.stop(timeout=60)
    return {"seconds": elapsed, "sent_per_s": args.frames / sent}


def run_direct(kind: str, base: str, options: dict[str, Any] | None, args: argparse.Namespace, scratch: Path) -> dict:
    samples = [
        Received(KEY, serdes.serialize((burst_frame(i, args.shape, args.dtype), {"frame": i})))
        for i in range(args.frames)
    ]
    archiver = make_archiver(kind, base, options, str(scratch / "spool"), None, 1, args.frames_per_chunk, 1)
    started = time.perf_counter()
    for sample in samples:
        archiver._write_event(sample)
    return {"seconds": time.perf_counter() - started}


@contextlib.contextmanager
def moto_s3(delay: float = 0.0) -> Iterator[tuple[str, dict[str, Any]]]:
    """A bucket on a moto server on 127.0.0.1, and the storage_options to reach it.

    ``delay``: seconds each request waits before moto answers it, in a thread of the server's own, so requests
    in flight overlap their waits as they do on the way to a storage farther away than loopback.
    """
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    if delay:
        wsgi, app = server._server, server._server.app  # werkzeug's server calls its .app per request

        def delayed(environ: dict[str, Any], start_response: Any) -> Any:
            time.sleep(delay)
            return app(environ, start_response)

        wsgi.app = delayed
    endpoint = f"http://127.0.0.1:{port}"
    try:
        boto3.client(
            "s3", endpoint_url=endpoint, aws_access_key_id="x", aws_secret_access_key="x", region_name="us-east-1"
        ).create_bucket(Bucket="bench")
        yield "s3://bench", {"key": "x", "secret": "x", "client_kwargs": {"endpoint_url": endpoint}}
    finally:
        server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--shape", type=int, nargs="+", default=[256, 256])
    parser.add_argument("--dtype", default="uint16")
    parser.add_argument("--workers", type=int, default=4, help="writer threads of ArrayArchiver fed by heros")
    parser.add_argument("--frames-per-chunk", type=int, default=FRAMES_PER_CHUNK, help="ZarrArchiver's chunking")
    parser.add_argument("--zarr-workers", type=int, help="ZarrArchiver's writer threads (default: its own choice)")
    parser.add_argument("--s3", action="store_true", help="also write to a moto S3 server on 127.0.0.1")
    args = parser.parse_args()
    import logging

    for name in ("archivist", "werkzeug"):  # werkzeug: moto's server logs every request
        logging.getLogger(name).setLevel(logging.WARNING)
    frame_bytes = int(np.prod(args.shape)) * np.dtype(args.dtype).itemsize
    print("command:", shlex.join([".venv/bin/python", "bench/zarr_append.py", *sys.argv[1:]]))
    print(f"{args.frames} frames of shape {tuple(args.shape)} {args.dtype} ({frame_bytes / 1024:.0f} KiB each)\n")
    header = f"{'storage':8} {'archiver':15} {'feed':7} {'seconds':>8} {'frames/s':>9} {'MiB/s':>7}  notes"
    print(header)
    print("-" * len(header))
    results = []
    with tempfile.TemporaryDirectory(prefix="archivist-bench-") as tmp, contextlib.ExitStack() as stack:
        scratch = Path(tmp)
        targets: list[tuple[str, str, dict[str, Any] | None]] = [("local", str(scratch / "out"), None)]
        if args.s3:
            url, options = stack.enter_context(moto_s3())
            targets.append(("s3/moto", url, options))
        feeds: dict[str, Callable[..., dict]] = {"heros": run_heros, "direct": run_direct}
        for storage, root, options in targets:
            for feed, run in feeds.items():
                for kind in ("zarr append", "zarr per frame", "npy per frame"):
                    base = f"{root}/{feed}-{kind.replace(' ', '-')}"
                    try:
                        result = run(kind, base, options, args, scratch)
                        check(kind, base, options, args.frames)
                    except Exception as exc:  # report the row and go on with the others
                        print(f"{storage:8} {kind:15} {feed:7} FAILED: {type(exc).__name__}: {exc!r}", flush=True)
                        continue
                    rate = args.frames / result["seconds"]
                    notes = f"emitter sent {result['sent_per_s']:.0f} frames/s" if "sent_per_s" in result else ""
                    print(
                        f"{storage:8} {kind:15} {feed:7} {result['seconds']:8.2f} {rate:9.0f} "
                        f"{rate * frame_bytes / 2**20:7.1f}  {notes}",
                        flush=True,
                    )
                    results.append({"storage": storage, "archiver": kind, "feed": feed, "frames_per_s": rate})
    print("\n" + json.dumps(results))


if __name__ == "__main__":
    main()

"""One archiver in this process, fed a burst by a real heros emitter: frames/s and CPU time per frame.

Run: ``.venv/bin/python bench/stream.py [--frames 1000] [--shape 512 1024] [--workers 4] [--queue-mib 64]
[--zarr-append FRAMES_PER_CHUNK] [--emitter-heap]``.
The process to profile (``py-spy record -- .venv/bin/python bench/stream.py``): bench/run.py runs each row in a
child process, this runs archivist in its own. CPU time includes start-up (imports, zenoh), printed apart.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from archivist import ArrayArchiver, ZarrArchiver  # noqa: E402
from archivist.tuning import HEAP_ENVIRONMENT  # noqa: E402
from tests.fixtures.heros_peer import start_emitter  # noqa: E402
from tests.support import free_port, loopback_zenoh_config  # noqa: E402

EVENT = "acquisition_data"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--shape", type=int, nargs="+", default=[512, 1024], help="uint16 frame shape")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--queue-mib", type=int, default=64)
    parser.add_argument(
        "--zarr-append", type=int, metavar="FRAMES_PER_CHUNK", help="ZarrArchiver appending to one array, not .npy"
    )
    parser.add_argument(
        "--emitter-heap",
        action="store_true",
        help="the emitter keeps frames in its heap (archivist.tuning.HEAP_ENVIRONMENT)",
    )
    args = parser.parse_args()
    scratch = Path(tempfile.mkdtemp(prefix="archivist-stream-"))
    try:
        port = free_port()
        common = {
            "object_selector": "cam",
            "event_name": EVENT,
            "queue_max_bytes": args.queue_mib * 2**20,
            "queue_max_events": 100_000,  # the byte bound decides
            "zenoh_config": loopback_zenoh_config(listen_port=port),  # 127.0.0.1, multicast scouting off
            "spool_dir": str(scratch / "spool"),
        }
        if args.zarr_append:  # with the writer threads append mode starts by itself
            archiver = ZarrArchiver(
                str(scratch / "run.zarr"), "frames", append_dim=0, frames_per_chunk=args.zarr_append, **common
            )
        else:
            archiver = ArrayArchiver(str(scratch / "out" / "{{ frame }}.npy"), workers=args.workers, **common)
        started_cpu = sum(os.times()[:2])
        emitter = start_emitter("cam", port, log_dir=scratch, env=HEAP_ENVIRONMENT if args.emitter_heap else None)
        try:
            emitter.wait_subscribers(EVENT)
            start = time.perf_counter()
            sent = args.frames / emitter.burst(EVENT, args.frames, args.shape, "uint16", timeout=600)["seconds"]
            while (stats := archiver.stats())["written"] + stats["failed"] < stats["received"] or (
                stats["received"] < args.frames and time.perf_counter() - start < 60
            ):
                time.sleep(0.002)
            seconds = time.perf_counter() - start
        finally:
            emitter.close()
        cpu = sum(os.times()[:2]) - started_cpu
        archiver.stop()
        print(
            f"{stats['written']} of {args.frames} frames of {args.shape} uint16 written ({stats['received']} received, "
            f"{stats['overflowed']} via the disk buffer): {stats['written'] / seconds:.0f} frames/s, the emitter "
            f"sent {sent:.0f}/s; CPU {cpu / args.frames * 1e6:.0f} µs per frame after start-up "
            f"({started_cpu:.2f} s to start)"
        )
        print(f"command: {sys.executable} {' '.join(sys.argv)}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the disk buffer costs an event that goes through it: the zenoh callback's append, a writer's pop.

Run: ``.venv/bin/python bench/disk_buffer.py [--records 500] [--kib 1024] [--repeat 3]``

When the memory queue is full (``queue_max_bytes``), events wait in the disk buffer instead (docs/reliability.md):
this is the price of the memory bound, paid by every event of a burst beyond it. Appends all the records, then
pops them all, in one thread, with the process tuned as a subscribing archiver tunes it; prints wall-clock and
CPU microseconds per record for each half.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from archivist.buffer import DiskBuffer
from archivist.event import Received
from archivist.tuning import tune_for_streaming


def _timed(step: object, count: int) -> tuple[float, float]:
    """Wall-clock and CPU microseconds per call of ``step``."""
    cpu, wall = sum(os.times()[:2]), time.perf_counter()
    for _ in range(count):
        step()  # type: ignore[operator]
    return (time.perf_counter() - wall) / count * 1e6, (sum(os.times()[:2]) - cpu) / count * 1e6


def measure(received: Received, records: int) -> tuple[tuple[float, float], tuple[float, float]]:
    """(wall, CPU) µs per append, then per pop, of ``records`` copies of ``received`` through a new buffer."""
    with tempfile.TemporaryDirectory(prefix="archivist-bench-") as tmp:
        buffer = DiskBuffer(Path(tmp) / "buffer")
        append = _timed(lambda: buffer.append(received), records)
        same: list[bool] = []  # each record is checked and done with, as a writer is once it is written

        def pop_one() -> None:
            popped = buffer.pop()
            same.append(popped == received)
            buffer.done(popped)

        pop = _timed(pop_one, records)
        buffer.close()
    assert all(same) and len(same) == records, "the buffer gave back other records"
    return append, pop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500)
    parser.add_argument("--kib", type=int, default=1024, help="payload size of a record")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print("command:", shlex.join([".venv/bin/python", "bench/disk_buffer.py", *sys.argv[1:]]))
    tune_for_streaming()
    received = Received("@object/heros/cam/acquisition_data", os.urandom(args.kib * 1024))
    print(f"{args.records} records of {args.kib} KiB\n")
    print(f"{'run':>3} {'append µs':>10} {'(CPU)':>7} {'pop µs':>8} {'(CPU)':>7}")
    for run in range(1, args.repeat + 1):
        append, pop = measure(received, args.records)
        print(f"{run:>3} {append[0]:>10.0f} {append[1]:>7.0f} {pop[0]:>8.0f} {pop[1]:>7.0f}")


if __name__ == "__main__":
    main()

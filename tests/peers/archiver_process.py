"""An archiver in a process of its own, writing to a deliberately slow disk, that reports its peak memory.

Run: ``python tests/peers/archiver_process.py '{"save_template": "slow:///...", ...}' --delay 0.02``.
Prints ``{"ready": ..., "baseline_rss": ...}`` once listening; on stdin EOF it stops the archiver and prints
``{"stats": ..., "peak_rss": ...}``; RSS figures are in bytes, from the process's own accounting.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import fsspec
from fsspec.implementations.local import LocalFileSystem

from archivist import ArrayArchiver


class SlowFileSystem(LocalFileSystem):
    """Local disk that takes ``delay`` seconds per file, like a congested network share."""

    protocol = "slow"
    delay = 0.0

    def _open(self, path, mode="rb", **kwargs):
        if "w" in mode:
            time.sleep(SlowFileSystem.delay)
        return super()._open(path, mode, **kwargs)


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, not ru_maxrss, which on Linux keeps the forking parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("arguments", help="ArrayArchiver keyword arguments as JSON")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds per file written on slow://")
    args = parser.parse_args()
    SlowFileSystem.delay = args.delay
    fsspec.register_implementation("slow", SlowFileSystem, clobber=True)
    archiver = ArrayArchiver(**json.loads(args.arguments))
    print(json.dumps({"ready": True, "baseline_rss": peak_rss()}), flush=True)
    sys.stdin.read()
    archiver.stop()
    print(json.dumps({"stats": archiver.stats(), "peak_rss": peak_rss()}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""A self-contained demo: a simulated camera HERO streams frames, archivist stores them as .npy and .json.

Everything runs in this process on a loopback-only zenoh link (multicast scouting off, TCP on 127.0.0.1),
so it needs no service and no network. Run: ``python examples/demo.py [--out DIR] [--seconds N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from pathlib import Path

import numpy as np


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def loopback(listen: int | None = None, connect: int | None = None) -> dict:
    return {
        "mode": "peer",
        "scouting": {"multicast": {"enabled": False}, "gossip": {"enabled": True}},
        "listen": {"endpoints": [f"tcp/127.0.0.1:{listen}"] if listen else []},
        "connect": {"endpoints": [f"tcp/127.0.0.1:{connect}"] if connect else []},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="archive-demo", help="folder to archive into (default: ./archive-demo)")
    parser.add_argument("--seconds", type=float, default=5.0, help="how long the camera streams (default: 5)")
    args = parser.parse_args()
    out = Path(args.out).resolve()
    port = free_port()

    from archivist import ArrayArchiver, JsonArchiver

    frames = ArrayArchiver(
        object_selector="demo-camera",
        event_name="acquisition_data",
        save_template="{{ run }}/{{ source_name }}/frame-{{ '%05d' % frame }}.npy",
        root=str(out),
        default_metadata={"run": "run-001"},
        zenoh_config=loopback(listen=port),
        spool_dir=str(out / "spool"),
    )
    summaries = JsonArchiver(
        object_selector="demo-camera",
        event_name="frame_summary",
        save_template="{{ run }}/{{ source_name }}/summary-{{ '%05d' % frame }}.json",
        root=str(out),
        merge_metadata=True,
        default_metadata={"run": "run-001"},
        zenoh_config=loopback(listen=port),
        spool_dir=str(out / "spool"),
    )

    # heros reads its zenoh configuration from the environment when it opens its session.
    os.environ["HEROS_ZENOH_CONFIG"] = json.dumps(loopback(connect=port))
    from heros import LocalHERO, event

    class DemoCamera(LocalHERO):
        """A camera that makes 256x256 uint16 frames with a moving spot."""

        @event
        def acquisition_data(self, frame: np.ndarray, metadata: dict) -> tuple:
            return frame, metadata

        @event
        def frame_summary(self, summary: dict) -> dict:
            return summary

    camera = DemoCamera("demo-camera")
    publisher = camera.acquisition_data.publisher
    deadline = time.monotonic() + 10
    while not publisher.matching_status.matching and time.monotonic() < deadline:
        time.sleep(0.01)

    yy, xx = np.mgrid[0:256, 0:256]
    sent = 0
    end = time.monotonic() + args.seconds
    while time.monotonic() < end:
        spot = np.exp(-((xx - 128 - 80 * np.cos(sent / 10)) ** 2 + (yy - 128 - 80 * np.sin(sent / 10)) ** 2) / 200)
        frame = (spot * 60000).astype(np.uint16)
        camera.acquisition_data(frame, {"frame": sent, "exposure_ms": 5.0})
        camera.frame_summary({"frame": sent, "max": int(frame.max()), "mean": float(frame.mean())})
        sent += 1
        if sent % 25 == 0:
            print(f"sent {sent} frames, archived {frames.stats()['written']}", file=sys.stderr)
        time.sleep(0.02)

    for archiver in (frames, summaries):
        archiver.drain(30)
        archiver.stop()
    camera._destroy_hero()
    for archiver in (frames, summaries):
        stats = archiver.stats()
        print(
            f"{archiver.name}: {stats['written']} written, {stats['failed']} failed, "
            f"{stats['bytes_written'] / 2**20:.1f} MiB"
        )
    print(f"files are under {out}")
    return 0 if frames.stats()["failed"] == summaries.stats()["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

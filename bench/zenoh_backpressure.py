"""Does zenoh deliver every reliable sample to a subscriber that holds its receive thread back?

Why archivist turns zenoh's shared memory off (docs/reliability.md): a publisher (RELIABLE, CongestionControl.BLOCK,
as heros' reliable events) sends N samples as fast as it can to a subscriber whose callback takes DELAY seconds on
zenoh's own thread (``indirect=False``), on zenoh-python's callback thread (``indirect``, what archivist uses; fed
by zenoh's default FIFO of 256 samples), or that reads a bounded ``FifoChannel``; the script counts what arrives.
The subscriber has shared memory off, as archivist's sessions; ``--shared-memory`` leaves zenoh's default (on), with
which samples over 3 KiB go through the publisher's shared-memory pool and those the subscriber fell behind on are
dropped. The publisher sends a new bytes object each time, as heros does; ``--publisher-heap`` starts it with
``archivist.tuning.HEAP_ENVIRONMENT``, which shows what its allocator costs when samples of 1 MiB cross TCP
(docs/benchmarks.md).

Run: ``.venv/bin/python bench/zenoh_backpressure.py [--samples 400] [--size 32768] [--delay 0.01]
[--mode direct|indirect|fifo] [--shared-memory] [--publisher-heap]``. Both sessions are in this process's
children, on 127.0.0.1, multicast scouting off.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import threading
import time

import zenoh

from archivist.tuning import HEAP_ENVIRONMENT

KEY = "bench/backpressure"


def config(listen: int | None = None, connect: int | None = None, shared_memory: bool = True) -> zenoh.Config:
    return zenoh.Config.from_json5(
        json.dumps(
            {
                "transport": {"shared_memory": {"enabled": shared_memory}},
                "mode": "peer",
                "scouting": {"multicast": {"enabled": False}},
                "listen": {"endpoints": [f"tcp/127.0.0.1:{listen}"] if listen else []},
                "connect": {"endpoints": [f"tcp/127.0.0.1:{connect}"] if connect else []},
            }
        )
    )


def publish(port: int, samples: int, size: int) -> None:
    with zenoh.open(config(connect=port)) as session:
        publisher = session.declare_publisher(
            KEY, reliability=zenoh.Reliability.RELIABLE, congestion_control=zenoh.CongestionControl.BLOCK
        )
        while not publisher.matching_status.matching:
            time.sleep(0.01)
        payload = os.urandom(size)
        start = time.monotonic()
        for i in range(samples):
            publisher.put(i.to_bytes(4, "big") + payload)
        print(f"publisher: sent {samples} in {time.monotonic() - start:.2f} s", flush=True)
        sys.stdin.read()  # stay connected until the subscriber is done


def subscribe(
    port: int, samples: int, size: int, delay: float, mode: str, wait: float, shared_memory: bool, heap: bool
) -> list[int]:
    received: list[int] = []

    def take(sample: zenoh.Sample) -> None:
        received.append(int.from_bytes(sample.payload.to_bytes()[:4], "big"))
        time.sleep(delay)

    with zenoh.open(config(listen=port, shared_memory=shared_memory)) as session:
        if mode in ("direct", "indirect"):
            session.declare_subscriber(KEY, zenoh.handlers.Callback(take, indirect=mode == "indirect"))
        else:
            subscriber = session.declare_subscriber(KEY, zenoh.handlers.FifoChannel(8))
            threading.Thread(target=lambda: [take(s) for s in subscriber], daemon=True).start()
        publisher = subprocess.Popen(
            [sys.executable, __file__, "--publish", str(port), "--samples", str(samples), "--size", str(size)],
            stdin=subprocess.PIPE,
            env={**os.environ, **HEAP_ENVIRONMENT} if heap else None,
        )
        deadline = time.monotonic() + samples * delay + wait
        while len(received) < samples and time.monotonic() < deadline:
            time.sleep(0.1)
        publisher.communicate(b"", timeout=30)
    return received


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=400)
    parser.add_argument("--size", type=int, default=32768, help="payload bytes per sample")
    parser.add_argument("--delay", type=float, default=0.01, help="seconds the subscriber takes per sample")
    parser.add_argument("--mode", choices=["direct", "indirect", "fifo"], default="direct")
    parser.add_argument("--wait", type=float, default=10.0, help="seconds to wait for stragglers")
    parser.add_argument("--shared-memory", action="store_true", help="the subscriber keeps zenoh's shared memory on")
    parser.add_argument(
        "--publisher-heap", action="store_true", help="the publisher keeps samples in its heap (HEAP_ENVIRONMENT)"
    )
    parser.add_argument("--publish", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.publish:
        publish(args.publish, args.samples, args.size)
        return 0
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    received = subscribe(
        port, args.samples, args.size, args.delay, args.mode, args.wait, args.shared_memory, args.publisher_heap
    )
    missing = sorted(set(range(args.samples)) - set(received))
    print(
        f"subscriber ({args.mode}, {args.delay * 1000:g} ms per sample, shared memory "
        f"{'on' if args.shared_memory else 'off'}): received {len(set(received))} of "
        f"{args.samples} samples of {args.size} bytes; missing {missing[:10]}{' ...' if len(missing) > 10 else ''}"
    )
    print(f"command: {sys.executable} {' '.join(sys.argv)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

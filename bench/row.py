"""One row of the benchmark suite in a process of its own, so the peak RSS it reports is that row's alone.

Run by ``bench/run.py`` (archivist rows with the project's Python, herostools rows with the bench venv's, which
has herostools and heros but not archivist): ``python bench/row.py '{"kind": ..., "count": ..., ...}'``.

Prints ``{"ready": true}`` once subscribed (or, for a write loop, once set up), then reads one line from stdin:
the ``time.time()`` at which the runner starts the burst. It prints one result line,
``{"count", "seconds", "peak_rss", "baseline_rss"}`` (RSS in bytes, this process's own VmHWM), when it has
handled ``count`` events, or with the count it reached once ``stall`` seconds passed without one more (events
were lost) or after ``timeout`` seconds; ``seconds`` runs to the last event handled.

Kinds: ``archivist-npy``, ``archivist-json``, ``zarr append``, ``zarr per frame``, ``npy per frame`` (the last
three from bench/zarr_append.py) and ``herostools-npy``, ``herostools-json``, ``herostools-zarr`` subscribe to the
emitter; ``subscriber`` is a bare zenoh subscriber that only counts samples; ``loop-npy``, ``loop-json``,
``loop-s3`` write the same items in a plain loop with ``workers`` threads (np.save, json.dump, boto3 put_object),
without zenoh.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

EVENT = "acquisition_data"
ALIVE: list[Any] = []  # zenoh closes a session and undeclares a subscriber that are garbage-collected
REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "peers"))  # burst_frame: the loops write the frames the emitter sends

from specs import burst_frame  # noqa: E402


def peak_rss() -> int:
    """This process's peak RSS in bytes: VmHWM, the high-water mark of its own memory since exec.

    Not ``getrusage``'s ``ru_maxrss``: Linux carries the forking parent's peak over into it across fork and
    exec, so a row started by a runner that had grown (moto holding objects) would report the runner's peak.
    """
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024  # kB


def small_dict(index: int) -> dict[str, Any]:
    """The dict event of the JSON workload."""
    return {"n": index, "sensor": "T1", "value": 21.5 + index % 10, "unit": "degC", "ok": True}


def archivist_row(spec: dict[str, Any]) -> Callable[[], int]:
    from archivist import ArrayArchiver, JsonArchiver

    common = {
        "object_selector": "cam",
        "event_name": spec.get("event", EVENT),
        "workers": spec["workers"],
        "zenoh_config": spec["zenoh"],
        "storage_options": spec.get("options"),
        "spool_dir": spec["scratch"] + "/spool",
        "queue_max_bytes": spec["queue_max_bytes"],
    }
    if spec["kind"] in ("zarr append", "zarr per frame", "npy per frame"):
        sys.path.insert(0, str(REPO))
        from bench.zarr_append import make_archiver

        logging.getLogger("archivist").setLevel(logging.WARNING)  # importing heros there made its INFO lines print

        port = spec["zenoh"]["listen"]["endpoints"][0].rsplit(":", 1)[1]
        archiver = make_archiver(
            spec["kind"], spec["out"], spec.get("options"), common["spool_dir"], int(port), spec["workers"]
        )
    elif spec["kind"] == "archivist-json":
        archiver = JsonArchiver(spec["out"] + "/{{ n }}.json", **common)
    else:
        archiver = ArrayArchiver(spec["out"] + "/{{ frame }}.npy", **common)

    def count() -> int:
        stats = archiver.stats()
        return stats["written"] + stats["failed"]

    return count


def herostools_row(spec: dict[str, Any]) -> Callable[[], int]:
    os.environ["HEROS_ZENOH_CONFIG"] = json.dumps(spec["zenoh"])  # heros reads it when it opens its session
    from herostools.actor.archiver import ArrayArchiver, JsonArchiver, ZarrArchiver

    if spec["kind"] == "herostools-json":
        archiver = JsonArchiver(spec["out"] + "/{{ n }}.json", object_selector="cam", event_name=spec["event"])
    elif spec["kind"] == "herostools-zarr":  # its only layout: an array of its own per event
        archiver = ZarrArchiver(
            spec["out"] + "/run.zarr", "frames/{{ frame }}", object_selector="cam", event_name=EVENT
        )
    else:
        archiver = ArrayArchiver(spec["out"] + "/{{ frame }}.npy", object_selector="cam", event_name=EVENT)
    stored = [0]
    store = archiver._store

    def counted(*args: Any) -> None:  # its one worker thread stores; count what it stored
        store(*args)
        stored[0] += 1

    archiver._store = counted
    return lambda: stored[0]


def subscriber_row(spec: dict[str, Any]) -> Callable[[], int]:
    import zenoh

    from archivist.source import load_zenoh_config

    # spec["zenoh"] is the runner's loopback config (tests/support.loopback_zenoh_config): multicast off, 127.0.0.1;
    # loaded as archivist loads it (shared memory off), so that this row measures the link archivist receives on
    session = zenoh.open(load_zenoh_config(spec["zenoh"])[0])
    ALIVE.append(session)
    received = [0]

    def on_sample(sample: Any) -> None:
        received[0] += 1

    ALIVE.append(session.declare_subscriber(f"@object/heros/cam/{spec.get('event', EVENT)}", on_sample))
    return lambda: received[0]


def loop_row(spec: dict[str, Any]) -> Callable[[], None]:
    """A plain write loop over ``count`` items with ``workers`` threads: the storage's own limit."""
    import numpy as np

    out, count = spec["out"], spec["count"]
    if not out.startswith("s3://"):
        os.makedirs(out, exist_ok=True)
    if spec["kind"] == "loop-json":

        def write(i: int) -> None:
            with open(f"{out}/{i}.json", "w") as file:
                json.dump(small_dict(i), file)
    elif spec["kind"] == "loop-npy":

        def write(i: int) -> None:
            np.save(f"{out}/{i}.npy", burst_frame(i, spec["shape"], spec["dtype"]))
    else:
        import boto3

        client = boto3.client("s3", **spec["boto3"])
        bucket, prefix = spec["out"].removeprefix("s3://").split("/", 1)

        def write(i: int) -> None:
            body = io.BytesIO()
            np.save(body, burst_frame(i, spec["shape"], spec["dtype"]))
            client.put_object(Bucket=bucket, Key=f"{prefix}/{i}.npy", Body=body.getvalue())

    def run() -> None:
        with ThreadPoolExecutor(spec["workers"]) as pool:
            list(pool.map(write, range(count)))

    return run


def main() -> int:
    spec = json.loads(sys.argv[1])
    kind = spec["kind"]
    loop = None
    if kind.startswith("loop-"):
        loop = loop_row(spec)
    elif kind == "subscriber":
        count = subscriber_row(spec)
    elif kind.startswith("herostools-"):
        count = herostools_row(spec)
    else:
        count = archivist_row(spec)
    baseline = peak_rss()
    print(json.dumps({"ready": True, "baseline_rss": baseline}), flush=True)
    started = float(sys.stdin.readline())
    if loop is not None:
        started = time.time()
        loop()
        done, finished = spec["count"], time.time()
    else:
        deadline, done, finished = time.monotonic() + spec["timeout"], 0, time.time()
        while done < spec["count"] and time.monotonic() < deadline:
            if (now := count()) > done:
                done, finished = now, time.time()
            elif time.time() - max(finished, started) > spec["stall"]:
                break  # nothing more arrives: events were lost on the way (the result says how many)
            time.sleep(0.002)
    result = {"count": done, "seconds": finished - started, "peak_rss": peak_rss(), "baseline_rss": baseline}
    print(json.dumps(result), flush=True)
    os._exit(0)  # no teardown (heros' joins take seconds): the runner has its figures and removes the files


if __name__ == "__main__":
    sys.exit(main())

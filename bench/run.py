"""The benchmark suite: each workload with archivist, herostools where it can do the job, and the raw limits.

Run: ``.venv/bin/python bench/run.py [--repeat 5] [--only 1mib-npy ...] [--no-herostools]`` (``--help`` lists
every size; ``--only`` runs one workload alone).

Every row runs in a process of its own (bench/row.py), so its peak RSS (``VmHWM``) is its own. Streaming rows
are fed by a real heros emitter process (tests/peers/emitter.py, reliable events) over loopback zenoh (TCP on
127.0.0.1, multicast scouting off); a run is timed from the burst command until the row has handled every
event. The limits beside them: a bare zenoh subscriber that only counts samples (the most the link delivers),
and a plain loop that writes the same items with the same number of threads, without zenoh (the most the storage
takes). Rows alternate within each repetition, so a slow moment of the machine hits them all; the table quotes
medians and the ratio of archivist to each row is the median of the ratios within each repetition.

Each S3 workload gets a moto server of its own on 127.0.0.1 (in this process, so the rows do not pay for its CPU);
``256kib-s3-remote`` has it hold every request back ``--s3-delay-ms`` (20 ms), as an S3 farther away than loopback
would, which is where concurrent writers earn their keep.

herostools runs from a bench venv (``$TMPDIR/archivist-bench-venv``, made on first use with ``python -m venv`` and
``pip install herostools``); it is never a dependency of archivist. Its archivers write with ``pathlib``, so it has
no S3 row. The zarr workload and the scrape reuse bench/zarr_append.py and bench/metrics_scrape.py, which also
run alone; in the zarr workload herostools' ZarrArchiver (an array per event, its one layout) runs beside
archivist's ZarrArchiver in the same layout.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # bench's sibling scripts, the tests' emitter peer and loopback helpers

import numpy as np  # noqa: E402

from archivist.tuning import HEAP_ENVIRONMENT  # noqa: E402
from bench.row import small_dict  # noqa: E402
from bench.zarr_append import moto_s3  # noqa: E402
from tests.fixtures.heros_peer import Emitter, start_emitter  # noqa: E402
from tests.support import free_port, loopback_zenoh_config  # noqa: E402

ROW_SCRIPT = REPO / "bench" / "row.py"
VENV = Path(tempfile.gettempdir()) / "archivist-bench-venv"
MiB = 2**20
HEAP_EMITTER = "emitter's frames from its heap"
ZARR_PER_FRAME = "archivist zarr, an array per frame (herostools' layout)"
HEROSTOOLS_ZARR = "herostools zarr, an array per frame"


@dataclass
class Row:
    label: str
    kind: str
    workers: int = 1
    herostools: bool = False
    shared_memory: bool = False  # zenoh's shared-memory transport on for this row's session (herostools': its default)
    emitter_heap: bool = False  # the emitter runs with glibc told to keep frames in its heap (HEAP_ENVIRONMENT)
    runs: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Workload:
    name: str
    title: str
    count: int
    shape: list[int] | None  # None: the small dicts of the JSON workload
    rows: list[Row]
    event: str = "acquisition_data"
    s3: bool = False
    s3_delay: float = 0.0  # seconds moto holds each request back
    compare: list[tuple[str, str]] = field(default_factory=list)  # (row, row) labels whose ratio is printed too

    @property
    def item_bytes(self) -> int:
        if self.shape is None:
            return len(json.dumps(small_dict(0)))
        return int(np.prod(self.shape)) * 2  # uint16


def workloads(args: argparse.Namespace) -> list[Workload]:
    w, s3w = args.workers, args.s3_workers

    def local(label: str, kind: str, loop: str, *, large: bool = False) -> list[Row]:
        """``large``: also the rows that show what sets the rate of large frames on one host: archivist and the bare
        subscriber with zenoh's shared memory on (herostools' transport; only samples over 3 KiB use it), and
        archivist, herostools and the subscriber fed by an emitter whose allocator keeps frames in its heap."""
        rows = [Row("archivist", f"archivist-{kind}", w)]
        if large:
            rows.append(Row("archivist, zenoh shared memory on", f"archivist-{kind}", w, shared_memory=True))
            rows.append(Row(f"archivist, {HEAP_EMITTER}", f"archivist-{kind}", w, emitter_heap=True))
        if args.herostools:
            rows.append(Row("herostools", f"herostools-{kind}", 1, herostools=True))
            if large:
                rows.append(
                    Row(f"herostools, {HEAP_EMITTER}", f"herostools-{kind}", 1, herostools=True, emitter_heap=True)
                )
        rows += [Row(f"{label} loop, {w} threads", loop, w), Row("zenoh subscriber (receive only)", "subscriber")]
        if large:
            rows.append(Row("zenoh subscriber (receive only), shared memory on", "subscriber", shared_memory=True))
            rows.append(Row(f"zenoh subscriber (receive only), {HEAP_EMITTER}", "subscriber", emitter_heap=True))
        return rows

    return [
        Workload(
            "1mib-npy",
            "1 MiB uint16 frames to local .npy",
            args.frames_1mib,
            [512, 1024],
            local("np.save", "npy", "loop-npy", large=True),
            compare=[
                ("archivist, zenoh shared memory on", "herostools"),
                (f"archivist, {HEAP_EMITTER}", f"herostools, {HEAP_EMITTER}"),
            ],
        ),
        Workload(
            "16x16-npy",
            "16x16 uint16 frames to local .npy",
            args.frames_small,
            [16, 16],
            local("np.save", "npy", "loop-npy"),
        ),
        Workload(
            "dict-json",
            "small dicts to local .json",
            args.dicts,
            None,
            local("json.dump", "json", "loop-json"),
            event="json_data",
        ),
        Workload(
            "256kib-s3",
            "256 KiB uint16 frames to S3 (moto server on 127.0.0.1)",
            args.frames_s3,
            [256, 512],
            [
                Row(f"archivist, {s3w} writers", "archivist-npy", s3w),
                Row("boto3 put_object loop, 1 thread", "loop-s3", 1),
                Row(f"boto3 put_object loop, {s3w} threads", "loop-s3", s3w),
                Row("zenoh subscriber (receive only)", "subscriber"),
            ],
            s3=True,
        ),
        Workload(
            "256kib-s3-remote",
            f"256 KiB uint16 frames to S3 {args.s3_delay_ms:g} ms away (moto on 127.0.0.1, each request held back)",
            args.frames_s3,
            [256, 512],
            [
                Row(f"archivist, {s3w} writers", "archivist-npy", s3w),
                Row("boto3 put_object loop, 1 thread", "loop-s3", 1),
                Row(f"boto3 put_object loop, {s3w} threads", "loop-s3", s3w),
            ],
            s3=True,
            s3_delay=args.s3_delay_ms / 1000,
        ),
        Workload(
            "zarr",
            "128 KiB uint16 frames to zarr (appended, or an array per frame) and to one .npy per frame",
            args.frames_zarr,
            [256, 256],
            [
                Row("archivist zarr append, 16 frames a chunk", "zarr append", 32),
                Row("archivist .npy per frame", "npy per frame", w),
                Row(ZARR_PER_FRAME, "zarr per frame", w),
                *([Row(HEROSTOOLS_ZARR, "herostools-zarr", 1, herostools=True)] if args.herostools else []),
                Row("zenoh subscriber (receive only)", "subscriber"),
            ],
            compare=[(ZARR_PER_FRAME, HEROSTOOLS_ZARR)],
        ),
        Workload(
            "zarr-s3",
            "128 KiB uint16 frames to S3 (moto server on 127.0.0.1): zarr append vs one .npy per frame",
            args.frames_zarr_s3,
            [256, 256],
            [
                Row("archivist zarr append, 16 frames a chunk", "zarr append", 32),
                Row(f"archivist .npy per frame, {s3w} writers", "npy per frame", s3w),
            ],
            s3=True,
        ),
    ]


def bench_python() -> str:
    """The bench venv's Python, with herostools installed from PyPI on first use."""
    python = VENV / "bin" / "python"
    # a fresh machine has no venv yet: its Python must not be run before the venv is made
    check = [python, "-c", "import herostools.actor.archiver"]
    if not python.exists() or subprocess.run(check, capture_output=True).returncode != 0:
        print(f"installing herostools into {VENV} ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
        subprocess.run([python, "-m", "pip", "install", "-q", "herostools"], check=True)
    return str(python)


def start_row(spec: dict[str, Any], python: str) -> subprocess.Popen[str]:
    """Start a row's process and wait until it is subscribed (or set up)."""
    proc = subprocess.Popen(
        [python, str(ROW_SCRIPT), json.dumps(spec)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    if not line:
        proc.wait(30)
        raise RuntimeError(f"row {spec['kind']!r} exited before it was ready (rc={proc.returncode})")
    return proc


def feed(emitter: Emitter, load: Workload) -> float:
    """Send the workload's events; returns the emitter's own sending rate (events/s)."""
    if load.shape is None:
        items = [{"form": "dict", "value": small_dict(i)} for i in range(load.count)]
        started = time.perf_counter()
        emitter.emit(load.event, items, timeout=600)
        return load.count / (time.perf_counter() - started)
    reply = emitter.burst(load.event, load.count, load.shape, "uint16", timeout=600)
    return load.count / reply["seconds"]


def run_row(row: Row, load: Workload, rep: int, ctx: dict[str, Any]) -> dict[str, Any]:
    """One run of one row: start its process (and an emitter unless it is a write loop), feed, collect."""
    out = f"{ctx['root']}/{load.name}/{rep}-{row.kind.replace(' ', '-')}-{row.workers}"
    port = free_port()
    zconfig = loopback_zenoh_config(listen_port=port)
    if row.shared_memory:  # said in the config, so archivist keeps it (docs/reliability.md)
        zconfig["transport"] = {"shared_memory": {"enabled": True}}
    spec = {
        "kind": row.kind,
        "count": load.count,
        "shape": load.shape,
        "dtype": "uint16",
        "workers": row.workers,
        "event": load.event,
        "out": out,
        "scratch": ctx["scratch"],
        "timeout": ctx["timeout"],
        "stall": ctx["stall"],
        "queue_max_bytes": ctx["queue_bytes"],
        "zenoh": zconfig,
        "options": ctx["options"],
        "boto3": ctx["boto3"],
    }
    proc = start_row(spec, ctx["venv"] if row.herostools else sys.executable)
    emitter = None
    try:
        if not row.kind.startswith("loop-"):
            emitter = start_emitter(
                "cam", port, log_dir=Path(ctx["scratch"]), env=HEAP_ENVIRONMENT if row.emitter_heap else None
            )
            emitter.wait_subscribers(load.event)
        proc.stdin.write(f"{time.time()}\n")
        proc.stdin.flush()
        sent = feed(emitter, load) if emitter else None
        result = json.loads(proc.stdout.readline() or "null") or {}
    finally:
        if emitter:
            emitter.close()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if not load.s3:
            shutil.rmtree(out, ignore_errors=True)
    if not result.get("count"):
        raise RuntimeError(f"{row.label}: handled no event")
    return {**result, "sent_per_s": sent, "rate": result["count"] / result["seconds"]}


def report(load: Workload, repeat: int) -> list[dict[str, Any]]:
    """Print the workload's table (medians over the repetitions) and return its figures."""
    mib = load.item_bytes / MiB
    size = f"{load.item_bytes / 1024:.0f} KiB" if load.item_bytes >= 1024 else f"{load.item_bytes} B"
    print(f"\n### {load.title}: {load.count} events of {size}, {repeat} alternating runs\n")
    print(
        "| row | events/s (median) | min-max | MiB/s | peak RSS MiB | RSS growth MiB | archivist / row | lost "
        "| emitter sent/s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    reference = load.rows[0]
    figures = []
    for row in load.rows:
        if not row.runs:
            print(f"| {row.label} | failed | | | | | | | |")
            continue
        rates = [run["rate"] for run in row.runs]
        rss = statistics.median(run["peak_rss"] for run in row.runs) / MiB
        growth = statistics.median(run["peak_rss"] - run["baseline_rss"] for run in row.runs) / MiB
        paired = [a["rate"] / b["rate"] for a, b in zip(reference.runs, row.runs, strict=False)]
        ratio = f"{statistics.median(paired):.2f}x" if row is not reference and paired else ""
        rate = statistics.median(rates)
        lost = [load.count - run["count"] for run in row.runs]
        lost_text = f"{sum(lost)} in {sum(1 for n in lost if n)} of {len(lost)} runs" if any(lost) else "0"
        sent = [run["sent_per_s"] for run in row.runs if run["sent_per_s"]]
        print(
            f"| {row.label} | {rate:.0f} | {min(rates):.0f}-{max(rates):.0f} | {rate * mib:.1f} | {rss:.0f} | "
            f"{growth:.0f} | {ratio} | {lost_text} | {f'{statistics.median(sent):.0f}' if sent else ''} |"
        )
        figures.append({"workload": load.name, "row": row.label, "events_per_s": rate, "ratio": ratio})
    print()
    for row in (r for r in load.rows if r.kind.startswith("archivist") and r.runs):
        if all(run["sent_per_s"] for run in row.runs) and (row is reference or row.emitter_heap):
            paired = [run["rate"] / run["sent_per_s"] for run in row.runs]
            print(
                f"{row.label} kept {statistics.median(paired):.0%} of the rate the emitter sent (median of its runs)."
            )

    rows = {row.label: row for row in load.rows if row.runs}
    for mine, theirs in load.compare:
        if mine in rows and theirs in rows:
            paired = [a["rate"] / b["rate"] for a, b in zip(rows[mine].runs, rows[theirs].runs, strict=False)]
            print(f"{mine} / {theirs}: {statistics.median(paired):.2f}x.")
    return figures


def scrape(args: argparse.Namespace) -> None:
    """bench/metrics_scrape.py's measurement, summed up as the ratio of herostools' time to archivist's."""
    from bench.metrics_scrape import measure

    print(f"\n### Metrics scrape: {args.sources} sources x 10 observables, {args.scrape_repeat} runs each\n")
    results = measure(args.sources, 10, args.scrape_repeat)
    print("| implementation | median ms | herostools' HTTP GET (logger at WARNING) / this |")
    print("| --- | ---: | ---: |")
    medians = {name: statistics.median(durations) * 1000 for name, durations, _ in results}
    herostools = next(ms for name, ms in medians.items() if name.startswith("herostools: HTTP GET"))
    for name, ms in medians.items():
        print(f"| {name} | {ms:.1f} | {herostools / ms:.2f}x |")


@contextlib.contextmanager
def storage(load: Workload) -> Iterator[tuple[dict[str, Any] | None, dict[str, Any] | None]]:
    """A moto S3 server of its own (from bench/zarr_append.py) when the workload needs one: storage_options and
    boto3 kwargs."""
    if not load.s3:
        yield None, None
        return
    with moto_s3(load.s3_delay) as (_, options):
        endpoint = options["client_kwargs"]["endpoint_url"]
        client = {"endpoint_url": endpoint, "aws_access_key_id": "x", "aws_secret_access_key": "x"}
        yield options, client | {"region_name": "us-east-1"}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    names = ["1mib-npy", "16x16-npy", "dict-json", "256kib-s3", "256kib-s3-remote", "zarr", "zarr-s3", "scrape"]
    parser.add_argument("--only", action="append", choices=names, help="run only this workload (repeatable)")
    parser.add_argument("--repeat", type=int, default=5, help="alternating runs of every row (default 5)")
    parser.add_argument("--frames-1mib", type=int, default=500)
    parser.add_argument("--frames-small", type=int, default=3000)
    parser.add_argument("--dicts", type=int, default=3000)
    parser.add_argument("--frames-s3", type=int, default=400)
    # a new array's first append (making the arrays) takes tens of ms in a stream: in 500 frames, a fifth of the run
    parser.add_argument("--frames-zarr", type=int, default=2000)
    parser.add_argument("--frames-zarr-s3", type=int, default=500)
    parser.add_argument("--sources", type=int, default=1000, help="datasources of the scrape (x 10 observables)")
    parser.add_argument("--scrape-repeat", type=int, default=5)
    parser.add_argument("--workers", type=int, default=4, help="archivist's writer threads on local disk")
    parser.add_argument("--s3-workers", type=int, default=8, help="archivist's writer threads on S3")
    parser.add_argument(
        "--s3-delay-ms", type=float, default=20, help="ms each request to the 'remote' S3 waits (default 20)"
    )
    parser.add_argument("--queue-mib", type=int, default=64, help="archivist's queue_max_bytes, in MiB")
    parser.add_argument("--timeout", type=float, default=300, help="seconds a row may take for one run")
    parser.add_argument("--stall", type=float, default=5, help="seconds without an event after which it is lost")
    parser.add_argument("--no-herostools", dest="herostools", action="store_false")
    args = parser.parse_args(argv)
    args.only = args.only or names
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # each table as soon as it is measured, also into a file
    import logging

    for name in ("archivist", "werkzeug"):  # werkzeug: moto's server logs every request
        logging.getLogger(name).setLevel(logging.WARNING)
    print("$", shlex.join([".venv/bin/python", "bench/run.py", *sys.argv[1:]]))
    venv = None
    loads = [load for load in workloads(args) if load.name in args.only]
    if any(row.herostools for load in loads for row in load.rows):
        try:
            venv = bench_python()
        except (OSError, subprocess.CalledProcessError) as exc:  # no herostools rows, the rest still runs
            print(f"herostools rows left out: could not install herostools into {VENV}: {exc}")
            args.herostools = False
            loads = [load for load in workloads(args) if load.name in args.only]
    failed = 0
    with tempfile.TemporaryDirectory(prefix="archivist-bench-") as tmp:
        for load in loads:
            with storage(load) as (options, client):
                ctx = {
                    "root": "s3://bench" if load.s3 else tmp,
                    "scratch": tmp,
                    "timeout": args.timeout,
                    "stall": args.stall,
                    "queue_bytes": args.queue_mib * MiB,
                    "options": options,
                    "boto3": client,
                    "venv": venv,
                }
                for rep in range(args.repeat):
                    for row in load.rows if rep % 2 == 0 else reversed(load.rows):
                        try:
                            row.runs.append(run_row(row, load, rep, ctx))
                        except Exception as exc:  # report it and go on with the other rows
                            failed += 1
                            print(f"{load.name} / {row.label}: FAILED: {type(exc).__name__}: {exc}", flush=True)
            report(load, args.repeat)
    if "scrape" in args.only:
        scrape(args)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

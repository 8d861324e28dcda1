"""The benchmark runner's plumbing, fast: its arguments, and one tiny row run in a process of its own.

No figures are checked: benchmarks run by hand (bench/run.py), never in the test suite.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from archivist.event import Received
from archivist.tuning import HEAP_ENVIRONMENT
from bench import compressors, disk_buffer, run
from tests.fixtures import heros_peer
from tests.fixtures.heros_peer import Emitter


def test_arguments_choose_workloads_and_sizes() -> None:
    args = run.parse_args(["--only", "16x16-npy", "--repeat", "1", "--frames-small", "7", "--no-herostools"])
    (load,) = [load for load in run.workloads(args) if load.name in args.only]
    assert (load.count, load.shape, load.item_bytes) == (7, [16, 16], 512)
    assert [row.kind for row in load.rows] == ["archivist-npy", "loop-npy", "subscriber"]
    assert run.parse_args([]).only == [
        "1mib-npy",
        "16x16-npy",
        "dict-json",
        "256kib-s3",
        "256kib-s3-remote",
        "zarr",
        "zarr-s3",
        "scrape",
    ]


def test_a_write_loop_row_runs_in_its_own_process_and_reports_its_memory(tmp_path: Path) -> None:
    args = run.parse_args(["--frames-small", "5", "--no-herostools"])
    load = next(load for load in run.workloads(args) if load.name == "16x16-npy")
    loop = next(row for row in load.rows if row.kind == "loop-npy")
    ctx = {"root": str(tmp_path), "scratch": str(tmp_path), "timeout": 30, "stall": 5, "queue_bytes": 2**20}
    result = run.run_row(loop, load, 0, ctx | {"options": None, "boto3": None, "venv": None})
    assert result["count"] == 5 and result["rate"] > 0
    assert result["peak_rss"] >= result["baseline_rss"] > 0
    assert not any((tmp_path / "16x16-npy").iterdir())  # each run's files are removed once it is measured


def test_the_disk_buffer_bench_gets_every_record_back() -> None:
    """``measure`` fails unless every record popped equals the one appended."""
    disk_buffer.measure(Received("@object/heros/cam/acquisition_data", bytes(range(256)) * 4), 20)


def test_every_compressors_setting_of_the_bench_stores_the_chunk() -> None:
    chunk = compressors.frames("noise", 2, [4, 4])
    for setting in compressors.CODECS.values():
        seconds, ratio = compressors.measure(setting, chunk, repeat=1)
        assert seconds > 0 and ratio > 0.5


def test_a_fresh_machine_gets_herostools_for_its_rows(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The bench venv is made on first use: without it the herostools rows were left out on every new machine."""
    monkeypatch.setattr(run, "VENV", tmp_path / "bench-venv")
    python = run.bench_python()
    assert python == str(tmp_path / "bench-venv" / "bin" / "python")
    subprocess.run([python, "-c", "import herostools.actor.archiver"], check=True)


def test_the_emitters_heap_rows_start_the_emitter_with_glibcs_heap_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rows that show what the device's allocator costs over TCP differ from the others in that alone."""
    args = run.parse_args(["--frames-1mib", "3", "--no-herostools"])
    load = next(load for load in run.workloads(args) if load.name == "1mib-npy")
    environments: list[set[str]] = []

    def start_emitter(*args: Any, **kwargs: Any) -> Emitter:
        emitter = heros_peer.start_emitter(*args, **kwargs)
        environments.append(set(Path(f"/proc/{emitter.proc.pid}/environ").read_text().split("\0")))
        return emitter

    monkeypatch.setattr(run, "start_emitter", start_emitter)
    ctx = {"root": str(tmp_path), "scratch": str(tmp_path), "timeout": 30, "stall": 5, "queue_bytes": 2**20}
    subscribers = [row for row in load.rows if row.kind == "subscriber" and not row.shared_memory]
    assert [row.emitter_heap for row in subscribers] == [False, True]
    for row in subscribers:
        assert run.run_row(row, load, 0, ctx | {"options": None, "boto3": None, "venv": None})["count"] == 3
    heap = {f"{name}={value}" for name, value in HEAP_ENVIRONMENT.items()}
    assert not heap & environments[0] and heap <= environments[1]

"""A burst of large frames into a slow store: nothing is lost, memory stays bounded, the backlog waits on disk.

The backlog beyond the queue bound goes to the disk buffer, in order; with ``when_full="spool"`` the writers
move it to the spool. The bound on the process's peak RSS growth (docs/reliability.md) is the queue bound, plus
what zenoh-python may hold before its callback thread (its FIFO of ``ZENOH_CHANNEL`` samples), plus three
frames per writer (the sample, its decoded copy, its encoding), plus a fixed overhead; the burst is more than
twice that, so a backlog kept in memory would fail the test.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from archivist import Spool
from archivist.decode import decode_payload
from archivist.tuning import HEAP_TRIM_THRESHOLD
from tests import support

SCRIPT = Path(__file__).resolve().parent / "peers" / "archiver_process.py"
MiB = 2**20
ZENOH_CHANNEL = 256  # samples zenoh's default FIFO holds for zenoh-python's callback thread
# The interpreter's and the allocator's own growth during the run, freed heap glibc keeps included (tuning lets it
# keep up to HEAP_TRIM_THRESHOLD): 26 to 46 MiB beside the other terms in about 25 runs.
FIXED_OVERHEAD = HEAP_TRIM_THRESHOLD


@pytest.mark.parametrize("when_full", ["block", "spool"])
def test_burst_into_a_slow_store_loses_nothing(heros_emitter, zenoh_config, zenoh_port, tmp_path, when_full):
    count, shape, queue_bytes, workers = 1200, [256, 512], 16 * MiB, 2  # 256 KiB frames: 300 MiB in a burst
    frame = 2 * shape[0] * shape[1]
    bound = queue_bytes + ZENOH_CHANNEL * frame + workers * 3 * frame + FIXED_OVERHEAD
    assert count * frame > 2 * bound
    dest, spool_dir = tmp_path / "dest", tmp_path / "spool"
    arguments = {
        "save_template": f"slow://{dest}/{{{{ frame }}}}.npy",
        "object_selector": "cam",
        "event_name": "acquisition_data",
        "zenoh_config": zenoh_config,
        "spool_dir": str(spool_dir),
        "queue_max_bytes": queue_bytes,
        "workers": workers,
        "when_full": when_full,
    }
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), json.dumps(arguments), "--delay", "0.02"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        baseline = json.loads(proc.stdout.readline())["baseline_rss"]
        emitter = heros_emitter("cam", zenoh_port)
        emitter.wait_subscribers("acquisition_data")
        emitter.burst("acquisition_data", count, shape, "uint16")
        support.wait_until(
            lambda: dest.is_dir() and len(list(dest.iterdir())) + len(Spool(spool_dir)) == count,
            timeout=60,
            what="every frame written or spooled",
        )
        out, _ = proc.communicate("", timeout=60)
    finally:
        proc.kill()
    report = json.loads(out.strip().splitlines()[-1])
    stats = report["stats"]
    assert stats["received"] == count and stats["written"] + stats["spooled"] == count
    grown = report["peak_rss"] - baseline
    print(
        f"when_full={when_full}: {count * frame / MiB:.0f} MiB burst, queue bound {queue_bytes / MiB:.0f} MiB, "
        f"peak RSS grew {grown / MiB:.1f} MiB (bound {bound / MiB:.0f} MiB); {stats['written']} written, "
        f"{stats['overflowed']} waited on disk, {stats['spooled']} spooled"
    )
    assert grown <= bound, f"peak RSS grew {grown / MiB:.1f} MiB, more than the bound of {bound / MiB:.0f} MiB"
    assert stats["overflowed"] > 0, "the burst fitted the queue: the disk buffer was not exercised"
    assert stats["buffered"] == 0 and not list(spool_dir.glob(".buffer/*")), "the disk buffer was not emptied"
    frames = sorted(int(p.name.split(".")[0]) for p in dest.iterdir())
    spooled = sorted(decode_payload(entry.payload)[1]["frame"] for _, entry in Spool(spool_dir).entries())
    assert sorted(frames + spooled) == list(range(count))
    if when_full == "spool":
        assert stats["spooled"] > 0 and stats["errors"] == {"QueueFullError": stats["spooled"]}
    else:
        assert stats["spooled"] == 0

"""Every example in examples/ runs, so none of them rots."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_demo_script_archives_frames_and_summaries(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "demo.py"), "--out", str(out), "--seconds", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    frames = sorted((out / "run-001" / "demo-camera").glob("frame-*.npy"))
    summaries = sorted((out / "run-001" / "demo-camera").glob("summary-*.json"))
    assert len(frames) >= 5 and len(frames) == len(summaries)
    frame = np.load(frames[0])
    assert frame.dtype == np.uint16 and frame.shape == (256, 256) and frame.max() > 0
    assert "0 failed" in result.stdout and not (out / "spool").exists()

"""`archivist run` as a service: the seed's BOSS config, SIGTERM during a stream, and kill -9."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archivist import Spool
from archivist.decode import decode_payload
from tests import support
from tests.peers.specs import burst_frame

SEED_TEMPLATE = "{{ file_path }}/testimg-{{ '%04d' % ( frame / 2 ) |round(0, 'floor') }}-{{ frame % 2 }}.npy"


class Service:
    """`python -m archivist run CONFIG` in its own process, with its output in files the test can poll."""

    def __init__(self, tmp_path: Path, config: Any, *args: str) -> None:
        self.config_path = tmp_path / "archivist.json"
        self.config_path.write_text(json.dumps(config))
        self.stdout_path, self.stderr_path = tmp_path / "service.out", tmp_path / "service.err"
        with self.stdout_path.open("w") as out, self.stderr_path.open("w") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "archivist", *args, "run", str(self.config_path)], stdout=out, stderr=err
            )

    @property
    def stdout(self) -> str:
        return self.stdout_path.read_text()

    @property
    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def wait_running(self) -> None:
        support.wait_until(
            lambda: "running" in self.stdout or self.proc.poll() is not None, what="archivist run to start"
        )
        assert self.proc.poll() is None, self.stderr

    def signal(self, signum: int) -> int:
        self.proc.send_signal(signum)
        return self.proc.wait(60)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Any]:
    started: list[Service] = []

    def start(config: Any, *args: str) -> Service:
        started.append(Service(tmp_path, config, *args))
        started[-1].wait_running()
        return started[-1]

    yield start
    for service in started:
        service.stop()


def _archiver_config(zenoh_config: dict, spool_dir: Path, **arguments: Any) -> dict[str, Any]:
    return {
        "_id": "my-camera-capturer",
        "classname": "herostools.actor.ArrayArchiver",
        "arguments": {"zenoh_config": zenoh_config, "spool_dir": str(spool_dir), **arguments},
    }


def test_seed_config_runs_and_exits_0_after_draining(service, heros_emitter, zenoh_port, zenoh_config, tmp_path):
    images = tmp_path / "images"
    config = _archiver_config(
        zenoh_config,
        tmp_path / "spool",
        object_selector="my-camera",
        event_name="acquisition_data",
        default_metadata={"file_path": str(images)},
        save_template=SEED_TEMPLATE,
    )
    running = service(config)
    assert "my-camera-capturer: @object/heros/my-camera/acquisition_data -> " in running.stdout
    emitter = heros_emitter("my-camera", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    emitter.burst("acquisition_data", 6, [16, 16], "uint16")
    names = [f"testimg-{frame // 2:04d}-{frame % 2}.npy" for frame in range(6)]
    support.wait_until(lambda: images.is_dir() and len(list(images.iterdir())) == 6, what="6 files")
    assert running.signal(signal.SIGTERM) == 0, running.stderr
    assert sorted(p.name for p in images.iterdir()) == names
    for frame, name in enumerate(names):
        np.testing.assert_array_equal(np.load(images / name), burst_frame(frame, [16, 16], "uint16"))
    assert "my-camera-capturer: 6 written, 0 failed" in running.stdout


def _frames_at(dest: Path) -> dict[int, Path]:
    frames = {}
    for path in dest.rglob("*"):
        if path.is_file():
            frame = int(path.name.split(".")[0])
            assert frame not in frames, f"frame {frame} stored twice: {path}, {frames.get(frame)}"
            frames[frame] = path
    return frames


def _spooled_frames(spool_dir: Path) -> list[int]:
    return [decode_payload(entry.payload)[1]["frame"] for _, entry in Spool(spool_dir).entries()]


def test_sigterm_during_a_stream_keeps_every_event(service, heros_emitter, zenoh_port, zenoh_config, tmp_path):
    count, shape = 150, [256, 512]  # 256 KiB frames
    dest, spool_dir = tmp_path / "dest", tmp_path / "spool"
    config = _archiver_config(
        zenoh_config,
        spool_dir,
        object_selector="cam",
        event_name="acquisition_data",
        save_template=str(dest) + "/{{ frame }}.npy",
        workers=1,
        queue_max_events=10,  # the rest of the burst waits in the disk buffer
        shutdown_timeout=0.2,
    )
    running = service(config, "--log-level", "debug")
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    emitter.burst("acquisition_data", count, shape, "uint16")
    support.wait_until(lambda: running.stderr.count(": received ") == count, what=f"{count} events received")
    assert running.signal(signal.SIGTERM) == 0, running.stderr[-3000:]

    stored = _frames_at(dest)
    spooled = _spooled_frames(spool_dir)
    assert sorted([*stored, *spooled]) == list(range(count))  # each event exactly once, here or there
    assert not (spool_dir / ".buffer").exists(), "the disk buffer was left behind"
    for frame, path in stored.items():
        np.testing.assert_array_equal(np.load(path), burst_frame(frame, shape, "uint16"))
    print(f"{len(stored)} written, {len(spooled)} spooled at shutdown")


def test_kill_9_leaves_no_partial_file(service, heros_emitter, zenoh_port, zenoh_config, tmp_path):
    count, shape = 60, [1024, 1024]  # 2 MiB frames
    dest = tmp_path / "dest"
    config = _archiver_config(
        zenoh_config,
        tmp_path / "spool",
        object_selector="cam",
        event_name="acquisition_data",
        save_template=str(dest) + "/{{ frame }}.npy",
    )
    running = service(config)
    emitter = heros_emitter("cam", zenoh_port)
    emitter.wait_subscribers("acquisition_data")
    emitter.burst("acquisition_data", count, shape, "uint16")
    support.wait_until(lambda: dest.is_dir() and len(list(dest.iterdir())) >= 5, what="the first files")
    assert running.signal(signal.SIGKILL) == -signal.SIGKILL

    leftovers = [p.name for p in dest.iterdir() if not p.name.endswith(".npy") or p.name.startswith(".")]
    assert leftovers == [], "files other than complete .npy files at the destination"
    for frame, path in _frames_at(dest).items():
        np.testing.assert_array_equal(np.load(path), burst_frame(frame, shape, "uint16"))
    assert all(entry.format == 1 for _, entry in Spool(tmp_path / "spool").entries())

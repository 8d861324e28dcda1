"""``archivist demo``: a simulated camera and sensor HERO stream into archivers, all in this one process.

Frames are archived as ``.npy``, sensor readings as ``.json``, and the readings plus the archivers' own
counters are served to Prometheus by a ``HERODatasourceStateMachine`` on a free local port.

Everything runs on a loopback-only zenoh link (multicast scouting off, TCP on 127.0.0.1), so the demo needs
no service and no network. The HEROs are real ``heros`` objects, so the bytes on the wire are a lab's bytes.
"""

from __future__ import annotations

import socket
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from .archivers import Archiver, ArrayArchiver, JsonArchiver
from .errors import ArchivistError
from .statemachine import HERODatasourceStateMachine

RUN = "run-001"
FRAME_SHAPE = (256, 256)
FRAME_INTERVAL = 0.04  # 25 frames per second
READINGS_EVERY = 5  # frames per sensor reading


def loopback_zenoh_config(*, listen_port: int | None = None, connect_port: int | None = None) -> dict[str, Any]:
    """A zenoh config that never leaves 127.0.0.1: multicast scouting off, TCP on loopback only."""
    return {
        "mode": "peer",
        "scouting": {"multicast": {"enabled": False}, "gossip": {"enabled": True}},
        "listen": {"endpoints": [f"tcp/127.0.0.1:{listen_port}"] if listen_port else []},
        "connect": {"endpoints": [f"tcp/127.0.0.1:{connect_port}"] if connect_port else []},
    }


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_demo(out: Path, seconds: float) -> int:
    """Stream for ``seconds``, archive under ``out``, print progress and a summary; 0 when nothing failed."""
    try:
        import heros
        from heros.zenoh import ZenohSessionManager
    except ImportError as exc:
        raise ArchivistError(
            f"the demo simulates its HEROs with the heros package ({exc}); "
            "install it with: pip install 'heros-archivist[demo]'"
        ) from exc

    out = out.resolve()
    port = free_port()
    with ExitStack() as stack:
        archivers = [
            stack.enter_context(archiver) for archiver in _archivers(out, loopback_zenoh_config(listen_port=port))
        ]
        metrics = stack.enter_context(
            HERODatasourceStateMachine(
                http_port=free_port(),
                bind_address="127.0.0.1",
                zenoh_config=loopback_zenoh_config(listen_port=port),
                name="demo",
                spool_dir=str(out / "spool"),
            )
        )
        # The HEROs get their own session manager: HEROS_ZENOH_CONFIG or zenoh's defaults must not apply here.
        sessions = ZenohSessionManager(loopback_zenoh_config(connect_port=port))
        stack.callback(sessions.force_close)
        camera, sensor = _heros(heros, sessions)
        stack.callback(camera._destroy_hero)
        stack.callback(sensor._destroy_hero)
        print(f"archivist demo: archiving to {out} for {seconds:g} s (zenoh on tcp/127.0.0.1:{port} only)")
        print(f"metrics (sensor readings and the archivers' own): {metrics.url}")
        _wait_matched(camera.acquisition_data.publisher, sensor.reading.publisher)
        _stream(camera, sensor, archivers, seconds)
        for archiver in archivers:
            archiver.drain(30)
    return _summary(out, archivers)


def _archivers(out: Path, zenoh_config: dict[str, Any]) -> list[Archiver]:
    common = {
        "root": str(out),
        "default_metadata": {"run": RUN},
        "zenoh_config": zenoh_config,
        "spool_dir": str(out / "spool"),
    }
    return [
        ArrayArchiver(
            name="camera-frames",
            object_selector="demo-camera",
            event_name="acquisition_data",
            save_template="{{ run }}/{{ source_name }}/frame-{{ '%05d' % frame }}.npy",
            **common,
        ),
        JsonArchiver(
            name="sensor-readings",
            object_selector="demo-sensor",
            event_name="reading",
            save_template="{{ run }}/{{ source_name }}/reading-{{ '%05d' % seq }}.json",
            **common,
        ),
    ]


def _heros(heros: Any, sessions: Any) -> tuple[Any, Any]:
    """A camera (a LocalHERO with an event) and a sensor (a datasource HERO), both real heros objects."""

    class DemoCamera(heros.LocalHERO):
        """Makes 256x256 uint16 frames of a spot circling the centre."""

        @heros.event
        def acquisition_data(self, frame: np.ndarray, metadata: dict) -> tuple:
            return frame, metadata

    class DemoSensor(heros.LocalDatasourceHERO):
        """Publishes its readings as a datasource (``observable_data``) and as one map per reading."""

        @heros.event
        def reading(self, record: dict) -> dict:
            return record

    return DemoCamera("demo-camera", session_manager=sessions), DemoSensor("demo-sensor", session_manager=sessions)


def _wait_matched(*publishers: Any, timeout: float = 10.0) -> None:
    """Publish only once the archivers subscribed, so the first frames are not sent into the void."""
    deadline = time.monotonic() + timeout
    while not all(publisher.matching_status.matching for publisher in publishers):
        if time.monotonic() > deadline:
            raise ArchivistError(f"the demo HEROs found no archiver on loopback within {timeout:g} s")
        time.sleep(0.01)


def _stream(camera: Any, sensor: Any, archivers: list[Archiver], seconds: float) -> None:
    yy, xx = np.mgrid[0 : FRAME_SHAPE[0], 0 : FRAME_SHAPE[1]]
    start = time.monotonic()
    frame = 0
    next_progress = start + 1
    try:  # Ctrl-C ends the stream early; what was sent is still archived and summed up
        while (now := time.monotonic()) < start + seconds:
            angle = frame / 10
            spot = np.exp(-((xx - 128 - 80 * np.cos(angle)) ** 2 + (yy - 128 - 80 * np.sin(angle)) ** 2) / 200)
            camera.acquisition_data((spot * 60000).astype(np.uint16), {"frame": frame, "exposure_ms": 5.0})
            if frame % READINGS_EVERY == 0:
                values = {"temperature": (21.5 + np.sin(angle) / 10, "degC"), "pressure": (1013 + np.cos(angle), "hPa")}
                sensor.observable_data(values)
                sensor.reading(
                    {"seq": frame // READINGS_EVERY, "time": time.time()} | {k: v[0] for k, v in values.items()}
                )
            frame += 1
            if now >= next_progress:
                next_progress += 1
                done = ", ".join(f"{archiver.name} {archiver.stats()['written']}" for archiver in archivers)
                print(
                    f"  {now - start:4.0f} s: sent {frame} frames, {frame // READINGS_EVERY} readings; archived {done}"
                )
            time.sleep(max(0.0, start + frame * FRAME_INTERVAL - time.monotonic()))
    except KeyboardInterrupt:
        print("  interrupted: archiving what was sent", flush=True)


def _summary(out: Path, archivers: list[Archiver]) -> int:
    failed = 0
    for archiver in archivers:
        stats = archiver.stats()
        failed += int(stats["failed"])
        print(
            f"{archiver.name}: {stats['written']} written, {stats['failed']} failed, "
            f"{int(stats['bytes_written']) / 2**20:.1f} MiB"
        )
    for suffix in (".npy", ".json"):
        files = sorted(out.rglob(f"*{suffix}"))
        if files:
            print(f"{len(files)} {suffix} files, e.g. {files[0]}")
    if failed:
        print(f"{failed} event(s) failed; they are kept in {out / 'spool'} (see `archivist replay`)")
    return 1 if failed else 0

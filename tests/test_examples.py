"""The demo and every example in examples/ run, so none of them rots."""

from __future__ import annotations

import io
import json
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from archivist import Archiver, Spool
from archivist.check import check_config
from archivist.config import ObjectConfig, load_config
from tests import support
from tests.metrics_support import scrape, value
from tests.peers.specs import burst_frame


def test_demo_archives_frames_and_readings_and_serves_metrics(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "archivist", "demo", "--seconds", "5", "--out", str(out)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as demo:
        lines = [demo.stdout.readline(), demo.stdout.readline()]
        url = lines[-1].rsplit(" ", 1)[-1].strip()
        assert url.startswith("http://127.0.0.1:"), lines
        labels = {"prefix": "demo-sensor", "key": "temperature", "unit": "degC"}
        support.wait_until(lambda: value(scrape(url), "demo_sensor_temperature_raw_value", **labels), what="a reading")
        stdout, stderr = demo.communicate(timeout=120)
    assert demo.returncode == 0, stderr
    frames = sorted((out / "run-001" / "demo-camera").glob("frame-*.npy"))
    readings = sorted((out / "run-001" / "demo-sensor").glob("reading-*.json"))
    assert len(frames) >= 25 and len(readings) >= 5
    frame = np.load(frames[0])
    assert frame.dtype == np.uint16 and frame.shape == (256, 256) and frame.max() > 0
    assert json.loads(readings[0].read_text())["seq"] == 0
    assert f"camera-frames: {len(frames)} written, 0 failed" in stdout
    assert f"sensor-readings: {len(readings)} written, 0 failed" in stdout
    assert not (out / "spool").exists()


def test_ctrl_c_ends_the_demo_early_and_what_was_sent_is_archived(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    argv = [sys.executable, "-m", "archivist", "demo", "--seconds", "60", "--out", str(out)]
    with subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as demo:
        while "archived" not in demo.stdout.readline():  # the first progress line: frames were sent
            assert demo.poll() is None, demo.stderr.read()
        demo.send_signal(signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=60)
    assert demo.returncode == 0 and "Traceback" not in stderr, stderr
    frames = sorted((out / "run-001" / "demo-camera").glob("frame-*.npy"))
    assert "interrupted: archiving what was sent" in stdout and frames
    assert f"camera-frames: {len(frames)} written, 0 failed" in stdout


def test_demo_without_heros_says_which_extra_to_install(tmp_path: Path) -> None:
    code = "import sys; sys.modules['heros'] = None; from archivist.cli import main; sys.exit(main(['demo']))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "pip install 'heros-archivist[demo]'" in result.stderr
    assert not (tmp_path / "archive-demo").exists()


# -- every example config, edited the way a user would, archives real events --------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
FRAMES, SHAPE, RUN = 4, [8, 8], "run-7"


@dataclass
class Site:
    """The storage an example is pointed at: the user's edits to the example file, and where to look after."""

    local: Path
    replacements: dict[str, str] = field(default_factory=dict)
    bucket: tuple[str, Any] | None = None
    smb_dir: Path | None = None
    metrics_port: int = 0


def _objects(site: Site) -> list[tuple[str, list[bytes]]]:
    """(key, bytes) of every object in the example's bucket."""
    name, client = site.bucket
    listing = client.list_objects_v2(Bucket=name).get("Contents", [])
    return [(item["Key"], client.get_object(Bucket=name, Key=item["Key"])["Body"].read()) for item in listing]


def _npy_frames(files: dict[str, bytes]) -> bool:
    """Whether ``files`` (name -> bytes) are exactly the FRAMES frames the emitter sent, frame number in the name."""
    if len(files) != FRAMES:
        return False
    for name, data in files.items():
        frame = int(re.findall(r"\d+", Path(name).name)[-1])
        np.testing.assert_array_equal(np.load(io.BytesIO(data)), burst_frame(frame, SHAPE, "uint16"))
    return True


def _tree(folder: Path, pattern: str) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob(pattern)} if folder.is_dir() else {}


def _seed_files(site: Site) -> bool:
    """The seed's names: testimg-0000-0.npy, testimg-0000-1.npy, testimg-0001-0.npy, ..."""
    expected = {site.local / "images" / f"testimg-{f // 2:04d}-{f % 2}.npy": f for f in range(FRAMES)}
    if sorted(site.local.rglob("*.npy")) != sorted(expected):
        return False
    for path, frame in expected.items():
        np.testing.assert_array_equal(np.load(path), burst_frame(frame, SHAPE, "uint16"))
    return True


def _readings(folder: Path, merged: bool) -> bool:
    files = _tree(folder / RUN, "my-sensor-*.json")
    if len(files) != FRAMES:
        return False
    for name, data in files.items():
        frame = int(Path(name).stem.rsplit("-", 1)[-1])
        expected = {"temperature": 20.0 + frame}
        if merged:
            expected["metadata"] = {"run": RUN, "frame": frame}
        assert json.loads(data) == expected
    return True


def _zarr_frames(site: Site) -> bool:
    import zarr

    store = site.local / "zarr" / f"{RUN}.zarr"
    if not store.is_dir():
        return False
    frames = zarr.open_array(str(store), path="my-camera/frames", mode="r")
    if frames.shape[0] != FRAMES:
        return False
    for index, frame in enumerate(frames[:]):
        np.testing.assert_array_equal(frame, burst_frame(index, SHAPE, "uint16"))
    return True


def _datasource_readings(site: Site) -> bool:
    """One file per publication of the datasource, named by its time, holding its one record whole."""
    files = _tree(site.local / "datasources" / "thermo-1", "*.json")
    if len(files) != FRAMES:
        return False
    for name, data in files.items():
        [record] = json.loads(data)
        assert record["id"] == "temperature" and record["raw_value"] in [20.0 + n for n in range(FRAMES)]
        assert Path(name).stem == f"{record['time']:.6f}"
    return True


def _metrics(site: Site) -> bool:
    samples = scrape(f"http://127.0.0.1:{site.metrics_port}/metrics")
    labels = {"lab": "B1", "prefix": "thermo-1", "key": "temperature", "unit": "degC"}
    return value(samples, "thermo_1_temperature_raw_value", **labels) == 21.5


# What each example archives and how to see it; a new example fails the test until it is added here.
EXAMPLE_CHECKS: dict[str, Callable[[Site], bool]] = {
    "local-npy.json": _seed_files,
    "s3-minio.json": lambda site: _npy_frames(dict(_objects(site))),
    "smb.json": lambda site: _npy_frames(_tree(site.smb_dir / "images" / RUN / "my-camera", "*.npy")),
    "json-merge-metadata.json": lambda site: _readings(site.local / "readings", merged=True),
    "zarr-append.json": _zarr_frames,
    "datasource-metrics.json": _metrics,
    "datasource-readings.json": _datasource_readings,
    "several.json": lambda site: (
        _npy_frames(_tree(site.local / "frames" / RUN / "my-camera", "*.npy"))
        and _readings(site.local / "readings", merged=False)
        and _metrics(site)
    ),
}


@pytest.mark.parametrize("name", sorted(path.name for path in EXAMPLES.iterdir()))
def test_every_example_archives_real_events(
    name, request, heros_emitter, zenoh_port, zenoh_config, tmp_path, monkeypatch
) -> None:
    assert name in EXAMPLE_CHECKS, f"examples/{name} is not covered by this test: add it to EXAMPLE_CHECKS"
    text = (EXAMPLES / name).read_text()
    site = Site(local=tmp_path / "storage", replacements={"/mnt/mystorage": str(tmp_path / "storage")})
    if '"http_port": 9090' in text:
        site.metrics_port = support.free_port()
        site.replacements |= {'"http_port": 9090': f'"http_port": {site.metrics_port}', '"localhost"': '"127.0.0.1"'}
    if "s3://" in text:
        bucket, options, client = request.getfixturevalue("s3_bucket")
        site.bucket = (bucket, client)
        site.replacements |= {"http://minio.lab:9000": options["client_kwargs"]["endpoint_url"], "lab-data": bucket}
        # credentials come from the environment, where s3fs (botocore) finds them
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    if "smb://" in text:
        smb = request.getfixturevalue("smb_server")
        site.smb_dir = smb.share_dir / f"example-{tmp_path.name}"
        site.replacements |= {
            "smb://fileserver/archive": smb.url(site.smb_dir.name).rstrip("/"),
            '"username": "archivist"': f'"username": "{smb.username}"',
            "change-me": smb.password,
        }
    for placeholder, replacement in site.replacements.items():
        text = text.replace(placeholder, replacement)
    edited = tmp_path / name
    edited.write_text(text)

    configs, objects = load_config(edited), []
    assert [f.message for c in configs for f in check_config(c) if f.level == "error"] == []  # `archivist check`
    try:
        for config in configs:
            extra = {"spool_dir": str(tmp_path / "spool")} if issubclass(config.resolve_class(), Archiver) else {}
            objects.append(config.build(zenoh_config=zenoh_config, **extra))
        _emit_for(configs, heros_emitter, zenoh_port)
        archivers = [obj for obj in objects if isinstance(obj, Archiver)]
        support.wait_until(
            lambda: all(a.stats()["received"] == FRAMES and a.is_queue_drained() for a in archivers),
            what="every event received and archived",
        )
        support.wait_until(lambda: EXAMPLE_CHECKS[name](site), what=f"what examples/{name} archives")
    finally:
        for obj in objects:
            obj.stop()
    assert len(Spool(tmp_path / "spool")) == 0


def _emit_for(configs: list[ObjectConfig], heros_emitter, zenoh_port: int) -> None:
    """Send what each object of an example listens to, from real heros peers."""
    emitters: dict[str, Any] = {}

    def emitter(name: str) -> Any:
        return emitters.get(name) or emitters.setdefault(name, heros_emitter(name, zenoh_port))

    for config in configs:
        event = config.arguments.get("event_name")
        if event is None:  # the state machine: readings from a real datasource HERO
            emitter("peer").datasource("thermo-1", {"temperature": [21.5, "degC"]})
            continue
        if event == "observable_data":  # a real datasource HERO publishes FRAMES readings
            for n in range(FRAMES):
                emitter("peer").datasource(config.arguments["object_selector"], {"temperature": [20.0 + n, "degC"]})
            continue
        peer = emitter(config.arguments["object_selector"])
        peer.wait_subscribers(event)
        if event == "acquisition_data":
            peer.burst(event, FRAMES, SHAPE, "uint16", metadata={"run": RUN})
        else:
            readings = [{"temperature": 20.0 + frame} for frame in range(FRAMES)]
            peer.emit(
                event,
                [{"form": "tuple", "data": r, "metadata": {"run": RUN, "frame": f}} for f, r in enumerate(readings)],
            )

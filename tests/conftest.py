"""Fixtures every test module may use: loopback zenoh, archivers that are always stopped, S3 on moto."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zenoh

from archivist import Archiver
from tests import support

pytest_plugins = ["tests.fixtures.heros_peer", "tests.fixtures.prometheus", "tests.fixtures.smb"]


@pytest.fixture
def zenoh_port() -> int:
    """The port the archivist's zenoh session listens on; peers connect to it."""
    return support.free_port()


@pytest.fixture
def zenoh_config(zenoh_port: int) -> dict[str, Any]:
    return support.loopback_zenoh_config(listen_port=zenoh_port)


@pytest.fixture
def spool_dir(tmp_path: Path) -> Path:
    return tmp_path / "spool"


@pytest.fixture
def blocker(tmp_path: Path) -> Path:
    """A file where a folder should be: nothing can be created under it, not even by root."""
    path = tmp_path / "blocker"
    path.write_text("a file where a folder should be")
    return path


@pytest.fixture(autouse=True)
def default_spool_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where objects built without a spool_dir (BOSS, the CLI, metrics observers) spool: never the home folder."""
    directory = tmp_path / "default-spool"
    monkeypatch.setenv("ARCHIVIST_SPOOL_DIR", str(directory))
    return directory


@pytest.fixture
def make_archiver(zenoh_config: dict[str, Any], spool_dir: Path) -> Iterator[Callable[..., Archiver]]:
    """Factory for archivers on the test's loopback zenoh config and spool; all stopped at teardown."""
    created: list[Archiver] = []

    def factory(cls: type[Archiver], **kwargs: Any) -> Archiver:
        kwargs.setdefault("zenoh_config", zenoh_config)
        kwargs.setdefault("spool_dir", str(spool_dir))
        kwargs.setdefault("retry_wait_min", 0.01)
        kwargs.setdefault("retry_wait_max", 0.05)
        archiver = cls(**kwargs)
        created.append(archiver)
        return archiver

    yield factory
    for archiver in created:
        archiver.stop(timeout=10)


@pytest.fixture
def raw_publisher(zenoh_port: int) -> Iterator[zenoh.Session]:
    """A plain zenoh session connected to the archivist, for payloads no HEROS peer would send."""
    config = support.loopback_zenoh_config(connect_port=zenoh_port)
    session = zenoh.open(zenoh.Config.from_json5(json.dumps(config)))
    yield session
    session.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[str]:
    """An S3 endpoint (moto's ThreadedMotoServer) on 127.0.0.1, standing in for MinIO."""
    from moto.server import ThreadedMotoServer

    port = support.free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def s3_bucket(moto_server: str) -> tuple[str, dict[str, Any], Any]:
    """A fresh bucket: its name, the archiver's storage_options for it, and a boto3 client to check objects."""
    return support.new_bucket(moto_server)

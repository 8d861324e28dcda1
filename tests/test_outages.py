"""Storage outages mid-stream: every event is stored exactly once, directly, after retries or via the spool.

The storage server is stopped while frames keep arriving and restarted on the same port a few seconds
later. Frames that outlive their retries go to the spool and are delivered again afterwards by
``archivist.replay``; the user then finds each frame exactly once, complete, under its own name: no loss,
no ``N.1.npy`` duplicate, no temporary file left behind.
"""

from __future__ import annotations

import io
import logging
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pytest

from archivist import Archiver, ArrayArchiver
from archivist.replay import replay
from archivist.spool import Spool
from tests import support
from tests.peers.specs import burst_frame

if TYPE_CHECKING:
    from moto.server import ThreadedMotoServer

    from tests.fixtures.heros_peer import Emitter
    from tests.fixtures.smb import SmbServer

log = logging.getLogger(__name__)

EVENT = "acquisition_data"
N = 40
BEFORE = 20  # frames sent while the storage is up; the rest arrive during the outage
SHAPE = (64, 64)
DTYPE = "uint16"
OUTAGE = 3.0  # seconds the storage stays down once every frame has arrived
EXPECTED = {f"{i}.npy" for i in range(N)}
# About 0.4 s of retries per event: events that arrive during the outage run out of them and are spooled.
SHORT_RETRIES = {"max_retries": 3, "retry_wait_min": 0.05, "retry_wait_max": 0.5}
# About 6.5 s of retries, longer than the outage: events being written when it ends get through.
LONG_RETRIES = {"max_retries": 10, "retry_wait_min": 0.05, "retry_wait_max": 1.0}
NO_BOTOCORE_RETRIES = {"config_kwargs": {"retries": {"total_max_attempts": 1}}}


class RestartableS3:
    """A moto S3 server of this test alone, so it can be stopped and started again on the same port.

    moto keeps buckets in process-global backends, not in the server, so they survive a restart.
    """

    def __init__(self) -> None:
        self.port = support.free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: ThreadedMotoServer | None = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        if self._server is None:
            self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
            self._server.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop()


@pytest.fixture
def restartable_s3() -> Iterator[RestartableS3]:
    server = RestartableS3()
    server.start()
    yield server
    server.stop()


def _stream_through_outage(
    archiver: Archiver,
    emitter: Emitter,
    spool_dir: Path,
    stop: Callable[[], None],
    start: Callable[[], None],
    *,
    storage_options: dict[str, Any],
    expect_spool: bool,
) -> None:
    """Send frames 0..BEFORE-1, stop the storage mid-stream, send the rest, keep it down, restart, replay."""
    emitter.wait_subscribers(EVENT)
    emitter.burst(EVENT, BEFORE, SHAPE, DTYPE)
    # A few frames are stored before the outage; the others are queued or being written when it starts.
    support.wait_until(lambda: archiver.stats()["written"] >= BEFORE // 4, timeout=60, what="first frames written")
    written_before = archiver.stats()["written"]
    stop()
    try:
        emitter.burst(EVENT, N - BEFORE, SHAPE, DTYPE, first=BEFORE)
        support.wait_until(lambda: archiver.stats()["received"] == N, timeout=60, what=f"{N} frames received")
        time.sleep(OUTAGE)  # the scenario itself: the storage stays away for a while
    finally:
        start()
    assert archiver.drain(timeout=120), "the archiver did not finish its queue after the storage came back"
    stats = archiver.stats()
    assert stats["written"] + stats["failed"] == N and stats["spool_failed"] == 0, stats
    if expect_spool:
        assert stats["failed"] > 0, f"no event outlived its retries, so the spool was not exercised: {stats}"

    report = replay(spool_dir, storage_options=storage_options)
    assert (report.entries, report.delivered, report.failures) == (stats["failed"], stats["failed"], []), report
    assert len(Spool(spool_dir)) == 0, "replayed events failed again"
    log.info(
        "%d written before the outage, %d after it or through retries (%d retries), %d spooled and replayed",
        written_before,
        stats["written"] - written_before,
        stats["retries"],
        report.delivered,
    )


def _assert_frame(name: str, data: bytes) -> None:
    index = int(name.removesuffix(".npy"))
    saved = np.load(io.BytesIO(data))
    assert saved.dtype == np.dtype(DTYPE) and saved.shape == SHAPE, name
    np.testing.assert_array_equal(saved, burst_frame(index, SHAPE, DTYPE), err_msg=name)


@pytest.mark.parametrize(
    ("extra_options", "retries", "expect_spool"),
    [
        # botocore retries a refused connection by itself, for about 11 s per call: it rides out the outage.
        pytest.param({}, SHORT_RETRIES, False, id="botocore-retries"),
        pytest.param(NO_BOTOCORE_RETRIES, SHORT_RETRIES, True, id="spool"),
        pytest.param(NO_BOTOCORE_RETRIES, LONG_RETRIES, False, id="archivist-retries"),
    ],
)
def test_s3_outage_loses_and_duplicates_nothing(
    make_archiver,
    heros_emitter,
    zenoh_port,
    spool_dir: Path,
    restartable_s3: RestartableS3,
    extra_options: dict[str, Any],
    retries: dict[str, Any],
    expect_spool: bool,
) -> None:
    bucket, options, client = support.new_bucket(restartable_s3.url, prefix="outage")
    options |= extra_options
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name=EVENT,
        save_template=f"s3://{bucket}/{{{{ frame }}}}.npy",
        storage_options=options,
        **retries,
    )
    emitter = heros_emitter("cam", zenoh_port)

    _stream_through_outage(
        archiver,
        emitter,
        spool_dir,
        restartable_s3.stop,
        restartable_s3.start,
        storage_options=options,
        expect_spool=expect_spool,
    )

    objects = client.list_objects_v2(Bucket=bucket).get("Contents", [])
    assert sorted(obj["Key"] for obj in objects) == sorted(EXPECTED)
    for obj in objects:
        _assert_frame(obj["Key"], client.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())


@pytest.mark.parametrize(
    ("retries", "expect_spool"),
    [pytest.param(SHORT_RETRIES, True, id="spool"), pytest.param(LONG_RETRIES, False, id="archivist-retries")],
)
def test_smb_outage_loses_and_duplicates_nothing(
    make_archiver,
    heros_emitter,
    zenoh_port,
    spool_dir: Path,
    smb_server: SmbServer,
    retries: dict[str, Any],
    expect_spool: bool,
) -> None:
    """smbd restarts: every client must log in again (a cached SMB filesystem would not, see store.py)."""
    folder = f"outage-{uuid.uuid4().hex[:8]}"
    credentials = {"username": smb_server.username, "password": smb_server.password}
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name=EVENT,
        save_template=smb_server.url(folder) + "/{{ frame }}.npy",
        storage_options=credentials,
        **retries,
    )
    emitter = heros_emitter("cam", zenoh_port)

    _stream_through_outage(
        archiver,
        emitter,
        spool_dir,
        smb_server.stop,
        smb_server.start,
        storage_options=credentials,
        expect_spool=expect_spool,
    )

    names = {path.name for path in (smb_server.share_dir / folder).iterdir()}
    assert {name for name in names if not name.startswith(".")} == EXPECTED
    for name in EXPECTED:
        _assert_frame(name, (smb_server.share_dir / folder / name).read_bytes())
    # Writes cut off mid-way leave hidden temporary files the store could not remove while smbd was down.
    assert not names - EXPECTED, f"temporary files left behind: {sorted(names - EXPECTED)}"

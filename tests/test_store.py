"""The store: atomic writes, on_exists, retries of transient errors, credentials kept out of errors."""

from __future__ import annotations

import threading
import uuid

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from archivist import DestinationExistsError, Store, WriteError
from archivist.retry import is_transient, retry_policy


class FlakyFileSystem(MemoryFileSystem):
    """A memory filesystem with folders and rename whose writes fail while ``failures`` is positive."""

    protocol = "flaky"
    failures = 0
    error: type[Exception] = ConnectionError

    def _open(self, path, mode="rb", **kwargs):
        if "w" in mode and FlakyFileSystem.failures > 0:
            FlakyFileSystem.failures -= 1
            raise FlakyFileSystem.error("storage went away")
        return super()._open(path, mode, **kwargs)


fsspec.register_implementation("flaky", FlakyFileSystem, clobber=True)


@pytest.fixture
def flaky():
    FlakyFileSystem.failures = 0
    FlakyFileSystem.error = ConnectionError
    yield FlakyFileSystem
    FlakyFileSystem.failures = 0


def _retrying(count: list[int], max_retries: int = 3):
    return retry_policy(max_retries, 0.001, 0.002, lambda state: count.append(state.attempt_number))


def test_local_write_creates_folders_and_leaves_no_temporary(tmp_path) -> None:
    written = Store().write(str(tmp_path / "a" / "b" / "c.bin"), [b"head", memoryview(b"body")])
    assert (tmp_path / "a" / "b" / "c.bin").read_bytes() == b"headbody"
    assert written.nbytes == 8 and not written.suffixed
    assert [p.name for p in (tmp_path / "a" / "b").iterdir()] == ["c.bin"]


def test_on_exists_modes(tmp_path) -> None:
    target = tmp_path / "x.tar.gz"
    target.write_bytes(b"old")
    suffixed = Store().write(str(target), [b"new"])
    assert suffixed.suffixed and suffixed.url.endswith("x.1.tar.gz") and target.read_bytes() == b"old"
    with pytest.raises(DestinationExistsError, match="exists and on_exists='error'"):
        Store(on_exists="error").write(str(target), [b"new"])
    Store(on_exists="overwrite").write(str(target), [b"new"])
    assert target.read_bytes() == b"new"


def test_concurrent_writers_never_share_a_name(tmp_path) -> None:
    store = Store()
    threads = [threading.Thread(target=store.write, args=(str(tmp_path / "same.npy"), [bytes([i])])) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    contents = sorted(p.read_bytes() for p in tmp_path.iterdir())
    assert contents == [bytes([i]) for i in range(20)]


def test_transient_errors_are_retried(flaky) -> None:
    flaky.failures = 2
    attempts: list[int] = []
    path = f"flaky://t-{uuid.uuid4().hex}/f.bin"
    Store(retrying=_retrying(attempts)).write(path, [b"data"])
    assert attempts == [1, 2] and fsspec.filesystem("flaky").cat_file(path) == b"data"


def test_retries_give_up_with_a_write_error(flaky) -> None:
    flaky.failures = 10
    attempts: list[int] = []
    with pytest.raises(WriteError, match="failed after 4 attempt") as error:
        Store(retrying=_retrying(attempts)).write(f"flaky://t-{uuid.uuid4().hex}/f.bin", [b"data"])
    assert error.value.attempts == 4 and len(attempts) == 3


def test_permanent_errors_are_not_retried(flaky) -> None:
    flaky.failures, flaky.error = 10, PermissionError
    attempts: list[int] = []
    with pytest.raises(WriteError, match="after 1 attempt"):
        Store(retrying=_retrying(attempts)).write(f"flaky://t-{uuid.uuid4().hex}/f.bin", [b"data"])
    assert attempts == []


def test_error_classification() -> None:
    class ClientError(Exception):
        def __init__(self, code: str, status: int) -> None:
            self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}

    assert is_transient(ConnectionError()) and is_transient(TimeoutError()) and is_transient(ValueError("smb"))
    assert is_transient(ClientError("SlowDown", 503)) and is_transient(ClientError("InternalError", 500))
    assert not is_transient(ClientError("AccessDenied", 403)) and not is_transient(PermissionError())
    assert not is_transient(DestinationExistsError("x"))


def test_credentials_stay_out_of_errors(tmp_path) -> None:
    with pytest.raises(WriteError) as error:
        Store(storage_options={"password": "hunter2"}).write("smb://bob:hunter2@127.0.0.1:1/share/x.bin", [b""])
    assert "hunter2" not in str(error.value)

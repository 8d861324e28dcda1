"""The store: atomic writes, on_exists, retries of transient errors, credentials kept out of errors."""

from __future__ import annotations

import contextlib
import errno
import threading
import uuid
from typing import ClassVar

import fsspec
import pytest
from fsspec.implementations.memory import MemoryFileSystem

from archivist import DestinationExistsError, Store, WriteError
from archivist.localfile import publish_file
from archivist.retry import is_transient, retry_policy
from tests import support


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


def test_names_on_different_storages_never_clash(tmp_path) -> None:
    """In-process claims stop two writers taking one free name; the same path on another storage (another SMB host,
    memory:// beside local disk) is another name."""
    store, path = Store(on_exists="error"), str(tmp_path / "a.npy")
    claimed, _, _ = store._claim(fsspec.filesystem("memory"), path, None)  # a write there, still in flight
    written = store.write(path, [b"local"])
    assert claimed == path and written.url == path and not written.suffixed
    assert (tmp_path / "a.npy").read_bytes() == b"local"


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


def test_an_s3_answer_that_will_not_change_is_not_retried(s3_bucket) -> None:
    """s3fs raises an OSError from botocore's ClientError: the S3 answer behind it decides."""
    bucket, options, _ = s3_bucket
    attempts: list[int] = []
    with pytest.raises(WriteError, match="after 1 attempt") as error:  # a typo in a bucket's name: NoSuchBucket
        Store(storage_options=options, retrying=_retrying(attempts)).write(f"s3://{bucket}-typo/f.bin", [b"data"])
    assert attempts == [] and "NoSuchBucket" in repr(error.value.__cause__.__cause__)


def test_error_classification() -> None:
    class ClientError(Exception):
        def __init__(self, code: str, status: int) -> None:
            self.response = {"Error": {"Code": code}, "ResponseMetadata": {"HTTPStatusCode": status}}

    assert is_transient(ConnectionError()) and is_transient(TimeoutError()) and is_transient(ValueError("smb"))
    assert is_transient(ClientError("SlowDown", 503)) and is_transient(ClientError("InternalError", 500))
    assert not is_transient(ClientError("AccessDenied", 403)) and not is_transient(PermissionError())
    assert not is_transient(DestinationExistsError("x"))
    assert is_transient(ClientError("ConditionalRequestConflict", 409))  # S3: a conditional write raced another


def test_credentials_stay_out_of_errors(tmp_path) -> None:
    with pytest.raises(WriteError) as error:
        Store(storage_options={"password": "hunter2"}).write("smb://bob:hunter2@127.0.0.1:1/share/x.bin", [b""])
    assert "hunter2" not in str(error.value)


class _PlainOSError(OSError):
    """Like smbprotocol's SMBOSError: an OSError subclass, so ENOENT does not make it a FileNotFoundError."""


class OutageFileSystem(MemoryFileSystem):
    """A memory filesystem whose operations fail, a given number of times each, as if the server were gone.

    ``lost_replies`` makes a rename happen and then fail, as when the connection drops before the reply;
    ``strict_folders`` refuses to create a file in a missing folder; ``smb_renames`` refuses to rename onto a
    taken name as SMB does (OSError EEXIST); ``rival`` is a path another client takes while a file is written.
    """

    protocol = "outage"
    failures: ClassVar[dict[str, int]] = {}
    lost_replies = 0
    strict_folders = False
    smb_renames = False
    rival: str | None = None

    @classmethod
    def _strip_protocol(cls, path):
        return super()._strip_protocol(path.removeprefix("outage://"))

    @classmethod
    def _fail(cls, operation: str) -> None:
        if cls.failures.get(operation, 0) > 0:
            cls.failures[operation] -= 1
            raise ConnectionError(f"{operation}: storage went away")

    def info(self, path, **kwargs):
        self._fail("info")
        return super().info(path, **kwargs)

    def _open(self, path, mode="rb", **kwargs):
        if "w" in mode:
            self._fail("write")
            if OutageFileSystem.strict_folders and not self.isdir(self._parent(path)):
                raise _PlainOSError(errno.ENOENT, "No such file or directory", path)
            if OutageFileSystem.rival and path.endswith(".partial") and not self.exists(OutageFileSystem.rival):
                super().pipe_file(OutageFileSystem.rival, b"rival")
        return super()._open(path, mode, **kwargs)

    def mv(self, path1, path2, **kwargs):
        self._fail("mv")
        if OutageFileSystem.smb_renames and self.exists(path2):
            raise _PlainOSError(errno.EEXIST, "File exists", path2)
        super().mv(path1, path2, **kwargs)
        if OutageFileSystem.lost_replies > 0:
            OutageFileSystem.lost_replies -= 1
            raise ConnectionError("connection lost before the reply")

    def rm_file(self, path):
        self._fail("rm")
        super().rm_file(path)


fsspec.register_implementation("outage", OutageFileSystem, clobber=True)


def _reset_outage() -> None:
    OutageFileSystem.failures, OutageFileSystem.lost_replies, OutageFileSystem.strict_folders = {}, 0, False
    OutageFileSystem.smb_renames, OutageFileSystem.rival = False, None


@pytest.fixture
def outage():
    _reset_outage()
    yield OutageFileSystem
    _reset_outage()


def _names(folder: str) -> list[str]:
    return sorted(path.rsplit("/", 1)[-1] for path in fsspec.filesystem("outage").ls(folder, detail=False))


def test_an_unreachable_storage_never_makes_a_taken_name_look_free(outage) -> None:
    """fs.exists answers False on any error; the retry, which replaces its name, would overwrite the file."""
    folder = f"outage://t-{uuid.uuid4().hex}"
    fsspec.filesystem("outage").pipe_file(f"{folder}/same.npy", b"precious")
    outage.failures = {"info": 1, "write": 1}
    written = Store(retrying=_retrying([])).write(f"{folder}/same.npy", [b"new"])
    assert written.suffixed and written.url == f"{folder}/same.1.npy"
    fs = fsspec.filesystem("outage")
    assert fs.cat_file(f"{folder}/same.npy") == b"precious" and fs.cat_file(f"{folder}/same.1.npy") == b"new"


def test_a_lost_reply_leaves_the_write_in_doubt_and_resume_stores_it_once(outage) -> None:
    folder = f"outage://t-{uuid.uuid4().hex}"
    outage.lost_replies = 10
    with pytest.raises(WriteError, match=r"may be stored as outage://.*/frame\.npy") as error:
        Store(retrying=_retrying([], max_retries=1)).write(f"{folder}/frame.npy", [b"frame"])
    assert error.value.in_doubt and error.value.attempts == 2
    outage.lost_replies = 0

    again = Store().write(f"{folder}/frame.npy", [b"fr", b"ame"], resume=True)
    assert again.url == f"{folder}/frame.npy" and not again.suffixed and again.nbytes == 5
    assert _names(folder) == ["frame.npy"]
    # Other bytes under the name are another event's: resuming never takes them for its own.
    assert Store().write(f"{folder}/frame.npy", [b"other"], resume=True).url == f"{folder}/frame.1.npy"
    # Only a resumed write matches existing files; a live event always gets a file of its own.
    assert Store().write(f"{folder}/frame.npy", [b"frame"]).url == f"{folder}/frame.2.npy"


def test_a_write_that_failed_before_publishing_is_not_in_doubt(outage) -> None:
    outage.failures = {"write": 10}
    with pytest.raises(WriteError) as error:
        Store(retrying=_retrying([], max_retries=1)).write(f"outage://t-{uuid.uuid4().hex}/f.bin", [b"data"])
    assert not error.value.in_doubt and "may be stored" not in str(error.value)


def test_temporaries_an_outage_left_are_removed_once_the_storage_answers(outage) -> None:
    folder = f"outage://t-{uuid.uuid4().hex}"
    store = Store()
    outage.failures = {"mv": 1, "rm": 1}  # the rename fails, and so does removing the temporary file
    with pytest.raises(WriteError):
        store.write(f"{folder}/a.npy", [b"a"])
    assert [name.endswith(".partial") and name.startswith(".a.npy.") for name in _names(folder)] == [True]
    store.write(f"{folder}/b.npy", [b"b"])
    assert _names(folder) == ["b.npy"]


def test_a_replay_removes_the_temporaries_its_event_left_behind(outage) -> None:
    """The archiver whose write failed may be gone by the time the storage answers; the replay tidies up."""
    folder = f"outage://t-{uuid.uuid4().hex}"
    outage.failures = {"mv": 1, "rm": 1}
    with pytest.raises(WriteError):
        Store().write(f"{folder}/a.npy", [b"a"])
    for other in (".b.npy.0123456789ab.partial", ".a.npy.1.0123456789ab.partial"):  # other names' (`a.npy.1`)
        fsspec.filesystem("outage").pipe_file(f"{folder}/{other}", b"another event's")
    assert len(_names(folder)) == 3

    Store().write(f"{folder}/a.npy", [b"a"], resume=True)
    assert _names(folder) == [".a.npy.1.0123456789ab.partial", ".b.npy.0123456789ab.partial", "a.npy"]


def test_a_vanished_folder_is_created_again_even_when_reported_as_a_plain_oserror(outage) -> None:
    """smbprotocol reports a missing folder as OSError(ENOENT), not FileNotFoundError."""
    folder = f"outage://t-{uuid.uuid4().hex}"
    outage.strict_folders = True
    store = Store(retrying=_retrying([]))
    store.write(f"{folder}/run/a.npy", [b"a"])
    fsspec.filesystem("outage").rm(f"{folder}/run", recursive=True)
    store.write(f"{folder}/run/b.npy", [b"b"])
    assert _names(f"{folder}/run") == ["b.npy"]


def test_local_writes_without_o_tmpfile_fall_back_to_a_rename(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr("archivist.localfile._O_TMPFILE", 0)
    Store().write(str(tmp_path / "f.npy"), [b"data"])
    assert Store().write(str(tmp_path / "f.npy"), [b"more"]).url.endswith("f.1.npy")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"f.npy": b"data", "f.1.npy": b"more"}


def test_a_local_name_another_process_takes_after_the_check_is_not_overwritten(tmp_path, monkeypatch) -> None:
    """The free-name check and the write are two steps; linking the finished file refuses a taken name, and the next
    free one is taken in the same attempt (a store allowed no retry still writes)."""
    import archivist.store

    target = tmp_path / "frame.npy"

    def publish_after_a_rival(path, chunks, *, replace, fsync=False):
        if not target.exists():
            target.write_bytes(b"rival")  # another process, between our check and our write
        publish_file(path, chunks, replace=replace, fsync=fsync)

    monkeypatch.setattr(archivist.store, "publish_file", publish_after_a_rival)
    written = Store().write(str(target), [b"ours"])
    assert written.url.endswith("frame.1.npy")
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"frame.npy": b"rival", "frame.1.npy": b"ours"}


class _RivalFirst(list):
    """Chunks whose first reading lets another process take ``target``: between our check and our rename."""

    def __init__(self, target, chunks) -> None:
        super().__init__(chunks)
        self.target = target

    def __iter__(self):
        if not self.target.exists():
            self.target.write_bytes(b"rival")
        return super().__iter__()


@pytest.mark.parametrize("links", [True, False], ids=["hard-links", "no-hard-links"])
def test_without_o_tmpfile_a_name_taken_after_the_check_is_not_overwritten(tmp_path, monkeypatch, links) -> None:
    """On NFS or SMB mounts (no O_TMPFILE) the file is renamed into place; a rename would replace the rival's file."""
    monkeypatch.setattr("archivist.localfile._O_TMPFILE", 0)
    if not links:  # vfat and some SMB mounts: the name is looked up just before the rename instead
        monkeypatch.setattr("archivist.localfile.os.link", lambda *_: (_ for _ in ()).throw(OSError(errno.EPERM, "no")))
    target = tmp_path / "frame.npy"
    written = Store().write(str(target), _RivalFirst(target, [b"ours"]))
    assert written.url.endswith("frame.1.npy") and written.suffixed
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == {"frame.npy": b"rival", "frame.1.npy": b"ours"}


@pytest.mark.parametrize("max_retries", [0, 3])
def test_on_smb_a_name_taken_after_the_check_is_neither_overwritten_nor_a_failure(outage, max_retries) -> None:
    """SMB refuses to rename onto a taken name with a plain OSError; that is the next name's turn, not an error
    to retry (whose retry, in doubt, used to remove the other client's file)."""
    folder = f"outage://t-{uuid.uuid4().hex}"
    outage.smb_renames, outage.rival = True, f"/{folder.removeprefix('outage://')}/frame.npy"
    written = Store(retrying=_retrying([], max_retries)).write(f"{folder}/frame.npy", [b"ours"])
    assert written.url == f"{folder}/frame.1.npy"
    fs = fsspec.filesystem("outage")
    assert fs.cat_file(f"{folder}/frame.npy") == b"rival" and fs.cat_file(f"{folder}/frame.1.npy") == b"ours"


def test_on_smb_a_rename_whose_reply_was_lost_is_not_stored_twice(outage) -> None:
    folder = f"outage://t-{uuid.uuid4().hex}"
    outage.smb_renames, outage.lost_replies = True, 1  # the rename happened; the retry finds its own file there
    written = Store(retrying=_retrying([])).write(f"{folder}/frame.npy", [b"ours"])
    assert written.url == f"{folder}/frame.npy" and _names(folder) == ["frame.npy"]


NOT_IMPLEMENTED = (  # what S3 answered to a conditional PUT before it had conditional writes
    b'<?xml version="1.0" encoding="UTF-8"?><Error><Code>NotImplemented</Code><Message>A header you provided '
    b"implies functionality that is not implemented</Message><Header>If-None-Match</Header></Error>"
)


class RecordingS3:
    """A moto S3 server of its own on 127.0.0.1 that records every request (method, key). ``if_none_match``:
    "honour" (moto's own), "ignore" (the header is dropped first, as by a server that does not know it) or
    "refuse" (a PUT carrying it is answered 501 NotImplemented, as by servers older than conditional writes)."""

    def __init__(self) -> None:
        from moto.server import ThreadedMotoServer

        self.requests: list[tuple[str, str]] = []
        self.if_none_match = "honour"
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=support.free_port(), verbose=False)
        self._server.start()
        app = self._server._server.app  # werkzeug's server calls its .app for each request

        def recording(environ, start_response):
            self.requests.append((environ["REQUEST_METHOD"], environ["PATH_INFO"].split("/", 2)[-1]))
            if self.if_none_match == "refuse" and "HTTP_IF_NONE_MATCH" in environ:
                start_response("501 Not Implemented", [("Content-Type", "application/xml")])
                return [NOT_IMPLEMENTED]
            if self.if_none_match == "ignore":
                environ.pop("HTTP_IF_NONE_MATCH", None)
            return app(environ, start_response)

        self._server._server.app = recording
        host, port = self._server.get_host_and_port()
        self.bucket, self.options, self.client = support.new_bucket(f"http://{host}:{port}")
        self.requests.clear()

    def objects(self) -> dict[str, bytes]:
        listed = self.client.list_objects_v2(Bucket=self.bucket).get("Contents", [])
        return {o["Key"]: self.client.get_object(Bucket=self.bucket, Key=o["Key"])["Body"].read() for o in listed}

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def recording_s3():
    server = RecordingS3()
    yield server
    server.stop()


@pytest.mark.parametrize(
    ("if_none_match", "first", "requests"),
    [
        (
            "honour",
            [("HEAD", "first.npy"), ("PUT", "first.npy"), ("PUT", "first.npy")],
            [("PUT", "a.npy"), ("PUT", "taken.npy"), ("HEAD", "taken.npy"), ("HEAD", "taken.1.npy")],
        ),
        (
            "ignore",
            [("HEAD", "first.npy"), ("PUT", "first.npy"), ("PUT", "first.npy")],
            [("HEAD", "a.npy"), ("PUT", "a.npy"), ("HEAD", "taken.npy"), ("HEAD", "taken.1.npy")],
        ),
        (
            "refuse",
            [("HEAD", "first.npy"), ("PUT", "first.npy"), ("PUT", "first.npy")],  # 501, then without the header
            [("HEAD", "a.npy"), ("PUT", "a.npy"), ("HEAD", "taken.npy"), ("HEAD", "taken.1.npy")],
        ),
    ],
)
def test_s3_names_are_looked_up_only_where_the_server_could_overwrite(
    recording_s3, if_none_match, first, requests
) -> None:
    """The store's first small file is put again with If-None-Match. Refused: later files are one PUT, without a
    HEAD first, and a name the PUT finds taken is looked up from then on. Stored again (the same bytes): every name
    is looked up before its PUT. A server that does not implement the header (501) gets PUTs without it, each
    name looked up first. Either way a taken name is never overwritten and every file is stored."""
    s3 = recording_s3
    s3.if_none_match = if_none_match
    store = Store(storage_options=s3.options, retrying=_retrying([]))
    store.write(f"s3://{s3.bucket}/first.npy", [b"first"])
    assert s3.requests == first
    s3.client.put_object(Bucket=s3.bucket, Key="taken.npy", Body=b"precious")
    s3.requests.clear()
    for name in ("a.npy", "taken.npy"):
        store.write(f"s3://{s3.bucket}/{name}", [name.encode()])
    assert s3.requests == [*requests, ("PUT", "taken.1.npy")]
    assert s3.objects() == {
        "first.npy": b"first",
        "a.npy": b"a.npy",
        "taken.npy": b"precious",
        "taken.1.npy": b"taken.npy",
    }


@pytest.mark.parametrize("taken", [False, True], ids=["put-stored", "put-refused"])
def test_an_s3_put_whose_reply_was_lost_is_neither_stored_twice_nor_overwrites(
    recording_s3, monkeypatch, taken
) -> None:
    """The put reaches the server, which stores the file (or refuses it: another client took the name since it was
    looked up), but the answer is lost. The retry's put carries If-None-Match too: refused, the name holds either
    this very file (done) or another's, which stays as it is."""
    import s3fs

    s3 = recording_s3
    real_put = s3fs.S3FileSystem._pipe_file
    lost = []

    async def put_and_lose_the_reply(self, path, data, *args, **kwargs):
        if lost:
            return await real_put(self, path, data, *args, **kwargs)
        lost.append(path)
        if taken:  # another client, between the lookup and the put
            s3.client.put_object(Bucket=s3.bucket, Key="frame.npy", Body=b"precious")
        with contextlib.suppress(FileExistsError):
            await real_put(self, path, data, *args, **kwargs)
        raise ConnectionError("connection reset before the reply")

    monkeypatch.setattr(s3fs.S3FileSystem, "_pipe_file", put_and_lose_the_reply)
    written = Store(storage_options=s3.options, retrying=_retrying([])).write(f"s3://{s3.bucket}/frame.npy", [b"ours"])
    assert lost == [f"{s3.bucket}/frame.npy"]
    if taken:
        assert written.url.endswith("/frame.1.npy")
        assert s3.objects() == {"frame.npy": b"precious", "frame.1.npy": b"ours"}
    else:
        assert written.url.endswith("/frame.npy")
        assert s3.objects() == {"frame.npy": b"ours"}


def test_on_exists_error_holds_where_names_are_not_looked_up_first(recording_s3) -> None:
    s3 = recording_s3
    store = Store(storage_options=s3.options, on_exists="error", retrying=_retrying([]))
    store.write(f"s3://{s3.bucket}/first.npy", [b"first"])  # the server is seen to honour If-None-Match
    s3.client.put_object(Bucket=s3.bucket, Key="taken.npy", Body=b"precious")
    s3.requests.clear()
    with pytest.raises(DestinationExistsError, match=r"taken\.npy exists"):
        store.write(f"s3://{s3.bucket}/taken.npy", [b"ours"])
    assert s3.requests == [("PUT", "taken.npy"), ("HEAD", "taken.npy")]
    assert s3.objects() == {"first.npy": b"first", "taken.npy": b"precious"}

"""Checks that the smb_server fixture serves a real, writable share to fsspec and survives restarts."""

from __future__ import annotations

import errno
import uuid
from typing import TYPE_CHECKING

import fsspec
import pytest
from fsspec.implementations.smb import SMBFileSystem
from smbprotocol.exceptions import SMBAuthenticationError, SMBException

from tests.support import wait_until

if TYPE_CHECKING:
    from tests.fixtures.smb import SmbServer

# Loaded as a plugin (not imported directly) so pytest can assert-rewrite it and register the fixture.
pytest_plugins = ["tests.fixtures.smb"]


def fresh_fs(server: SmbServer) -> SMBFileSystem:
    """A new SMBFileSystem that logs in again; fsspec's instance cache would hand back a stale one."""
    return fsspec.filesystem("smb", skip_instance_cache=True, **server.storage_options())


def test_fsspec_write_lands_in_share_dir(smb_server: SmbServer) -> None:
    fs = fresh_fs(smb_server)
    base = f"run-{uuid.uuid4().hex}"
    payload = bytes(range(256)) * 64
    fs.makedirs(smb_server.remote_path(f"{base}/2026/05"), exist_ok=True)
    tmp, final = (
        smb_server.remote_path(f"{base}/2026/05/x.npy.tmp"),
        smb_server.remote_path(f"{base}/2026/05/x.npy"),
    )
    with fs.open(tmp, "wb") as f:
        f.write(payload)
    fs.mv(tmp, final)

    assert (smb_server.share_dir / base / "2026" / "05" / "x.npy").read_bytes() == payload
    assert not (smb_server.share_dir / base / "2026" / "05" / "x.npy.tmp").exists()
    assert fs.cat(final) == payload

    url_fs, path = fsspec.url_to_fs(
        smb_server.url(f"{base}/2026/05/x.npy"), username=smb_server.username, password=smb_server.password
    )
    assert path == final
    assert (url_fs.host, url_fs.port) == (smb_server.host, smb_server.port)
    assert url_fs.cat(path) == payload


def test_mv_refuses_to_overwrite(smb_server: SmbServer) -> None:
    """SMB rename is not POSIX rename: an existing target makes fs.mv fail instead of being replaced."""
    fs = fresh_fs(smb_server)
    a, b = smb_server.remote_path(f"{uuid.uuid4().hex}.a"), smb_server.remote_path(f"{uuid.uuid4().hex}.b")
    fs.pipe(a, b"new")
    fs.pipe(b, b"old")
    with pytest.raises(OSError) as excinfo:
        fs.mv(a, b)
    assert excinfo.value.errno == errno.EEXIST
    assert fs.cat(b) == b"old"


def test_write_after_restart(smb_server: SmbServer) -> None:
    fs = fresh_fs(smb_server)
    name = f"{uuid.uuid4().hex}.bin"
    stream = fs.open(smb_server.remote_path(name), "wb")
    stream.write(b"before")
    stream.flush()
    try:
        smb_server.stop()
        with pytest.raises(SMBException):
            stream.write(b"lost")
            stream.flush()
    finally:
        smb_server.start()

    def write_again() -> bool:
        try:
            fresh_fs(smb_server).pipe(smb_server.remote_path(name), b"after")
        except (OSError, SMBException, ValueError):
            return False
        return True

    wait_until(write_again, timeout=20, what="a write through a fresh SMB session after restart")
    assert (smb_server.share_dir / name).read_bytes() == b"after"


def test_cached_filesystem_needs_fresh_login_after_restart(smb_server: SmbServer) -> None:
    """fsspec sends credentials only when the instance is built; later reconnects go out anonymous."""
    fs = fresh_fs(smb_server)
    path = smb_server.remote_path(f"{uuid.uuid4().hex}.bin")
    fs.pipe(path, b"1")
    try:
        smb_server.stop()
    finally:
        smb_server.start()
    with pytest.raises(SMBAuthenticationError):
        fs.pipe(path, b"2")
    fresh_fs(smb_server)  # re-registers a credentialed session in smbclient's global pool
    fs.pipe(path, b"3")
    assert fs.cat(path) == b"3"

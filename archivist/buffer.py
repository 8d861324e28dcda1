"""A first-in first-out buffer of received events on local disk, for when the memory queue is full.

zenoh cannot be held back safely (blocking its receive thread loses reliable samples, see
docs/reliability.md), so a burst the storage cannot keep up with must wait somewhere. Here it waits in
append-only segment files instead of RAM: the process's memory stays within the queue bound, and the
events are still delivered in order, automatically. Records are ``header | key | payload``, written without
copying the payload. Each buffer is a folder of its own, locked while its process lives, so the folder of a
process that was killed can be told apart and its events recovered (``recover_buffers``). A file ``position``
beside the segments says where the oldest record not yet handled (written or spooled) begins, so that only
those are recovered: a record handed out by ``pop`` counts as handled once its taker calls ``done``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import struct
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from .event import Received

_HEADER = struct.Struct("<QId")  # payload length, key length, received_at
_POSITION = struct.Struct("<QQ")  # segment, offset of the oldest record not yet handled
_SEGMENT_BYTES = 64 * 2**20
_SUFFIX = ".seg"
_LOCK = ".lock"
_POSITION_NAME = "position"

log = logging.getLogger(__name__)


class DiskBuffer:
    """Events in arrival order, appended by the zenoh callback and popped by the writers, who call ``done`` once
    they have handled each.

    The folder is created on the first append, so an archiver that never falls behind leaves no trace.
    """

    def __init__(self, directory: str | os.PathLike[str], segment_bytes: int = _SEGMENT_BYTES) -> None:
        self.directory = Path(directory)
        self._segment_bytes = segment_bytes
        self._lock = threading.Lock()
        self._lock_file: IO[str] | None = None
        self._position_fd: int | None = None
        self._write_fd: int | None = None
        self._read_fd: int | None = None
        self._count = 0
        self._read_segment = self._read_offset = self._write_segment = self._write_size = 0
        self._taken: set[tuple[int, int]] = set()  # where the records popped but not yet done begin
        self._events: dict[int, tuple[int, int]] = {}  # id of a popped event -> where its record begins
        self._kept = 0  # segments before this one are removed

    def __len__(self) -> int:
        with self._lock:
            return self._count

    def append(self, received: Received) -> None:
        """Add an event at the end; an OSError (a full disk) leaves the buffer as it was."""
        key = received.key_expr.encode()
        header = _HEADER.pack(len(received.raw), len(key), received.received_at)
        with self._lock:
            if self._lock_file is None:
                self.directory.mkdir(parents=True, exist_ok=True)
                self._lock_file = _locked(self.directory)
            if self._position_fd is None:
                self._position_fd = os.open(self.directory / _POSITION_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            if self._write_fd is None:
                self._write_fd = self._open_segment(self._write_segment)
            elif self._write_size >= self._segment_bytes:
                fd = self._open_segment(self._write_segment + 1)  # first, so a failure leaves the state as it was
                os.close(self._write_fd)
                self._write_fd, self._write_segment, self._write_size = fd, self._write_segment + 1, 0
            try:
                _write_all(self._write_fd, [header, key, received.raw])
            except BaseException:  # a full disk: no part of the record may stay for the reader to misread
                os.ftruncate(self._write_fd, self._write_size)
                raise
            self._write_size += len(header) + len(key) + len(received.raw)
            self._count += 1

    def pop(self) -> Received | None:
        """The oldest event, or None when the buffer is empty; call ``done`` with it once it is handled.

        Only the record's header is read under the lock; its payload is read after, from a duplicate of the
        segment's descriptor, so ``append`` never waits for that read.
        """
        with self._lock:
            if self._count == 0:
                return None
            while self._read_offset >= self._segment_size(self._read_segment):  # read to its end: the next one
                self._close_reader()
                self._read_segment, self._read_offset = self._read_segment + 1, 0
            if self._read_fd is None:
                self._read_fd = os.open(self._path(self._read_segment), os.O_RDONLY)
            where = (self._read_segment, self._read_offset)
            offset = self._read_offset + _HEADER.size
            length, key_length, received_at = _HEADER.unpack(
                os.pread(self._read_fd, _HEADER.size, offset - _HEADER.size)
            )
            fd = os.dup(self._read_fd)  # before any change: an error here leaves the record for the next pop
            self._read_offset = offset + key_length + length
            self._count -= 1
            self._taken.add(where)  # before the lock is let go: the position never passes a record in hand
        try:
            key, raw = os.pread(fd, key_length, offset), os.pread(fd, length, offset + key_length)
            if len(key) != key_length or len(raw) != length:
                raise OSError(f"disk buffer {self.directory}: record at {offset} is cut short")
        except OSError:  # nothing can be made of it now: handled, as far as the buffer goes, so it moves on
            with self._lock:
                self._taken.discard(where)
                self._release_handled()
            raise
        finally:
            os.close(fd)
        received = Received(key.decode(), raw, received_at)
        with self._lock:
            self._events[id(received)] = where
        return received

    def done(self, received: Received) -> None:
        """``received`` (from ``pop``) is written or spooled: a later recovery need not deliver it again."""
        with self._lock:
            where = self._events.pop(id(received), None)
            if where is not None:
                self._taken.discard(where)
                self._release_handled()

    def oldest_received_at(self) -> float | None:
        """When the oldest event in the buffer was received, or None when it is empty."""
        with self._lock:
            if self._count == 0:
                return None
            segment, offset = self._read_segment, self._read_offset
            if offset >= self._segment_size(segment):
                segment, offset = segment + 1, 0
            with open(self._path(segment), "rb", buffering=0) as file:
                return _HEADER.unpack(os.pread(file.fileno(), _HEADER.size, offset))[2]

    def close(self) -> None:
        """Release the folder: removed when every event is handled, else left for ``recover_buffers``."""
        with self._lock:
            if self._lock_file is None:
                return
            self._close_reader()
            for fd in (self._write_fd, self._position_fd):
                if fd is not None:
                    os.close(fd)
            self._write_fd = self._position_fd = None
            if self._count == 0 and not self._taken:
                _remove(self.directory)
            self._lock_file.close()
            self._lock_file = None

    def _release_handled(self) -> None:
        """Record where the oldest record not yet handled begins; remove the segments before it, and start the
        files again once every record is handled, so they never grow without end."""
        if self._count == 0 and not self._taken:
            self._close_reader()
            if self._write_fd is not None:
                os.close(self._write_fd)
                self._write_fd = None
            for segment in range(self._kept, self._write_segment + 1):
                self._path(segment).unlink(missing_ok=True)
            self._read_segment = self._read_offset = self._write_segment = self._write_size = self._kept = 0
            oldest = (0, 0)
        else:
            oldest = min([(self._read_segment, self._read_offset), *self._taken])
            for segment in range(self._kept, oldest[0]):
                self._path(segment).unlink()
            self._kept = oldest[0]
        if self._position_fd is not None:
            os.pwrite(self._position_fd, _POSITION.pack(*oldest), 0)

    def _close_reader(self) -> None:
        if self._read_fd is not None:
            os.close(self._read_fd)
            self._read_fd = None

    def _segment_size(self, segment: int) -> int:
        return self._write_size if segment == self._write_segment else self._path(segment).stat().st_size

    def _open_segment(self, segment: int) -> int:
        return os.open(self._path(segment), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:08d}{_SUFFIX}"


def recover_buffers(parent: str | os.PathLike[str], prefix: str, keep: Callable[[Received], bool]) -> None:
    """Hand ``keep`` each event not yet handled in the buffer folders ``parent/prefix-*`` whose process is gone
    (their lock is free), in order.

    A folder is removed once ``keep`` took all its events. When ``keep`` cannot take one (returns False: the
    spool refused it), recovery stops and the folder stays, its position at that event, for the next start.
    Events the dead process was still writing come back too: the spool's replay recognises one it stored.
    """
    for folder in sorted(Path(parent).glob(f"{prefix}-*")):
        try:
            lock = _locked(folder)
        except BlockingIOError:
            continue  # a live archiver's buffer
        with lock:
            if not _recover(folder, keep):
                return
            _remove(folder)


def _recover(folder: Path, keep: Callable[[Received], bool]) -> bool:
    fd = os.open(folder / _POSITION_NAME, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        data = os.pread(fd, _POSITION.size, 0)
        first, start = _POSITION.unpack(data) if len(data) == _POSITION.size else (0, 0)
        for path in sorted(folder.glob(f"*{_SUFFIX}")):
            segment = int(path.stem)
            if segment >= first:
                for at, end, received in _records(path, start if segment == first else 0):
                    if not keep(received):
                        os.pwrite(fd, _POSITION.pack(segment, at), 0)
                        return False
                    os.pwrite(fd, _POSITION.pack(segment, end), 0)  # a recovery killed in turn goes on from here
            path.unlink()
        return True
    finally:
        os.close(fd)


def _locked(folder: Path) -> IO[str]:
    lock = open(folder / _LOCK, "a")  # noqa: SIM115 (held for the buffer's lifetime)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise
    return lock


def _remove(folder: Path) -> None:
    """Remove a buffer folder and, if that was the last, the folder of buffers."""
    for path in folder.iterdir():
        path.unlink()
    folder.rmdir()
    with contextlib.suppress(OSError):
        folder.parent.rmdir()


def _records(path: Path, start: int) -> Iterator[tuple[int, int, Received]]:
    """(where it begins, where it ends, the event) of the complete records of a segment from ``start``. A
    record cut short by a crash was never fully received: nothing of it can be delivered, but the operator is
    told."""
    with open(path, "rb") as file:
        file.seek(start)
        complete = start
        while len(header := file.read(_HEADER.size)) == _HEADER.size:
            length, key_length, received_at = _HEADER.unpack(header)
            key, raw = file.read(key_length), file.read(length)
            if len(raw) < length:
                break
            at, complete = complete, file.tell()
            yield at, complete, Received(key.decode(), raw, received_at)
        if (size := os.fstat(file.fileno()).st_size) > complete:
            log.warning(
                "disk buffer %s: its last %d bytes are an event cut short by a crash while it was being received; "
                "it cannot be recovered",
                path,
                size - complete,
            )


def _write_all(fd: int, parts: list[bytes]) -> None:
    views = [memoryview(part) for part in parts]
    while views:
        written = os.writev(fd, views)
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views:
            views[0] = views[0][written:]

"""The spool: events that could not be archived, kept durably on local disk until they are replayed.

Each entry is one CBOR file ``<time>-<id>.cbor`` holding a map (format documented in docs/reliability.md).
It is written as an unnamed file (or, where the filesystem has none, a temporary name), fsynced, linked (renamed)
into the folder and the folder fsynced, so an entry is complete or absent, even after ``kill -9``.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cbor2

from .errors import ArchivistError
from .localfile import TmpfileUnsupported, publish_file

log = logging.getLogger("archivist")

SPOOL_FORMAT = 1
ENTRY_SUFFIX = ".cbor"
LOCK_NAME = ".lock"


class SpoolBusyError(ArchivistError):
    """Another process holds the spool's lock."""


def default_spool_dir() -> Path:
    """``$ARCHIVIST_SPOOL_DIR``, else ``$XDG_STATE_HOME/archivist/spool``, else ``~/.local/state/archivist/spool``."""
    if env := os.environ.get("ARCHIVIST_SPOOL_DIR"):
        return Path(env)
    state = os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state"
    return Path(state) / "archivist" / "spool"


@dataclass(frozen=True, slots=True)
class SpoolEntry:
    """Everything needed to deliver an event later, or to understand why it was not."""

    archiver: str
    archiver_class: str
    settings: dict[str, Any]
    key_expr: str
    payload: bytes
    received_at: float
    error: str
    error_type: str
    attempts: int
    destination: str | None = None
    pending_items: list[int] | None = None
    spooled_at: float = field(default_factory=time.time)
    format: int = SPOOL_FORMAT


def importable_class_name(cls: type) -> str:
    """The dotted name of the first class in ``cls``'s MRO that can be imported again (BOSS subclasses can't)."""
    for klass in cls.__mro__:
        if getattr(sys.modules.get(klass.__module__), klass.__qualname__, None) is klass:
            return f"{klass.__module__}.{klass.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


class Spool:
    """A folder of spool entries."""

    def __init__(self, directory: str | os.PathLike[str] | None = None) -> None:
        self.directory = Path(directory) if directory is not None else default_spool_dir()

    def put(self, entry: SpoolEntry) -> Path:
        """Store an entry durably and return its path."""
        self.directory.mkdir(parents=True, exist_ok=True)
        path = self.directory / f"{entry.spooled_at:017.6f}-{uuid.uuid4().hex}{ENTRY_SUFFIX}"
        self._write(path, entry, replace=False)
        return path

    def keep(self, entry: SpoolEntry) -> Path | None:
        """``put`` for an event that failed; None when even that fails, said as loudly as possible (the event is
        then only in that log line)."""
        try:
            return self.put(entry)
        except Exception:
            log.critical(
                "%s: event from %s failed (%s: %s) and could not be spooled to %s; it is lost",
                entry.archiver,
                entry.key_expr,
                entry.error_type,
                entry.error,
                self.directory,
                exc_info=True,
            )
            return None

    def update(self, path: Path, entry: SpoolEntry) -> None:
        """Replace an entry in place, as atomically as it was written (replay records the latest error)."""
        self._write(path, entry, replace=True)

    def remove(self, path: Path) -> None:
        """Remove an entry once its event is stored; a second remove of the same entry is harmless."""
        path.unlink(missing_ok=True)
        _fsync_directory(self.directory)

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """Hold the spool's lock file, so two replays never deliver the same entry twice."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with open(self.directory / LOCK_NAME, "a") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise SpoolBusyError(f"another replay is using the spool {self.directory}") from exc
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _write(self, path: Path, entry: SpoolEntry, *, replace: bool) -> None:
        data = cbor2.dumps(asdict(entry))
        try:
            publish_file(str(path), [data], replace=replace, fsync=True)
            return
        except TmpfileUnsupported:
            pass
        temporary = path.with_name(f".{path.name}.partial")
        with open(temporary, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
        _fsync_directory(self.directory)

    def paths(self) -> list[Path]:
        """Paths of the complete entries, oldest first; temporary files of an interrupted write are not entries."""
        return sorted(self.directory.glob(f"*{ENTRY_SUFFIX}")) if self.directory.is_dir() else []

    def load(self, path: Path) -> SpoolEntry:
        with open(path, "rb") as file:
            return SpoolEntry(**cbor2.load(file))

    def entries(self) -> Iterator[tuple[Path, SpoolEntry]]:
        """Complete entries with their paths, oldest first, read one at a time."""
        for path in self.paths():
            yield path, self.load(path)

    def __len__(self) -> int:
        return len(self.paths())


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

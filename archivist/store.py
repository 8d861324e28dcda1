"""Storage: write one file through fsspec atomically, never overwriting unless asked, retrying transient errors."""

from __future__ import annotations

import errno
import json
import logging
import os
import posixpath
import re
import threading
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
import tenacity

from .encode import Chunks
from .errors import ArchivistError, ConfigError, DestinationExistsError
from .localfile import TmpfileUnsupported, publish_file, rename_no_replace
from .route import redact_url

log = logging.getLogger(__name__)

OnExists = Literal["suffix", "overwrite", "error"]
IfNoneMatch = Literal["unknown", "honoured", "ignored", "unsupported"]
ON_EXISTS_CHOICES: tuple[OnExists, ...] = ("suffix", "overwrite", "error")

# Backends where a single put is already atomic (the object appears whole or not at all) and rename is a copy.
_ATOMIC_PUT_PROTOCOLS = frozenset({"memory", "s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "oci", "oss"})
_LOCAL_PROTOCOLS = frozenset({"file", "local"})
_S3_PROTOCOLS = frozenset({"s3", "s3a"})
_KNOWN_DIRS_LIMIT = 10_000
_PROBE_MAX_BYTES = 2**20  # the probe puts a written file again: only a small one
_LEFTOVERS_LIMIT = 10_000


class WriteError(ArchivistError):
    """A write that failed for good: a permanent error, or a transient one that outlived every retry.

    ``in_doubt``: an attempt failed while publishing the file (a lost reply), so the file may be stored
    after all; deliver the event again with ``Store.write(..., resume=True)`` so it is not stored twice.
    ``destination``: where exactly it may be stored, when that is more than the rendered destination says
    (a zarr frame's index), for the spool entry to record.
    """

    def __init__(self, message: str, attempts: int, in_doubt: bool = False, destination: str | None = None) -> None:
        super().__init__(message)
        self.attempts = attempts
        self.in_doubt = in_doubt
        self.destination = destination


@dataclass(slots=True)
class _Attempt:
    """What one write has settled so far: the name it claimed, and how many attempts it made."""

    final: str | None = None
    claim: tuple[str, str] | None = None  # (storage, name) of the in-process claim on ``final``
    suffixed: bool = False
    count: int = 0
    in_doubt: bool = False  # an attempt failed after it may have published ``final``
    refused: bool = False  # a name was found taken at the put: every name is looked up from then on


@dataclass(frozen=True, slots=True)
class Written:
    url: str
    nbytes: int
    suffixed: bool


def write_settings(
    storage_options: dict[str, Any] | None, on_exists: OnExists, retrying: tenacity.Retrying | None
) -> tuple[dict[str, Any], OnExists, tenacity.Retrying]:
    """The arguments every store takes, checked, with their defaults (no options, a single attempt)."""
    if on_exists not in ON_EXISTS_CHOICES:
        raise ConfigError(f"on_exists must be one of {', '.join(ON_EXISTS_CHOICES)}, got {on_exists!r}")
    return (
        dict(storage_options or {}),
        on_exists,
        retrying or tenacity.Retrying(stop=tenacity.stop_after_attempt(1), reraise=True),
    )


class Store:
    """Writes chunks to fsspec URLs; the only place where archivist touches a filesystem."""

    def __init__(
        self,
        *,
        storage_options: dict[str, Any] | None = None,
        on_exists: OnExists = "suffix",
        retrying: tenacity.Retrying | None = None,
    ) -> None:
        self._options, self._on_exists, self._retrying = write_settings(storage_options, on_exists, retrying)
        self._claims: set[tuple[str, str]] = set()  # (storage, name): names on different storages never clash
        self._claims_lock = threading.Lock()
        self._known_dirs: set[str] = set()
        self._connect_lock = threading.Lock()
        self._resolved = threading.local()  # per thread, as fsspec makes its filesystem instances
        self._generation = 0  # bumped when a filesystem failed, so every thread resolves its URLs again
        # Temporary files that failed writes could not remove (the storage was gone), removed later.
        self._leftovers: list[tuple[fsspec.AbstractFileSystem, str]] = []
        self._leftovers_lock = threading.Lock()
        # What the S3 server does with If-None-Match on a PUT to a taken name: see _probe and _write_once.
        self._if_none_match: IfNoneMatch = "unknown"
        self._probe_lock = threading.Lock()

    def write(self, url: str, chunks: Chunks, *, resume: bool = False) -> Written:
        """Write ``chunks`` as the file ``url``, retrying transient errors; raises WriteError when it gives up.

        The name is chosen once, before the first attempt; retries write that same name again, so a write
        whose success was not confirmed (a lost reply) is never stored twice under two names.

        ``resume`` is for delivering an event again (a replay): an earlier write of it may have been stored
        although it failed, so a file holding exactly these bytes under the name or one of its suffixed
        names counts as this write, instead of a second copy being stored.
        """
        attempt = _Attempt()
        try:  # one Retrying for every thread: tenacity keeps a call's state per thread
            return self._retrying(self._write_once, url, chunks, attempt, resume)
        except ArchivistError:
            raise
        except Exception as exc:
            doubt = f"; it may be stored as {redact_url(self._url(url, attempt))}" if attempt.in_doubt else ""
            raise WriteError(
                f"writing {redact_url(url)} failed after {attempt.count} attempt(s): {exc}{doubt}",
                attempt.count,
                attempt.in_doubt,
            ) from exc
        finally:
            if attempt.claim is not None:
                self._release(attempt.claim)

    def _write_once(self, url: str, chunks: Chunks, attempt: _Attempt, resume: bool) -> Written:
        attempt.count += 1
        fs, path, folder = self._resolve(url)
        atomic_put = _protocol(fs) in _ATOMIC_PUT_PROTOCOLS
        s3 = _protocol(fs) in _S3_PROTOCOLS
        try:
            if not atomic_put:
                self._ensure_parent(fs, path, folder)
            while True:
                if attempt.final is None:
                    unchecked = s3 and self._if_none_match == "honoured" and not resume and not attempt.refused
                    data = b"".join(chunks) if resume else None
                    attempt.final, attempt.suffixed, stored = self._claim(fs, path, data, unchecked)
                    attempt.claim = (_storage(fs), attempt.final)
                    if stored:
                        log.info("%s already holds this data; not stored again", redact_url(self._url(url, attempt)))
                        if not atomic_put:
                            self._remove_stale_temporaries(fs, attempt.final)
                        return Written(self._url(url, attempt), sum(len(c) for c in chunks), attempt.suffixed)
                try:
                    if not atomic_put:
                        # Replace only what this write may have published in an attempt whose outcome is unknown.
                        replace = self._on_exists == "overwrite" or attempt.in_doubt
                        self._publish(fs, attempt.final, chunks, replace, attempt)
                    elif not self._put(fs, attempt, chunks, s3):
                        continue  # the same name (it was looked up), put again without If-None-Match
                except FileExistsError:  # the name is taken after all (another process took it since it was
                    # looked up, or it was not looked up): nothing was stored; claim another, looking names up
                    attempt.in_doubt, attempt.refused = False, True
                    self._release(attempt.claim)
                    attempt.final = attempt.claim = None
                    continue
                break
        except ArchivistError:
            raise
        except Exception as exc:
            if _is_missing(exc):
                self._known_dirs.discard(folder)  # the folder vanished: the next attempt creates it again
            else:
                type(fs).clear_instance_cache()  # the next attempt logs in again instead of reusing a dead client
                self._generation += 1
            raise
        self._remove_leftovers(fs)
        if resume and not atomic_put:
            self._remove_stale_temporaries(fs, attempt.final)
        final = self._url(url, attempt)
        if attempt.suffixed:
            log.warning("%s exists; wrote %s instead", redact_url(url), redact_url(final))
        return Written(final, sum(len(c) for c in chunks), attempt.suffixed)

    def _put(self, fs: fsspec.AbstractFileSystem, attempt: _Attempt, chunks: Chunks, s3: bool) -> bool:
        """Put the file to an object store; False if it must be put again because the server does not implement
        If-None-Match. Raises FileExistsError when the name is another's."""
        # On S3 the put itself refuses a taken name (If-None-Match), unless it may replace it.
        create = s3 and self._on_exists != "overwrite" and self._if_none_match != "unsupported"
        body = b"".join(chunks)
        was_in_doubt, attempt.in_doubt = attempt.in_doubt, True
        try:
            fs.pipe_file(attempt.final, body, **({"mode": "create"} if create else {}))
        except FileExistsError:
            if was_in_doubt and _holds(fs, attempt.final, body):
                return True  # stored by an earlier attempt, whose reply was lost
            raise
        except OSError as exc:
            if not (create and _not_implemented(exc)):
                raise
            attempt.in_doubt = was_in_doubt  # refused: nothing was stored
            if self._if_none_match != "unsupported":
                self._if_none_match = "unsupported"
                log.warning(
                    "the S3 server does not implement If-None-Match on PUT: each name is looked up (HEAD) before "
                    "its PUT, and one another client takes in between is overwritten"
                )
            return False
        if create and self._if_none_match == "unknown":
            self._probe(fs, attempt.final, body)
        return True

    def _probe(self, fs: fsspec.AbstractFileSystem, final: str, body: bytes) -> None:
        """Find out once whether the S3 server honours If-None-Match, by putting the file just written again.

        Refused (AWS S3, MinIO, moto): names need not be looked up (a HEAD each) before their put, the put
        itself refuses a taken one, and a write costs one request. Stored again (the same bytes, under the
        same name) or any other answer: every name is still looked up first. Only a small file is put again.
        """
        if len(body) > _PROBE_MAX_BYTES or not self._probe_lock.acquire(blocking=False):
            return
        try:
            if self._if_none_match != "unknown":
                return
            try:
                fs.pipe_file(final, body, mode="create")
            except FileExistsError:
                self._if_none_match = "honoured"
                log.info("the S3 server honours If-None-Match: a file is one PUT, without a HEAD first")
                return
            except Exception:
                log.debug("If-None-Match probe of %s failed", final, exc_info=True)
            self._if_none_match = "ignored"
            log.info("the S3 server does not honour If-None-Match: each name is looked up (HEAD) before its PUT")
        finally:
            self._probe_lock.release()

    @staticmethod
    def _url(url: str, attempt: _Attempt) -> str:
        """The URL of the name written: ``url`` with the claimed file name (unstrip_protocol drops SMB's host)."""
        if attempt.final is None or not attempt.suffixed:
            return url
        return posixpath.join(posixpath.dirname(url), posixpath.basename(attempt.final))

    def _publish(
        self, fs: fsspec.AbstractFileSystem, final: str, chunks: Chunks, replace: bool, attempt: _Attempt
    ) -> None:
        """Readers never see a partial file, and on local disk not even a crash leaves one behind."""
        if _protocol(fs) in _LOCAL_PROTOCOLS:
            try:
                publish_file(final, chunks, replace=replace)
                return
            except TmpfileUnsupported:
                pass
        self._write_and_rename(fs, final, chunks, attempt)

    def _write_and_rename(self, fs: fsspec.AbstractFileSystem, final: str, chunks: Chunks, attempt: _Attempt) -> None:
        """The data goes to a hidden temporary name first, renamed once complete.

        A name found taken at the rename (another writer took it since it was looked up) raises FileExistsError,
        so the next free one is claimed, unless it is to be overwritten or holds this very data (stored by an
        attempt whose reply was lost).
        """
        parent, name = posixpath.split(final)
        temporary = posixpath.join(parent, f".{name}.{uuid.uuid4().hex[:12]}.partial")
        try:
            with fs.open(temporary, "wb") as file:
                for chunk in chunks:
                    file.write(chunk)
            was_in_doubt, attempt.in_doubt = attempt.in_doubt, True  # a lost reply leaves the outcome unknown
            try:
                self._rename(fs, temporary, final)
            except FileExistsError:
                if not (was_in_doubt and _holds(fs, final, b"".join(chunks))):
                    attempt.in_doubt = was_in_doubt
                    raise
                fs.rm(temporary)
        except BaseException:
            if not _remove_quietly(fs, temporary):
                with self._leftovers_lock:
                    if len(self._leftovers) < _LEFTOVERS_LIMIT:
                        self._leftovers.append((fs, temporary))
            raise

    def _rename(self, fs: fsspec.AbstractFileSystem, temporary: str, final: str) -> None:
        """Rename, refusing a taken name with FileExistsError unless ``on_exists`` is "overwrite"."""
        overwrite = self._on_exists == "overwrite"
        if _protocol(fs) in _LOCAL_PROTOCOLS and not overwrite:
            rename_no_replace(temporary, final)  # os.rename, fsspec's mv, would replace a taken name silently
            return
        try:
            fs.mv(temporary, final)
        except OSError as exc:  # SMB refuses to rename onto an existing name, with a plain OSError
            if exc.errno != errno.EEXIST:
                raise
            if not overwrite:
                raise FileExistsError(errno.EEXIST, f"{final} exists") from exc
            fs.rm(final)
            fs.mv(temporary, final)

    def _remove_leftovers(self, fs: fsspec.AbstractFileSystem) -> None:
        """Remove temporaries that failed writes left on this filesystem, now that it answers again."""
        with self._leftovers_lock:
            if not self._leftovers:
                return
            mine = [path for owner, path in self._leftovers if _same_storage(owner, fs)]
            self._leftovers = [(owner, path) for owner, path in self._leftovers if not _same_storage(owner, fs)]
        kept = [path for path in mine if not _remove_quietly(fs, path)]
        if kept:
            with self._leftovers_lock:
                self._leftovers.extend((fs, path) for path in kept)

    @staticmethod
    def _remove_stale_temporaries(fs: fsspec.AbstractFileSystem, final: str) -> None:
        """A resumed write (a replay) removes the temporaries that its event's failed writes left behind.

        The archiver that wrote them may have stopped before the storage came back, so it could not; their
        names are ``.NAME.ID.partial`` beside the file. One listing of the folder, on replay only.
        """
        parent, name = posixpath.split(final)
        try:
            entries = fs.ls(parent, detail=False)
        except Exception:
            log.debug("could not list %s for temporaries", parent, exc_info=True)
            return
        own = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{12}}\.partial")  # not those of `name.1` or `name.x`
        for entry in entries:
            if own.fullmatch(posixpath.basename(entry)):
                _remove_quietly(fs, entry)

    def _resolve(self, url: str) -> tuple[fsspec.AbstractFileSystem, str, str]:
        """(filesystem, path, folder URL) of ``url``: fsspec resolves each folder once per thread, not each file."""
        folder, _, name = url.rpartition("/")
        local = self._resolved
        if getattr(local, "generation", None) != self._generation or len(local.folders) >= _KNOWN_DIRS_LIMIT:
            local.folders, local.generation = {}, self._generation
        if (known := local.folders.get(folder)) is not None:
            fs, parent = known
            return fs, posixpath.join(parent, name), folder
        with self._connect_lock:  # some clients (smbprotocol) race when several threads log in at once
            fs, path = fsspec.url_to_fs(url, **self._options)
        local.folders[folder] = (fs, posixpath.dirname(path))
        return fs, path, folder

    def _ensure_parent(self, fs: fsspec.AbstractFileSystem, path: str, folder: str) -> None:
        """Create the parent folder once per store, not once per file."""
        if folder not in self._known_dirs:
            fs.makedirs(posixpath.dirname(path), exist_ok=True)
            if len(self._known_dirs) >= _KNOWN_DIRS_LIMIT:
                self._known_dirs.clear()
            self._known_dirs.add(folder)

    def _claim(
        self, fs: fsspec.AbstractFileSystem, path: str, data: bytes | None, unchecked: bool = False
    ) -> tuple[str, bool, bool]:
        """Reserve the name to write: (name, suffixed, already stored).

        In-process claims stop two workers from picking the same free name. With ``data`` (a resumed
        write), a taken name that holds exactly ``data`` is returned as already stored. ``unchecked``: the
        storage is not asked, the put will refuse a taken name.
        """
        if self._on_exists == "overwrite":
            return path, False, False
        storage = _storage(fs)
        for n in range(1_000_000):
            candidate = path if n == 0 else _suffixed(path, n)
            with self._claims_lock:
                if (storage, candidate) in self._claims:
                    claimed = False
                else:
                    self._claims.add((storage, candidate))
                    claimed = True
            if claimed and unchecked:
                return candidate, n > 0, False
            if claimed:
                try:
                    exists = _exists(fs, candidate)
                    stored = exists and data is not None and _holds(fs, candidate, data)
                except BaseException:
                    self._release((storage, candidate))
                    raise
                if not exists or stored:
                    return candidate, n > 0, stored
                self._release((storage, candidate))
            if self._on_exists == "error":
                raise DestinationExistsError(f"{redact_url(fs.unstrip_protocol(path))} exists and on_exists='error'")
        raise DestinationExistsError(f"no free name left for {redact_url(fs.unstrip_protocol(path))}")

    def _release(self, claim: tuple[str, str]) -> None:
        with self._claims_lock:
            self._claims.discard(claim)


def _protocol(fs: fsspec.AbstractFileSystem) -> str:
    protocol = fs.protocol
    return protocol if isinstance(protocol, str) else protocol[0]


def _suffixed(path: str, n: int) -> str:
    parent, name = posixpath.split(path)
    stem, dot, ext = name.partition(".")
    new_name = f"{stem}.{n}.{ext}" if dot and stem else f"{name}.{n}"
    return posixpath.join(parent, new_name)


def _is_missing(exc: BaseException) -> bool:
    """No such file, also as smbprotocol says it (an OSError with errno ENOENT, not a FileNotFoundError)."""
    return isinstance(exc, FileNotFoundError) or (isinstance(exc, OSError) and exc.errno == errno.ENOENT)


def _exists(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    """Whether ``path`` exists; raises when the storage cannot tell.

    ``fs.exists`` answers False on any error, so during an outage every name would look free, and a
    retry (which replaces the name it claimed) could then overwrite another event's file.
    """
    protocol = _protocol(fs)
    try:
        if protocol in _LOCAL_PROTOCOLS:
            os.lstat(path)  # what fs.info does first, without building its answer
        elif protocol in _S3_PROTOCOLS:  # s3fs's info lists the prefix after a 404 (a folder?): a request more
            bucket, key, _ = fs.split_path(path)
            fs.call_s3("head_object", Bucket=bucket, Key=key)
        else:
            fs.info(path)
    except Exception as exc:
        if _is_missing(exc):
            return False
        raise
    return True


def _not_implemented(exc: OSError) -> bool:
    """An S3 server's 501 NotImplemented (s3fs raises it as ENOSYS): servers older than conditional writes."""
    return exc.errno == errno.ENOSYS


def _storage(fs: fsspec.AbstractFileSystem) -> str:
    """Which storage ``fs`` reaches (its class and arguments: an SMB host, an S3 endpoint), kept on the instance."""
    try:
        return fs.__dict__["_archivist_storage"]
    except KeyError:
        key = json.dumps([type(fs).__qualname__, fs.storage_args, fs.storage_options], sort_keys=True, default=repr)
        fs.__dict__["_archivist_storage"] = key
        return key


def _same_storage(a: fsspec.AbstractFileSystem, b: fsspec.AbstractFileSystem) -> bool:
    """Whether two filesystems reach the same storage; ``==`` is no use, fsspec makes one instance per thread."""
    return _storage(a) == _storage(b)


def _holds(fs: fsspec.AbstractFileSystem, path: str, data: bytes) -> bool:
    return fs.size(path) == len(data) and fs.cat_file(path) == data


def _remove_quietly(fs: fsspec.AbstractFileSystem, path: str) -> bool:
    """Remove a temporary file if it exists; False if the storage could not be asked (then try again later)."""
    try:
        fs.rm_file(path)
    except Exception as exc:
        if _is_missing(exc):
            return True
        log.debug("could not remove temporary %s", path, exc_info=True)
        return False
    return True

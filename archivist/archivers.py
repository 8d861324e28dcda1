"""Archivers: a subscription, a bounded pipeline, and per event decode → route → encode → store → spool."""

from __future__ import annotations

import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Collection, Iterator
from typing import Any, Literal

import numpy as np
import zenoh

from .buffer import DiskBuffer, recover_buffers
from .encode import Chunks, encode_json, encode_npy
from .errors import ArchivistError, ConfigError, PayloadError
from .event import Event, Received, decode_event
from .metrics import register_archiver, unregister_archiver, write_latency_histogram
from .pipeline import Pipeline, PipelineClosed
from .retry import retry_policy
from .route import Route, redact_url
from .source import Subscription, ZenohConfig, check_subscription, is_hero
from .spool import Spool, SpoolEntry, importable_class_name
from .stats import Stats
from .store import OnExists, Store, WriteError, Written

log = logging.getLogger("archivist")

Item = tuple[int | None, dict[str, Any], Any]  # (split index, template context, payload)
WhenFull = Literal["block", "spool"]
_STOPPED = "the archiver stopped before this event was written"


class EventFailed(Exception):
    """Some or all files of an event were not written: why, where to, and which split items are missing."""

    def __init__(self, error: Exception, destination: str | None, pending: list[int] | None) -> None:
        super().__init__(str(error))
        self.error, self.destination, self.pending = error, destination, pending


class QueueFullError(ArchivistError):
    """The queue was full and ``when_full="spool"`` sent the event straight to the spool."""


class ShutdownError(ArchivistError):
    """The archiver stopped (shutdown_timeout passed) before the event was written."""


class InterruptedArchiverError(ArchivistError):
    """The event waited in the disk buffer of an archiver that was killed; it may have been written already."""


class Archiver:
    """Archives one HEROS event of the HEROs matching ``object_selector`` into files named by a template.

    Subclasses only say how an event splits into files and how a payload is encoded; all I/O lives in the
    route, store and spool they are composed of.
    """

    #: The argument that names the destination template: in error messages and recorded in spool entries.
    _template_argument = "save_template"

    def __init__(
        self,
        save_template: str,
        object_selector: str,
        event_name: str,
        default_metadata: dict[str, Any] | None = None,
        max_retries: int = 5,
        *,
        realm: str = "heros",
        zenoh_config: ZenohConfig = None,
        storage_options: dict[str, Any] | None = None,
        root: str | None = None,
        on_exists: OnExists = "suffix",
        workers: int = 4,
        queue_max_events: int = 1024,
        queue_max_bytes: int = 512 * 2**20,
        retry_wait_min: float = 0.1,
        retry_wait_max: float = 10.0,
        when_full: WhenFull = "block",
        shutdown_timeout: float = 30.0,
        spool_dir: str | None = None,
        name: str | None = None,
        session: zenoh.Session | None = None,
        listen: bool = True,
    ) -> None:
        _check(isinstance(save_template, str) and save_template, self._template_argument, "a non-empty string")
        _check(isinstance(object_selector, str) and object_selector, "object_selector", "a non-empty string")
        _check(isinstance(event_name, str) and event_name and "/" not in event_name, "event_name", "a name")
        _check(default_metadata is None or isinstance(default_metadata, dict), "default_metadata", "a map")
        _check(storage_options is None or isinstance(storage_options, dict), "storage_options", "a map")
        _check(_is_int(max_retries) and max_retries >= 0, "max_retries", "an integer >= 0")
        for argument, value in (
            ("workers", workers),
            ("queue_max_events", queue_max_events),
            ("queue_max_bytes", queue_max_bytes),
        ):
            _check(_is_int(value) and value >= 1, argument, "an integer >= 1")
        for argument, value in (("retry_wait_min", retry_wait_min), ("retry_wait_max", retry_wait_max)):
            _check(_is_number(value) and value >= 0, argument, "seconds >= 0")
        _check(retry_wait_min <= retry_wait_max, "retry_wait_min", "at most retry_wait_max")
        _check(root is None or (isinstance(root, str) and root), "root", "a non-empty URL or path")
        _check(when_full in ("block", "spool"), "when_full", "'block' or 'spool'")
        _check(_is_number(shutdown_timeout) and shutdown_timeout >= 0, "shutdown_timeout", "seconds >= 0")
        check_subscription(realm, object_selector, event_name, zenoh_config)

        self._given_name = name
        self._default_name = f"{type(self).__name__}:{realm}/{object_selector}/{event_name}"
        self._source_realm = realm  # not ``_realm``: heros sets that to the HERO's realm under BOSS
        self._event_name = event_name
        self._when_full = when_full
        self._shutdown_timeout = float(shutdown_timeout)
        self._default_metadata = dict(default_metadata or {})
        self._route = Route(save_template, root, argument=self._template_argument)
        self._stats = Stats()
        self.write_latency = write_latency_histogram()
        self._store = self._make_store(
            storage_options=storage_options,
            on_exists=on_exists,
            retrying=retry_policy(max_retries, retry_wait_min, retry_wait_max, lambda _: self._stats.add(retries=1)),
        )
        self._spool = Spool(spool_dir)
        self._settings = {
            self._template_argument: save_template,
            "object_selector": object_selector,
            "event_name": event_name,
            "default_metadata": self._default_metadata,
            "realm": realm,
            "root": root,
            "on_exists": on_exists,
            "max_retries": max_retries,
            **self._format_settings(),
        }
        self._pipeline: Pipeline[Received] | None = None
        self._buffer: DiskBuffer | None = None
        self._subscription: Subscription | None = None
        self._deferred: tuple[int, int, int, ZenohConfig, zenoh.Session | None] | None = None
        if listen and is_hero(self):  # under BOSS the HERO (named by the _id, with its session) is made after this
            self._deferred = (workers, queue_max_events, queue_max_bytes, zenoh_config, session)
        elif listen:
            self._listen(workers, queue_max_events, queue_max_bytes, zenoh_config, session)

    def _setup(self) -> None:
        """BOSS calls this once the HERO is made: listen now, under its ``_id`` (the name of its disk buffer, log
        lines and spool entries) and on its session (one zenoh session per process)."""
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            workers, max_events, max_bytes, zenoh_config, session = deferred
            if session is None and zenoh_config is None:
                session = self._session  # the HERO's, which heros closes when the HERO is destroyed
            self._listen(workers, max_events, max_bytes, zenoh_config, session)

    def _listen(
        self, workers: int, max_events: int, max_bytes: int, zenoh_config: ZenohConfig, session: zenoh.Session | None
    ) -> None:
        buffers, prefix = self._spool.directory / ".buffer", _folder_name(self.name)
        interrupted = InterruptedArchiverError("recovered from the disk buffer of a killed archiver")
        recover_buffers(buffers, prefix, lambda received: self._fail(received, interrupted))
        self._buffer = DiskBuffer(buffers / f"{prefix}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        if pending := len(self._spool):
            log.warning("%s: the spool %s holds %d event(s) to replay", self.name, self._spool.directory, pending)
        self._pipeline = Pipeline(
            self._archive,
            workers=workers,
            max_events=max_events,
            max_bytes=max_bytes,
            overflow=self._buffer,
            handle_overflowed=self._spool_overflowed if self._when_full == "spool" else None,
            name=self.name,
        )
        try:
            self._subscription = Subscription(
                self._receive,
                realm=self._source_realm,
                object_selector=self._settings["object_selector"],
                event_name=self._event_name,
                zenoh_config=zenoh_config,
                session=session,
            )
        except BaseException:
            self._pipeline.close(0)
            self._pipeline.join()
            self._close_buffer()
            raise
        register_archiver(self)
        log.info("%s: archiving %s", self.name, self.describe())

    @property
    def name(self) -> str:
        """Name in logs and spool entries: ``name``, else the HERO name BOSS gives it (its ``_id``)."""
        return self._given_name or getattr(self, "_name", None) or self._default_name

    # -- what subclasses decide -------------------------------------------------------------------------------

    def _format_settings(self) -> dict[str, Any]:
        """Format arguments of the subclass, recorded in spool entries so a replay writes the same files."""
        return {}

    def _items(self, event: Event) -> Iterator[Item]:
        """The files one event becomes."""
        yield None, event.metadata | {"source_name": event.source_name}, event.payload

    def _encode(self, payload: Any, event: Event) -> Chunks:
        raise NotImplementedError

    def _make_store(self, **options: Any) -> Any:
        """What items are written through, made before the archiver listens: a file Store by default."""
        return Store(**options)

    def _write_item(
        self, destination: str, context: dict[str, Any], payload: Any, event: Event, resume: bool
    ) -> Written:
        """Store one item at its rendered destination: by default as one encoded file."""
        return self._store.write(destination, self._encode(payload, event), resume=resume)

    # -- the pipeline -----------------------------------------------------------------------------------------

    def _receive(self, received: Received) -> None:
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: received %d bytes on %s", self.name, len(received.raw), received.key_expr)
        try:
            if self._pipeline.submit(received, len(received.raw)):
                self._stats.add(overflowed=1)
        except PipelineClosed:
            self._fail(received, ShutdownError("the archiver stopped before this event was queued"))
        except OSError as exc:  # the queue is full and the disk buffer cannot take the event (a full disk)
            self._fail(received, QueueFullError(f"the queue was full and the disk buffer failed: {exc}"))
        finally:  # counted once queued (or spooled): "received == N, then drain()" must wait for every event
            self._stats.add(received=1)

    def _spool_overflowed(self, received: Received) -> bool:
        return self._fail(received, QueueFullError("the queue was full and when_full='spool'"))

    def _archive(self, received: Received) -> bool:
        """Archive one received event; whatever fails goes to the spool with the reason. False when the event
        is neither written nor spooled (then the disk buffer keeps it, if it came from there)."""
        try:
            self._write_event(received)
        except EventFailed as failure:
            return self._fail(received, failure.error, failure.destination, failure.pending)
        return True

    def _write_event(
        self, received: Received, only_items: Collection[int] | None = None, *, resume: bool = False
    ) -> None:
        """Write every file of one event (or only the split items given); raises EventFailed for the rest.

        ``resume`` (a replay): a file an earlier, failed delivery stored after all is not stored twice.
        """
        started = time.monotonic()
        destination = None
        pending: list[int] = []
        error: Exception | None = None
        try:
            event = decode_event(received, self._source_realm, self._event_name, self._default_metadata)
            for index, context, payload in self._items(event):
                if only_items is not None and index not in only_items:
                    continue
                try:
                    destination = self._route.render(context)
                    written = self._write_item(destination, context, payload, event, resume)
                except Exception as exc:
                    error = exc
                    if index is not None:
                        pending.append(index)
                    continue
                self._stats.add(files_written=1, bytes_written=written.nbytes, suffixed=int(written.suffixed))
        except Exception as exc:
            error = exc
        if error is not None:
            if isinstance(error, WriteError) and error.destination:  # more exact than the rendered one
                destination = error.destination
            raise EventFailed(error, destination, pending or None)
        self._stats.add(written=1)
        self.write_latency.observe(time.monotonic() - started)

    def redeliver(
        self, received: Received, pending_items: Collection[int] | None = None, destination: str | None = None
    ) -> None:
        """Write a spooled event again (what replay does); raises EventFailed for what still fails.

        Only the split items in ``pending_items`` are written, when given. A file that an earlier, failed
        delivery stored after all (a lost reply) is recognised and not stored twice. ``destination``: what the
        spool entry records (ZarrArchiver looks for an appended frame at the index it names).
        """
        self._write_event(received, pending_items, resume=True)
        self._stats.add(replayed=1)

    def _fail(
        self,
        received: Received,
        error: Exception,
        destination: str | None = None,
        pending: list[int] | None = None,
    ) -> bool:
        """Spool an event that could not be archived; False if even that failed (then it is only in the log)."""
        kind = type(error).__name__
        self._stats.error(kind)
        path = self._spool.keep(
            SpoolEntry(
                archiver=self.name,
                archiver_class=importable_class_name(type(self)),
                settings=self._settings,
                key_expr=received.key_expr,
                payload=received.raw,
                received_at=received.received_at,
                error=str(error),
                error_type=kind,
                attempts=getattr(error, "attempts", 1),
                destination=destination,
                pending_items=pending,
            )
        )
        if path is None:
            self._stats.add(failed=1, spool_failed=1)
            return False
        self._stats.add(failed=1, spooled=1)  # counted once spooled, so a reader of "failed" finds the entry
        log.error(
            "%s: event from %s not archived: %s: %s; kept in the spool as %s",
            self.name,
            received.key_expr,
            kind,
            error,
            path,
        )
        return True

    # -- control ----------------------------------------------------------------------------------------------

    def describe(self) -> str:
        """One line for start-up logs: what it listens to, where it writes."""
        key = self._subscription.key_expr if self._subscription else "(not listening)"
        root = f" under {redact_url(self._settings['root'])}" if self._settings["root"] else ""
        return f"{key} -> {self._route.source}{root}"

    def preview(self, metadata: dict[str, Any], source_name: str) -> str:
        """The destination of an event from ``source_name`` with ``metadata`` (``archivist check`` prints it)."""
        context = self._default_metadata | metadata | {"source_name": source_name, "_split_index": 0}
        return self._route.render(context)

    def stats(self) -> dict[str, object]:
        """Counters since start; the queue depth and the seconds its oldest event has waited, now."""
        snapshot = self._stats.snapshot()
        snapshot["queued"], snapshot["queued_bytes"] = self._pipeline.depth if self._pipeline else (0, 0)
        snapshot["buffered"] = self._pipeline.overflowed if self._pipeline else 0
        oldest = self._pipeline.oldest() if self._pipeline else None
        received_at = oldest.received_at if oldest else self._buffer and self._buffer.oldest_received_at()
        snapshot["oldest_queued_age"] = max(0.0, time.time() - received_at) if received_at else 0.0
        return snapshot

    def is_queue_drained(self) -> bool:
        return self._pipeline is None or self._pipeline.is_drained()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every received event is written or spooled; False if ``timeout`` passed first."""
        return self._pipeline is None or self._pipeline.drain(timeout)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop listening, finish queued events within ``timeout`` (default ``shutdown_timeout``), spool the rest.

        Returns True when the queue drained in time. Idempotent.
        """
        timeout = self._shutdown_timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        unregister_archiver(self)
        if self._subscription is not None:
            self._subscription.close(timeout)
        if self._pipeline is None:
            return True
        left = self._pipeline.close(max(0.0, deadline - time.monotonic()))
        for received in left:  # spooled before waiting for the writes in flight, which may take their retries
            self._fail(received, ShutdownError(_STOPPED))
        self._pipeline.join()
        buffered = self._close_buffer()
        return not left and not buffered

    def _close_buffer(self) -> int:
        """Spool what still waits in the disk buffer, one event at a time, and release it; returns the count."""
        buffer, self._buffer = self._buffer, None
        if buffer is None:
            return 0
        count = 0
        while (received := buffer.pop()) is not None:
            count += 1
            if not self._fail(received, ShutdownError(_STOPPED)):
                break  # the spool cannot take it: it stays in the buffer's folder, which the next start recovers
            buffer.done(received)
        buffer.close()
        return count

    def summary(self) -> str:
        """One line of what it did: events written, failed and spooled."""
        stats = self.stats()
        return f"{stats['written']} written, {stats['failed']} failed ({stats['spooled']} spooled)"

    def _teardown(self) -> None:
        """Called by BOSS on stop; logs what ``archivist run`` prints at exit."""
        drained = self.stop()
        log.info("%s: stopped: %s%s", self.name, self.summary(), "" if drained else ", shutdown_timeout passed")

    def __enter__(self) -> Archiver:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class ArrayArchiver(Archiver):
    """Saves numpy array payloads as ``.npy`` files (herostools' ArrayArchiver, on any fsspec storage)."""

    def __init__(self, save_template: str, split_data_array: bool = False, *args: Any, **kwargs: Any) -> None:
        self.split_data_array = bool(split_data_array)
        super().__init__(save_template, *args, **kwargs)

    def _format_settings(self) -> dict[str, Any]:
        return {"split_data_array": self.split_data_array}

    def _items(self, event: Event) -> Iterator[Item]:
        if not self.split_data_array:
            yield from super()._items(event)
            return
        if not isinstance(event.payload, np.ndarray) or event.payload.ndim == 0:
            raise PayloadError(
                f"split_data_array needs an array of at least 1 dimension, got {type(event.payload).__name__}"
            )
        context = event.metadata | {"source_name": event.source_name}
        for index in range(len(event.payload)):  # [index, ...]: an item of a 1-D array is a 0-d array, not a scalar
            yield index, context | {"_split_index": index}, event.payload[index, ...]

    def _encode(self, payload: Any, event: Event) -> Chunks:
        return encode_npy(payload)


class JsonArchiver(Archiver):
    """Saves payloads as UTF-8 ``.json`` files; ``merge_metadata`` adds the metadata under ``"metadata"``."""

    def __init__(self, save_template: str, merge_metadata: bool = False, *args: Any, **kwargs: Any) -> None:
        self.merge_metadata = bool(merge_metadata)
        super().__init__(save_template, *args, **kwargs)

    def _format_settings(self) -> dict[str, Any]:
        return {"merge_metadata": self.merge_metadata}

    def _encode(self, payload: Any, event: Event) -> Chunks:
        if self.merge_metadata:
            data = {"data": payload} if not isinstance(payload, dict) else payload
            payload = data | {"metadata": event.metadata}
        return encode_json(payload)


def _folder_name(name: str) -> str:
    """A file name for an archiver's name, unique per name (names hold '/' and ':')."""
    return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', name)[:80]}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value == value  # not NaN


def _check(ok: Any, argument: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{argument} must be {expected}")

"""Archivers: a subscription, a bounded pipeline, and per event decode → route → encode → store → spool."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import numpy as np
import zenoh

from .encode import Chunks, encode_json, encode_npy
from .errors import ConfigError, PayloadError
from .event import Event, Received, decode_event
from .pipeline import Pipeline
from .retry import retry_policy
from .route import Route
from .source import Subscription, ZenohConfig
from .spool import Spool, SpoolEntry
from .stats import Stats
from .store import OnExists, Store

log = logging.getLogger("archivist")

Item = tuple[int | None, dict[str, Any], Any]  # (split index, template context, payload)


class Archiver:
    """Archives one HEROS event of the HEROs matching ``object_selector`` into files named by a template.

    Subclasses only say how an event splits into files and how a payload is encoded; all I/O lives in the
    route, store and spool they are composed of.
    """

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
        spool_dir: str | None = None,
        name: str | None = None,
        session: zenoh.Session | None = None,
    ) -> None:
        _check(isinstance(save_template, str) and save_template, "save_template", "a non-empty string")
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
        _check(0 <= retry_wait_min <= retry_wait_max, "retry_wait_min", "between 0 and retry_wait_max")

        self.name = name or f"{type(self).__name__}:{realm}/{object_selector}/{event_name}"
        self._realm = realm
        self._event_name = event_name
        self._default_metadata = dict(default_metadata or {})
        self._route = Route(save_template, root)
        self._stats = Stats()
        self._store = Store(
            storage_options=storage_options,
            on_exists=on_exists,
            retrying=retry_policy(max_retries, retry_wait_min, retry_wait_max, lambda _: self._stats.add(retries=1)),
        )
        self._spool = Spool(spool_dir)
        self._settings = {
            "save_template": save_template,
            "object_selector": object_selector,
            "event_name": event_name,
            "default_metadata": self._default_metadata,
            "realm": realm,
            "root": root,
            "on_exists": on_exists,
            "max_retries": max_retries,
            **self._format_settings(),
        }
        if pending := len(self._spool):
            log.warning("%s: the spool %s holds %d event(s) to replay", self.name, self._spool.directory, pending)
        self._pipeline: Pipeline[Received] = Pipeline(
            self._archive, workers=workers, max_events=queue_max_events, max_bytes=queue_max_bytes, name=self.name
        )
        try:
            self._subscription = Subscription(
                self._receive,
                realm=realm,
                object_selector=object_selector,
                event_name=event_name,
                zenoh_config=zenoh_config,
                session=session,
            )
        except BaseException:
            self._pipeline.close(0)
            raise
        log.info("%s: archiving %s to %s", self.name, self._subscription.key_expr, save_template)

    # -- what subclasses decide -------------------------------------------------------------------------------

    def _format_settings(self) -> dict[str, Any]:
        """Format arguments of the subclass, recorded in spool entries so a replay writes the same files."""
        return {}

    def _items(self, event: Event) -> Iterator[Item]:
        """The files one event becomes."""
        yield None, event.metadata | {"source_name": event.source_name}, event.payload

    def _encode(self, payload: Any, event: Event) -> Chunks:
        raise NotImplementedError

    # -- the pipeline -----------------------------------------------------------------------------------------

    def _receive(self, received: Received) -> None:
        self._stats.add(received=1)
        self._pipeline.submit(received, len(received.raw))

    def _archive(self, received: Received) -> None:
        """Archive one received event; whatever fails goes to the spool with the reason."""
        destination = None
        pending: list[int | None] = []
        error: Exception | None = None
        try:
            event = decode_event(received, self._realm, self._event_name, self._default_metadata)
            for index, context, payload in self._items(event):
                try:
                    destination = self._route.render(context)
                    written = self._store.write(destination, self._encode(payload, event))
                except Exception as exc:
                    error = exc
                    pending.append(index)
                    continue
                self._stats.add(files_written=1, bytes_written=written.nbytes, suffixed=int(written.suffixed))
        except Exception as exc:
            error = exc
        if error is None:
            self._stats.add(written=1)
        else:
            self._fail(received, error, destination, pending)

    def _fail(self, received: Received, error: Exception, destination: str | None, pending: list[int | None]) -> None:
        kind = type(error).__name__
        self._stats.add(failed=1)
        self._stats.error(kind)
        try:
            path = self._spool.put(
                SpoolEntry(
                    archiver=self.name,
                    archiver_class=f"{type(self).__module__}.{type(self).__qualname__}",
                    settings=self._settings,
                    key_expr=received.key_expr,
                    payload=received.raw,
                    received_at=received.received_at,
                    error=str(error),
                    error_type=kind,
                    attempts=getattr(error, "attempts", 1),
                    destination=destination,
                    pending_items=[index for index in pending if index is not None] or None,
                )
            )
        except Exception:  # the event is now only in this log line: say so as loudly as possible
            self._stats.add(spool_failed=1)
            log.critical(
                "%s: event from %s not archived (%s: %s) and could not be spooled to %s",
                self.name,
                received.key_expr,
                kind,
                error,
                self._spool.directory,
                exc_info=True,
            )
            return
        self._stats.add(spooled=1)
        log.error(
            "%s: event from %s not archived: %s: %s; kept in the spool as %s",
            self.name,
            received.key_expr,
            kind,
            error,
            path,
        )

    # -- control ----------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, object]:
        """Counters since start, and the queue depth now."""
        snapshot = self._stats.snapshot()
        snapshot["queued"], snapshot["queued_bytes"] = self._pipeline.depth
        return snapshot

    def is_queue_drained(self) -> bool:
        return self._pipeline.is_drained()

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every received event is written or spooled; False if ``timeout`` passed first."""
        return self._pipeline.drain(timeout)

    def stop(self, timeout: float | None = 30.0) -> None:
        """Stop listening, finish queued events within ``timeout``, spool whatever is left; idempotent."""
        self._subscription.close()
        for received in self._pipeline.close(timeout):
            self._fail(received, TimeoutError("archiver stopped before this event was written"), None, [])

    def _teardown(self) -> None:
        """Called by BOSS on stop."""
        self.stop()

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
        for index, frame in enumerate(event.payload):
            yield index, context | {"_split_index": index}, frame

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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(ok: Any, argument: str, expected: str) -> None:
    if not ok:
        raise ConfigError(f"{argument} must be {expected}")

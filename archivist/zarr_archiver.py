"""ZarrArchiver: numpy arrays into zarr v3 stores, one array per event or frames appended to one array."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np

from .archivers import Archiver, _check, _is_int
from .encode import json_safe
from .errors import PayloadError, UnsafePathError
from .event import Event, Received
from .route import Route
from .store import Written
from .zarr_store import ZarrStore, check_compressors


class ArrivalOrder:
    """Lets writer threads take a short step for each event in the order the events arrived.

    Events are registered with ``arrived`` in arrival order (by the zenoh callback, before they are queued).
    A writer thread enters ``first(token)`` once it knows where its event goes; it waits there until every
    earlier event has passed or ``left``. So writer threads that decode at different speeds still line their
    frames up in the order they were sent.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._arrived: deque[object] = deque()

    def arrived(self, token: object) -> None:
        with self._cond:
            self._arrived.append(token)

    def leave(self, token: object) -> None:
        """The event passed, failed or was never queued: later events need not wait for it."""
        with self._cond:
            with contextlib.suppress(ValueError):
                self._arrived.remove(token)
            self._cond.notify_all()

    @contextlib.contextmanager
    def first(self, token: object) -> Iterator[None]:
        """Wait until every earlier event has passed; a token that never ``arrived`` (a replay) passes at once."""
        with self._cond:
            if token in self._arrived:
                self._cond.wait_for(lambda: self._arrived[0] == token)
        try:
            yield
        finally:
            self.leave(token)


class ZarrArchiver(Archiver):
    """Saves numpy array payloads in zarr v3 stores at any fsspec URL.

    ``store_template`` renders the store's URL, ``array_path_template`` the array's path inside it. By
    default each event is one array, with the event metadata as its attributes (herostools' layout). With
    ``append_dim=0`` each event is one frame appended along axis 0 of the array, and its metadata one JSON
    text in the sibling array ``<path>_metadata`` at the same index.
    """

    _template_argument = "store_template"

    def __init__(
        self,
        store_template: str,
        array_path_template: str,
        *,
        append_dim: int | None = None,
        frames_per_chunk: int = 1,
        compressors: Any = "auto",
        **kwargs: Any,
    ) -> None:
        _check(isinstance(array_path_template, str) and array_path_template, "array_path_template", "a template")
        _check(append_dim is None or (_is_int(append_dim) and append_dim == 0), "append_dim", "None or 0")
        _check(_is_int(frames_per_chunk) and frames_per_chunk >= 1, "frames_per_chunk", "an integer >= 1")
        check_compressors(compressors)
        self.array_path_template = array_path_template
        self.append_dim = append_dim
        self.frames_per_chunk = frames_per_chunk
        self.compressors = compressors
        self._array_route = Route(array_path_template, argument="array_path_template")
        self._order = ArrivalOrder()
        self._current = threading.local()  # the token of the event a writer thread is archiving
        super().__init__(store_template, **kwargs)

    def _format_settings(self) -> dict[str, Any]:
        return {
            "array_path_template": self.array_path_template,
            "append_dim": self.append_dim,
            "frames_per_chunk": self.frames_per_chunk,
            "compressors": self.compressors,
        }

    def _make_store(self, **options: Any) -> ZarrStore:
        return ZarrStore(frames_per_chunk=self.frames_per_chunk, compressors=self.compressors, **options)

    def _write_item(
        self, destination: str, context: dict[str, Any], payload: Any, event: Event, resume: bool
    ) -> Written:
        path = array_path(self._array_route.render(context))
        array = _as_array(payload)
        if self.append_dim is None:
            return self._store.write(destination, path, array, json_safe(event.metadata), resume=resume)
        record = json.dumps(json_safe(event.metadata), ensure_ascii=False, allow_nan=False)
        place = self._order.first(getattr(self._current, "token", None) or object())
        return self._store.append(destination, path, array, record, resume=resume, place=place)

    # -- arrival order: the frames of one array are appended in the order they were received --------------------

    def _receive(self, received: Received) -> None:
        self._order.arrived(_token(received))
        super()._receive(received)

    def _archive(self, received: Received) -> None:
        self._current.token = _token(received)
        try:
            super()._archive(received)
        finally:
            self._current.token = None
            self._order.leave(_token(received))

    def _fail(
        self,
        received: Received,
        error: Exception,
        destination: str | None = None,
        pending: list[int] | None = None,
    ) -> None:
        self._order.leave(_token(received))  # also for events that were never queued
        super()._fail(received, error, destination, pending)

    def describe(self) -> str:
        mode = "one array per event" if self.append_dim is None else "frames appended"
        return f"{super().describe()} :: {self.array_path_template} ({mode})"


def _token(received: Received) -> tuple[str, float]:
    """An event's place in the arrival order. Not ``id()``: an event that waited in the disk buffer comes back
    as a new object; two events with equal tokens are interchangeable in the order."""
    return received.key_expr, received.received_at


def array_path(path: str) -> str:
    """Check a rendered array path: relative, inside the store, and made of valid zarr node names."""
    segments = re.split(r"[/\\]", path)
    if "://" in path or path.startswith(("/", "\\")):
        raise UnsafePathError(f"array path {path!r} must be a path inside the store, not a URL or absolute path")
    for segment in segments:
        if segment in ("", ".", "..") or segment.startswith("__"):
            raise UnsafePathError(f"array path {path!r} has an empty, '.', '..' or '__' segment")
    return "/".join(segments)


def _as_array(payload: Any) -> np.ndarray:
    if not isinstance(payload, np.ndarray):
        raise PayloadError(f"ZarrArchiver needs a numpy array payload, got {type(payload).__name__}")
    if payload.dtype.hasobject:
        raise PayloadError("object arrays cannot be stored in zarr")
    return payload

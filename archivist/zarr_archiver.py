"""ZarrArchiver: numpy arrays into zarr v3 stores, one array per event or frames appended to one array."""

from __future__ import annotations

import contextlib
import json
import re
import threading
from collections import deque
from collections.abc import Collection, Iterator
from typing import Any

import numpy as np

from .archivers import Archiver, _check, _is_int
from .encode import json_safe
from .errors import PayloadError, UnsafePathError
from .event import Event, Received
from .route import Route
from .store import Written
from .zarr_store import ZarrStore, check_compressors, recorded_index

APPEND_WORKERS_LIMIT = 64  # writer threads ZarrArchiver starts by itself in append mode


class ArrivalOrder:
    """Lets writer threads take a short step for each event in the order the events arrived.

    Events are registered with ``arrived`` in arrival order (by the zenoh callback, before they are queued).
    A writer thread enters ``first(token)`` once it knows where its event goes; it waits there until every
    earlier event has passed or ``left``. So writer threads that decode at different speeds still line their
    frames up in the order they were sent. Only the thread whose turn has come is woken, by releasing a lock it
    waits to acquire: one handoff in C, where an Event takes a condition and several locks in Python per frame.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrived: deque[object] = deque()
        self._turns: dict[object, deque[threading.Lock]] = {}  # held locks: threads waiting for their token's turn

    def arrived(self, token: object) -> None:
        with self._lock:
            self._arrived.append(token)

    def leave(self, token: object) -> None:
        """The event passed, failed or was never queued: later events need not wait for it."""
        with self._lock:
            with contextlib.suppress(ValueError):
                self._arrived.remove(token)
            if self._arrived and (turns := self._turns.get(self._arrived[0])):
                turns.popleft().release()
                if not turns:
                    del self._turns[self._arrived[0]]

    @contextlib.contextmanager
    def first(self, token: object) -> Iterator[None]:
        """Wait until every earlier event has passed; a token that never ``arrived`` (a replay) passes at once."""
        turn = None
        with self._lock:
            if token in self._arrived and self._arrived[0] != token:
                turn = threading.Lock()
                turn.acquire()
                self._turns.setdefault(token, deque()).append(turn)
        if turn is not None:
            turn.acquire()  # released by ``leave`` when the turn has come
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
        # the token of the event a writer thread archives, until it has its place; ``recorded``: the destination
        # the spool entry of the event being redelivered records
        self._current = threading.local()
        self._preparing = 0  # writer threads with an event that has not taken its place yet
        self._preparing_lock = threading.Lock()
        if append_dim is not None and "workers" not in kwargs:  # a batch holds at most one frame per writer
            kwargs["workers"] = min(APPEND_WORKERS_LIMIT, max(4, 2 * frames_per_chunk))
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
        token, self._current.token = getattr(self._current, "token", None), None
        at = recorded_index(getattr(self._current, "recorded", None), destination, path)
        return self._store.append(
            destination, path, array, record, resume=resume, place=self._place(token), coming=self._coming, at=at
        )

    def redeliver(
        self, received: Received, pending_items: Collection[int] | None = None, destination: str | None = None
    ) -> None:
        """The base class's; in append mode a frame whose spool entry records an index (``store :: path[17]``),
        where an earlier delivery may have appended it before its reply was lost, is looked for at that index,
        and not appended again if it is there with its record."""
        self._current.recorded = destination
        try:
            super().redeliver(received, pending_items, destination)
        finally:
            self._current.recorded = None

    # -- arrival order: the frames of one array are appended in the order they were received --------------------

    def _receive(self, received: Received) -> None:
        self._order.arrived(_token(received))
        super()._receive(received)

    def _archive(self, received: Received) -> bool:
        token = self._current.token = _token(received)
        self._count_preparing(1)
        try:
            return super()._archive(received)
        finally:
            if self._current.token is not None:  # it failed before it took its place
                self._current.token = None
                self._count_preparing(-1)
                self._order.leave(token)

    @contextlib.contextmanager
    def _place(self, token: object | None) -> Iterator[None]:
        """The event's place in its array's line: its turn in the arrival order, once it is ready."""
        if token is None:  # a replay never arrived: nobody waits for it, and it waits for nobody
            yield
            return
        try:
            with self._order.first(token):
                yield
        finally:
            self._count_preparing(-1)

    def _count_preparing(self, change: int) -> None:
        with self._preparing_lock:
            self._preparing += change

    def _coming(self, lined_up: int) -> bool:
        """Whether more frames are on their way to a batch of ``lined_up``: a writer thread is preparing one, or
        events wait in the queue and not every writer thread is in that line."""
        if self._preparing > 0:
            return True
        if self._pipeline is None or lined_up >= self._pipeline.workers:
            return False
        return self._pipeline.depth[0] > 0 or self._pipeline.overflowed > 0

    def _fail(
        self,
        received: Received,
        error: Exception,
        destination: str | None = None,
        pending: list[int] | None = None,
    ) -> bool:
        self._order.leave(_token(received))  # also for events that were never queued
        return super()._fail(received, error, destination, pending)

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

"""A bounded work queue drained by writer threads: memory stays bounded and the zenoh thread never does I/O."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class PipelineClosed(RuntimeError):
    """The pipeline no longer takes items: it was closed while the item waited for room."""


class Overflow(Protocol[T]):
    """Where items wait, first in first out, while the queue is full (archivist.buffer.DiskBuffer); ``done``
    is told when an item it gave out has been handled."""

    def append(self, item: T) -> None: ...

    def pop(self) -> T | None: ...

    def done(self, item: T) -> None: ...


class Pipeline(Generic[T]):
    """Items wait in a queue bounded in count and bytes; ``submit`` blocks while it is full (backpressure).

    With an ``overflow``, ``submit`` never waits: once the queue is full, items go to the overflow (and keep
    going there until it is empty, so they are handled in order), and writers take from it, with
    ``handle_overflowed``, when the queue is empty; an item whose handler returns False (it could not be kept)
    stays in the overflow's files. An item larger than ``max_bytes`` on its own is still admitted once the queue
    is empty, so nothing is refused; the bound then holds to within one item.
    """

    def __init__(
        self,
        handle: Callable[[T], bool | None],
        *,
        workers: int,
        max_events: int,
        max_bytes: int,
        overflow: Overflow[T] | None = None,
        handle_overflowed: Callable[[T], bool | None] | None = None,
        name: str = "archivist",
    ) -> None:
        if workers < 1 or max_events < 1 or max_bytes < 1:
            raise ValueError("workers, max_events and max_bytes must be at least 1")
        self._handle = handle
        self._max_events = max_events
        self._max_bytes = max_bytes
        self._items: deque[tuple[T, int]] = deque()
        self._bytes = 0
        self._busy = 0
        self._overflow = overflow
        self._handle_overflowed = handle_overflowed or handle
        self._overflowed = 0  # items in the overflow
        self._closed = False
        # One lock, and a condition per kind of waiter, so that each change wakes only who can act on it.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)  # writers: an item to take, or closed
        self._room = threading.Condition(self._lock)  # submit without an overflow: room in the queue
        self._idle = threading.Condition(self._lock)  # drain: nothing queued, buffered or being written
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-writer-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: T, nbytes: int) -> bool:
        """Queue an item; while the queue is full, put it in the overflow, or without one wait for room.

        Returns True when the item went to the overflow. Raises PipelineClosed once the pipeline is closed, and
        what the overflow's ``append`` raises (the item not taken).
        """
        with self._lock:
            if self._overflow is not None and not self._closed and (self._overflowed or self._is_full(nbytes)):
                self._overflow.append(item)
                self._overflowed += 1
                self._ready.notify()
                return True
            while not self._closed and self._is_full(nbytes):
                self._room.wait()
            if self._closed:
                raise PipelineClosed("pipeline is closed")
            self._items.append((item, nbytes))
            self._bytes += nbytes
            self._ready.notify()
            return False

    def _is_full(self, nbytes: int) -> bool:
        return bool(self._items) and (len(self._items) >= self._max_events or self._bytes + nbytes > self._max_bytes)

    @property
    def workers(self) -> int:
        return len(self._threads)

    @property
    def depth(self) -> tuple[int, int]:
        """Queued events and bytes, not counting those being written or in the overflow."""
        with self._lock:
            return len(self._items), self._bytes

    @property
    def overflowed(self) -> int:
        """Items waiting in the overflow."""
        with self._lock:
            return self._overflowed

    def oldest(self) -> T | None:
        """The item that has waited longest (not being written), or None when the queue is empty."""
        with self._lock:
            return self._items[0][0] if self._items else None

    def is_drained(self) -> bool:
        with self._lock:
            return not self._items and not self._overflowed and self._busy == 0

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted item has been handled; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._items or self._overflowed or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> list[T]:
        """Refuse new items, finish queued ones within ``timeout``, tell the writers to stop; returns the items
        left over at once, so that their owner can keep them safe while writes in flight finish (``join``).

        Items still in the overflow stay there for its owner to take.
        """
        self.drain(timeout)
        with self._lock:
            self._closed = True
            left = [item for item, _ in self._items]
            self._items.clear()
            self._bytes = self._overflowed = 0
            for condition in (self._ready, self._room, self._idle):
                condition.notify_all()
        return left

    def join(self) -> None:
        """After ``close``: wait for the writers to finish the items they hold."""
        for thread in self._threads:
            thread.join()

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._items and not self._overflowed and not self._closed:
                    self._ready.wait()
                from_overflow = not self._items
                if self._items:
                    item, nbytes = self._items.popleft()
                    self._bytes -= nbytes
                    self._room.notify()
                elif self._overflowed and not self._closed:
                    self._overflowed -= 1  # the item is read below, outside the lock, not to hold up submit
                else:
                    return
                self._busy += 1
            try:
                if from_overflow:
                    item = self._overflow.pop()
                    kept = True
                    try:
                        kept = self._handle_overflowed(item) is not False
                    finally:
                        if kept:  # a handler that could not keep the item leaves it where it waited
                            self._overflow.done(item)
                else:
                    self._handle(item)
            except Exception:  # a writer thread must survive anything a handler lets through
                log.exception("unhandled error while archiving an event")
            finally:
                with self._lock:
                    self._busy -= 1
                    if not self._items and not self._overflowed and not self._busy:
                        self._idle.notify_all()

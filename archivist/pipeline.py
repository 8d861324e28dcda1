"""A bounded work queue drained by writer threads: memory stays bounded and the zenoh thread never does I/O."""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class PipelineClosed(RuntimeError):
    """The pipeline no longer takes items: it was closed while the item waited for room."""


class Pipeline(Generic[T]):
    """Items wait in a queue bounded in count and bytes; ``submit`` blocks while it is full (backpressure).

    An item larger than ``max_bytes`` on its own is still admitted once the queue is empty, so nothing is
    refused; the bound then holds to within one item.
    """

    def __init__(
        self,
        handle: Callable[[T], None],
        *,
        workers: int,
        max_events: int,
        max_bytes: int,
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
        self._closed = False
        self._cond = threading.Condition()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-writer-{i}", daemon=True) for i in range(workers)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, item: T, nbytes: int, *, block: bool = True) -> bool:
        """Queue an item, waiting while the queue is full unless ``block`` is False (then returns False).

        Raises PipelineClosed once the pipeline is closed.
        """
        with self._cond:
            while not self._closed and self._is_full(nbytes):
                if not block:
                    return False
                self._cond.wait()
            if self._closed:
                raise PipelineClosed("pipeline is closed")
            self._items.append((item, nbytes))
            self._bytes += nbytes
            self._cond.notify_all()
            return True

    def _is_full(self, nbytes: int) -> bool:
        return bool(self._items) and (len(self._items) >= self._max_events or self._bytes + nbytes > self._max_bytes)

    @property
    def depth(self) -> tuple[int, int]:
        """Queued events and bytes, not counting those being written."""
        with self._cond:
            return len(self._items), self._bytes

    def is_drained(self) -> bool:
        with self._cond:
            return not self._items and self._busy == 0

    def drain(self, timeout: float | None = None) -> bool:
        """Wait until every submitted item has been handled; False if ``timeout`` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._items or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._cond.wait(remaining)
            return True

    def close(self, timeout: float | None = None) -> list[T]:
        """Refuse new items, finish queued ones within ``timeout``, stop the writers; returns items left over."""
        self.drain(timeout)
        with self._cond:
            self._closed = True
            left = [item for item, _ in self._items]
            self._items.clear()
            self._bytes = 0
            self._cond.notify_all()
        for thread in self._threads:
            thread.join()
        return left

    def _work(self) -> None:
        while True:
            with self._cond:
                while not self._items and not self._closed:
                    self._cond.wait()
                if not self._items:
                    return
                item, nbytes = self._items.popleft()
                self._bytes -= nbytes
                self._busy += 1
                self._cond.notify_all()
            try:
                self._handle(item)
            except Exception:  # a writer thread must survive anything a handler lets through
                log.exception("unhandled error while archiving an event")
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

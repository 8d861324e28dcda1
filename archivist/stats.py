"""Thread-safe counters of what an archiver did, reported by ``stats()``."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Counters updated by the zenoh thread and the writers; ``snapshot`` is what users read."""

    FIELDS = (
        "received",
        "overflowed",
        "written",
        "files_written",
        "bytes_written",
        "failed",
        "suffixed",
        "retries",
        "spooled",
        "spool_failed",
        "replayed",
    )

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()

    def add(self, **counts: int) -> None:
        with self._lock:
            self._counts.update(counts)

    def error(self, kind: str) -> None:
        with self._lock:
            self._errors[kind] += 1

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            snapshot: dict[str, object] = {name: self._counts[name] for name in self.FIELDS}
            snapshot["errors"] = dict(self._errors)
        return snapshot

"""Process-wide settings that let one Python process keep up with a stream of large frames.

Applied by the first subscription (:func:`tune_for_streaming`) and documented in docs/reliability.md, because
they change the whole process, BOSS's included.
"""

from __future__ import annotations

import ctypes
import logging

log = logging.getLogger(__name__)

HEAP_MMAP_THRESHOLD = 32 * 2**20  # bytes; glibc's largest allowed value on 64-bit
HEAP_TRIM_THRESHOLD = 64 * 2**20  # bytes
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameter numbers
# The same setting for another process, a heros device publishing large frames, through the variables glibc reads
# at start-up: heros serializes each event into a new buffer, which glibc otherwise serves as fresh pages
# (docs/deployment.md).
HEAP_ENVIRONMENT = {
    "MALLOC_MMAP_THRESHOLD_": str(HEAP_MMAP_THRESHOLD),
    "MALLOC_TRIM_THRESHOLD_": str(HEAP_TRIM_THRESHOLD),
}


def tune_for_streaming() -> None:
    """Keep freed frame buffers in the heap.

    Every frame is copied a few times (out of zenoh, out of the CBOR bytes); glibc hands buffers above its
    mmap threshold out as fresh pages and returns them on free, so each copy paid a page fault per 4 KiB
    (on a virtual machine that made decoding a 1 MiB frame four times as expensive). With frames below
    ``HEAP_MMAP_THRESHOLD`` served from the heap, and up to ``HEAP_TRIM_THRESHOLD`` of freed heap kept, the
    same pages are reused; the peak RSS does not grow by it, the RSS just does not shrink below the peak.
    """
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)  # glibc (and musl, as a no-op); absent on macOS
    if mallopt is None:
        return
    for parameter, value in ((_M_MMAP_THRESHOLD, HEAP_MMAP_THRESHOLD), (_M_TRIM_THRESHOLD, HEAP_TRIM_THRESHOLD)):
        if not mallopt(parameter, value):
            log.debug("mallopt(%d, %d) was refused; large buffers keep coming from fresh pages", parameter, value)

"""The bounded queue: backpressure instead of growth, nothing lost, leftovers handed back on close."""

from __future__ import annotations

import threading

import pytest

from archivist.pipeline import Pipeline, PipelineClosed
from tests import support


def test_submit_blocks_while_full_and_loses_nothing() -> None:
    gate = threading.Event()
    handled: list[int] = []
    pipeline: Pipeline[int] = Pipeline(
        lambda item: (gate.wait(), handled.append(item)), workers=1, max_events=2, max_bytes=10**6
    )
    submitted: list[int] = []

    def producer() -> None:
        for item in range(6):
            pipeline.submit(item, 1)
            submitted.append(item)

    thread = threading.Thread(target=producer)
    thread.start()
    # one item is with the blocked writer, two wait in the queue, the producer waits with the fourth
    support.wait_until(lambda: pipeline.depth == (2, 2) and len(submitted) == 3, what="a full queue")
    assert thread.is_alive() and len(submitted) == 3
    gate.set()
    thread.join(10)
    assert pipeline.drain(10) and sorted(handled) == list(range(6))
    pipeline.close()


def test_byte_bound_and_oversized_items() -> None:
    gate = threading.Event()
    pipeline: Pipeline[str] = Pipeline(lambda item: gate.wait(), workers=1, max_events=100, max_bytes=100)
    pipeline.submit("busy", 10)
    support.wait_until(lambda: pipeline.depth == (0, 0), what="the writer to take the first item")
    pipeline.submit("big", 1000)  # larger than the bound, admitted because the queue is empty
    blocked = threading.Thread(target=pipeline.submit, args=("next", 1))
    blocked.start()
    blocked.join(0.2)
    assert blocked.is_alive() and pipeline.depth == (1, 1000)
    gate.set()
    blocked.join(10)
    assert pipeline.drain(10)
    pipeline.close()


def test_close_returns_what_was_not_handled() -> None:
    gate = threading.Event()
    pipeline: Pipeline[int] = Pipeline(lambda item: gate.wait(), workers=1, max_events=10, max_bytes=10**6)
    for item in range(4):
        pipeline.submit(item, 1)
    assert not pipeline.drain(0.05)
    # the queued items are handed back at the deadline, while the write in flight still waits; join waits for it
    assert pipeline.close(timeout=0.05) == [1, 2, 3]
    with pytest.raises(PipelineClosed):
        pipeline.submit(9, 1)
    joiner = threading.Thread(target=pipeline.join)
    joiner.start()
    joiner.join(0.2)
    assert joiner.is_alive()
    gate.set()
    joiner.join(10)
    assert not joiner.is_alive()


def test_a_failing_handler_does_not_kill_the_writers() -> None:
    handled: list[int] = []

    def handle(item: int) -> None:
        if item == 0:
            raise RuntimeError("bug")
        handled.append(item)

    pipeline: Pipeline[int] = Pipeline(handle, workers=1, max_events=10, max_bytes=100)
    for item in range(3):
        pipeline.submit(item, 1)
    assert pipeline.drain(10) and handled == [1, 2]
    pipeline.close()

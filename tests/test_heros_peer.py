"""Scratch check that the emitter peer publishes real HEROS events over a loopback zenoh link."""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import numpy as np
import pytest
import zenoh
from heros import serdes

from tests import support
from tests.peers.specs import array_spec, burst_frame, make_array

if TYPE_CHECKING:  # importing the plugin module at runtime would defeat pytest's assert rewriting of it
    from tests.fixtures.heros_peer import Emitter

pytest_plugins = ["tests.fixtures.heros_peer"]


@pytest.fixture
def listener() -> Iterator[tuple[zenoh.Session, int]]:
    """A loopback-only zenoh session listening on a free port, standing in for the archivist."""
    port = support.free_port()
    cfg = support.loopback_zenoh_config(listen_port=port)
    session = zenoh.open(zenoh.Config.from_json5(json.dumps(cfg)))
    try:
        yield session, port
    finally:
        session.close()


def collect(session: zenoh.Session, key_expr: str) -> tuple[list[bytes], zenoh.Subscriber]:
    payloads: list[bytes] = []
    lock = threading.Lock()

    def on_sample(sample: zenoh.Sample) -> None:
        with lock:
            payloads.append(sample.payload.to_bytes())

    return payloads, session.declare_subscriber(key_expr, on_sample)


def test_emitter_publishes_tuple_and_dict(
    listener: tuple[zenoh.Session, int], heros_emitter: Callable[..., Emitter]
) -> None:
    session, port = listener
    payloads, _sub = collect(session, "@object/heros/peer_cam/acquisition_data")
    emitter = heros_emitter("peer_cam", port)
    assert "acquisition_data" in emitter.events
    emitter.wait_subscribers("acquisition_data", timeout=20)

    spec = array_spec([4, 5], "uint16", fill="random", seed=3)
    metadata = {"exposure": {"__int64__": 5}, "temp": {"__float__": "nan"}, "label": "dark"}
    sent = emitter.emit(
        "acquisition_data",
        [
            {"form": "tuple", "data": spec, "metadata": metadata},
            {"form": "dict", "value": {"roi": array_spec([3], "float32"), "count": 7}},
        ],
    )
    assert sent == 2
    support.wait_until(lambda: len(payloads) >= 2, timeout=20, what="2 acquisition_data samples")

    data, meta = serdes.deserialize(payloads[0])  # a tuple arrives as a CBOR array, i.e. a list
    expected = make_array(spec)
    assert data.dtype == expected.dtype and data.shape == (4, 5)
    np.testing.assert_array_equal(data, expected)
    assert meta["exposure"] == 5 and meta["label"] == "dark" and math.isnan(meta["temp"])

    value = serdes.deserialize(payloads[1])
    assert value["count"] == 7
    np.testing.assert_array_equal(value["roi"], np.arange(3, dtype="float32"))


def test_emitter_burst_on_new_event_name(
    listener: tuple[zenoh.Session, int], heros_emitter: Callable[..., Emitter]
) -> None:
    session, port = listener
    payloads, _sub = collect(session, "@object/heros/peer_burst/custom_frames")
    emitter = heros_emitter("peer_burst", port)
    emitter.wait_subscribers("custom_frames")  # declares the event on first use
    reply = emitter.burst("custom_frames", 300, [64, 64], "uint8", {"run": 1})
    assert reply["sent"] == 300
    support.wait_until(lambda: len(payloads) >= 300, timeout=30, what="300 burst frames")
    frames = [serdes.deserialize(p) for p in payloads]
    assert [meta["frame"] for _, meta in frames] == list(range(300))  # reliable: none lost, in order
    np.testing.assert_array_equal(frames[260][0], burst_frame(260, [64, 64], "uint8"))
    assert frames[260][0][0, 0] == 260 % 256 and frames[260][1]["run"] == 1

"""zenoh configuration as heros reads it, and one session per configuration."""

from __future__ import annotations

import json
import time

import pytest

from archivist import ArrayArchiver, ConfigError, JsonArchiver, load_zenoh_config
from archivist.event import Received, decode_event
from archivist.source import SHARED_MEMORY, Subscription, sessions, warn_of_shared_memory
from tests import support


def test_config_from_dict_string_file_and_environment(tmp_path, monkeypatch) -> None:
    config = support.loopback_zenoh_config(listen_port=support.free_port())
    file = tmp_path / "zenoh.json5"
    file.write_text("// a comment, as JSON5 allows\n" + json.dumps(config))
    for source in (config, json.dumps(config), str(file), file):
        zconfig, _ = load_zenoh_config(source)
        assert json.loads(zconfig.get_json("scouting/multicast/enabled")) is False
    monkeypatch.setenv("HEROS_ZENOH_CONFIG", json.dumps(config))
    zconfig, _key = load_zenoh_config(None)
    assert json.loads(zconfig.get_json("listen/endpoints")) == config["listen"]["endpoints"]


def test_shared_memory_is_off_unless_the_config_sets_it(tmp_path, monkeypatch) -> None:
    config = support.loopback_zenoh_config(listen_port=support.free_port())
    file = tmp_path / "zenoh.json5"
    file.write_text(json.dumps(config))
    monkeypatch.delenv("HEROS_ZENOH_CONFIG", raising=False)
    for source in (config, json.dumps(config), file, None):
        assert load_zenoh_config(source)[0].get_json(SHARED_MEMORY) == "false"
    chosen = {**config, "transport": {"shared_memory": {"enabled": True}}}  # speed over safety, on purpose
    file.write_text("{ transport: { shared_memory: { enabled: true } } }")
    for source in (chosen, json.dumps(chosen), file):
        assert load_zenoh_config(source)[0].get_json(SHARED_MEMORY) == "true"


@pytest.mark.parametrize(
    ("value", "message"),
    [("/no/such/file.json5", "neither a JSON5 object nor an existing file"), ("{ mode: ", "invalid zenoh")],
)
def test_bad_config_is_a_config_error(value: str, message: str) -> None:
    with pytest.raises(ConfigError, match=f"zenoh_config: .*{message}"):
        load_zenoh_config(value)


def test_archivers_with_the_same_config_share_one_session(zenoh_config, tmp_path) -> None:
    kwargs = {"object_selector": "cam", "zenoh_config": zenoh_config, "spool_dir": str(tmp_path)}
    first = ArrayArchiver("a/{{ x }}.npy", event_name="a", **kwargs)
    second = ArrayArchiver("b/{{ x }}.npy", event_name="b", **kwargs)
    try:
        assert len(sessions._sessions) == 1
    finally:
        first.stop()
        second.stop()
    assert sessions._sessions == {}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_retries": -1}, "max_retries must be"),
        ({"workers": 0}, "workers must be"),
        ({"on_exists": "clobber"}, "on_exists must be one of"),
        ({"event_name": ""}, "event_name must be"),
        ({"default_metadata": [1]}, "default_metadata must be"),
        ({"save_template": "{% if %}"}, "save_template: invalid Jinja"),
        ({"root": "/data/../etc"}, "root"),
    ],
)
def test_bad_arguments_are_config_errors(kwargs, message, zenoh_config, tmp_path) -> None:
    arguments = {"save_template": "{{ x }}.npy", "object_selector": "cam", "event_name": "e"}
    with pytest.raises(ConfigError, match=message):
        ArrayArchiver(**(arguments | {"zenoh_config": zenoh_config, "spool_dir": str(tmp_path)} | kwargs))
    assert sessions._sessions == {}


def test_herostools_positional_order(zenoh_config, tmp_path) -> None:
    archiver = ArrayArchiver(
        "{{ x }}.npy",
        True,
        "cam",
        "acquisition_data",
        {"x": 1},
        2,
        zenoh_config=zenoh_config,
        spool_dir=str(tmp_path),
    )
    archiver.stop()
    assert archiver.split_data_array and archiver.name == "ArrayArchiver:heros/cam/acquisition_data"


def test_a_zenoh_config_is_read_only_by_who_subscribes(monkeypatch, tmp_path) -> None:
    """$HEROS_ZENOH_CONFIG is for subscribing: replay (listen=False) builds an archiver wherever it is broken."""
    monkeypatch.setenv("HEROS_ZENOH_CONFIG", "/etc/heros/no-such.json5")
    archiver = JsonArchiver(str(tmp_path / "x.json"), object_selector="s", event_name="e", listen=False)
    assert archiver.describe().startswith("(not listening)")
    with pytest.raises(ConfigError, match="neither a JSON5 object nor an existing file"):
        JsonArchiver(str(tmp_path / "x.json"), object_selector="s", event_name="e", zenoh_config="/no/such.json5")


def test_zenoh_config_text_may_start_with_a_comment() -> None:
    _, key = load_zenoh_config("// the lab network\n{ mode: 'peer', scouting: { multicast: { enabled: false } } }")
    assert key.startswith("// the lab network")


def test_a_subscriber_that_falls_behind_gets_every_reliable_sample(heros_emitter, tmp_path) -> None:
    """zenoh 1.9 sends a sample over 3 KiB to a peer on the same host through a shared-memory pool of 16 MiB, and
    reuses a buffer the subscriber has not read yet: that sample is dropped, silently (fewer than 1,000 arrived).
    Sessions archivist opens turn shared memory off, so a reliable event waits for the subscriber instead."""
    port = support.free_port()
    frames: list[int] = []

    def slow(received: Received) -> None:  # what a callback thread held up by busy writer threads looks like
        frames.append(decode_event(received, "heros", "acquisition_data", {}).metadata["frame"])
        time.sleep(0.002)

    config = support.loopback_zenoh_config(listen_port=port)
    subscription = Subscription(
        slow, realm="heros", object_selector="cam", event_name="acquisition_data", zenoh_config=config
    )
    try:
        emitter = heros_emitter("cam", port)
        emitter.wait_subscribers("acquisition_data")
        emitter.burst("acquisition_data", 1000, [128, 128])  # 32 KiB frames, one after the other
        support.wait_until(lambda: len(frames) == 1000, timeout=60, what="1,000 frames")
    finally:
        subscription.close()
    assert frames == list(range(1000))


def test_a_heros_session_with_shared_memory_on_is_warned_of_once(monkeypatch, caplog) -> None:
    """Under BOSS the session is the HERO's, opened by heros with $HEROS_ZENOH_CONFIG: archivist cannot turn zenoh's
    shared memory off there, so it says how to, once, unless the configuration says what it wants."""
    config = support.loopback_zenoh_config(listen_port=support.free_port())
    off = {**config, "transport": {"shared_memory": {"enabled": False}}}
    chosen = {**config, "transport": {"shared_memory": {"enabled": True}}}
    seen = {}
    for name, env in (("default", config), ("off", off), ("chosen", chosen)):
        monkeypatch.setenv("HEROS_ZENOH_CONFIG", json.dumps(env))
        warn_of_shared_memory.cache_clear()
        caplog.clear()
        warn_of_shared_memory()
        warn_of_shared_memory()
        seen[name] = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert seen["off"] == seen["chosen"] == []
    (warning,) = seen["default"]
    assert "transport: { shared_memory: { enabled: false } }" in warning and "$HEROS_ZENOH_CONFIG" in warning

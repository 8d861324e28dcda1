"""zenoh configuration as heros reads it, and one session per configuration."""

from __future__ import annotations

import json

import pytest

from archivist import ArrayArchiver, ConfigError, JsonArchiver, load_zenoh_config
from archivist.source import sessions
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

"""The command line: configuration errors are one clear line naming the file, the _id and the argument."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

GOOD = {
    "_id": "cam-capturer",
    "classname": "archivist.ArrayArchiver",
    "arguments": {"object_selector": "cam", "event_name": "acquisition_data", "save_template": "{{ frame }}.npy"},
}


def _run(tmp_path: Path, document: object | str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.json"
    config.write_text(document if isinstance(document, str) else json.dumps(document))
    return subprocess.run(
        [sys.executable, "-m", "archivist", "run", str(config)], capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ("{not json", "invalid JSON at line 1"),
        ([GOOD, 3], "object 1: must be a JSON object"),
        ([GOOD, GOOD], "_id cam-capturer used more than once"),
        (GOOD | {"classname": "herostools.actor.NoSuchArchiver"}, "cam-capturer: classname 'herostools.actor.NoSuch"),
        (GOOD | {"classname": "os.system"}, "cam-capturer: classname 'os.system' is not an archivist class"),
        (GOOD | {"arguments": GOOD["arguments"] | {"colour": "red"}}, "cam-capturer: .*unexpected keyword .*'colour'"),
        (GOOD | {"arguments": {"event_name": "e", "save_template": "x"}}, "cam-capturer: .*'object_selector'"),
        (GOOD | {"arguments": GOOD["arguments"] | {"save_template": "{{ frame"}}, "cam-capturer: save_template: "),
        (GOOD | {"arguments": GOOD["arguments"] | {"on_exists": "maybe"}}, "cam-capturer: on_exists must be one of"),
    ],
    ids=[
        "json",
        "not-object",
        "duplicate-id",
        "unknown-class",
        "foreign-class",
        "unknown-arg",
        "missing-arg",
        "template-syntax",
        "bad-value",
    ],
)
def test_bad_configs_fail_with_one_clear_line(tmp_path: Path, document, message: str) -> None:
    result = _run(tmp_path, document)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("archivist: error: ") and "Traceback" not in result.stderr
    assert str(tmp_path / "config.json") in lines[0]

    assert re.search(message, lines[0]), lines[0]


@pytest.mark.parametrize("command", ["run", "check"])
def test_an_id_used_in_two_files_is_refused(tmp_path: Path, command: str) -> None:
    """An _id names an archiver's spool entries, disk buffer and metrics: two of one name would share them."""
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text(json.dumps(GOOD))
    result = subprocess.run(
        [sys.executable, "-m", "archivist", command, str(tmp_path / "a.json"), str(tmp_path / "b.json")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert f"b.json: _id cam-capturer is used in {tmp_path / 'a.json'} too" in result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "archivist", "run", str(tmp_path / "nope.json")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "nope.json: cannot read: No such file or directory" in result.stderr


def _check(tmp_path: Path, document: object, *args: str) -> subprocess.CompletedProcess[str]:
    config = tmp_path / "config.json"
    config.write_text(json.dumps(document))
    return subprocess.run(
        [sys.executable, "-m", "archivist", "check", str(config), *args], capture_output=True, text=True, timeout=60
    )


def _with(**arguments: object) -> dict[str, object]:
    return GOOD | {"arguments": GOOD["arguments"] | arguments}


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (GOOD | {"classname": "archivist.NoSuchArchiver"}, "cam-capturer: unknown classname 'archivist.NoSuch"),
        (_with(colour="red"), "cam-capturer: .*unexpected keyword .*'colour'"),
        (GOOD | {"arguments": {"event_name": "e", "save_template": "x"}}, "cam-capturer: .*'object_selector'"),
        (_with(save_template="{{ frame"), "cam-capturer: save_template: invalid Jinja template"),
        (_with(save_template="nosuchfs://bucket/{{ frame }}.npy"), "cam-capturer: save_template: unknown filesystem"),
        (_with(root="nosuchfs://bucket"), "cam-capturer: root: unknown filesystem protocol 'nosuchfs'"),
        (_with(root="/data", save_template="/elsewhere/{{ frame }}.npy"), "cam-capturer: save_template: .*outside"),
        (
            {"_id": "lab-state", "classname": "herostools.actor.HERODatasourceStateMachine", "arguments": {"port": 1}},
            "lab-state: .*unexpected keyword argument 'port'",
        ),
        # what only subscribing used to refuse: check and run must agree
        (_with(zenoh_config="/no/such.json5"), "cam-capturer: zenoh_config: '/no/such.json5' is neither"),
        (_with(zenoh_config="{ mode: 5 }"), "cam-capturer: zenoh_config: invalid zenoh configuration"),
        (_with(object_selector="cam?x#y"), r"cam-capturer: .*'@object/heros/cam\?x#y/.*not a zenoh key expression"),
        (_with(realm="a/b*"), "cam-capturer: .*not a zenoh key expression: .*`\\*` may only be preceded"),
        (_with(retry_wait_min="0.1"), "cam-capturer: retry_wait_min must be seconds >= 0"),
        (_with(root=5), "cam-capturer: root must be a non-empty URL or path"),
    ],
    ids=[
        "unknown-class",
        "unknown-arg",
        "missing-arg",
        "template-syntax",
        "protocol",
        "root-protocol",
        "root",
        "state-machine-arg",
        "zenoh-config-file",
        "zenoh-config-text",
        "selector",
        "realm",
        "retry-wait",
        "root-type",
    ],
)
def test_check_reports_each_error_with_file_id_and_argument(tmp_path: Path, document, message: str) -> None:
    result = _check(tmp_path, [GOOD | {"_id": "fine"}, document], "--metadata", '{"frame": 7}')
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("archivist: error: ")]
    assert len(errors) == 1 and str(tmp_path / "config.json") in errors[0], result.stderr
    assert re.search(message, errors[0]), errors[0]
    assert result.stdout.splitlines()[-1] == "checked 2 object(s): 1 error(s)"


def test_check_prints_destinations_and_warnings_of_a_valid_config(tmp_path: Path) -> None:
    seed = {
        "_id": "my-camera-capturer",
        "classname": "herostools.actor.ArrayArchiver",
        "arguments": {
            "object_selector": "my-camera",
            "event_name": "acquisition_data",
            "default_metadata": {"file_path": "/mnt/mystorage/images"},
            "save_template": "{{ file_path }}/testimg-{{ '%04d' % ( frame / 2 ) |round(0, 'floor') }}"
            "-{{ frame % 2 }}.npy",
        },
    }
    rooted = _with(root="s3://lab-data/images", save_template="{{ source_name }}/{{ frame }}.npy") | {"_id": "s3"}
    unusual = _with(save_template="gcs://lab-data/{{ frame }}.npy") | {"_id": "gcs"}
    fixed = _with(save_template="run.npy") | {"_id": "fixed"}  # no markup: events choose nothing, no warning
    result = _check(tmp_path, [seed, rooted, unusual, fixed], "--metadata", '{"frame": 5}')
    assert result.returncode == 0, result.stderr
    source = tmp_path / "config.json"
    assert result.stdout.splitlines() == [
        f"{source}: my-camera-capturer: /mnt/mystorage/images/testimg-0002-1.npy",
        f"{source}: s3: s3://lab-data/images/cam/5.npy",
        f"{source}: gcs: gcs://lab-data/5.npy",
        f"{source}: fixed: run.npy",
        "checked 4 object(s): 0 error(s)",
    ]
    warnings = result.stderr.splitlines()
    assert len(warnings) == 2, result.stderr
    assert warnings[0].startswith(f"archivist: warning: {source}: my-camera-capturer: save_template: ")
    assert "lets event metadata choose the destination's root; set root" in warnings[0]
    assert warnings[1].startswith(f"archivist: warning: {source}: gcs: save_template: protocol 'gcs' needs a package")


def test_check_without_metadata_only_warns_that_it_cannot_preview(tmp_path: Path) -> None:
    result = _check(tmp_path, GOOD)
    assert result.returncode == 0, result.stderr
    assert "cam-capturer: save_template: no preview: template '{{ frame }}.npy': 'frame' is undefined" in result.stderr

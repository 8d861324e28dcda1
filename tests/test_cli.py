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


def test_missing_config_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "archivist", "run", str(tmp_path / "nope.json")], capture_output=True, text=True
    )
    assert result.returncode == 2 and "nope.json: cannot read: No such file or directory" in result.stderr

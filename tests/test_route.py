"""Destination templates: rendering, strictness and path safety."""

from __future__ import annotations

import os
import re

import pytest

from archivist import ConfigError, Route, TemplateRenderError, UnsafePathError
from archivist.route import redact_url

SEED = "{{ file_path }}/testimg-{{ '%04d' % ( frame / 2 ) |round(0, 'floor') }}-{{ frame % 2 }}.npy"


def test_seed_template_gives_the_seed_names() -> None:
    route = Route(SEED)
    names = [route.render({"file_path": "/mnt/mystorage/images", "frame": frame}) for frame in range(3)]
    assert names == [
        "/mnt/mystorage/images/testimg-0000-0.npy",
        "/mnt/mystorage/images/testimg-0000-1.npy",
        "/mnt/mystorage/images/testimg-0001-0.npy",
    ]


def test_missing_variable_is_named() -> None:
    with pytest.raises(TemplateRenderError, match=r"'frame' is undefined.*keys \['file_path'\]"):
        Route(SEED).render({"file_path": "/x"})


@pytest.mark.parametrize("template", ['{{ "{}-{}".format(frame) }}', '{{ "{x}".format(frame) }}'])
def test_any_error_of_the_template_code_is_a_render_error(template: str) -> None:
    with pytest.raises(TemplateRenderError, match=f"template {re.escape(repr(template))} failed: (Index|Key)Error"):
        Route(template).render({"frame": 1, "names": ["a"]})


def test_a_chain_before_the_protocol_is_allowed() -> None:
    assert Route("simplecache::s3://bucket/{{ n }}.npy").render({"n": 1}) == "simplecache::s3://bucket/1.npy"


def test_syntax_error_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="save_template: invalid Jinja template"):
        Route("{{ frame ")


def test_sandbox_blocks_attribute_escapes() -> None:
    with pytest.raises(TemplateRenderError):
        Route("{{ ''.__class__.__mro__[1].__subclasses__() }}.npy").render({})


@pytest.mark.parametrize(
    ("rendered", "message"),
    [
        ("/data/../etc/passwd", "'..' segment"),
        ("s3://bucket/a/../../b.npy", "'..' segment"),
        ("C:\\data\\..\\x.npy", "'..' segment"),
        ("/data/a\x00b.npy", "control character"),
        ("/data/a\nb.npy", "control character"),
        ("/data/a\x85b.npy", "control character"),  # C1: NEL
        ("/data/cod\u202egnp.exe", "control character"),  # a right-to-left override: shows as codexe.png
        ("/data/", "no file name"),
        ("/data/.", "no file name"),
        ("", "no file name"),
        ("/data/run1::x.npy", "chain of filesystems"),  # fsspec would write /data/run1
        ("s3://bucket/a::memory://b.npy", "chain of filesystems"),
    ],
)
def test_unsafe_destinations_are_refused(rendered: str, message: str) -> None:
    with pytest.raises(UnsafePathError, match=message):
        Route("{{ path }}").render({"path": rendered})


@pytest.mark.parametrize(("template", "renders"), [("run.zarr", 1), ("{{ run }}.zarr", 3), ("run{# x #}.zarr", 3)])
def test_plain_text_is_rendered_once(template: str, renders: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A template without Jinja markup (zarr's store and array paths, most often) gives the same path for every
    event: it is rendered and checked once, which takes Jinja's work off every frame's path."""
    route, calls = Route(template), []
    render = route._template.render
    monkeypatch.setattr(route._template, "render", lambda context: calls.append(context) or render(context))
    assert [route.render({"run": "run"}) for _ in range(3)] == ["run.zarr"] * 3
    assert len(calls) == renders


def test_an_unsafe_plain_path_is_refused_for_every_event() -> None:
    route = Route("../run.zarr")
    for _ in range(2):
        with pytest.raises(UnsafePathError, match=r"'\.\.' segment"):
            route.render({})


def test_root_places_relative_paths_and_refuses_others(tmp_path) -> None:
    route = Route("{{ where }}/f.npy", root=str(tmp_path / "archive"))
    assert route.render({"where": "run1"}) == str(tmp_path / "archive" / "run1" / "f.npy")
    assert route.render({"where": str(tmp_path / "archive" / "x")}) == str(tmp_path / "archive" / "x" / "f.npy")
    for outside in [str(tmp_path), str(tmp_path / "archive-other"), "s3://bucket", "memory://archive"]:
        with pytest.raises(UnsafePathError, match="outside the root"):
            route.render({"where": outside})


def test_relative_root_is_taken_from_the_working_directory(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert Route("a/b.npy", root="out").render({}) == os.path.join(tmp_path, "out", "a", "b.npy")


def test_remote_root() -> None:
    route = Route("{{ where }}/f.npy", root="s3://bucket/lab")
    assert route.render({"where": "r1"}) == "s3://bucket/lab/r1/f.npy"
    assert route.render({"where": "s3://bucket/lab/r2"}) == "s3://bucket/lab/r2/f.npy"
    with pytest.raises(UnsafePathError):
        route.render({"where": "s3://bucket/laboratory"})


def test_credentials_are_masked_in_errors() -> None:
    assert redact_url("smb://alice:secret@host/share/x") == "smb://***@host/share/x"
    with pytest.raises(UnsafePathError) as error:
        Route("smb://alice:secret@host/share/{{ p }}").render({"p": "../x"})
    assert "secret" not in str(error.value)

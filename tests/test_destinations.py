"""Every kind of destination receives the same bytes: local path, file://, memory://, S3 (moto), SMB (smbd)."""

from __future__ import annotations

import io
import json
import uuid
from pathlib import Path

import fsspec
import numpy as np
import pytest

from archivist import ArrayArchiver, JsonArchiver
from tests import support
from tests.peers.specs import array_spec, make_array

SPEC = array_spec([8, 16], "uint16", fill="random", seed=42)


def _stream_frames(emitter, count: int = 3) -> None:
    emitter.wait_subscribers("acquisition_data")
    emitter.emit(
        "acquisition_data",
        [{"form": "tuple", "data": SPEC, "metadata": {"frame": i, "run": "run-7"}} for i in range(count)],
    )


def _archive_frames(make_archiver, heros_emitter, zenoh_port, template: str, **kwargs) -> ArrayArchiver:
    archiver = make_archiver(
        ArrayArchiver, object_selector="cam", event_name="acquisition_data", save_template=template, **kwargs
    )
    _stream_frames(heros_emitter("cam", zenoh_port))
    support.wait_until(lambda: archiver.stats()["written"] == 3, what="3 frames written")
    assert archiver.stats()["failed"] == 0
    return archiver


def _assert_npy(data: bytes) -> None:
    saved = np.load(io.BytesIO(data))
    assert saved.dtype == np.uint16 and saved.shape == (8, 16)
    np.testing.assert_array_equal(saved, make_array(SPEC))


@pytest.mark.parametrize("scheme", ["", "file://"])
def test_local_path_and_file_url(make_archiver, heros_emitter, zenoh_port, tmp_path: Path, scheme: str) -> None:
    template = f"{scheme}{tmp_path}/{{{{ run }}}}/deep/er/{{{{ frame }}}}.npy"
    _archive_frames(make_archiver, heros_emitter, zenoh_port, template)
    files = sorted((tmp_path / "run-7" / "deep" / "er").iterdir())
    assert [f.name for f in files] == ["0.npy", "1.npy", "2.npy"]  # no temporary file is left behind
    for file in files:
        _assert_npy(file.read_bytes())


def test_memory_url(make_archiver, heros_emitter, zenoh_port) -> None:
    base = f"memory://archivist-test-{uuid.uuid4().hex[:8]}"
    _archive_frames(make_archiver, heros_emitter, zenoh_port, base + "/{{ run }}/{{ frame }}.npy")
    fs = fsspec.filesystem("memory")
    for frame in range(3):
        _assert_npy(fs.cat_file(f"{base}/run-7/{frame}.npy"))


def test_s3_with_endpoint_url(make_archiver, heros_emitter, zenoh_port, s3_bucket) -> None:
    bucket, options, client = s3_bucket
    template = f"s3://{bucket}/{{{{ run }}}}/frame-{{{{ frame }}}}.npy"
    _archive_frames(make_archiver, heros_emitter, zenoh_port, template, storage_options=options)
    keys = sorted(obj["Key"] for obj in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["run-7/frame-0.npy", "run-7/frame-1.npy", "run-7/frame-2.npy"]
    for key in keys:
        _assert_npy(client.get_object(Bucket=bucket, Key=key)["Body"].read())


def test_s3_with_root_and_relative_template(make_archiver, heros_emitter, zenoh_port, s3_bucket) -> None:
    bucket, options, client = s3_bucket
    _archive_frames(
        make_archiver,
        heros_emitter,
        zenoh_port,
        "{{ run }}/{{ frame }}.npy",
        storage_options=options,
        root=f"s3://{bucket}/lab",
    )
    keys = sorted(obj["Key"] for obj in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["lab/run-7/0.npy", "lab/run-7/1.npy", "lab/run-7/2.npy"]


def test_s3_never_overwrites(make_archiver, heros_emitter, zenoh_port, s3_bucket) -> None:
    bucket, options, client = s3_bucket
    client.put_object(Bucket=bucket, Key="same.npy", Body=b"precious")
    archiver = make_archiver(
        ArrayArchiver,
        object_selector="cam",
        event_name="acquisition_data",
        save_template=f"s3://{bucket}/same.npy",
        storage_options=options,
    )
    _stream_frames(heros_emitter("cam", zenoh_port), count=2)
    support.wait_until(lambda: archiver.stats()["written"] == 2, what="2 frames written")
    assert client.get_object(Bucket=bucket, Key="same.npy")["Body"].read() == b"precious"
    keys = sorted(obj["Key"] for obj in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["same.1.npy", "same.2.npy", "same.npy"]


def test_smb_share(make_archiver, heros_emitter, zenoh_port, smb_server) -> None:
    folder = f"t-{uuid.uuid4().hex[:8]}"
    options = {"username": smb_server.username, "password": smb_server.password}
    template = smb_server.url(folder) + "/{{ run }}/{{ frame }}.npy"
    _archive_frames(make_archiver, heros_emitter, zenoh_port, template, storage_options=options)
    files = sorted((smb_server.share_dir / folder / "run-7").iterdir())
    assert [f.name for f in files] == ["0.npy", "1.npy", "2.npy"]
    for file in files:
        _assert_npy(file.read_bytes())


def test_json_to_s3_and_smb(make_archiver, heros_emitter, zenoh_port, s3_bucket, smb_server) -> None:
    bucket, options, client = s3_bucket
    folder = f"j-{uuid.uuid4().hex[:8]}"
    to_s3 = make_archiver(
        JsonArchiver,
        object_selector="sensor",
        event_name="json_data",
        save_template=f"s3://{bucket}/{{{{ n }}}}.json",
        storage_options=options,
    )
    to_smb = make_archiver(
        JsonArchiver,
        object_selector="sensor",
        event_name="json_data",
        save_template=smb_server.url(folder) + "/{{ n }}.json",
        storage_options={"username": smb_server.username, "password": smb_server.password},
    )
    emitter = heros_emitter("sensor", zenoh_port)
    emitter.wait_subscribers("json_data")
    emitter.emit("json_data", [{"form": "dict", "value": {"n": 1, "v": array_spec([2], "float64")}}])
    support.wait_until(lambda: to_s3.stats()["written"] == 1 and to_smb.stats()["written"] == 1, what="both written")
    expected = {"n": 1, "v": [0.0, 1.0]}
    assert json.loads(client.get_object(Bucket=bucket, Key="1.json")["Body"].read()) == expected
    assert json.loads((smb_server.share_dir / folder / "1.json").read_text()) == expected

"""Helpers shared by the tests: free ports, loopback zenoh configs, polling, integration gating."""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

# The demo's loopback helpers, shared so the tests and the demo stay on 127.0.0.1 the same way.
from archivist.demo import free_port as free_port
from archivist.demo import loopback_zenoh_config as loopback_zenoh_config

REQUIRE_INTEGRATION = os.environ.get("ARCHIVIST_REQUIRE_INTEGRATION", "") == "1"


def require_binary(name: str, *candidates: str) -> str:
    """Path of a system binary; skip when missing, or fail under ARCHIVIST_REQUIRE_INTEGRATION=1."""
    for candidate in (name, *candidates):
        path = shutil.which(candidate) or (
            candidate if os.path.isabs(candidate) and os.access(candidate, os.X_OK) else None
        )
        if path:
            return path
    reason = f"system binary {name!r} is not installed (apt-get install the package that ships it)"
    if REQUIRE_INTEGRATION:
        pytest.fail(f"{reason}; ARCHIVIST_REQUIRE_INTEGRATION=1 forbids skipping")
    pytest.skip(reason)


def wait_until(predicate: Callable[[], Any], *, timeout: float = 20.0, interval: float = 0.05, what: str = "") -> Any:
    """Poll until predicate() is truthy and return its value; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what or predicate}")
        time.sleep(interval)


def new_bucket(endpoint_url: str, prefix: str = "test") -> tuple[str, dict[str, Any], Any]:
    """A fresh bucket on an S3 endpoint: its name, an archiver's storage_options for it, a boto3 client."""
    import boto3

    bucket = f"{prefix}-{uuid.uuid4().hex[:12]}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    options = {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint_url, "region_name": "us-east-1"},
    }
    return bucket, options, client

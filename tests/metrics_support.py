"""Scraping helpers shared by the metrics tests: fetch an endpoint, parse it, run promtool on it."""

from __future__ import annotations

import subprocess
import urllib.error
import urllib.request
from typing import Any

from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from tests.support import require_binary

OPENMETRICS = "application/openmetrics-text; version=1.0.0; charset=utf-8"


def fetch(url: str, accept: str | None = None) -> tuple[int, str, str]:
    """(status, content type, body) of a GET, also for 4xx/5xx answers."""
    request = urllib.request.Request(url, headers={"Accept": accept} if accept else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def scrape(url: str, accept: str | None = None) -> dict[tuple[str, frozenset[tuple[str, str]]], Any]:
    """Every sample of an exposition as {(name, labels): sample}, parsed by prometheus_client's parsers."""
    status, content_type, body = fetch(url, accept)
    assert status == 200, body
    parse = parse_openmetrics if content_type.startswith("application/openmetrics-text") else parse_text
    return {
        (sample.name, frozenset(sample.labels.items())): sample for family in parse(body) for sample in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], Any], name: str, **labels: str) -> float | None:
    sample = samples.get((name, frozenset(labels.items())))
    return None if sample is None else sample.value


def promtool_check(exposition: str) -> subprocess.CompletedProcess[str]:
    """``promtool check metrics`` on an exposition: exit code 0 means it parsed and passed every lint."""
    promtool = require_binary("promtool", "/usr/bin/promtool")
    return subprocess.run(
        [promtool, "check", "metrics"], input=exposition, capture_output=True, text=True, timeout=60, check=False
    )

"""Time one scrape of 1,000 datasources x 10 observables: archivist's state machine beside herostools', same cache.

Run: ``.venv/bin/python bench/metrics_scrape.py [--sources 1000] [--observables 10] [--repeat 20]``

archivist is timed as a whole scrape, an HTTP GET of the running endpoint on 127.0.0.1, which keeps each source's
text until its readings change: with the readings as at the previous scrape, with every reading new, with a tenth
of the sources new (refilling the cache is not timed), and as Prometheus asks (OpenMetrics, gzip). Beside them:
``run --metrics-port``'s collector of every state machine, the collector's families written by ``generate_latest``
(nothing kept), and prometheus_client's part alone: ``generate_latest`` of the same families built beforehand, the
floor of any collector that leaves the exposition to it. herostools, on a cache holding the very same records, is
timed the same way, as an HTTP GET of its own aiohttp server (``_start_webserver``, on 127.0.0.1, on an event loop
of its own thread), and in its request handler alone (``_http_handle_metrics``, which builds the text and the
aiohttp response; nothing is sent). herostools is not a dependency of archivist: its wheel is fetched with
``pip download --no-deps`` into ``$TMPDIR/archivist-bench-herostools`` and only its ``statemachine`` module is
loaded (it needs aiohttp and heros, both in the test environment); the object is made without ``__init__``, so no
zenoh session.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import itertools
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from archivist.datasource import DatasourceCache
from archivist.demo import free_port
from archivist.metrics import (
    DatasourceCollector,
    LiveCollectors,
    exposition,
    metrics_registry,
    register_collector,
    unregister_collector,
)
from archivist.metrics_server import MetricsServer

HEROSTOOLS_DIR = Path(tempfile.gettempdir()) / "archivist-bench-herostools"  # outside the repository
LABELS = {"lab": "B1", "site": "main"}
PROMETHEUS = {"Accept": "application/openmetrics-text;version=1.0.0", "Accept-Encoding": "gzip"}  # its first choice


def herostools_statemachine() -> Any:
    """herostools' HERODatasourceStateMachine class, from its wheel, without importing herostools.actor."""
    if not (HEROSTOOLS_DIR / "herostools" / "actor" / "statemachine.py").exists():
        HEROSTOOLS_DIR.mkdir(exist_ok=True)
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "herostools", "-d", str(HEROSTOOLS_DIR)]
        subprocess.run(pip, check=True)
        with zipfile.ZipFile(next(HEROSTOOLS_DIR.glob("herostools-*.whl"))) as wheel:
            wheel.extractall(HEROSTOOLS_DIR)
    sys.path.insert(0, str(HEROSTOOLS_DIR))
    path = HEROSTOOLS_DIR / "herostools" / "actor" / "statemachine.py"
    spec = importlib.util.spec_from_file_location("herostools_statemachine", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.HERODatasourceStateMachine


def fill(cache: DatasourceCache, sources: int, observables: int, step: int = 0) -> None:
    """Every source sends its readings, all new (``step`` changes every value)."""
    now = time.time()
    for s in range(sources):
        records = [
            {
                "id": f"Channel {o}",
                "time": now,
                "value": None,
                "unit": "None",
                "raw_value": s + o / 10 + step / 1000,
                "raw_unit": "µA" if o % 2 else "degC",
                "inbound": 0,
                "calibrated": False,
            }
            for o in range(observables)
        ]
        cache.update(f"lab/device-{s:04d}", records)


class Prebuilt(Collector):
    """Families collected once, yielded again at every scrape: what is left to time is the exposition."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def timed(
    function: Callable[[], Any], repeat: int, before: Callable[[], Any] = lambda: None
) -> tuple[list[float], Any]:
    """``function``'s durations after a warm-up, ``before`` run (untimed) ahead of each call."""
    before()
    result = function()  # warm up
    durations = []
    for _ in range(repeat):
        before()
        start = time.perf_counter()
        result = function()
        durations.append(time.perf_counter() - start)
    return durations, result


def row(name: str, durations: list[float], size: int) -> str:
    ms = [d * 1000 for d in durations]
    return f"| {name} | {statistics.median(ms):.1f} | {min(ms):.1f} | {size / 1e6:.2f} |"


@contextlib.contextmanager
def _level(logger: logging.Logger, level: int) -> Iterator[None]:
    old = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(old)


@contextlib.contextmanager
def _handlers(logger: logging.Logger, handler: logging.Handler) -> Iterator[None]:
    old, propagate = logger.handlers[:], logger.propagate
    logger.handlers[:], logger.propagate = [handler], False  # not also to a handler on the root logger
    try:
        yield
    finally:
        logger.handlers[:], logger.propagate = old, propagate


def measure(sources: int, observables: int, repeat: int) -> list[tuple[str, list[float], bytes]]:
    """Each implementation's scrape durations (seconds) and body, on one cache of ``sources x observables``."""
    cache = DatasourceCache()
    fill(cache, sources, observables)
    collector = DatasourceCollector(cache, labels=LABELS)
    register_collector(collector)  # what a running state machine does: `archivist run --metrics-port` serves it
    every_state_machine = LiveCollectors()
    server = MetricsServer(collector, port=0, bind_address="127.0.0.1")

    def http_get(headers: dict[str, str], url: str = server.url) -> Callable[[], bytes]:
        def get() -> bytes:
            request = urllib.request.Request(url, headers=headers)
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.read()

        return get

    steps = itertools.count(1)

    def every_reading_new() -> None:  # each source sends all its readings again: a new time, every value new
        fill(cache, sources, observables, next(steps))

    def a_tenth_new() -> None:
        fill(cache, sources // 10, observables, next(steps))

    StateMachine = herostools_statemachine()
    from heros.datasource.types import DatasourceReturnSet, DatasourceReturnValue

    theirs = object.__new__(StateMachine)
    theirs.cache = {
        source: DatasourceReturnSet([DatasourceReturnValue(**record) for record in records])
        for source, records in cache.records().items()
    }
    theirs._global_labels = dict(LABELS)
    theirs._bind_address, theirs._http_port, theirs._metrics_endpoint = "127.0.0.1", free_port(), "/metrics"
    their_loop = asyncio.new_event_loop()
    threading.Thread(target=their_loop.run_forever, name="herostools-http", daemon=True).start()
    asyncio.run_coroutine_threadsafe(theirs._start_webserver(), their_loop).result(timeout=30)
    their_url = f"http://127.0.0.1:{theirs._http_port}/metrics"
    access_logger = logging.getLogger("aiohttp.access")

    def exposition_alone() -> tuple[list[float], bytes]:  # the families live only while this row is timed
        prebuilt = metrics_registry(Prebuilt(list(collector.collect())))
        return timed(lambda: generate_latest(prebuilt), repeat)

    def herostools_scrape() -> bytes:
        return asyncio.run(theirs._http_handle_metrics(None)).body

    def quiet(scrape: Callable[[], bytes]) -> Callable[[], bytes]:
        def scrape_quietly() -> bytes:  # nor aiohttp's access log, a line per request
            with _level(logging.getLogger("herostools"), logging.WARNING), _level(access_logger, logging.WARNING):
                return scrape()

        return scrape_quietly

    def herostools_as_shipped() -> bytes:  # its INFO lines (two per reading and the whole list) go to /dev/null
        logger = logging.getLogger("herostools")
        with open(os.devnull, "w") as null, _handlers(logger, logging.StreamHandler(null)):
            return herostools_scrape()

    try:
        return [
            ("archivist: HTTP GET on 127.0.0.1, text format", *timed(http_get({}), repeat)),
            (
                "archivist: the same, every reading new since the last scrape",
                *timed(http_get({}), repeat, every_reading_new),
            ),
            (
                f"archivist: the same, {sources // 10} of the {sources} sources new since the last scrape",
                *timed(http_get({}), repeat, a_tenth_new),
            ),
            ("archivist: HTTP GET as Prometheus asks (OpenMetrics, gzip)", *timed(http_get(PROMETHEUS), repeat)),
            (
                "archivist: `run --metrics-port`'s collector of every state machine (`exposition`)",
                *timed(lambda: exposition([every_state_machine]), repeat),
            ),
            (
                "archivist: the collector's families written by `generate_latest`, no text kept",
                *timed(lambda: generate_latest(collector), repeat),
            ),
            ("prometheus_client alone: `generate_latest` of the same families, built beforehand", *exposition_alone()),
            ("herostools: HTTP GET on 127.0.0.1, logger at WARNING", *timed(quiet(http_get({}, their_url)), repeat)),
            ("herostools: `_http_handle_metrics` alone, logger at WARNING", *timed(quiet(herostools_scrape), repeat)),
            ("herostools: the same, as shipped (INFO log)", *timed(herostools_as_shipped, repeat)),
        ]
    finally:
        unregister_collector(collector)
        server.close()
        their_loop.call_soon_threadsafe(their_loop.stop)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, default=1000)
    parser.add_argument("--observables", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()
    results = measure(args.sources, args.observables, args.repeat)
    python = os.path.relpath(sys.executable) if sys.executable.startswith(os.getcwd()) else sys.executable
    print(f"$ {python} {os.path.relpath(__file__)} {' '.join(sys.argv[1:])}".rstrip())
    print(
        f"one scrape of {args.sources} sources x {args.observables} observables "
        f"({args.sources * args.observables} readings), {args.repeat} runs"
    )
    print("| implementation | median ms | min ms | MB |")
    print("| --- | --- | --- | --- |")
    for name, durations, body in results:
        print(row(name, durations, len(body)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""HTTP serving of metrics collectors on ``endpoint``, and ``/healthz``, on a thread.

The server always runs on a thread of its own, also under BOSS (which passes its asyncio loop), so a scrape of
a large cache never stalls the loop that BOSS's HEROs share. It is prometheus_client's WSGI app served by the
standard library's wsgiref, so no web framework is needed; only a plain GET is answered here, with the format
prometheus_client's ``choose_encoder`` picks, so that a :class:`~archivist.metrics.DatasourceCollector` can hand
over the text it kept from the previous scrape (see :func:`archivist.metrics.exposition`).
"""

from __future__ import annotations

import gzip
import logging
import socket
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer, choose_encoder, gzip_accepted
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from .errors import ConfigError
from .metrics import ArchiverCollector, LiveCollectors, SpoolHealth, exposition, metrics_registry

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, str]]
# prometheus_client compresses at level 9: 0.23 s for a 6.7 MB exposition here, level 1 0.016 s (1.6 times the
# size, still a thirteenth of the text; see docs/benchmarks.md)
_GZIP_LEVEL = 1


class _Named(Collector):
    """Only the samples named in ``?name[]=`` (prometheus_client's own filter needs collectors that describe
    their names up front, which these cannot: the names come from the cache)."""

    def __init__(self, collectors: Iterable[Collector], names: set[str]) -> None:
        self._collectors, self._names = collectors, names

    def collect(self) -> Iterator[Metric]:
        for collector in self._collectors:
            for family in collector.collect():
                samples = [sample for sample in family.samples if sample.name in self._names]
                if samples:
                    named = Metric(family.name, family.documentation, family.type, family.unit)
                    named.samples = samples
                    yield named


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer:
    """Serves ``collectors`` on ``http://bind_address:port{endpoint}`` (OpenMetrics when the scraper asks for it,
    gzip when it accepts it) and ``health`` on ``/healthz`` (200 ``ok``, or 503 and the reason). ``port=0`` picks
    a free port."""

    def __init__(
        self,
        *collectors: Collector,
        port: int,
        bind_address: str = "127.0.0.1",
        endpoint: str = "/metrics",
        health: HealthCheck | None = None,
    ) -> None:
        if not isinstance(endpoint, str) or not endpoint.startswith("/") or endpoint == "/healthz":
            raise ConfigError(
                f"metrics_endpoint must be a path starting with '/' other than /healthz, not {endpoint!r}"
            )
        self.endpoint = endpoint
        self._collectors = collectors
        self._metrics_app = make_wsgi_app(metrics_registry(*collectors))  # OPTIONS and other methods than GET
        self._health = health or (lambda: (True, "ok"))
        try:
            family, _, _, _, sockaddr = socket.getaddrinfo(bind_address, port, type=socket.SOCK_STREAM)[0]
            server_class = type("Server", (ThreadingWSGIServer,), {"address_family": family})
            self._server: WSGIServer = make_server(sockaddr[0], port, self._app, server_class, _QuietHandler)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on {bind_address}:{port}: {exc.strerror or exc}") from exc
        self.bind_address = bind_address
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.1}, name=f"metrics-{self.port}", daemon=True
        )
        self._thread.start()

    @property
    def url(self) -> str:
        host = f"[{self.bind_address}]" if ":" in self.bind_address else self.bind_address
        return f"http://{host}:{self.port}{self.endpoint}"

    def _app(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path == self.endpoint:
            if environ.get("REQUEST_METHOD") != "GET":
                return self._metrics_app(environ, start_response)
            return self._scrape(environ, start_response)
        if path == "/healthz":
            ready, reason = self._health()
            start_response("200 OK" if ready else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"{reason}\n".encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [f"not found; metrics are on {self.endpoint}, health on /healthz\n".encode()]

    def _scrape(self, environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        encoder, content_type = choose_encoder(environ.get("HTTP_ACCEPT", ""))
        names = parse_qs(environ.get("QUERY_STRING", "")).get("name[]")
        output = exposition([_Named(self._collectors, set(names))] if names else self._collectors, encoder)
        headers = [("Content-Type", content_type)]
        if gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            output = gzip.compress(output, compresslevel=_GZIP_LEVEL)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        return [output]

    def close(self) -> None:
        """Stop serving and free the port. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def serve_process_metrics(port: int, bind_address: str = "127.0.0.1", health_window: float = 60.0) -> MetricsServer:
    """One endpoint for the whole process: every live archiver's metrics and every state machine's series."""
    return MetricsServer(
        ArchiverCollector(),
        LiveCollectors(),
        port=port,
        bind_address=bind_address,
        health=SpoolHealth(health_window).check,
    )

"""HTTP serving of a metrics registry: prometheus_client's WSGI app on ``endpoint``, ``/healthz``, on a thread.

The server always runs on a thread of its own, also under BOSS (which passes its asyncio loop): exposition
is prometheus_client's WSGI app, served by the standard library's wsgiref, so no HTTP code is written here and
no web framework is needed; and a scrape of a large cache never stalls the loop that BOSS's HEROs share.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer
from prometheus_client.registry import Collector

from .errors import ConfigError
from .metrics import ArchiverCollector, LiveCollectors, SpoolHealth, metrics_registry

log = logging.getLogger(__name__)

HealthCheck = Callable[[], tuple[bool, str]]


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


class MetricsServer:
    """Serves ``registry`` on ``http://bind_address:port{endpoint}`` (OpenMetrics when the scraper asks for it)
    and ``health`` on ``/healthz`` (200 ``ok``, or 503 and the reason). ``port=0`` picks a free port."""

    def __init__(
        self,
        registry: Collector,
        *,
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
        self._metrics_app = make_wsgi_app(registry)
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
            return self._metrics_app(environ, start_response)
        if path == "/healthz":
            ready, reason = self._health()
            start_response("200 OK" if ready else "503 Service Unavailable", [("Content-Type", "text/plain")])
            return [f"{reason}\n".encode()]
        start_response("404 Not Found", [("Content-Type", "text/plain")])
        return [f"not found; metrics are on {self.endpoint}, health on /healthz\n".encode()]

    def close(self) -> None:
        """Stop serving and free the port. Idempotent."""
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()


def serve_process_metrics(port: int, bind_address: str = "127.0.0.1", health_window: float = 60.0) -> MetricsServer:
    """One endpoint for the whole process: every live archiver's metrics and every state machine's series."""
    registry = metrics_registry(ArchiverCollector(), LiveCollectors())
    return MetricsServer(registry, port=port, bind_address=bind_address, health=SpoolHealth(health_window).check)

"""HERODatasourceStateMachine: herostools' datasource cache served to Prometheus, with correct escaping."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import zenoh

from .datasource import DatasourceFeed
from .metrics import (
    ArchiverCollector,
    SpoolHealth,
    register_collector,
    unregister_collector,
)
from .metrics_server import MetricsServer
from .observer import DatasourceObserver
from .source import ZenohConfig

log = logging.getLogger("archivist")


class HERODatasourceStateMachine(DatasourceObserver):
    """Caches the newest reading of every datasource HERO matching ``object_selector`` and serves them on
    ``http://bind_address:http_port{metrics_endpoint}`` with herostools' series names and labels.

    Also serves archivist's own metrics (every archiver running in this process) unless ``archiver_metrics``
    is False, and ``/healthz``. ``loop`` (BOSS passes ``"@_boss_loop"``) is accepted for compatibility; the
    server runs on a thread of its own either way (see :mod:`archivist.metrics_server`). ``name`` is the
    BOSS ``_id``, used in logs, spool entries and to label its own counters. An ``observable_data`` event holding
    bad input is kept whole in the spool at ``spool_dir`` (the archivers' default folder unless given).
    """

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop | None = None,
        *,
        http_port: int = 9090,
        bind_address: str = "localhost",
        metrics_endpoint: str = "/metrics",
        object_selector: str = "*",
        labels: dict[str, Any] | None = None,
        realm: str = "heros",
        zenoh_config: ZenohConfig = None,
        max_age: float | None = 600,
        timestamps: bool = False,
        archiver_metrics: bool = True,
        health_window: float = 60.0,
        name: str | None = None,
        spool_dir: str | None = None,
        session: zenoh.Session | None = None,
    ) -> None:
        self._observe(
            f"HERODatasourceStateMachine:{realm}/{object_selector}",
            name,
            spool_dir,
            labels=labels,
            max_age=max_age,
            timestamps=timestamps,
        )
        collectors = [self.collector, ArchiverCollector()] if archiver_metrics else [self.collector]
        self._server = MetricsServer(
            *collectors,
            port=http_port,
            bind_address=bind_address,
            endpoint=metrics_endpoint,
            health=SpoolHealth(health_window).check,
        )
        try:
            self._feed: DatasourceFeed | None = self._subscribe(object_selector, realm, zenoh_config, session)
        except BaseException:
            self._server.close()
            raise
        register_collector(self.collector)
        log.info("%s: serving %s on %s", self.name, self._feed.key_expr, self._server.url)

    @property
    def url(self) -> str:
        """Where the metrics are served."""
        return self._server.url

    @property
    def port(self) -> int:
        return self._server.port

    def describe(self) -> str:
        return f"{self._feed.key_expr if self._feed else '(stopped)'} -> {self.url}"

    def stop(self) -> None:
        """Stop listening and serving; frees the port. Idempotent."""
        feed, self._feed = self._feed, None
        if feed is not None:
            unregister_collector(self.collector)
            feed.close()
            self._server.close()

    def _teardown(self) -> None:
        """Called by BOSS on stop."""
        self.stop()

    def __enter__(self) -> HERODatasourceStateMachine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

"""PrometheusPusher: the datasource series pushed to a Prometheus push gateway every ``interval`` seconds."""

from __future__ import annotations

import logging
import threading
from typing import Any

import zenoh
from prometheus_client import push_to_gateway

from .errors import ConfigError
from .metrics import metrics_registry
from .observer import DatasourceObserver
from .source import ZenohConfig

log = logging.getLogger("archivist")


def gateway_url(metrics_path: str) -> str:
    """herostools' ``metrics_path`` (``host:9091``, ``http://host:9091/metrics``, ...) as the gateway's base URL."""
    url = metrics_path.strip().rstrip("/")
    url = url.removesuffix("/metrics")
    return url if "://" in url else f"http://{url}"


class PrometheusPusher(DatasourceObserver):
    """Pushes herostools' datasource series (see :class:`archivist.metrics.DatasourceCollector`) with
    prometheus_client's ``push_to_gateway`` (PUT: the group holds exactly the current readings).

    The group is ``job`` plus ``grouping_key``; a ``job`` entry in ``labels`` (herostools' way to name it) is
    taken as the job, the other ``labels`` are put on every series. A push (PUT) replaces its group, so two
    pushers of one job need different ``grouping_key``s (herostools made every label part of the group). Samples
    carry no timestamps, which push gateways refuse. A gateway that is down is retried at the next interval and
    logged once per outage. An ``observable_data`` event holding bad input is kept whole in the spool at
    ``spool_dir``.
    """

    def __init__(
        self,
        *,
        metrics_path: str = "http://localhost:9091/metrics",
        interval: float = 5.0,
        labels: dict[str, Any] | None = None,
        job: str = "archivist",
        grouping_key: dict[str, Any] | None = None,
        object_selector: str = "*",
        realm: str = "heros",
        zenoh_config: ZenohConfig = None,
        max_age: float | None = 600,
        timeout: float = 10.0,
        name: str | None = None,
        spool_dir: str | None = None,
        session: zenoh.Session | None = None,
    ) -> None:
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ConfigError("interval must be a number of seconds > 0")
        labels = dict(labels or {})
        self.job = str(labels.pop("job", job))
        self.grouping_key = {str(key): str(value) for key, value in (grouping_key or {}).items()}
        self.gateway = gateway_url(metrics_path)
        self._observe(f"PrometheusPusher:{realm}/{object_selector}", name, spool_dir, labels=labels, max_age=max_age)
        self.interval = float(interval)
        self.timeout = timeout
        self._registry = metrics_registry(self.collector)
        self.pushes = self.failed_pushes = 0
        self._outage = False
        self._stop = threading.Event()
        self._feed = self._subscribe(object_selector, realm, zenoh_config, session)
        self._thread = threading.Thread(target=self._run, name=f"{self.name}-push", daemon=True)
        self._thread.start()
        log.info("%s: pushing %s to %s every %gs", self.name, self._feed.key_expr, self.gateway, self.interval)

    def push(self) -> bool:
        """Push the current readings now; False (logged once per outage) when the gateway is unreachable."""
        try:
            push_to_gateway(self.gateway, self.job, self._registry, self.grouping_key, timeout=self.timeout)
        except Exception as exc:  # urllib raises URLError, HTTPError, OSError, ... : all mean "try again later"
            self.failed_pushes += 1
            if not self._outage:
                self._outage = True
                log.warning(
                    "%s: cannot push to %s (%s); retrying every %gs", self.name, self.gateway, exc, self.interval
                )
            return False
        self.pushes += 1
        if self._outage:
            self._outage = False
            log.warning("%s: pushing to %s again", self.name, self.gateway)
        return True

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.push()

    def describe(self) -> str:
        return f"{self._feed.key_expr} -> {self.gateway} (job {self.job}, every {self.interval:g}s)"

    def stop(self) -> None:
        """Stop listening and pushing. Idempotent."""
        self._stop.set()
        self._thread.join()
        self._feed.close()

    def _teardown(self) -> None:
        """Called by BOSS on stop."""
        self.stop()

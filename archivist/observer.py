"""What the metrics observers (HERODatasourceStateMachine, PrometheusPusher) share: a cache of the newest
datasource readings fed from zenoh, the collector that shows them, the spool for events holding bad input, and
a name that BOSS's ``_id`` gives when none is."""

from __future__ import annotations

from typing import Any

import zenoh

from .datasource import DatasourceCache, DatasourceFeed, RefusedEvents
from .metrics import DatasourceCollector
from .source import ZenohConfig, hero_name, hero_session


class DatasourceObserver:
    """Base of the observers; ``_observe`` makes the cache and the collector, ``_subscribe`` the feed."""

    def _observe(
        self,
        default_name: str,
        name: str | None,
        spool_dir: str | None,
        *,
        labels: dict[str, Any] | None,
        max_age: float | None,
        timestamps: bool = False,
    ) -> None:
        self._given_name = name
        self.name = name or default_name
        self.cache = DatasourceCache()
        self._refused = RefusedEvents(spool_dir, self.name, type(self))
        self.collector = DatasourceCollector(
            self.cache, labels=labels, max_age=max_age, timestamps=timestamps, name=self.name, refused=self._refused
        )

    def _subscribe(
        self, object_selector: str, realm: str, zenoh_config: ZenohConfig, session: zenoh.Session | None
    ) -> DatasourceFeed:
        """The feed of the cache; under BOSS on the HERO's own session (one per process)."""
        return DatasourceFeed(
            self.cache,
            object_selector=object_selector,
            realm=realm,
            zenoh_config=zenoh_config,
            session=session or hero_session(self, realm, zenoh_config),
            refused=self._refused,
        )

    def get_cache(self) -> dict[str, tuple[dict[str, Any], ...]]:
        """The newest record per observable, as received, per source name."""
        return self.cache.records()

    def clear(self) -> None:
        """Forget every cached reading."""
        self.cache.clear()

    def _setup(self) -> None:
        """Called by BOSS once the HERO is made: without a ``name``, its ``_id`` names this observer."""
        if self._given_name is None and (hero := hero_name(self)):
            self.name = self.collector.name = self._refused.observer = hero

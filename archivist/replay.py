"""Replay: deliver spooled events again, with the archiver's recorded settings or with a corrected config."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm import tqdm

from .archivers import Archiver, EventFailed
from .config import ObjectConfig
from .errors import ConfigError
from .event import Received
from .spool import Spool, SpoolEntry

log = logging.getLogger("archivist")


@dataclass
class ReplayReport:
    """What a replay did; ``failures`` lists the entries left in the spool and why, ``unreplayable`` the entries
    no archiver delivers (events a metrics observer refused as bad input), left for a person to read."""

    entries: int = 0
    delivered: int = 0
    failures: list[tuple[Path, str]] = field(default_factory=list)
    unreplayable: list[tuple[Path, str]] = field(default_factory=list)


def replay(
    spool_dir: str | os.PathLike[str] | None = None,
    configs: Sequence[ObjectConfig] = (),
    *,
    storage_options: dict[str, Any] | None = None,
    progress: bool = False,
) -> ReplayReport:
    """Deliver every spool entry; remove an entry only after its event is stored.

    An entry is written by the archiver named like it in ``configs`` (when they hold a single archiver, it
    takes every entry), else by one built from the settings recorded in the entry; the realm recorded in the
    entry applies where the config sets none. ``storage_options``
    (credentials, never stored in the spool) apply where the config gives none. Entries that fail again
    stay, with the new error, as do the events a metrics observer refused. Holding the spool's lock, two
    replays never run at once.
    """
    spool = Spool(spool_dir)
    report = ReplayReport()
    configs = [config for config in configs if issubclass(config.resolve_class(), Archiver)]
    archivers: dict[str, Archiver] = {}
    with spool.locked():
        paths = spool.paths()
        report.entries = len(paths)
        for path in tqdm(paths, desc="replay", unit="event", disable=not progress):
            try:
                entry = spool.load(path)
            except Exception as exc:  # an unreadable entry is reported and kept, never removed
                report.failures.append((path, f"unreadable spool entry: {exc}"))
                continue
            if _refused_by_an_observer(entry):
                report.unreplayable.append((path, f"refused by {entry.archiver}: {entry.error}"))
                continue
            config = _config_for(entry, configs)
            overrides: dict[str, Any] = {"spool_dir": str(spool.directory), "listen": False}
            # the realm the event came in under names its source, unless the config sets one
            if "realm" in entry.settings:
                overrides["realm"] = entry.settings["realm"]
            if storage_options is not None:
                overrides["storage_options"] = storage_options
            # one archiver per configuration: entries of one name recorded with different settings differ
            key = json.dumps(
                [config.source, config.id, config.classname, config.arguments, overrides.get("realm")], default=repr
            )
            if key not in archivers:
                try:
                    archivers[key] = config.build(**overrides)
                except ConfigError as exc:  # this entry stays; the others are still delivered
                    report.failures.append((path, str(exc)))
                    continue
            if _deliver(archivers[key], spool, path, entry):
                report.delivered += 1
            else:
                report.failures.append((path, spool.load(path).error))
    return report


def _refused_by_an_observer(entry: SpoolEntry) -> bool:
    """An event a metrics observer kept: a reading is a value of its moment, there is nothing to write later."""
    try:
        cls = ObjectConfig(entry.archiver, entry.archiver_class, {}, "spool entry").resolve_class()
    except ConfigError:
        return False  # delivered as any other entry: building its archiver reports the class
    return not issubclass(cls, Archiver)


def _config_for(entry: SpoolEntry, configs: Sequence[ObjectConfig]) -> ObjectConfig:
    for config in configs:
        if config.id == entry.archiver:
            return config
    if len(configs) == 1:
        return configs[0]
    return ObjectConfig(entry.archiver, entry.archiver_class, dict(entry.settings), source="spool entry")


def _deliver(archiver: Archiver, spool: Spool, path: Path, entry: SpoolEntry) -> bool:
    received = Received(entry.key_expr, entry.payload, entry.received_at)
    try:
        archiver.redeliver(received, entry.pending_items, entry.destination)
    except EventFailed as failure:
        spool.update(
            path,
            dataclasses.replace(
                entry,
                error=str(failure.error),
                error_type=type(failure.error).__name__,
                attempts=entry.attempts + getattr(failure.error, "attempts", 1),
                destination=failure.destination or entry.destination,
                pending_items=failure.pending if failure.pending is not None else entry.pending_items,
            ),
        )
        log.error("%s: still not archived: %s", path.name, failure.error)
        return False
    spool.remove(path)
    return True

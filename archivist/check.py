"""``archivist check``: validate BOSS-style configs without connecting, and preview where events would go."""

from __future__ import annotations

import inspect
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import fsspec
from fsspec.core import split_protocol

from .archivers import Archiver
from .config import ObjectConfig
from .errors import ArchivistError, ConfigError
from .route import redact_url

# The text of a template before its first variable or statement: what events cannot change.
_LITERAL_PREFIX = re.compile(r"^(.*?)(\{\{|\{%|$)", re.DOTALL)


@dataclass(frozen=True)
class Finding:
    """One line of the report: an error fails the check, a warning or a destination does not."""

    level: Literal["error", "warning", "destination"]
    message: str


def check_config(config: ObjectConfig, metadata: dict[str, Any] | None = None) -> Iterator[Finding]:
    """Everything wrong with one config object, then the destination of a sample event.

    Arguments are validated by the real constructor with ``listen=False``, so check and run cannot disagree.
    """
    where = f"{config.source}: {config.id}"
    try:
        cls = config.resolve_class()
        if not issubclass(cls, Archiver):
            _bind(cls, config)
            return
        archiver = config.build(listen=False)
    except ArchivistError as exc:
        yield Finding("error", str(exc))
        return
    settings = config.arguments
    argument = cls._template_argument  # save_template, or store_template for ZarrArchiver
    root, template = settings.get("root"), settings[argument]
    if root:
        yield from _protocol_findings(f"{where}: root", root)
    protocol, literal_path = split_protocol(_LITERAL_PREFIX.match(template).group(1))
    if protocol:
        yield from _protocol_findings(f"{where}: {argument}", template)
    markup = literal_path != template.removeprefix(f"{protocol}://" if protocol else "")  # events change the path
    if not root and markup and "/" not in literal_path.lstrip("/"):
        yield Finding(
            "warning",
            f"{where}: {argument}: {template!r} lets event metadata choose the destination's root; "
            "set root to keep every write under one folder or bucket",
        )
    source_name = str(settings.get("object_selector", ""))
    try:
        destination = archiver.preview(metadata or {}, source_name)
    except ArchivistError as exc:
        # Without sample metadata most templates cannot render; that only matters when the user gave some.
        yield Finding("error" if metadata is not None else "warning", f"{where}: {argument}: no preview: {exc}")
        return
    if not root and not protocol:  # under root, the protocol is root's: checked above
        yield from _protocol_findings(f"{where}: {argument}", destination)
    yield Finding("destination", f"{where}: {redact_url(destination)}")


def _bind(cls: type, config: ObjectConfig) -> None:
    """Check the argument names of a class that cannot be built without connecting."""
    try:
        inspect.signature(cls).bind(**config.arguments)
    except TypeError as exc:
        raise ConfigError(f"{config.source}: {config.id}: {exc}") from exc


def _protocol_findings(where: str, url: str) -> Iterator[Finding]:
    """An unknown protocol is an error; a known one whose package is missing, a warning."""
    protocol = split_protocol(url)[0] or "file"
    try:
        fsspec.get_filesystem_class(protocol)
    except ValueError:
        yield Finding("error", f"{where}: unknown filesystem protocol {protocol!r} in {redact_url(url)!r}")
    except ImportError as exc:
        yield Finding("warning", f"{where}: protocol {protocol!r} needs a package that is not installed: {exc}")

"""Exception types for every way an event can fail, so callers can tell permanent from transient."""

from __future__ import annotations


class ArchivistError(Exception):
    """Base of archivist's own errors; these are permanent: retrying the same event cannot help."""


class ConfigError(ArchivistError, ValueError):
    """An archiver argument or configuration file is invalid."""


class DecodeError(ArchivistError):
    """The zenoh payload is not valid HEROS CBOR."""


class PayloadError(ArchivistError):
    """The decoded event has a shape or type this archiver cannot store."""


class TemplateRenderError(ArchivistError):
    """The destination template could not be rendered with the event's metadata."""


class UnsafePathError(ArchivistError):
    """A rendered destination is malformed or would land outside the allowed root."""


class DestinationExistsError(ArchivistError):
    """The destination exists and ``on_exists="error"`` forbids writing it."""


class EncodeError(ArchivistError):
    """The payload could not be encoded into the archive format."""

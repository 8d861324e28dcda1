"""archivist: archive HEROS event streams into any fsspec storage as .npy, .json or zarr."""

from .archivers import Archiver, ArrayArchiver, JsonArchiver
from .decode import decode_payload
from .encode import encode_json, encode_npy, json_safe
from .errors import (
    ArchivistError,
    ConfigError,
    DecodeError,
    DestinationExistsError,
    EncodeError,
    PayloadError,
    TemplateRenderError,
    UnsafePathError,
)
from .event import Event, Received, split_event
from .route import Route
from .source import load_zenoh_config
from .spool import Spool, SpoolEntry, default_spool_dir
from .store import Store, WriteError, Written

__all__ = [
    "Archiver",
    "ArchivistError",
    "ArrayArchiver",
    "ConfigError",
    "DecodeError",
    "DestinationExistsError",
    "EncodeError",
    "Event",
    "JsonArchiver",
    "PayloadError",
    "Received",
    "Route",
    "Spool",
    "SpoolEntry",
    "Store",
    "TemplateRenderError",
    "UnsafePathError",
    "WriteError",
    "Written",
    "decode_payload",
    "default_spool_dir",
    "encode_json",
    "encode_npy",
    "json_safe",
    "load_zenoh_config",
    "split_event",
]

"""archivist: archive HEROS event streams into any fsspec storage as .npy, .json or zarr."""

from .archivers import Archiver, ArrayArchiver, EventFailed, JsonArchiver
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
from .metrics_server import MetricsServer
from .pusher import PrometheusPusher
from .route import Route
from .source import load_zenoh_config
from .spool import Spool, SpoolEntry, default_spool_dir
from .statemachine import HERODatasourceStateMachine
from .store import Store, WriteError, Written
from .tuning import HEAP_ENVIRONMENT
from .zarr_archiver import ZarrArchiver

__all__ = [
    "HEAP_ENVIRONMENT",
    "Archiver",
    "ArchivistError",
    "ArrayArchiver",
    "ConfigError",
    "DecodeError",
    "DestinationExistsError",
    "EncodeError",
    "Event",
    "EventFailed",
    "HERODatasourceStateMachine",
    "JsonArchiver",
    "MetricsServer",
    "PayloadError",
    "PrometheusPusher",
    "Received",
    "Route",
    "Spool",
    "SpoolEntry",
    "Store",
    "TemplateRenderError",
    "UnsafePathError",
    "WriteError",
    "Written",
    "ZarrArchiver",
    "decode_payload",
    "default_spool_dir",
    "encode_json",
    "encode_npy",
    "json_safe",
    "load_zenoh_config",
    "split_event",
]

"""BOSS-style configuration files: which archiver classes to build, under which ``_id``, with which arguments."""

from __future__ import annotations

import importlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError

# herostools' class names, so a BOSS config migrates by running it with archivist as it is.
HEROSTOOLS_ALIASES = {
    "herostools.actor.ArrayArchiver": "archivist.ArrayArchiver",
    "herostools.actor.JsonArchiver": "archivist.JsonArchiver",
    "herostools.actor.archiver.ArrayArchiver": "archivist.ArrayArchiver",
    "herostools.actor.archiver.JsonArchiver": "archivist.JsonArchiver",
    "herostools.actor.archiver.array.ArrayArchiver": "archivist.ArrayArchiver",
    "herostools.actor.archiver.json_archiver.JsonArchiver": "archivist.JsonArchiver",
    "herostools.archiver.ArrayArchiver": "archivist.ArrayArchiver",
    "herostools.archiver.JsonArchiver": "archivist.JsonArchiver",
    "herostools.actor.ZarrArchiver": "archivist.ZarrArchiver",
    "herostools.actor.archiver.ZarrArchiver": "archivist.ZarrArchiver",
    "herostools.actor.archiver.zarr_archiver.ZarrArchiver": "archivist.ZarrArchiver",
    "herostools.archiver.ZarrArchiver": "archivist.ZarrArchiver",
    "herostools.actor.HERODatasourceStateMachine": "archivist.HERODatasourceStateMachine",
    "herostools.actor.statemachine.HERODatasourceStateMachine": "archivist.HERODatasourceStateMachine",
    "herostools.statemachine.HERODatasourceStateMachine": "archivist.HERODatasourceStateMachine",
    "herostools.actor.PrometheusActor": "archivist.PrometheusPusher",
    "herostools.actor.prometheus.PrometheusActor": "archivist.PrometheusPusher",
}


@dataclass(frozen=True)
class ObjectConfig:
    """One ``{"_id", "classname", "arguments"}`` object of a BOSS configuration."""

    id: str
    classname: str
    arguments: dict[str, Any]
    source: str

    def resolve_class(self) -> type:
        """The class to build; herostools names map to archivist's classes."""
        name = HEROSTOOLS_ALIASES.get(self.classname, self.classname)
        module_name, _, class_name = name.rpartition(".")
        if not module_name.startswith("archivist"):
            raise ConfigError(f"{self.source}: {self.id}: classname {self.classname!r} is not an archivist class")
        try:
            return getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as exc:
            raise ConfigError(f"{self.source}: {self.id}: unknown classname {self.classname!r}") from exc

    def build(self, *, listen: bool = True, **overrides: Any) -> Any:
        """Construct the object; ``overrides`` fill in arguments the config does not set.

        ``listen=False`` builds an archiver without subscribing, to validate its arguments.
        """
        cls = self.resolve_class()
        arguments = overrides | self.arguments | ({} if listen else {"listen": False})
        arguments.setdefault("name", self.id)
        try:
            return cls(**arguments)
        except (TypeError, ConfigError) as exc:
            raise ConfigError(f"{self.source}: {self.id}: {exc}") from exc
        except Exception as exc:  # zenoh's ZError (a port in use), OSError, ...: still say which object
            raise ConfigError(f"{self.source}: {self.id}: {type(exc).__name__}: {exc}") from exc


def load_config(path: str | os.PathLike[str]) -> list[ObjectConfig]:
    """Read a BOSS JSON file holding one object or a list of them."""
    source = str(path)
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from exc
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from exc
    objects = document if isinstance(document, list) else [document]
    configs = []
    for position, item in enumerate(objects):
        where = f"{source}: object {position}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where}: must be a JSON object with _id, classname and arguments")
        unknown = set(item) - {"_id", "classname", "arguments", "extra_decorators", "tags"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
        object_id, classname, arguments = item.get("_id"), item.get("classname"), item.get("arguments", {})
        if not isinstance(object_id, str) or not object_id:
            raise ConfigError(f"{where}: _id must be a non-empty string")
        if not isinstance(classname, str) or not classname:
            raise ConfigError(f"{source}: {object_id}: classname must be a non-empty string")
        if not isinstance(arguments, dict):
            raise ConfigError(f"{source}: {object_id}: arguments must be a JSON object")
        configs.append(ObjectConfig(object_id, classname, arguments, source))
    ids = [config.id for config in configs]
    if duplicated := sorted({i for i in ids if ids.count(i) > 1}):
        raise ConfigError(f"{source}: _id {', '.join(duplicated)} used more than once")
    return configs

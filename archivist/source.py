"""The zenoh side: configuration, sessions shared per configuration, and HEROS event subscriptions."""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import zenoh

from .errors import ConfigError
from .event import Received
from .tuning import tune_for_streaming

log = logging.getLogger(__name__)

ZenohConfig = str | os.PathLike[str] | dict[str, Any] | None


# zenoh 1.9 sends a sample over 3 KiB to a peer on the same host through a shared-memory pool of the publisher's
# (16 MiB) and reuses a buffer that a subscriber which fell behind has not read yet: the subscriber then drops that
# sample ("Buffer is invalidated", at zenoh's debug level), reliable and CongestionControl.BLOCK or not. Over TCP a
# reliable sample waits for the subscriber instead. Shared memory is negotiated per link, so the subscriber's word
# is enough. A configuration that says anything of ``shared_memory`` keeps zenoh's reading of it.
SHARED_MEMORY = "transport/shared_memory/enabled"


def load_zenoh_config(config: ZenohConfig) -> tuple[zenoh.Config, str]:
    """A zenoh config from a JSON5 file path, a JSON5 string or a dict, or else ``$HEROS_ZENOH_CONFIG``, with
    zenoh's shared-memory transport turned off unless the configuration sets it (see above).

    Also returns a key that is equal for equal configurations, so they can share one session.
    """
    zconfig, key, text = _parse_zenoh_config(config)
    if not _sets_shared_memory(text):
        zconfig.insert_json5(SHARED_MEMORY, "false")
    return zconfig, key


def _sets_shared_memory(text: str) -> bool:
    """Whether a configuration's text says anything of shared memory: then zenoh's reading of it stands."""
    return "shared_memory" in text


def _parse_zenoh_config(config: ZenohConfig) -> tuple[zenoh.Config, str, str]:
    """The parsed configuration, its key, and its text."""
    if config is None:
        config = os.environ.get("HEROS_ZENOH_CONFIG")
        if config is None:  # zenoh's defaults, multicast scouting included, as heros does; tests and the demo
            return zenoh.Config(), "default", ""  # always pass a loopback config (127.0.0.1, multicast off)
    try:
        if isinstance(config, dict):
            text = json.dumps(config, sort_keys=True)
            return zenoh.Config.from_json5(text), text, text
        text = os.fspath(config)
        if not text.lstrip().startswith(("{", "//", "/*")):  # JSON5 text may start with a comment (heros takes it)
            path = Path(text).expanduser()
            if not path.is_file():
                raise ConfigError(f"zenoh_config: {text!r} is neither a JSON5 object nor an existing file")
            return zenoh.Config.from_file(str(path)), f"file:{path.resolve()}", path.read_text(errors="replace")
        return zenoh.Config.from_json5(text), text, text
    except ConfigError:
        raise
    except Exception as exc:  # zenoh raises its own ZError for syntax and schema errors
        raise ConfigError(f"zenoh_config: invalid zenoh configuration: {exc}") from exc


@functools.cache
def warn_of_shared_memory() -> None:
    """Once per process, for a session archivist did not open (under BOSS, the HERO's, which heros opens with
    ``$HEROS_ZENOH_CONFIG``): say how to turn zenoh's shared memory off, unless that configuration sets it."""
    try:
        text = _parse_zenoh_config(None)[2]
    except ConfigError:  # heros could not have opened a session with it either
        return
    if not _sets_shared_memory(text):
        log.warning(
            "zenoh's shared-memory transport is on for this process's HEROS session: a publisher on this host may "
            "then drop samples an archiver falls behind on. Add transport: { shared_memory: { enabled: false } } "
            "to $HEROS_ZENOH_CONFIG (docs/reliability.md)"
        )


class SessionPool:
    """Opens one zenoh session per distinct configuration and closes it when its last user releases it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[str, tuple[zenoh.Session, int]] = {}

    def acquire(self, config: ZenohConfig) -> tuple[zenoh.Session, str]:
        zconfig, key = load_zenoh_config(config)
        with self._lock:
            session, users = self._sessions.get(key, (None, 0))
            if session is None:
                session = zenoh.open(zconfig)
            self._sessions[key] = (session, users + 1)
            return session, key

    def release(self, key: str) -> None:
        with self._lock:
            session, users = self._sessions[key]
            if users > 1:
                self._sessions[key] = (session, users - 1)
                return
            del self._sessions[key]
        session.close()


sessions = SessionPool()


def is_hero(obj: object) -> bool:
    """Whether heros' LocalHERO is mixed into ``obj``: BOSS made it."""
    heros = sys.modules.get("heros")
    return heros is not None and isinstance(obj, heros.HEROPeer)


def hero_name(obj: object) -> str | None:
    """The HERO's name (BOSS's ``_id``) once heros has made it, else None."""
    return getattr(obj, "_name", None) if is_hero(obj) else None


def hero_session(obj: object, realm: str, zenoh_config: ZenohConfig) -> zenoh.Session | None:
    """Under BOSS (heros' LocalHERO mixed into ``obj``), the HERO's own session, so the process opens one
    session, not two that would both try to listen on the endpoints of ``$HEROS_ZENOH_CONFIG``. heros closes
    it when the HERO is destroyed. None otherwise, or when the object has a ``zenoh_config`` of its own.
    """
    if zenoh_config is not None or not is_hero(obj):
        return None
    from heros.zenoh import session_manager

    return session_manager.request_session(obj, realm)


def event_key_expr(realm: str, object_selector: str, event_name: str) -> str:
    return f"@object/{realm}/{object_selector}/{event_name}"


def check_subscription(realm: str, object_selector: str, event_name: str, zenoh_config: ZenohConfig) -> None:
    """Raise ConfigError for what subscribing would refuse, without connecting: ``archivist check`` and
    replay build archivers that never subscribe, and must refuse what ``run`` refuses."""
    if zenoh_config is not None:  # None: $HEROS_ZENOH_CONFIG, read only by who subscribes (not replay, not BOSS)
        load_zenoh_config(zenoh_config)
    key = event_key_expr(realm, object_selector, event_name)
    try:
        zenoh.KeyExpr(key)
    except Exception as exc:  # zenoh's ZError, whose text ends with the place in zenoh's Rust source
        reason = re.sub(r" at \S+\.rs:\d+\.?$", "", str(exc))
        raise ConfigError(
            f"realm, object_selector and event_name make {key!r}, not a zenoh key expression: {reason}"
        ) from exc


class Subscription:
    """Delivers every sample of a HEROS event as a :class:`Received`, undecoded, to ``deliver``.

    ``deliver`` runs on zenoh-python's callback thread, which zenoh feeds through its default FIFO of 256
    samples. Once that FIFO is full zenoh's network thread waits, and so does a reliable publisher (or, where
    zenoh's shared memory is on, it drops samples: see SHARED_MEMORY), so ``deliver`` must keep up with the
    network and never wait for storage. Each subscription applies :func:`archivist.tuning.tune_for_streaming` to
    help the thread keep up.
    """

    def __init__(
        self,
        deliver: Callable[[Received], None],
        *,
        realm: str,
        object_selector: str,
        event_name: str,
        zenoh_config: ZenohConfig = None,
        session: zenoh.Session | None = None,
    ) -> None:
        self.key_expr = event_key_expr(realm, object_selector, event_name)
        tune_for_streaming()
        self._pool_key: str | None = None
        self._finished = threading.Event()
        if session is None:
            session, self._pool_key = sessions.acquire(zenoh_config)
        else:
            warn_of_shared_memory()

        def on_sample(sample: zenoh.Sample) -> None:
            deliver(Received(str(sample.key_expr), sample.payload.to_bytes()))

        try:
            self._subscriber = session.declare_subscriber(
                self.key_expr, zenoh.handlers.Callback(on_sample, self._finished.set)
            )
        except Exception as exc:
            self._release()
            raise ConfigError(f"cannot subscribe to {self.key_expr!r}: {exc}") from exc

    def close(self, timeout: float = 10.0) -> None:
        """Stop receiving, after delivering what zenoh already received (up to ``timeout``). Idempotent."""
        subscriber, self._subscriber = self._subscriber, None
        if subscriber is not None:
            subscriber.undeclare()
            self._finished.wait(timeout)
            self._release()

    def _release(self) -> None:
        key, self._pool_key = self._pool_key, None
        if key is not None:
            sessions.release(key)

"""A real HEROS emitter peer, run as a subprocess so tests exercise a genuine remote HERO.

Usage: python tests/peers/emitter.py --name NAME --connect-port PORT [--realm heros] [--events a,b]

Protocol: one JSON command per stdin line, one JSON reply per stdout line, strictly in order.
The first stdout line is {"ready": true, ...} once the HERO is declared. EOF on stdin shuts down,
so the peer never outlives a test process that forgot it. Diagnostics go to stderr only.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from specs import burst_frame, decode_specs

BUILTIN_EVENTS = ("acquisition_data", "json_data", "observable_data")
EVENT_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def zenoh_config(connect_port: int) -> dict[str, Any]:
    """Loopback-only peer config: no multicast scouting, no listener, one TCP link to the test's port."""
    return {
        "mode": "peer",
        "scouting": {"multicast": {"enabled": False}},
        "listen": {"endpoints": []},
        "connect": {"endpoints": [f"tcp/127.0.0.1:{connect_port}"]},
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--name", required=True)
    parser.add_argument("--connect-port", type=int, required=True)
    parser.add_argument("--realm", default="heros")
    parser.add_argument("--events", default="", help="extra comma-separated event names declared at startup")
    return parser.parse_args(argv)


def protocol_stream() -> IO[str]:
    """Keep a private handle on the real stdout and point fd 1 at stderr, so stray prints stay harmless."""
    stream = os.fdopen(os.dup(1), "w", buffering=1, encoding="utf-8")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return stream


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = protocol_stream()

    def reply(message: dict[str, Any]) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    # heros reads HEROS_ZENOH_CONFIG when it opens its session, so it must be set before any HERO exists.
    os.environ["HEROS_ZENOH_CONFIG"] = json.dumps(zenoh_config(args.connect_port))

    from heros import LocalHERO, event
    from heros.capabilities import EventCapability

    # `heros.event` is rebound to the decorator function in heros/__init__.py, so `heros.event.reliable`
    # does not resolve; import it from the submodule.
    from heros.event import reliable
    from heros.inspect import is_hero_event

    def passthrough_event(event_name: str) -> Any:
        """A reliable event that publishes whatever it is called with on .../{event_name}."""

        def emitted(self: Any, value: Any) -> Any:
            return value

        emitted.__name__ = emitted.__qualname__ = event_name  # the handler keys its publisher on __name__
        return reliable(event(emitted))

    class EmitterHERO(LocalHERO):
        """Test HERO whose events return their argument, so the test chooses exactly what is published."""

        @reliable
        @event
        def acquisition_data(self, value: Any) -> Any:
            return value

        @reliable
        @event
        def json_data(self, value: Any) -> Any:
            return value

        @reliable
        @event
        def observable_data(self, value: Any) -> Any:
            return value

        def _declare_event(self, event_name: str) -> Callable[[Any], Any]:
            """Add a passthrough event at runtime: declares its publisher and advertises the capability."""
            existing = getattr(self, event_name, None)
            if existing is not None:
                if not is_hero_event(existing):
                    raise ValueError(f"{event_name!r} is an existing non-event attribute")
                return existing
            if not EVENT_NAME_RE.match(event_name):
                raise ValueError(f"invalid event name {event_name!r}")
            setattr(type(self), event_name, passthrough_event(event_name))
            self.capabilities.append(EventCapability(name=event_name))
            return getattr(self, event_name)

    extra = [n.strip() for n in args.events.split(",") if n.strip()]
    for event_name in extra:
        if not EVENT_NAME_RE.match(event_name) or hasattr(EmitterHERO, event_name):
            print(f"emitter: refusing event name {event_name!r}", file=sys.stderr)
            return 2
        setattr(EmitterHERO, event_name, passthrough_event(event_name))

    hero = EmitterHERO(args.name, realm=args.realm)
    events = [*BUILTIN_EVENTS, *extra]
    reply(
        {
            "ready": True,
            "pid": os.getpid(),
            "name": args.name,
            "realm": args.realm,
            "zid": str(hero._session.info.zid()),
            "events": events,
        }
    )

    def wait_subscribers(cmd: dict[str, Any]) -> dict[str, Any]:
        publisher = hero._declare_event(cmd["event"]).publisher
        timeout = float(cmd.get("timeout", 20))
        start = time.monotonic()
        while not publisher.matching_status.matching:
            if time.monotonic() - start > timeout:
                return {"ok": False, "error": f"no subscriber matched {publisher.key_expr} within {timeout}s"}
            time.sleep(0.01)
        return {"ok": True, "seconds": time.monotonic() - start}

    def emit(cmd: dict[str, Any]) -> dict[str, Any]:
        handler = hero._declare_event(cmd["event"])
        values = []
        for item in cmd["items"]:  # decode everything first so a bad spec sends nothing
            form = item.get("form")
            if form == "tuple":
                values.append((decode_specs(item["data"]), decode_specs(item.get("metadata", {}))))
            elif form in ("dict", "value"):
                values.append(decode_specs(item["value"]))
            else:
                raise ValueError(f"unknown item form {form!r}")
        for value in values:
            handler(value)
        return {"ok": True, "sent": len(values)}

    def burst(cmd: dict[str, Any]) -> dict[str, Any]:
        handler = hero._declare_event(cmd["event"])
        count, shape, dtype = int(cmd["count"]), cmd["shape"], cmd.get("dtype", "uint16")
        metadata = decode_specs(cmd.get("metadata", {}))
        first = int(cmd.get("first", 0))
        start = time.monotonic()
        for i in range(first, first + count):
            handler((burst_frame(i, shape, dtype), {**metadata, "frame": i}))
        return {"ok": True, "sent": count, "seconds": time.monotonic() - start}

    datasources: dict[str, Any] = {}

    def datasource(cmd: dict[str, Any]) -> dict[str, Any]:
        """Publish `data` through a real LocalDatasourceHERO `name` (created on first use with `observables`)."""
        from heros import LocalDatasourceHERO

        source = datasources.get(cmd["name"])
        if source is None:
            source = LocalDatasourceHERO(cmd["name"], realm=args.realm, observables=cmd.get("observables"))
            datasources[cmd["name"]] = source
        publisher = source.observable_data.publisher
        deadline = time.monotonic() + float(cmd.get("timeout", 20))
        while not publisher.matching_status.matching:
            if time.monotonic() > deadline:
                return {"ok": False, "error": f"no subscriber matched {publisher.key_expr}"}
            time.sleep(0.01)
        published = source.observable_data(decode_specs(cmd["data"]))
        return {"ok": True, "published": [dict(record) for record in published]}

    handlers: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
        "ping": lambda cmd: {"ok": True},
        "declare": lambda cmd: {"ok": True, "event": hero._declare_event(cmd["event"]).__name__},
        "wait_subscribers": wait_subscribers,
        "emit": emit,
        "burst": burst,
        "datasource": datasource,
    }

    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            try:
                cmd = json.loads(line)
                if cmd.get("cmd") == "quit":
                    break
                handler = handlers.get(cmd.get("cmd"))
                if handler is None:
                    reply({"ok": False, "error": f"unknown command {cmd.get('cmd')!r}"})
                    continue
                reply(handler(cmd))
            except Exception as exc:  # every failure must become a reply, not a hang
                reply({"ok": False, "error": f"{type(exc).__name__}: {exc}"})
    finally:
        for source in datasources.values():
            source._destroy_hero()
        hero._destroy_hero()  # undeclares and, as the last referrer, closes the realm's zenoh session
    reply({"ok": True, "bye": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())

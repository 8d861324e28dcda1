"""The ``archivist`` command: run or check BOSS-style configs, run the demo, and replay the spool."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .archivers import Archiver
from .check import check_config
from .config import ObjectConfig, load_config
from .demo import run_demo
from .errors import ArchivistError, ConfigError
from .metrics_server import serve_process_metrics
from .replay import replay
from .spool import default_spool_dir

log = logging.getLogger("archivist")


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, args.log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.command(args)
    except Exception as exc:
        if args.log_level == "debug":
            log.exception("archivist failed")
        _report("error", exc if isinstance(exc, ArchivistError | OSError) else f"{type(exc).__name__}: {exc}")
        return 2


def _report(level: str, message: object) -> None:
    """The one format of errors and warnings: one line on stderr."""
    print(f"archivist: {level}: {message}", file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="archivist", description="Archive HEROS event streams into any storage.")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    run = commands.add_parser("run", help="run the archivers of BOSS-style JSON configs until SIGINT/SIGTERM")
    run.add_argument("configs", nargs="+", metavar="CONFIG", help="JSON file: one object or a list of objects")
    run.add_argument("--zenoh-config", help="zenoh JSON5 file or string for archivers that set none")
    run.add_argument("--realm", help="HEROS realm for archivers that set none")
    run.add_argument(
        "--metrics-port", type=int, help="serve every archiver's and state machine's metrics, and /healthz, here"
    )
    run.add_argument("--metrics-bind", default="127.0.0.1", help="address of --metrics-port (default: 127.0.0.1)")
    run.set_defaults(command=_run)

    check = commands.add_parser("check", help="validate BOSS-style JSON configs without connecting")
    check.add_argument("configs", nargs="+", metavar="CONFIG", help="JSON file: one object or a list of objects")
    check.add_argument(
        "--metadata", type=_json_object, help="JSON object: sample event metadata to render the templates with"
    )
    check.set_defaults(command=_check)

    demo = commands.add_parser("demo", help="archive a simulated camera and sensor, all in this process")
    demo.add_argument("--out", type=Path, default=Path("archive-demo"), help="folder to archive into")
    demo.add_argument("--seconds", type=float, default=10.0, help="how long the HEROs stream (default: 10)")
    demo.set_defaults(command=lambda args: run_demo(args.out, args.seconds))

    again = commands.add_parser("replay", help="deliver the events kept in a spool folder")
    again.add_argument(
        "spool_dir", nargs="?", default=None, metavar="SPOOL_DIR", help=f"default: {default_spool_dir()}"
    )
    again.add_argument(
        "--config", action="append", default=[], help="deliver with these archivers (e.g. a fixed template)"
    )
    again.add_argument("--storage-options", type=_json_object, help="JSON object for the filesystem (credentials)")
    again.set_defaults(command=_replay)
    return parser


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc.msg}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("must be a JSON object")
    return value


def _configs(paths: Sequence[str]) -> list[ObjectConfig]:
    """The objects of every file; an ``_id`` must name one object in all of them, as in one file (it names an
    archiver's spool entries, disk buffer and metrics)."""
    configs = [config for path in paths for config in load_config(path)]
    seen: dict[str, ObjectConfig] = {}
    for config in configs:
        if (first := seen.setdefault(config.id, config)) is not config:
            raise ConfigError(f"{config.source}: _id {config.id} is used in {first.source} too")
    return configs


def _run(args: argparse.Namespace) -> int:
    configs = _configs(args.configs)
    overrides = {key: value for key, value in (("zenoh_config", args.zenoh_config), ("realm", args.realm)) if value}
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    archivers: list[Archiver] = []
    others: list[Any] = []  # state machines and pushers
    server = None
    try:
        if args.metrics_port is not None:
            server = serve_process_metrics(args.metrics_port, args.metrics_bind)
            print(f"archivist: metrics on {server.url}, health on /healthz", flush=True)
        for config in configs:
            built = config.build(**overrides)
            (archivers if isinstance(built, Archiver) else others).append(built)
            print(f"{config.id}: {built.describe()}", flush=True)
        print(f"archivist: {len(archivers)} archiver(s) running; stop with SIGINT or SIGTERM", flush=True)
        stop.wait()
    finally:
        for other in others:
            other.stop()
        # all at once: one after another, N archivers could take N x shutdown_timeout, past a service manager's
        # stop timeout (systemd's default is 90 s), which would kill the process before it spooled the rest
        with ThreadPoolExecutor(max_workers=max(1, len(archivers))) as pool:
            drained = list(pool.map(lambda archiver: archiver.stop(), archivers))
        lost = 0
        for archiver, done in zip(archivers, drained, strict=True):
            lost += int(archiver.stats()["spool_failed"])
            print(f"{archiver.name}: {archiver.summary()}{'' if done else ', shutdown_timeout passed'}", flush=True)
        if server is not None:
            server.close()
    return 1 if lost else 0


def _check(args: argparse.Namespace) -> int:
    configs = _configs(args.configs)
    findings = [finding for config in configs for finding in check_config(config, args.metadata)]
    for finding in findings:
        if finding.level == "destination":
            print(finding.message, flush=True)
        else:
            _report(finding.level, finding.message)
    errors = sum(finding.level == "error" for finding in findings)
    print(f"checked {len(configs)} object(s): {errors} error(s)", flush=True)
    return 2 if errors else 0


def _replay(args: argparse.Namespace) -> int:
    spool_dir = Path(args.spool_dir) if args.spool_dir else default_spool_dir()
    report = replay(spool_dir, _configs(args.config), storage_options=args.storage_options, progress=True)
    for path, error in report.failures:
        print(f"{path.name}: {error}", file=sys.stderr)
    for path, error in report.unreplayable:
        print(f"{path.name}: not replayable, {error}", file=sys.stderr)
    summary = f"replayed {report.delivered} of {report.entries} event(s) from {spool_dir}; "
    summary += f"{len(report.failures)} left in the spool"
    if report.unreplayable:
        summary += f", and {len(report.unreplayable)} bad observable_data event(s) to read, then delete"
    print(summary, flush=True)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())

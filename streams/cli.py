"""The `streams` command: worker, send, topics, topology, reset for an app given as `-A module:attribute`.

Mistakes (a wrong module path, an unreachable broker, a bad flag, a value its topic's serde cannot hold) print one
line on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import logging
import os
import sys
from typing import Any

from .errors import GroupConflictError, SerializationError
from .serde import IntSerde, JsonSerde, StrSerde, BytesSerde

__all__ = ["main", "load_app"]

_PROCESS = os.environ.get("STREAMS_PROCESS", "")  # set by `worker --processes` in its children


class UsageError(Exception):
    """A mistake on the command line: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not usage + message
        raise UsageError(message)


def load_app(spec: str):
    """Import `module:attribute` (or `path/to/file.py:attribute`) and return the App it names."""
    from .app import App
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise UsageError(f"bad app {spec!r}: expected module:attribute, e.g. examples.orders:app")
    if module_name.endswith(".py") or os.sep in module_name:
        directory, file = os.path.split(os.path.abspath(module_name))
        sys.path.insert(0, directory)
        module_name = file[:-3] if file.endswith(".py") else file
    elif os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None
    if attr:
        app = getattr(module, attr, None)
        if app is None:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}")
    else:
        apps = [v for v in vars(module).values() if isinstance(v, App)]
        if len(apps) != 1:
            raise UsageError(f"module {module_name!r} has {len(apps)} apps: name one with {module_name}:attribute")
        app = apps[0]
    if not isinstance(app, App):
        raise UsageError(f"{spec!r} is a {type(app).__name__}, not a streams.App")
    return app


def _encode(serde: Any, text: str | None, what: str) -> bytes | None:
    """Bytes for `text` as the topic's serde would write them; a value that serde could not read back is refused.

    JSON topics: a JSON text; on a plain JSON topic a bare word (not starting with { [ or ") is sent as a JSON
    string, as typing quotes in a shell is a nuisance; text that starts like JSON must be JSON. On a dataclass topic
    the value must be JSON that builds the dataclass (or `null`, a tombstone): anything else would stop the worker
    that reads it. `what` names the argument in the error ("value", "key").
    """
    if text is None:
        return None
    try:
        if isinstance(serde, JsonSerde):
            try:
                obj = json.loads(text)
            except ValueError as exc:
                if serde.type_ is not None:
                    raise UsageError(f"bad {what} {text!r:.80}: not JSON for {serde.type_.__name__} ({exc})") from None
                if text.lstrip()[:1] in ("{", "[", '"'):
                    raise UsageError(f"bad {what} {text!r:.80}: not JSON ({exc})") from None
                obj = text  # a bare word is sent as a JSON string
            data = serde.serialize(obj)
            serde.deserialize(data)  # for a dataclass topic: builds the object or raises SerializationError
            return data
        if isinstance(serde, IntSerde):
            try:
                return serde.serialize(int(text))
            except ValueError:
                raise UsageError(f"bad {what} {text!r:.80}: not an integer") from None
        if isinstance(serde, (StrSerde, BytesSerde)):
            return text.encode()
        return serde.serialize(text)
    except (SerializationError, TypeError, ValueError) as exc:
        raise UsageError(f"bad {what} {text!r:.80}: {exc}") from None


def _parser(with_app: bool) -> argparse.ArgumentParser:
    from .app import ERROR_POLICIES
    parser = _Parser(prog="streams", description="Run and inspect a streams app.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    def add(name: str, help: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help)
        p.add_argument("-A", "--app", required=not with_app, help="the app, as module:attribute")
        p.add_argument("--broker", help="kafka://host:port[,host:port] (default: the app's, or embedded)")
        p.add_argument("--loglevel", default="WARNING", help="DEBUG, INFO, WARNING (default) or ERROR")
        return p

    w = add("worker", "run a worker until SIGINT/SIGTERM")
    w.add_argument("--workdir", help="state directory (default ./.streams/<app id>)")
    w.add_argument("--on-error", choices=ERROR_POLICIES, help="override the app's on_error policy (e.g. skip a "
                   "record that cannot be processed)")
    w.add_argument("--processes", type=_positive_int, metavar="N", help="run N worker processes in one group, "
                   "one per core (with the embedded broker in this process when the app has no broker)")
    s = add("send", "send one record to a topic")
    s.add_argument("topic")
    s.add_argument("value")
    s.add_argument("--key")
    s.add_argument("--partition", type=int)
    t = add("topics", "list the app's topics; --create creates the missing ones")
    t.add_argument("--create", action="store_true")
    g = add("topology", "print the compiled topology")
    g.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")
    r = add("reset", "reprocess from scratch: move the app's input offsets, delete its internal topics and "
            "local state (its workers must be stopped)")
    r.add_argument("--workdir", help="state directory (default ./.streams/<app id>)")
    to = r.add_mutually_exclusive_group()
    to.add_argument("--to-earliest", action="store_true", help="input offsets to the first record (default)")
    to.add_argument("--to-latest", action="store_true", help="input offsets to the end: skip what is there")
    to.add_argument("--to-datetime", metavar="ISO8601", help="input offsets to the first record at or after this "
                    "time, e.g. 2024-05-01T12:00:00Z (without a zone: local time)")
    to.add_argument("--by-duration", metavar="DURATION", help="input offsets to the first record at or after now "
                    "minus DURATION: PT1H, P1D, 90s, 15m, 2h, 1d")
    r.add_argument("--dry-run", action="store_true", help="print what would be done and change nothing")
    return parser


def _positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        n = 0
    if n < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of processes")
    return n


async def _send(app, args) -> None:
    from aiokafka import AIOKafkaProducer
    topic = app.topics.get(args.topic) or app.topic(args.topic)
    # Check both before connecting: a refused value must not depend on the broker being up.
    value = _encode(topic.value_serde, args.value, f"value for topic {topic.name!r}")
    key = _encode(topic.key_serde, args.key, f"key for topic {topic.name!r}")
    if value is None and key is None:
        raise UsageError("a null value is a tombstone, which deletes a key: give the key with --key")
    producer = AIOKafkaProducer(bootstrap_servers=app.bootstrap_servers, acks="all")
    try:
        await producer.start()
        md = await producer.send_and_wait(topic.name, value, key=key, partition=args.partition)
        print(f"sent to {md.topic}[{md.partition}]@{md.offset}")
    finally:
        await producer.stop()


async def _topics(app, args) -> None:
    from .runtime.topics import ensure_topics
    counts: dict[str, int] = {}
    extra = [app.dead_letter()] if app.on_error == "dead_letter" else []
    topology = await ensure_topics(app.bootstrap_servers, app, extra, counts, create=args.create)
    names = sorted(set(topology.topics()) | {t.name for t in extra})
    for name in names:
        print(f"{name}\t{counts.get(name, 'missing')}")


async def _reset(app, args) -> None:
    from .reset import ResetTarget, embedded_bootstrap, reset_app
    try:
        if args.to_datetime:
            target = ResetTarget.at_datetime(args.to_datetime)
        elif args.by_duration:
            target = ResetTarget.ago(args.by_duration)
        else:
            target = ResetTarget("latest" if args.to_latest else "earliest")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if app.broker is not None:
        await reset_app(app, app.broker, target, dry_run=args.dry_run)
        return
    async with embedded_bootstrap(app) as bootstrap:
        await reset_app(app, bootstrap, target, dry_run=args.dry_run)


def _app_spec(app, given: str | None) -> str:
    """The module:attribute a child process can load the app from (`app.main()` runs it from __main__)."""
    if given:
        return given
    main_module = sys.modules.get("__main__")
    path = getattr(main_module, "__file__", None)
    for name, value in vars(main_module).items() if main_module else ():
        if value is app and path:
            return f"{os.path.abspath(path)}:{name}"
    raise UsageError("--processes needs the app as -A module:attribute (it is not a global of the main module)")


def _worker_args(args) -> list[str]:
    """The flags a child worker gets from its parent (`--processes` and `--broker` excluded)."""
    out = ["--loglevel", args.loglevel]
    if args.workdir:
        out += ["--workdir", args.workdir]
    if args.on_error:
        out += ["--on-error", args.on_error]
    return out


def main(argv: list[str] | None = None, app=None) -> None:
    """Entry point of `streams` and `python -m streams` (and of `app.main()` with the app given)."""
    try:
        args = _parser(app is not None).parse_args(argv)
        level = getattr(logging, args.loglevel.upper(), None)
        if not isinstance(level, int):
            raise UsageError(f"bad --loglevel {args.loglevel!r}: use DEBUG, INFO, WARNING or ERROR")
        # A child of `worker --processes` says which one it is.
        who = f"[process {_PROCESS}] " if _PROCESS else ""
        logging.basicConfig(level=level, format=f"%(asctime)s %(levelname)s {who}%(name)s: %(message)s")
        if level >= logging.WARNING:
            # aiokafka logs every failed connection attempt; the one line we print says it better.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
        # What a worker says at the default level: joining, its tasks, restore and catch-up progress.
        logging.getLogger("streams.progress").setLevel(min(level, logging.INFO))
        if args.app:
            app = load_app(args.app)
        if args.broker:
            from .app import parse_broker
            try:
                app.broker = parse_broker(args.broker)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
        if args.command == "topology":
            topo = app.topology()
            print({"text": topo.describe, "mermaid": topo.to_mermaid, "dot": topo.to_dot}[args.format](), end="")
            return
        if getattr(args, "workdir", None):
            from pathlib import Path
            app.workdir = Path(args.workdir)
        if args.command == "worker":
            if args.on_error:
                app.on_error = args.on_error
            if args.processes:
                from .processes import run_processes
                spec = _app_spec(app, args.app)
                sys.exit(asyncio.run(run_processes(app, spec, args.processes, _worker_args(args))))
            app.run()
            return
        if args.command == "reset":
            asyncio.run(_reset(app, args))
            return
        if app.broker is None:
            # The app's embedded broker, if a worker of the app runs from this folder.
            from broker_embedded import EmbeddedBroker
            running = EmbeddedBroker.running_address(str(app.workdir / "broker"))
            if running is None:
                raise UsageError(f"{args.command} needs a broker: start a worker of the app in this folder, or pass "
                                 "--broker kafka://host:port")
            app.broker = running
        asyncio.run(_send(app, args) if args.command == "send" else _topics(app, args))
    except (UsageError, GroupConflictError) as exc:
        print(f"streams: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:
        from aiokafka.errors import KafkaConnectionError
        if isinstance(exc, KafkaConnectionError) or "Unable to bootstrap" in str(exc):
            print(f"streams: error: cannot reach the broker at {app.broker or 'the embedded broker'}: {exc}",
                  file=sys.stderr)
            sys.exit(2)
        from .errors import ProcessingError
        if isinstance(exc, ProcessingError):
            print(f"streams: worker {'process ' + _PROCESS + ' ' if _PROCESS else ''}stopped: {exc}", file=sys.stderr)
            sys.exit(1)
        from .reset import ResetError
        from broker_embedded import DirectoryLocked
        if isinstance(exc, (ResetError, DirectoryLocked)):
            print(f"streams: error: {exc}", file=sys.stderr)
            sys.exit(2)
        raise

"""The `streams` command: worker, send, topics, topology for an app given as `-A module:attribute`.

Mistakes (a wrong module path, an unreachable broker, a bad flag) print one line on stderr and exit with status 2.
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

from .serde import IntSerde, JsonSerde, StrSerde, BytesSerde

__all__ = ["main", "load_app"]


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


def _encode(serde: Any, text: str | None) -> bytes | None:
    if text is None:
        return None
    if isinstance(serde, JsonSerde):
        try:
            obj = json.loads(text)
        except ValueError:
            obj = text  # a bare word is sent as a JSON string
        return serde.serialize(obj)
    if isinstance(serde, IntSerde):
        try:
            return serde.serialize(int(text))
        except ValueError:
            raise UsageError(f"{text!r} is not an integer") from None
    if isinstance(serde, (StrSerde, BytesSerde)):
        return text.encode()
    return serde.serialize(text)


def _parser(with_app: bool) -> argparse.ArgumentParser:
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
    s = add("send", "send one record to a topic")
    s.add_argument("topic")
    s.add_argument("value")
    s.add_argument("--key")
    s.add_argument("--partition", type=int)
    t = add("topics", "list the app's topics; --create creates the missing ones")
    t.add_argument("--create", action="store_true")
    g = add("topology", "print the compiled topology")
    g.add_argument("--format", choices=["text", "mermaid", "dot"], default="text")
    return parser


async def _send(app, args) -> None:
    from aiokafka import AIOKafkaProducer
    topic = app.topics.get(args.topic) or app.topic(args.topic)
    producer = AIOKafkaProducer(bootstrap_servers=app.bootstrap_servers, acks="all")
    try:
        await producer.start()
        md = await producer.send_and_wait(topic.name, _encode(topic.value_serde, args.value),
                                          key=_encode(topic.key_serde, args.key), partition=args.partition)
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


def main(argv: list[str] | None = None, app=None) -> None:
    """Entry point of `streams` and `python -m streams` (and of `app.main()` with the app given)."""
    try:
        args = _parser(app is not None).parse_args(argv)
        level = getattr(logging, args.loglevel.upper(), None)
        if not isinstance(level, int):
            raise UsageError(f"bad --loglevel {args.loglevel!r}: use DEBUG, INFO, WARNING or ERROR")
        logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
        if level >= logging.WARNING:
            # aiokafka logs every failed connection attempt; the one line we print says it better.
            logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
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
        if args.command == "worker":
            if args.workdir:
                from pathlib import Path
                app.workdir = Path(args.workdir)
            app.run()
            return
        if app.broker is None:
            raise UsageError(f"{args.command} needs a broker: pass --broker kafka://host:port (a worker prints "
                             "its embedded broker's address as 'bootstrap HOST:PORT')")
        asyncio.run(_send(app, args) if args.command == "send" else _topics(app, args))
    except UsageError as exc:
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
            print(f"streams: worker stopped: {exc}", file=sys.stderr)
            sys.exit(1)
        raise

"""`broker-embedded` / `python -m broker_embedded`: run the broker as a server until SIGINT or SIGTERM."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from . import DirectoryLocked, EmbeddedBroker
from .security import cli_options
from .server import CannotListen


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and status 2, as every bad input gets
        print(f"broker-embedded: error: {message}", file=sys.stderr)
        raise SystemExit(2)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="broker-embedded", description="A single-node broker speaking the Kafka protocol.")
    p.add_argument("--data-dir", default="./broker-data", help="directory of the log (created if missing)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=9092, help="port to listen on; 0 picks a free one")
    p.add_argument("--default-partitions", type=int, default=1, help="partitions of auto-created topics")
    p.add_argument("--no-auto-create", action="store_true", help="disable auto.create.topics.enable")
    p.add_argument("--no-flush-on-ack", action="store_true",
                   help="answer acks=-1 without waiting for fsync (trust the page cache, as Kafka does)")
    p.add_argument("--config", action="append", default=[], metavar="NAME=VALUE",
                   help="default for a topic config, e.g. --config segment.bytes=1048576 (repeatable)")
    p.add_argument("--loglevel", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    cli_options.add_arguments(p)
    return p


def _non_negative_int(value: str) -> int | None:
    return int(value) if value.isdigit() else None


def _boolean(value: str) -> bool | None:
    return {"true": True, "false": False}.get(value.lower())


def _positive_float(value: str) -> float | None:
    try:
        parsed = float(value)
    except ValueError:
        return None
    return parsed if parsed > 0 else None


def _text(value: str) -> str:
    return value


def _authorizer(value: str) -> bool | None:
    """authorizer.class.name: Kafka's ACL authorizer (either class name) turns ours on, empty turns it off."""
    known = ("org.apache.kafka.metadata.authorizer.StandardAuthorizer", "kafka.security.authorizer.AclAuthorizer")
    return True if value in known else False if value == "" else None


# Broker settings whose BrokerConfig field is not the name with dots as underscores.
_FIELD_NAMES = {"authorizer.class.name": "authorizer"}

_BROKER_SETTINGS = {
    "authorizer.class.name": _authorizer,
    "super.users": _text,
    "allow.everyone.if.no.acl.found": _boolean,
    "quota.window.num": _non_negative_int,
    "quota.window.size.seconds": _non_negative_int,
    "quota.producer.default": _positive_float,
    "quota.consumer.default": _positive_float,
    "max.connections": _non_negative_int,
    "max.connections.per.ip": _non_negative_int,
    "max.connections.per.ip.overrides": _text,
    "connections.max.idle.ms": _non_negative_int,
    "log.retention.check.interval.ms": _non_negative_int,
    "log.cleaner.backoff.ms": _non_negative_int,
    "log.cleaner.enable": _boolean,
    "log.cleaner.io.max.bytes.per.second": _positive_float,
    "group.min.session.timeout.ms": _non_negative_int,
    "group.max.session.timeout.ms": _non_negative_int,
    "group.initial.rebalance.delay.ms": _non_negative_int,
    "group.max.size": _non_negative_int,
    "group.consumer.session.timeout.ms": _non_negative_int,
    "group.consumer.heartbeat.interval.ms": _non_negative_int,
    "group.consumer.max.size": _non_negative_int,
    "offsets.retention.minutes": _non_negative_int,
    "offsets.retention.check.interval.ms": _non_negative_int,
    "connections.max.reauth.ms": _non_negative_int,
    "connection.failed.authentication.delay.ms": _non_negative_int,
    "socket.request.max.bytes": _non_negative_int,
}


def _check_data_dir(path: str) -> str | None:
    if os.path.exists(path) and not os.path.isdir(path):
        return f"cannot use data dir {path}: it is a file, not a directory"
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return f"cannot use data dir {path}: {exc.strerror}"
    if not os.access(path, os.W_OK | os.X_OK):
        return f"cannot use data dir {path}: not writable"
    return None


async def _serve(broker: EmbeddedBroker) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await broker.start()
    print(f"listening on {broker.bootstrap_servers}", flush=True)
    for server in broker.servers[1:]:  # more listeners: one line each, NAME://host:port
        print(f"listening on {server.listener.name}://{broker.listener_address(server.listener.name)}", flush=True)
    await stop.wait()
    await broker.stop()


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.loglevel, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    problem = _check_data_dir(args.data_dir)
    if problem:
        print(f"broker-embedded: error: {problem}", file=sys.stderr)
        return 2
    defaults = {}
    settings = {}
    for item in args.config:
        name, sep, value = item.partition("=")
        if not sep:
            print(f"broker-embedded: error: --config expects NAME=VALUE, got {item!r}", file=sys.stderr)
            return 2
        if name in _BROKER_SETTINGS:  # broker settings (not topic defaults) that --config also accepts
            parsed = _BROKER_SETTINGS[name](value)
            if parsed is None:
                print(f"broker-embedded: error: invalid value {value!r} for {name}", file=sys.stderr)
                return 2
            settings[_FIELD_NAMES.get(name, name.replace(".", "_"))] = parsed
            continue
        defaults[name] = value
    try:
        settings.update(cli_options.settings_from(args))
        broker = EmbeddedBroker(
            data_dir=args.data_dir, host=args.host, port=args.port, default_partitions=args.default_partitions,
            auto_create_topics=not args.no_auto_create, flush_on_ack=not args.no_flush_on_ack,
            topic_defaults=defaults, **settings,
        )
    except ValueError as exc:
        print(f"broker-embedded: error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(_serve(broker))
    except DirectoryLocked as exc:  # names the directory and the process that holds it
        print(f"broker-embedded: error: {exc}", file=sys.stderr)
        return 2
    except CannotListen as exc:
        where = args.listeners or f"{args.host}:{args.port}"
        print(f"broker-embedded: error: cannot listen on {where}: {exc.strerror}", file=sys.stderr)
        return 2
    except ValueError as exc:  # state in the data directory that cannot be read (a damaged ACL or quota file)
        print(f"broker-embedded: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the data directory became unusable (removed, replaced by a file, not readable)
        print(f"broker-embedded: error: cannot use data dir {args.data_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return 0

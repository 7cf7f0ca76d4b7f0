"""Topics (named Kafka topics with serdes) and channels (in-memory queues an agent can read).

Both are descriptions: they hold no connection. Sending goes through the app's running worker, or a short-lived
producer when no worker runs (see `App.send`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any, Callable

from .serde import Serde, serde_for

if TYPE_CHECKING:
    from .records import AppLike

__all__ = ["Topic", "Channel"]


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not name or len(name) > 249 or name in (".", ".."):
        raise ValueError(f"bad topic name {name!r}")
    bad = [c for c in name if not (c.isascii() and (c.isalnum() or c in "._-"))]
    if bad:
        raise ValueError(f"bad topic name {name!r}: only ASCII letters, digits, '.', '_' and '-' are allowed")
    return name


def _extractor(spec: Any, topic: str) -> Callable[[Any, Any], int] | None:
    """Event time of a record: None (the record's timestamp), a function (key, value) -> ms, or the name of a
    field of the value (a dict key or an attribute) holding ms."""
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, str) and spec:
        field = spec

        def extract(key: Any, value: Any) -> int:
            ts = value.get(field) if isinstance(value, dict) else getattr(value, field, None)
            if not isinstance(ts, int) or isinstance(ts, bool) or ts < 0:
                raise ValueError(f"field {field!r} of the value is not a timestamp in ms: {ts!r:.40}")
            return ts
        return extract
    raise ValueError(f"bad timestamp_extractor {spec!r} for topic {topic!r}: give a function (key, value) -> ms "
                     "or the name of a field of the value")


class Topic:
    """A Kafka topic as the application sees it: a name, key and value serdes, and optionally a partition count.

    `partitions=None` means "whatever the broker has", or the broker's default when the app creates it.
    `timestamp_extractor`: where a record's event time comes from (windows, stream time, output timestamps): the
    record's timestamp by default, or a function `(key, value) -> ms`, or the name of a field of the value.
    """

    def __init__(self, name: str, *, key_type: Any = None, value_type: Any = None, key_serde: Serde | None = None,
                 value_serde: Serde | None = None, partitions: int | None = None, config: dict | None = None,
                 internal: bool = False, app: "AppLike | None" = None, timestamp_extractor: Any = None) -> None:
        self.name = _check_name(name)
        if partitions is not None and (not isinstance(partitions, int) or partitions < 1):
            raise ValueError(f"partitions must be a positive int, got {partitions!r} for topic {name!r}")
        self.key_type = key_type
        self.value_type = value_type
        self.key_serde = serde_for(key_serde if key_serde is not None else key_type)
        self.value_serde = serde_for(value_serde if value_serde is not None else value_type)
        self.partitions = partitions
        self.config = dict(config or {})
        self.internal = internal
        self.app = app
        self.timestamp_extractor = _extractor(timestamp_extractor, name)

    async def send(self, key: Any = None, value: Any = None, *, headers: list | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None) -> None:
        """Serialize and send one record to this topic through the app."""
        if self.app is None:
            raise RuntimeError(f"topic {self.name!r} does not belong to an app")
        await self.app.send(self, key=key, value=value, headers=headers, partition=partition,
                            timestamp_ms=timestamp_ms)

    def __repr__(self) -> str:
        return f"Topic({self.name!r})"


class Channel:
    """An in-memory queue of (key, value) pairs inside one process; agents can read it like a topic.

    Nothing is durable and nothing is committed: it is for wiring agents together inside a worker.
    """

    def __init__(self, name: str = "channel", maxsize: int = 10_000) -> None:
        self.name = name
        self.queue: asyncio.Queue = asyncio.Queue(maxsize)

    async def send(self, key: Any = None, value: Any = None, **_: Any) -> None:
        """Put one (key, value) on the channel, waiting while it is full."""
        await self.queue.put((key, value))

    def put_nowait(self, key: Any, value: Any) -> None:
        self.queue.put_nowait((key, value))

    def __repr__(self) -> str:
        return f"Channel({self.name!r})"

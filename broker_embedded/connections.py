"""Connection limits and per-connection throttling (Kafka's ConnectionQuotas, KIP-219 muting, idle connections).

- `max.connections`: beyond it a new connection waits, unread, until another closes (Kafka's acceptor stops
  accepting; the client sees a connection that does not answer yet).
- `max.connections.per.ip` (with `max.connections.per.ip.overrides`): a connection beyond its address's limit is
  closed at once, as Kafka does.
- A response carrying a throttle time mutes its connection: no further request of that client is read until the
  time has passed (KIP-219); for request versions older than KIP-219 the response itself is delayed instead.
- `connections.max.idle.ms`: a connection with nothing read or written for that long, and no request in
  progress, is closed.
"""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

# The first version of each API whose clients honour throttle_time_ms themselves (Kafka's shouldClientThrottle);
# earlier versions get their response delayed instead.
_CLIENT_THROTTLES_SINCE = {0: 6, 1: 8}


class TooManyConnections(Exception):
    """The client's address has as many connections as max.connections.per.ip allows."""


def parse_overrides(value: str | dict | None) -> dict[str, int]:
    """`max.connections.per.ip.overrides` as Kafka writes it ("host1:10,10.0.0.2:5") or a dict; hostnames are
    resolved to addresses, as connections are counted by address."""
    if not value:
        return {}
    if isinstance(value, str):
        pairs = []
        for item in value.split(","):
            item = item.strip()
            if not item:
                continue
            host, sep, count = item.rpartition(":")
            if not sep or not host:
                raise ValueError(f"max_connections_per_ip_overrides: expected host:count, got {item!r}")
            pairs.append((host.strip(), count.strip()))
    else:
        pairs = list(value.items())
    out: dict[str, int] = {}
    for host, count in pairs:
        try:
            n = int(count)
        except (TypeError, ValueError):
            raise ValueError(f"max_connections_per_ip_overrides: invalid count {count!r} for {host}") from None
        if n < 0:
            raise ValueError(f"max_connections_per_ip_overrides: count for {host} must be >= 0, got {n}")
        try:
            address = socket.getaddrinfo(host, None)[0][4][0]
        except OSError:
            raise ValueError(f"max_connections_per_ip_overrides: cannot resolve host {host!r}") from None
        out[address] = n
    return out


class ConnectionQuotas:
    """Counts open connections, broker-wide and per client address."""

    def __init__(self, max_connections: int, max_per_ip: int, overrides: dict[str, int]) -> None:
        self.max_connections = max_connections
        self.max_per_ip = max_per_ip
        self.overrides = overrides
        self.total = 0
        self.by_ip: Counter[str] = Counter()
        self._freed = asyncio.Event()

    def limit_for(self, host: str) -> int:
        return self.overrides.get(host, self.max_per_ip)

    async def acquire(self, host: str) -> None:
        """Wait for a broker-wide slot, then take one of the address's; TooManyConnections if it has none."""
        while self.total >= self.max_connections:
            self._freed.clear()
            await self._freed.wait()
        if self.by_ip[host] >= self.limit_for(host):
            raise TooManyConnections(f"{host} already has {self.by_ip[host]} connections "
                                     f"(max.connections.per.ip {self.limit_for(host)})")
        self.total += 1
        self.by_ip[host] += 1

    def release(self, host: str) -> None:
        self.total -= 1
        self.by_ip[host] -= 1
        if self.by_ip[host] <= 0:
            del self.by_ip[host]
        self._freed.set()


class Unanswered:
    """What a handler returns to send no response (Produce with acks=0) while its client is over a quota: the
    connection is still muted for `throttle_ms`, as Kafka mutes an acks=0 producer."""

    __slots__ = ("throttle_ms",)

    def __init__(self, throttle_ms: int) -> None:
        self.throttle_ms = throttle_ms


class ConnectionActivity:
    """One connection's throttling and idleness: when it may be read again, when it last did anything, and how
    many requests are being served.

    Requests are read ahead and served concurrently, until a quota first throttles the connection: from then on
    a request is read only once the previous ones have been answered (as Kafka serves one request per connection
    at a time), so that each throttle time mutes the connection before the next request is taken."""

    __slots__ = ("muted_until", "last_active", "in_flight", "_loop", "_idle", "_watchdog", "_one_at_a_time", "_done")

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.muted_until = 0.0
        self.last_active = self._loop.time()
        self.in_flight = 0
        self._idle = False
        self._watchdog: asyncio.TimerHandle | None = None
        self._one_at_a_time = False
        self._done = asyncio.Event()

    def begin(self) -> None:
        """A request is being served."""
        self.in_flight += 1
        self._done.clear()

    def end(self) -> None:
        """Its response is ready (any throttle time is applied right after, before the next read)."""
        self.in_flight -= 1
        self.touch()
        if self.in_flight == 0:
            self._done.set()

    def touch(self) -> None:
        self.last_active = self._loop.time()

    async def throttle(self, api_key: int, version: int, throttle_ms: int) -> None:
        """Apply a response's throttle time: delay the response for old clients, else mute the connection."""
        if throttle_ms <= 0:
            return
        self._one_at_a_time = True
        if version < _CLIENT_THROTTLES_SINCE.get(api_key, 0):
            await asyncio.sleep(throttle_ms / 1000)
            return
        self.muted_until = max(self.muted_until, self._loop.time() + throttle_ms / 1000)

    async def wait_unmuted(self) -> None:
        if self._one_at_a_time:
            await asyncio.sleep(0)  # the request just dispatched starts (and counts itself in flight)
            while self.in_flight:
                await self._done.wait()
        while True:
            delay = self.muted_until - self._loop.time()
            if delay <= 0:
                return
            await asyncio.sleep(delay)

    async def read(self, reader: asyncio.StreamReader, n: int, idle_ms: int) -> bytes | None:
        """`n` bytes, or None once the connection has been idle (nothing in flight) for `idle_ms`.

        One timer per connection watches for idleness (a timeout around every read would cost more than the
        read itself); when it fires on an idle connection it ends the reader's stream."""
        if self._watchdog is None:
            self._watchdog = self._loop.call_later(idle_ms / 1000, self._check_idle, reader, idle_ms / 1000)
        try:
            data = await reader.readexactly(n)
        except asyncio.IncompleteReadError:
            if self._idle:
                return None
            raise
        self.touch()
        return data

    def _check_idle(self, reader: asyncio.StreamReader, idle: float) -> None:
        if reader.at_eof():  # the connection is gone
            return
        now = self._loop.time()
        if self.in_flight == 0 and now - self.last_active >= idle:
            self._idle = True
            reader.feed_eof()
            return
        due = now + idle if self.in_flight else self.last_active + idle
        self._watchdog = self._loop.call_later(max(due - now, 0.001), self._check_idle, reader, idle)

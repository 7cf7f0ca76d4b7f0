"""Time segments and the byte encodings that window and session stores share.

Encodings (all big-endian, so byte order is numeric order):

- a time (ms, signed 64-bit) is 8 bytes: the value plus 2**63, so negative times sort before positive ones;
- a store key is 4 bytes of length then the key, so "this key" is an exact prefix: b"a" never matches b"ab";
- a segment id (time // segment interval) is 8 bytes, encoded like a time, and comes first in every database key.

Each store keeps one meta row at the empty key (sorting before every segment): the segment interval the database was
written with. The layout depends on it, so a store reopened with other settings keeps the interval it was built with.

`Segments` tracks the store's notion of stream time: the largest time it has seen (puts, restored records and
`expire()` calls). Everything older than `observed - retention` is expired: puts of it are ignored, reads skip it,
and `expire()` range-deletes the segments that lie wholly below that line (one range tombstone per advance, however
many keys those segments held). The boundary segment stays until it too falls below the line; reads filter it.
"""

from __future__ import annotations

import struct

from ..errors import StateError
from .backend import Backend

_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")
_SIGN = 1 << 63
MIN_TIME = -(1 << 63)
MAX_TIME = (1 << 63) - 2  # one below the encodable maximum, so that `t + 1` is an exclusive bound
META_KEY = b""
DEFAULT_MIN_INTERVAL_MS = 60_000

encode_u32 = _U32.pack
unpack_u32 = _U32.unpack_from
unpack_u64 = _U64.unpack_from


def encode_time(t: int) -> bytes:
    """8 bytes that sort like the signed time `t`."""
    return _U64.pack(t + _SIGN)


def decode_time(data: bytes, offset: int) -> int:
    """The time encoded at `data[offset:offset + 8]`."""
    return _U64.unpack_from(data, offset)[0] - _SIGN


def key_prefix(key: bytes) -> bytes:
    """The exact, length-prefixed form of a store key."""
    return _U32.pack(len(key)) + key


def split_key(data: bytes, offset: int) -> tuple[bytes, int]:
    """The store key whose length prefix starts at `offset`, and the offset just after it."""
    (length,) = _U32.unpack_from(data, offset)
    start = offset + 4
    return data[start:start + length], start + length


def check_time(what: str, t: object) -> int:
    """`t` if it is an int time in the signed 64-bit range, else ValueError naming it."""
    if type(t) is not int or not MIN_TIME <= t <= MAX_TIME:  # type: ignore[operator]
        raise ValueError(f"{what} must be an int time in ms (signed 64-bit), got {t!r}")
    return t


class Segments:
    """Segment arithmetic and expiry for one store: `retention_ms`, `interval_ms`, the observed stream time."""

    def __init__(self, backend: Backend, store_name: str, retention_ms: int, interval_ms: int | None) -> None:
        if type(retention_ms) is not int or retention_ms < 0:
            raise ValueError(f"retention_ms must be an int >= 0, got {retention_ms!r}")
        if interval_ms is None:
            interval_ms = max(retention_ms // 2, DEFAULT_MIN_INTERVAL_MS)
        elif type(interval_ms) is not int or interval_ms <= 0:
            raise ValueError(f"segment_interval_ms must be an int > 0, got {interval_ms!r}")
        stored = backend.get(META_KEY)
        if stored is not None:
            if len(stored) != 8:
                raise StateError(f"store {store_name!r} in {backend.name!r} has a damaged meta row {stored!r}")
            interval_ms = _U64.unpack(stored)[0]  # the layout on disk wins over today's settings
        else:
            # Not synced on its own: it becomes durable with the first flush, before any checkpoint can exist.
            backend.write([(META_KEY, _U64.pack(interval_ms))], sync=False)
        self.retention_ms = retention_ms
        self.interval_ms = interval_ms
        self._prefixes: dict[int, bytes] = {}
        # Segments below `_dropped_below` are already range-deleted (None: nothing deleted since the store opened).
        self._dropped_below: int | None = None
        self.observed = MIN_TIME
        # The latest time the database may hold: what reads look up to (`observed` may be below it after a reopen).
        self.reach = MIN_TIME
        last = next(backend.range(reverse=True), None)
        if last is not None and last[0] != META_KEY:
            # A lower bound of the stream time this database saw: the start of its newest segment; the segment's
            # entries reach up to its end.
            newest = decode_time(last[0], 0)
            self.observed = newest * interval_ms
            self.reach = (newest + 1) * interval_ms - 1
        self._committed = (self.observed, self._dropped_below)

    @property
    def cutoff(self) -> int:
        """The oldest live time: anything earlier is expired."""
        return self.observed - self.retention_ms

    def segment(self, t: int) -> int:
        """The segment id of time `t`."""
        return t // self.interval_ms

    def prefix(self, segment: int) -> bytes:
        """The 8-byte database-key prefix of `segment` (cached: hot paths ask for the same few)."""
        prefix = self._prefixes.get(segment)
        if prefix is None:
            if len(self._prefixes) > 1024:
                self._prefixes.clear()
            prefix = self._prefixes[segment] = encode_time(segment)
        return prefix

    def observe(self, t: int) -> None:
        """Stream time moves forward only."""
        if t > self.observed:
            self.observed = t

    def live_segments(self, t_from: int, t_to: int) -> range:
        """The segments that may hold live times within [t_from, t_to]."""
        lo = max(t_from, self.cutoff)
        hi = min(t_to, max(self.observed, self.reach))
        if lo > hi:
            return range(0)
        return range(self.segment(lo), self.segment(hi) + 1)

    def expire(self, stream_time: int) -> tuple[bytes, bytes] | None:
        """Advance stream time; return the key range of segments that just became wholly expired, if any."""
        self.observe(stream_time)
        live = self.segment(max(self.cutoff, MIN_TIME))  # the oldest segment that can still hold a live time
        if self._dropped_below is not None and live <= self._dropped_below:
            return None
        # The first drop after opening starts at the meta row's successor: whatever lies below is old.
        lo = b"\x00" if self._dropped_below is None else self.prefix(self._dropped_below)
        self._dropped_below = live
        return lo, self.prefix(live)

    def commit(self) -> None:
        """The buffered writes were flushed: remember this point for `rollback()`."""
        self._committed = (self.observed, self._dropped_below)

    def rollback(self) -> None:
        """The buffered writes were discarded: forget the stream time they carried."""
        self.observed, self._dropped_below = self._committed

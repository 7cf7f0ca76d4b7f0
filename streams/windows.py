"""Window definitions (what a windowed aggregation groups by) and `Windowed`, the key of a windowed result.

Durations are seconds (int or float) or `datetime.timedelta`; windows themselves are in milliseconds of event time,
as record timestamps are. The semantics are Kafka Streams':

- `TumblingWindows(size)`: [start, start + size), start a multiple of size; each record is in exactly one.
- `HoppingWindows(size, advance)`: [start, start + size), start a multiple of advance; a record is in size/advance.
- `SlidingWindows(time_difference)`: windows [end - d, end] (both inclusive) that start or end at a record, so
  every distinct set of records within d of each other is one window.
- `SessionWindows(inactivity_gap)`: [first, last] record of a burst; records closer than the gap join (and merge)
  sessions.

A window accepts records until stream time passes its end plus `grace`; later records are dropped (counted and
logged). Stream time is the highest record timestamp the aggregation has seen: it only moves forward.
"""

from __future__ import annotations

import datetime
import struct
from typing import Any, NamedTuple

from .errors import SerializationError
from .serde import Serde, serde_for

__all__ = ["HoppingWindows", "JoinWindows", "SessionWindows", "SlidingWindows", "TimeWindows", "TumblingWindows", "Windowed",
           "WindowedSerde", "to_millis"]


def to_millis(duration: Any, what: str, *, allow_zero: bool = True) -> int:
    """Seconds (int/float) or a timedelta -> whole milliseconds; a clear ValueError otherwise."""
    if isinstance(duration, datetime.timedelta):
        ms = round(duration.total_seconds() * 1000)
    elif isinstance(duration, (int, float)) and not isinstance(duration, bool):
        ms = round(duration * 1000)
    else:
        raise ValueError(f"{what} must be seconds (a number) or a datetime.timedelta, got {duration!r}")
    if ms < 0 or (ms == 0 and not allow_zero):
        raise ValueError(f"{what} must be {'>= 0' if allow_zero else '> 0'} seconds, got {duration!r}")
    return ms


class Windowed(NamedTuple):
    """The key of a windowed result: the record key and the window's bounds in ms (see the window kinds for
    whether `end` is inclusive)."""

    key: Any
    start: int
    end: int


class TimeWindows:
    """Fixed-size windows advancing by `advance_ms` (tumbling when advance == size)."""

    kind = "time"

    def __init__(self, size: Any, advance: Any = None, grace: Any = 0) -> None:
        self.size_ms = to_millis(size, "window size", allow_zero=False)
        self.advance_ms = self.size_ms if advance is None else to_millis(advance, "window advance", allow_zero=False)
        if self.advance_ms > self.size_ms:
            raise ValueError(f"window advance ({self.advance_ms} ms) must not exceed the size ({self.size_ms} ms)")
        self.grace_ms = to_millis(grace, "grace")

    def windows_for(self, ts: int) -> list[tuple[int, int]]:
        """Every window [start, end) containing `ts`, oldest first (none start before 0, as in Kafka Streams)."""
        size, advance = self.size_ms, self.advance_ms
        first = max(0, ts - size + advance) // advance * advance
        return [(s, s + size) for s in range(first, ts + 1, advance)]

    @property
    def retention_ms(self) -> int:
        """How long the store keeps a window: size plus grace (Kafka Streams' default)."""
        return self.size_ms + self.grace_ms

    def close_time(self, end: int) -> int:
        """Stream time at which a window ending at `end` closes (its final result can be emitted)."""
        return end + self.grace_ms

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size={self.size_ms}ms, advance={self.advance_ms}ms, grace={self.grace_ms}ms)"


class TumblingWindows(TimeWindows):
    """Non-overlapping windows of `size`: [start, start + size)."""

    def __init__(self, size: Any, grace: Any = 0) -> None:
        super().__init__(size, None, grace)


class HoppingWindows(TimeWindows):
    """Overlapping windows of `size` starting every `advance`."""

    def __init__(self, size: Any, advance: Any, grace: Any = 0) -> None:
        super().__init__(size, advance, grace)


class SlidingWindows:
    """Windows of `time_difference` ms, [start, start + d] inclusive, placed at the records (Kafka Streams')."""

    kind = "sliding"

    def __init__(self, time_difference: Any, grace: Any = 0) -> None:
        self.time_difference_ms = to_millis(time_difference, "time_difference", allow_zero=False)
        self.grace_ms = to_millis(grace, "grace")

    @property
    def retention_ms(self) -> int:
        # A record may still update the window that ends 2 * d before it (the previous record's right window).
        return 2 * self.time_difference_ms + self.grace_ms + 1

    def close_time(self, end: int) -> int:
        return end + self.grace_ms

    def __repr__(self) -> str:
        return f"SlidingWindows(time_difference={self.time_difference_ms}ms, grace={self.grace_ms}ms)"


class SessionWindows:
    """Sessions: bursts of records of one key separated by at least `inactivity_gap`."""

    kind = "session"

    def __init__(self, inactivity_gap: Any, grace: Any = 0) -> None:
        self.gap_ms = to_millis(inactivity_gap, "inactivity_gap", allow_zero=False)
        self.grace_ms = to_millis(grace, "grace")

    @property
    def retention_ms(self) -> int:
        return self.gap_ms + self.grace_ms

    def close_time(self, end: int) -> int:
        """A session can still be extended by a record up to `gap` after its end, plus grace."""
        return end + self.gap_ms + self.grace_ms

    def __repr__(self) -> str:
        return f"SessionWindows(inactivity_gap={self.gap_ms}ms, grace={self.grace_ms}ms)"


_BOUNDS = struct.Struct(">qq")


def _signed_millis(duration: Any, what: str) -> int:
    if isinstance(duration, datetime.timedelta):
        return -to_millis(-duration, what) if duration < datetime.timedelta(0) else to_millis(duration, what)
    if isinstance(duration, (int, float)) and not isinstance(duration, bool) and duration < 0:
        return -to_millis(-duration, what)
    return to_millis(duration, what)


class JoinWindows:
    """How far apart in event time two records of a stream-stream join may be: a left record at time t joins the
    right records in [t - before, t + after] (Kafka Streams' JoinWindows). `JoinWindows(d)` is symmetric (+-d);
    `grace` is how long after a window ends (on stream time) late records still join and left/outer results for
    unmatched records wait."""

    kind = "join"

    def __init__(self, before: Any, after: Any = None, *, grace: Any = 0) -> None:
        # One bound may be negative (the window lies wholly after or before the record), as long as the window
        # is not empty: before + after >= 0.
        self.before_ms = _signed_millis(before, "join window 'before'")
        self.after_ms = self.before_ms if after is None else _signed_millis(after, "join window 'after'")
        self.grace_ms = to_millis(grace, "join window grace")
        if self.before_ms + self.after_ms < 0:
            raise ValueError(f"join window before ({self.before_ms} ms) + after ({self.after_ms} ms) must be >= 0")

    @property
    def size_ms(self) -> int:
        return self.before_ms + self.after_ms

    @property
    def retention_ms(self) -> int:
        """How long each side keeps its records: the window and the grace (Kafka Streams' retention)."""
        return self.before_ms + self.after_ms + self.grace_ms

    def __repr__(self) -> str:
        return f"JoinWindows(before={self.before_ms}ms, after={self.after_ms}ms, grace={self.grace_ms}ms)"


class WindowedSerde:
    """`Windowed(key, start, end)` as the inner key's bytes followed by big-endian start and end (16 bytes)."""

    def __init__(self, inner: Serde | Any = None) -> None:
        self.inner = serde_for(inner) if not isinstance(inner, Serde) else inner

    def serialize(self, obj: Any) -> bytes | None:
        if obj is None:
            return None
        if not isinstance(obj, tuple) or len(obj) != 3:
            raise SerializationError(f"WindowedSerde needs Windowed(key, start, end), got {obj!r:.80}")
        return (self.inner.serialize(obj[0]) or b"") + _BOUNDS.pack(obj[1], obj[2])

    def deserialize(self, data: bytes | None) -> Any:
        if data is None:
            return None
        if len(data) < 16:
            raise SerializationError(f"a windowed key needs at least 16 bytes, got {len(data)}")
        start, end = _BOUNDS.unpack_from(data, len(data) - 16)
        return Windowed(self.inner.deserialize(data[:-16]), start, end)

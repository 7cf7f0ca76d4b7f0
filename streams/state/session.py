"""`SessionStore`: a value per (key, session start, session end), end inclusive, in time segments by end.

    database key   = segment(end) (8) | len(key) (4) | key | end (8) | start (8)
    changelog key  =                    len(key) (4) | key | end (8) | start (8)

End comes before start because session merging asks "which of this key's sessions end at or after t" and wants them
ordered by end: that is one range scan per segment, from the earliest end on. A session belongs to the segment of its
end, so it expires when its end falls out of retention. The changelog key is the database key without its segment.
"""

from __future__ import annotations

from typing import Iterator

from .segmented import SegmentedStore
from .segments import MAX_TIME, MIN_TIME, check_time, decode_time, encode_time, key_prefix, split_key
from .store import check_bytes

# Sorts after every (end, start) suffix of a key: the exclusive end of one key's sessions in a segment.
_AFTER_ALL_TIMES = b"\xff" * 17


class SessionStore(SegmentedStore):
    """Sessions of bytes values by (key, start ms, end ms); see `SegmentedStore` for retention and restore."""

    kind = "session"
    time_offset = 16

    def put(self, key: bytes, start: int, end: int, value: bytes | None) -> bool:
        """Set the session [start, end] of `key` (None removes it).

        Returns False, and neither stores nor logs anything, when the session ended before retention.
        """
        check_bytes("key", key)
        check_time("session start", start)
        check_time("session end", end)
        if start > end:
            raise ValueError(f"session start {start} is after its end {end}")
        if value is not None:
            check_bytes("value", value)
        segments = self._segments
        if end < segments.cutoff:
            return False
        segments.observe(end)
        changelog_key = key_prefix(key) + encode_time(end) + encode_time(start)
        self._buffer.put(segments.prefix(segments.segment(end)) + changelog_key, value)
        if self.on_change is not None:
            self.on_change(changelog_key, value)
        return True

    def remove(self, key: bytes, start: int, end: int) -> bool:
        """Remove one session (logged as a tombstone)."""
        return self.put(key, start, end, None)

    def fetch_session(self, key: bytes, start: int, end: int) -> bytes | None:
        """The value of `key`'s session [start, end], or None (absent or expired)."""
        segments = self._segments
        if end < segments.cutoff:
            return None
        return self._buffer.get(segments.prefix(segments.segment(end)) + key_prefix(key) + encode_time(end)
                                + encode_time(start))

    def find_sessions(self, key: bytes, earliest_end: int, latest_start: int) -> list[tuple[int, int, bytes]]:
        """(start, end, value) of `key`'s live sessions with end >= earliest_end and start <= latest_start.

        Ordered by end, then start: the sessions a new record at t with gap g merges with are
        `find_sessions(key, t - g, t + g)`.
        """
        check_time("earliest_end", earliest_end)
        check_time("latest_start", latest_start)
        segments = self._segments
        interval = segments.interval_ms
        lo_end = max(earliest_end, segments.cutoff)
        prefix = key_prefix(key)
        out: list[tuple[int, int, bytes]] = []
        for segment in segments.live_segments(earliest_end, MAX_TIME):
            base = segments.prefix(segment) + prefix
            lo = base + encode_time(max(lo_end, segment * interval))
            for db_key, value in self._buffer.range(lo, base + _AFTER_ALL_TIMES):
                start = decode_time(db_key, len(db_key) - 8)
                if start <= latest_start:
                    out.append((start, decode_time(db_key, len(db_key) - 16), value))
        return out

    def fetch(self, key: bytes) -> list[tuple[int, int, bytes]]:
        """Every live session of `key`, ordered by end then start."""
        return self.find_sessions(key, MIN_TIME, MAX_TIME)

    def all(self) -> Iterator[tuple[bytes, int, int, bytes]]:
        """Every live (key, start, end, value), by segment, then key (shorter first), then end and start."""
        for db_key, value in self._scan(MIN_TIME, MAX_TIME):
            key, offset = split_key(db_key, 8)
            yield key, decode_time(db_key, offset + 8), decode_time(db_key, offset), value

"""`WindowStore`: a value per (key, window start), in time segments.

    database key   = segment(start) (8) | len(key) (4) | key | start (8)
    changelog key  =                      len(key) (4) | key | start (8)

Times are signed ms, encoded to sort numerically (see `segments`). Within a segment one key's windows are contiguous
and ordered by start, so "this key, these starts" is one range scan per overlapping segment, and "every key, these
starts" one scan over the overlapping segments. The changelog key is the database key without its segment: restore
recomputes the segment from the start.
"""

from __future__ import annotations

from typing import Iterator

from .segmented import SegmentedStore
from .segments import (_SIGN, _U32, _U64, MAX_TIME, MIN_TIME, check_time, decode_time, encode_time, key_prefix,
                       split_key)
from .store import check_bytes

_U32_PACK = _U32.pack
_U64_PACK = _U64.pack


class WindowStore(SegmentedStore):
    """Windows of bytes values by (key, start ms); see `SegmentedStore` for retention, expiry and restore."""

    kind = "window"
    time_offset = 8

    def put(self, key: bytes, start: int, value: bytes | None) -> bool:
        """Set the window of `key` starting at `start` (None deletes it).

        Returns False, and neither stores nor logs anything, when the window is already older than retention.
        """
        # The checks and encodings of check_bytes/check_time/key_prefix/encode_time, inlined: this runs per record.
        if type(key) is not bytes:
            check_bytes("key", key)
        if type(start) is not int or not MIN_TIME <= start <= MAX_TIME:
            check_time("window start", start)
        if value is not None and type(value) is not bytes:
            check_bytes("value", value)
        segments = self._segments
        if start < segments.observed - segments.retention_ms:   # segments.cutoff
            return False
        if start > segments.observed:                            # segments.observe(start)
            segments.observed = start
        changelog_key = _U32_PACK(len(key)) + key + _U64_PACK(start + _SIGN)
        self._buffer.put(segments.prefix(start // segments.interval_ms) + changelog_key, value)
        if self.on_change is not None:
            self.on_change(changelog_key, value)
        return True

    def delete(self, key: bytes, start: int) -> bool:
        """Delete one window (logged as a tombstone)."""
        return self.put(key, start, None)

    def fetch(self, key: bytes, start: int) -> bytes | None:
        """The value of `key`'s window starting at `start`, or None (absent or expired)."""
        segments = self._segments
        if start < segments.observed - segments.retention_ms:   # segments.cutoff
            return None
        return self._buffer.get(segments.prefix(start // segments.interval_ms) + _U32_PACK(len(key)) + key
                                + _U64_PACK(start + _SIGN))

    def fetch_range(self, key: bytes, t_from: int, t_to: int) -> list[tuple[int, bytes]]:
        """(start, value) of `key`'s live windows with t_from <= start <= t_to, ordered by start."""
        check_time("t_from", t_from)
        check_time("t_to", t_to)
        segments = self._segments
        interval = segments.interval_ms
        lo_time = max(t_from, segments.cutoff)
        prefix = key_prefix(key)
        out: list[tuple[int, bytes]] = []
        for segment in segments.live_segments(t_from, t_to):
            base = segments.prefix(segment) + prefix
            lo = base + encode_time(max(lo_time, segment * interval))
            hi = base + encode_time(min(t_to, segment * interval + interval - 1) + 1)
            for db_key, value in self._buffer.range(lo, hi):
                out.append((decode_time(db_key, len(db_key) - 8), value))
        return out

    def fetch_all(self, t_from: int, t_to: int) -> list[tuple[bytes, int, bytes]]:
        """(key, start, value) of every live window with t_from <= start <= t_to.

        Ordered by segment, then by key (shorter keys first: the length prefix), then by start.
        """
        check_time("t_from", t_from)
        check_time("t_to", t_to)
        return list(self._windows(t_from, t_to))

    def all(self) -> Iterator[tuple[bytes, int, bytes]]:
        """Every live (key, start, value), in `fetch_all` order."""
        return self._windows(MIN_TIME, MAX_TIME)

    def _windows(self, t_from: int, t_to: int) -> Iterator[tuple[bytes, int, bytes]]:
        for db_key, value in self._scan(t_from, t_to):
            key, end = split_key(db_key, 8)
            yield key, decode_time(db_key, end), value

"""`SegmentedStore`: what window and session stores share: segment-prefixed keys, expiry, restore, whole scans.

A database key is `segment (8) | changelog key`, and a changelog key ends with the time that picks the segment,
`time_offset` bytes from its end (window start for windows, session end for sessions; see `segments`). So restore
only reads that time to route a record, and the changelog never carries the segment.
"""

from __future__ import annotations

import itertools
import struct
from typing import Iterable, Iterator

from ..errors import StateError
from .backend import Backend
from .segments import Segments, unpack_u64
from .store import RESTORE_BATCH, OnChange, Store

_SIGN = 1 << 63


class SegmentedStore(Store):
    """A store whose keys live in time segments, dropped whole by `expire()`."""

    # Where the segment time sits in a changelog key, counted from its end.
    time_offset = 8

    def __init__(self, backend: Backend, name: str, on_change: OnChange | None = None, *, retention_ms: int,
                 segment_interval_ms: int | None = None) -> None:
        super().__init__(backend, name, on_change)
        self._segments = Segments(backend, name, retention_ms, segment_interval_ms)

    @property
    def retention_ms(self) -> int:
        """How long windows or sessions live behind the observed stream time."""
        return self._segments.retention_ms

    @property
    def segment_interval_ms(self) -> int:
        """The interval the database was built with (it may differ from the one asked for: see `segments`)."""
        return self._segments.interval_ms

    @property
    def observed_time(self) -> int:
        """The largest time this store has seen (puts, restores, `expire()`); older than this - retention is gone."""
        return self._segments.observed

    def expire(self, stream_time: int) -> None:
        """Drop everything older than `stream_time - retention_ms`: whole segments by a buffered range delete.

        Like any write it takes effect at `flush()`; reads stop seeing the expired entries at once.
        """
        dropped = self._segments.expire(stream_time)
        if dropped is not None:
            self._buffer.delete_range(*dropped)

    def flush(self) -> int:
        """`Store.flush`, and remember the stream time it committed."""
        n = super().flush()
        self._segments.commit()
        return n

    def discard(self) -> None:
        """`Store.discard`, and go back to the stream time of the last commit."""
        super().discard()
        self._segments.rollback()

    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Write changelog records to their segments in batches, skipping expired ones; return how many were read.

        Stream time advances with the restored records, so a window that later records pushed past retention is
        skipped, or dropped with its segment, as it would have been when it was first written.
        """
        self._check_restorable()
        segments = self._segments
        interval = segments.interval_ms
        prefix = segments.prefix
        offset = self.time_offset
        records = iter(records)
        total = 0
        while chunk := list(itertools.islice(records, RESTORE_BATCH)):
            try:
                times = [unpack_u64(key, len(key) - offset)[0] - _SIGN for key, _ in chunk]
            except (struct.error, TypeError):
                bad = next(key for key, _ in chunk if type(key) is not bytes or len(key) < offset + 4)
                raise StateError(f"store {self.name!r}: changelog key {bad!r:.80} is not a {self.kind} store key")
            segments.observe(max(times))
            cutoff = segments.cutoff
            puts = [(prefix(t // interval) + key, value) for (key, value), t in zip(chunk, times) if t >= cutoff]
            dropped = segments.expire(segments.observed)
            self.backend.write(puts, [dropped] if dropped is not None else (), sync=False)
            total += len(chunk)
        segments.commit()
        return total

    def _scan(self, t_from: int, t_to: int) -> Iterator[tuple[bytes, bytes]]:
        """(database key, value) of every live entry whose segment time is in [t_from, t_to], by segment."""
        segments = self._segments
        live = segments.live_segments(t_from, t_to)
        if not live:
            return
        lo = max(t_from, segments.cutoff)
        offset = self.time_offset
        for key, value in self._buffer.range(segments.prefix(live.start), segments.prefix(live.stop)):
            t = unpack_u64(key, len(key) - offset)[0] - _SIGN
            if lo <= t <= t_to:
                yield key, value

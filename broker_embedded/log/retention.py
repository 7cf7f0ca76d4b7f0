"""Retention: delete whole old segments by time (`retention.ms`) and size (`retention.bytes`), and the segments
that DeleteRecords left below the log start offset; the log start offset moves forward and is persisted first.

Runs as a broker service every `log.retention.check.interval.ms`. Deleted segments lose their files at once, but
their file descriptors stay open for a grace period (a flush of them may still be running in the flusher's thread).
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import TYPE_CHECKING

from .cleaner_swap import SEGMENT_SUFFIXES
from .partition import PartitionLog
from .segment import Segment, segment_name
from ..background import cancel_and_wait

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)

# How long a removed segment's descriptors stay open (Kafka's file.delete.delay.ms plays this part).
CLOSE_GRACE_S = 30.0


def _largest_timestamp(seg: Segment) -> int:
    """The segment's largest record timestamp, or its file's mtime when no record carries one (as Kafka)."""
    if seg.max_timestamp >= 0:
        return seg.max_timestamp
    try:
        return int(os.stat(seg.path).st_mtime * 1000)
    except FileNotFoundError:
        return -1


def expired_segments(plog: PartitionLog, now_ms: int) -> list[Segment]:
    """The oldest segments retention may delete now, in order. The active segment is included only when the whole
    log has outlived retention.ms; the caller then rolls it first."""
    cfg = plog.config
    segs = plog.segments
    doomed: list[Segment] = []
    # Segments entirely below the log start offset (DeleteRecords) go whatever the cleanup policy. A segment's
    # range ends where the next one starts (cleaning may have emptied its tail, so not at its own next offset).
    for seg, following in zip(segs, segs[1:]):
        if following.base_offset > plog.log_start_offset:
            break
        doomed.append(seg)
    if not cfg.delete:
        return doomed
    if cfg.retention_ms >= 0:
        horizon = now_ms - cfg.retention_ms
        for seg in segs[len(doomed):]:
            if seg.size == 0 or _largest_timestamp(seg) >= horizon:
                break
            doomed.append(seg)
    if cfg.retention_bytes >= 0:
        excess = plog.size_bytes - sum(s.size for s in doomed) - cfg.retention_bytes
        for seg in segs[len(doomed):-1]:
            if excess - seg.size < 0:
                break
            excess -= seg.size
            doomed.append(seg)
    return doomed


def unlink_segment_files(directory: str, base_offset: int) -> None:
    """Remove a segment's files (log, indexes, aborted-transaction index); missing ones are fine."""
    stem = os.path.join(directory, segment_name(base_offset))
    for suffix in SEGMENT_SUFFIXES:
        try:
            os.unlink(stem + suffix)
        except FileNotFoundError:
            pass


class SegmentGraveyard:
    """Removed segments whose descriptors are closed after a grace period rather than at once."""

    def __init__(self, grace_s: float = CLOSE_GRACE_S) -> None:
        self.grace_s = grace_s
        self._buried: list[tuple[float, Segment]] = []

    def bury(self, segments: list[Segment]) -> None:
        deadline = time.monotonic() + self.grace_s
        self._buried.extend((deadline, s) for s in segments)

    def sweep(self, force: bool = False) -> None:
        now = time.monotonic()
        keep = []
        for deadline, seg in self._buried:
            if force or deadline <= now:
                seg.close()
            else:
                keep.append((deadline, seg))
        self._buried = keep


class RetentionService:
    """Broker service: enforce retention on every partition every `log.retention.check.interval.ms`."""

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.graveyard = SegmentGraveyard()
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self.graveyard.sweep(force=True)

    async def _run(self) -> None:
        interval = self.broker.config.log_retention_check_interval_ms / 1000
        while True:
            await asyncio.sleep(interval)
            try:
                await self.check()
            except Exception:  # one bad partition must not stop retention for the others
                log.exception("retention check failed")

    async def check(self, now_ms: int | None = None) -> int:
        """One pass over all partitions; returns how many segments were deleted."""
        self.graveyard.sweep()
        deleted = 0
        for topic in list(self.broker.topics.topics.values()):
            for plog in list(topic.logs):
                deleted += await self.enforce(plog, now_ms)
        return deleted

    async def enforce(self, plog: PartitionLog, now_ms: int | None = None) -> int:
        """Delete what retention (or a moved log start) allows in one partition; returns the segment count."""
        cleaner = getattr(self.broker, "cleaner", None)
        if cleaner is not None and cleaner.is_cleaning(plog):
            return 0  # the cleaner is rewriting these segments; the next check will see the result
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        doomed = expired_segments(plog, now_ms)
        if not doomed:
            return 0
        if doomed[-1] is plog.active:
            plog.roll()
        plog.remove_segments(doomed)
        log.info("%s: retention deleted %d segment(s); log start offset now %d",
                 plog.directory, len(doomed), plog.log_start_offset)
        self.graveyard.bury(doomed)
        try:
            # The new log start is durable before the files go, so a crash never resurrects readable data.
            await asyncio.to_thread(_persist_and_unlink, plog, [s.base_offset for s in doomed])
        except OSError as exc:  # the topic may have been deleted meanwhile
            log.debug("%s: retention file removal: %s", plog.directory, exc)
        return len(doomed)


def _persist_and_unlink(plog: PartitionLog, bases: list[int]) -> None:
    plog.write_log_start_offset()
    for base in bases:
        unlink_segment_files(plog.directory, base)

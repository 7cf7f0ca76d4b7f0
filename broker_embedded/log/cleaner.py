"""The log cleaner: a broker service that compacts partitions of `cleanup.policy=compact` topics.

Every `log.cleaner.backoff.ms` it picks the dirtiest compacted partition whose dirty ratio (dirty bytes over all
cleanable bytes) reaches `min.cleanable.dirty.ratio` (or whose oldest dirty data is older than
`max.compaction.lag.ms`), snapshots what the pass needs on the event loop, runs the pass (cleaner_pass.py) in a
child process (cleaner_worker.py; in a thread with `log_cleaner_subprocess=False`), and adopts the swapped segments
back on the loop. Produce and fetch keep running meanwhile: the pass only reads closed segments through descriptors
of its own, and until the hand-off the loop keeps serving the old segment objects, whose open descriptors still see
the old files. Where the cleaning stopped (the first dirty
offset) is kept in `cleaner-offset-checkpoint` in the partition's directory.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
import weakref
from typing import TYPE_CHECKING

from .cleaner_pass import CleaningAborted, CleanJob, CleanResult, SegmentInfo, run_pass
from .durable import write_atomically
from .cleaner_worker import run_pass_in_worker
from .config import NEVER
from .partition import PartitionLog
from .retention import SegmentGraveyard

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "cleaner-offset-checkpoint"


def _info(seg) -> SegmentInfo:
    return SegmentInfo(seg.base_offset, seg.path, seg.size, seg.next_offset, seg.max_timestamp, seg)


def read_checkpoint(directory: str) -> int:
    """The first dirty offset recorded for a partition (0 when none: everything is dirty)."""
    try:
        with open(os.path.join(directory, CHECKPOINT_FILE)) as f:
            return int(f.read().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_checkpoint(directory: str, offset: int) -> None:
    write_atomically(os.path.join(directory, CHECKPOINT_FILE), str(offset))


def plan_cleaning(plog: PartitionLog, first_dirty: int, stable: int, now_ms: int,
                  force: bool = False) -> tuple[float, CleanJob] | None:
    """The dirty ratio and the job for one partition whose cleaning stopped at `first_dirty` and whose last
    stable offset is `stable`, or None when it is not due (on the event loop: it snapshots the segments)."""
    cfg = plog.config
    closed = plog.segments[:-1]
    if not cfg.compact or not closed:
        return None
    lag_horizon = now_ms - cfg.min_compaction_lag_ms
    end_index = 0
    for seg in closed:
        if seg.next_offset > stable or (cfg.min_compaction_lag_ms and seg.max_timestamp > lag_horizon):
            break
        end_index += 1
    dirty_index = next((i for i, s in enumerate(closed) if s.next_offset > first_dirty), len(closed))
    clean_bytes = sum(s.size for s in closed[:dirty_index])
    dirty_bytes = sum(s.size for s in closed[dirty_index:end_index])
    if dirty_bytes == 0:
        return None
    ratio = dirty_bytes / (clean_bytes + dirty_bytes)
    overdue = (cfg.max_compaction_lag_ms < NEVER
               and 0 <= closed[dirty_index].max_timestamp < now_ms - cfg.max_compaction_lag_ms)
    if not (force or overdue or ratio >= cfg.min_cleanable_dirty_ratio):
        return None
    job = CleanJob(
        directory=plog.directory, segments=[_info(s) for s in closed], active=_info(plog.active),
        log_start=plog.log_start_offset, first_dirty=first_dirty, end_index=end_index,
        delete_retention_ms=cfg.delete_retention_ms, segment_bytes=cfg.segment_bytes,
        index_interval=cfg.index_interval_bytes,
    )
    return ratio, job


def adopt(plog: PartitionLog, result: CleanResult) -> list:
    """The hand-off, on the loop: each swapped group's new segment replaces the old ones in memory in one step.
    Returns the replaced segments (their descriptors are the caller's to close, after a grace period)."""
    replaced = []
    for group, cleaned in result.groups:
        old = [info.segment for info in group]
        if plog.replace_segments(old, cleaned):
            replaced += old
        else:
            cleaned.close()
    return replaced


class LogCleaner:
    """Broker service compacting `cleanup.policy=compact` partitions in the background."""

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.graveyard = SegmentGraveyard()
        self.passes = 0
        self.results: list[CleanResult] = []  # recent passes, for the bench and for tests that wait on them
        self._first_dirty: weakref.WeakKeyDictionary[PartitionLog, int] = weakref.WeakKeyDictionary()
        self._busy: set[int] = set()
        self._task: asyncio.Task | None = None
        self._job: CleanJob | None = None
        self._thread: asyncio.Future | None = None
        self._lock = asyncio.Lock()

    # ---- service lifecycle ----

    async def start(self) -> None:
        if self.broker.config.log_cleaner_enable:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._job is not None:
            self._job.abort.set()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        # The pass ignores cancellation: wait until it has reached a safe point and returned.
        if self._thread is not None and not self._thread.done():
            await asyncio.wait([self._thread])
        self.graveyard.sweep(force=True)

    async def _run(self) -> None:
        backoff = self.broker.config.log_cleaner_backoff_ms / 1000
        while True:
            try:
                result = await self.clean_dirtiest()
            except Exception:  # a failed pass leaves the old segments in place; try again later
                log.exception("log cleaner pass failed")
                result = None
            await asyncio.sleep(0 if result is not None else backoff)

    def is_cleaning(self, plog: PartitionLog) -> bool:
        """Whether a pass over `plog` is running (retention leaves such a partition for its next check)."""
        return id(plog) in self._busy

    # ---- choosing what to clean ----

    def first_dirty(self, plog: PartitionLog) -> int:
        offset = self._first_dirty.get(plog)
        if offset is None:
            offset = read_checkpoint(plog.directory)
            self._first_dirty[plog] = offset
        return max(offset, plog.log_start_offset)

    def plan(self, plog: PartitionLog, now_ms: int, force: bool = False) -> tuple[float, CleanJob] | None:
        """The dirty ratio and the job for one partition, or None when it is not due for cleaning."""
        return plan_cleaning(plog, self.first_dirty(plog), self.broker.last_stable_offset(plog), now_ms, force)

    async def clean_dirtiest(self, now_ms: int | None = None) -> CleanResult | None:
        """Clean the partition with the highest dirty ratio among those due; None when none is."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        best: tuple[float, PartitionLog, CleanJob] | None = None
        for topic in list(self.broker.topics.topics.values()):
            for plog in topic.logs:
                planned = self.plan(plog, now_ms)
                if planned and (best is None or planned[0] > best[0]):
                    best = (planned[0], plog, planned[1])
        if best is None:
            return None
        return await self._clean(best[1], best[2])

    async def clean(self, plog: PartitionLog, force: bool = True) -> CleanResult | None:
        """Clean one partition now (tests and the bench), whatever its dirty ratio when `force`."""
        planned = self.plan(plog, int(time.time() * 1000), force=force)
        if planned is None:
            return None
        return await self._clean(plog, planned[1])

    # ---- running a pass ----

    async def _clean(self, plog: PartitionLog, job: CleanJob) -> CleanResult | None:
        async with self._lock:
            if self._thread is not None and not self._thread.done():
                await asyncio.wait([self._thread])  # a pass cancelled from its task may still be finishing
            self._busy.add(id(plog))
            job.max_bytes_per_second = self.broker.config.log_cleaner_io_max_bytes_per_second
            self._job = job
            try:
                if self.broker.config.log_cleaner_subprocess:
                    self._thread = asyncio.ensure_future(run_pass_in_worker(job))
                else:
                    self._thread = asyncio.get_running_loop().run_in_executor(None, run_pass, job)
                result = await asyncio.shield(self._thread)
            finally:
                self._busy.discard(id(plog))
                self._job = None
            self._adopt(plog, result)
            if isinstance(result.error, CleaningAborted):
                return None
            if result.error is not None:
                raise result.error
            if result.first_dirty >= 0:
                self._first_dirty[plog] = result.first_dirty
                try:
                    await asyncio.to_thread(write_checkpoint, plog.directory, result.first_dirty)
                except OSError as exc:  # the topic was deleted meanwhile
                    log.debug("%s: cleaner checkpoint: %s", plog.directory, exc)
            self.passes += 1
            self.results = self.results[-99:] + [result]
            if result.groups:
                log.info("%s: cleaned %d bytes into %d in %.2fs, kept %d of %d records", plog.directory,
                         result.bytes_read, result.bytes_written, result.seconds, result.records_kept,
                         result.records_read)
            return result

    def _adopt(self, plog: PartitionLog, result: CleanResult) -> None:
        self.graveyard.bury(adopt(plog, result))
        self.graveyard.sweep()

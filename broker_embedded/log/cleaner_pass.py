"""One cleaning pass over a compacted partition, run in a worker thread: it reads the segment files through its own
descriptors, writes cleaned replacements and swaps them in on disk; the event loop then adopts the new segments.

The pass follows Kafka's log cleaner:
- the dirty section is [first dirty offset, end), where `end` stops at the active segment, the last stable offset,
  the first undecided transaction and `min.compaction.lag.ms`; only whole segments are cleaned;
- an offset map (key -> last offset) is built over the dirty section, ignoring aborted and control records;
- every segment from the log start to `end` is rewritten keeping a record only if no later offset in the map has its
  key; tombstones and transaction markers are dropped once their segment is older than the delete horizon (the
  last cleaned segment's mtime minus `delete.retention.ms`), markers only once no data of their transaction is left;
- records of aborted transactions are dropped (a transaction is aborted when an abort marker of its producer
  follows its batches), and the last batch of every producer is kept, empty if need be, as Kafka keeps it, so
  that producer state rebuilt from the log stays right;
- consecutive segments are merged while their sizes sum to at most `segment.bytes`, and a group cleaned down to
  nothing joins the next one.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

from .batch import HEADER_SIZE, BatchHeader
from .cleaner_batch import (control_type, iter_file_headers, placeholder_batch, read_batch, read_records,
                            record_spans, records_body, rewrite_batch)
from .records import ABORT
from .cleaner_swap import cleaned_paths, commit_swap, complete_swap
from .cleaner_throttle import IoThrottle
from .segment import Segment, iter_file_batches

log = logging.getLogger(__name__)

_INDEX_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
INFINITY = 2**63 - 1
_MAX_RELATIVE = 2**31 - 1  # offsets in a segment's index are 4-byte deltas from its base


class CleaningAborted(Exception):
    """The broker is stopping: the pass stopped at a safe point."""


@dataclass(slots=True)
class SegmentInfo:
    """What the pass needs of a segment, captured on the event loop (the Segment object stays there)."""

    base: int
    path: str
    size: int
    next_offset: int
    max_timestamp: int
    segment: Segment | None = None


@dataclass(slots=True)
class CleanJob:
    """Everything one pass needs, snapshotted on the event loop."""

    directory: str
    segments: list[SegmentInfo]  # the closed segments, oldest first
    active: SegmentInfo
    log_start: int
    first_dirty: int
    end_index: int  # how many leading closed segments are cleanable as far as the loop can tell
    delete_retention_ms: int
    segment_bytes: int
    index_interval: int
    max_bytes_per_second: float = math.inf  # log.cleaner.io.max.bytes.per.second (read + written)
    abort: threading.Event = field(default_factory=threading.Event)
    # In a worker process: told of each group swapped on disk (its sources, the end of their offset range) instead
    # of opening the new segment, which the broker's process does.
    on_swapped: Callable[[list[SegmentInfo], int], None] | None = None
    share_gil: bool = True  # False in a worker process: no need to stop every 0.5 ms for the event loop


@dataclass(slots=True)
class CleanResult:
    """What the pass did: the groups swapped on disk (source infos, new segment) and figures for the bench."""

    groups: list[tuple[list[SegmentInfo], Segment | None]] = field(default_factory=list)
    first_dirty: int = -1
    bytes_read: int = 0  # bytes of log rewritten (the dirty section is also read once more, for the map)
    bytes_written: int = 0
    records_read: int = 0
    records_kept: int = 0
    seconds: float = 0.0
    throttled_seconds: float = 0.0  # of `seconds`, asleep because of log.cleaner.io.max.bytes.per.second
    error: BaseException | None = None


@dataclass(slots=True)
class _LogFacts:
    """Transaction outcomes and producer bookkeeping gathered from the batch headers of the whole log."""

    aborted: set[int]  # base offsets of data batches of aborted transactions
    last_of_producer: dict[int, int]  # producer id -> base offset of its last batch
    first_undecided: int  # first offset of a transaction with no marker yet


def scan_log(job: CleanJob, throttle: IoThrottle) -> _LogFacts:
    """Walk every batch header (control batches in full) to learn which transactions aborted."""
    aborted: set[int] = set()
    last: dict[int, int] = {}
    open_txn: dict[int, list[int]] = {}
    for info in job.segments + [job.active]:
        for pos, h in iter_file_headers(info.path, info.size):
            throttle.account(HEADER_SIZE)
            pid = h.producer_id
            if pid < 0:
                continue
            last[pid] = h.base_offset
            if h.is_control:
                batches = open_txn.pop(pid, [])
                if control_type(read_batch(info.path, pos, h.size), h) == ABORT:
                    aborted.update(batches)
            elif h.is_transactional:
                open_txn.setdefault(pid, []).append(h.base_offset)
    undecided = min((b[0] for b in open_txn.values()), default=INFINITY)
    return _LogFacts(aborted, last, undecided)


def _mtime_ms(path: str) -> int:
    return os.stat(path).st_mtime_ns // 1_000_000


def build_offset_map(job: CleanJob, infos: list[SegmentInfo], facts: _LogFacts, throttle: IoThrottle) -> dict:
    """key -> offset of its last record in the dirty section (tombstones included)."""
    latest: dict[bytes, int] = {}
    log_start = job.log_start
    for info in infos:
        for _pos, h, raw in iter_file_batches(info.path, info.size):
            if job.abort.is_set():
                raise CleaningAborted()
            if h.is_control or h.last_offset < log_start or h.base_offset in facts.aborted:
                continue
            throttle.account(h.size)
            records = read_records(raw, h, records_body(raw, h))
            if h.base_offset >= log_start:  # offsets only grow: the last record of a key wins
                latest.update([(r.key, r.offset) for r in records if r.key is not None])
            else:
                latest.update([(r.key, r.offset) for r in records if r.key is not None and r.offset >= log_start])
            throttle.records()
    return latest


def plan_groups(infos: list[SegmentInfo], segment_bytes: int) -> list[list[SegmentInfo]]:
    """Consecutive segments merged while their total size stays within segment.bytes."""
    groups: list[list[SegmentInfo]] = []
    size = 0
    for info in infos:
        if groups and size + info.size <= segment_bytes:
            groups[-1].append(info)
            size += info.size
        else:
            groups.append([info])
            size = info.size
    return groups


class _CleanedWriter:
    """Writes one cleaned segment and its indexes, the way Segment indexes what it appends."""

    def __init__(self, directory: str, base: int, index_interval: int) -> None:
        self.base = base
        self.paths = cleaned_paths(directory, base)
        self.file = open(self.paths[0], "wb", buffering=1024 * 1024)
        self.index = bytearray()
        self.time_index = bytearray()
        self.interval = index_interval
        self.size = 0
        self.max_ts = -1
        self._since_index = 0
        self._indexed = False

    def write(self, batch: bytes, base_offset: int, max_ts: int) -> None:
        if not self._indexed or self._since_index >= self.interval:
            self.index += _INDEX_ENTRY.pack(base_offset - self.base, self.size)
            self._since_index = 0
            self._indexed = True
            if max_ts > self.max_ts:
                self.time_index += _TIME_ENTRY.pack(max_ts, base_offset - self.base)
        self._since_index += len(batch)
        self.max_ts = max(self.max_ts, max_ts)
        self.file.write(batch)
        self.size += len(batch)

    def finish(self, mtime_ns: int) -> None:
        """fsync everything; the log keeps the newest source mtime (the delete horizon is computed from it)."""
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        for path, data in ((self.paths[1], self.index), (self.paths[2], self.time_index)):
            with open(path, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.utime(self.paths[0], ns=(mtime_ns, mtime_ns))

    def discard(self) -> None:
        self.file.close()
        for path in self.paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass


def run_pass(job: CleanJob) -> CleanResult:
    """Clean the partition described by `job` (in a worker thread). Never raises: a failure (or CleaningAborted,
    when the broker stops) is in `result.error`, and the groups swapped on disk before it are in `result.groups`,
    since the loop must adopt those whatever happened after them."""
    started = time.monotonic()
    result = CleanResult()
    throttle = IoThrottle(job.max_bytes_per_second, yield_gil=job.share_gil)
    try:
        _run_pass(job, result, throttle)
    except BaseException as exc:
        result.error = exc
    result.seconds = time.monotonic() - started
    result.throttled_seconds = throttle.slept
    return result


def _run_pass(job: CleanJob, result: CleanResult, throttle: IoThrottle) -> None:
    facts = scan_log(job, throttle)
    end_index = job.end_index
    while end_index > 0 and job.segments[end_index - 1].next_offset > facts.first_undecided:
        end_index -= 1
    dirty_index = next((i for i, s in enumerate(job.segments) if s.next_offset > job.first_dirty), len(job.segments))
    if dirty_index >= end_index:
        return
    mtimes = {s.base: _mtime_ms(s.path) for s in job.segments[:end_index]}
    offset_map = build_offset_map(job, job.segments[dirty_index:end_index], facts, throttle)
    horizon = mtimes[job.segments[dirty_index - 1].base] - job.delete_retention_ms if dirty_index > 0 else 0
    txn_has_data: dict[int, bool] = {}
    following = job.segments[end_index:] + [job.active]

    def group_end(group: list[SegmentInfo]) -> int:
        return following[0].base if group[-1] is job.segments[end_index - 1] else \
            job.segments[job.segments.index(group[-1]) + 1].base

    groups = plan_groups(job.segments[:end_index], job.segment_bytes)
    writer: _CleanedWriter | None = None
    pending: list[SegmentInfo] = []  # the sources written into `writer` so far
    last = None
    for n, group in enumerate(groups):
        if job.abort.is_set():
            raise CleaningAborted()
        if writer is None:
            writer = _CleanedWriter(job.directory, group[0].base, job.index_interval)
            pending, last = [], None
        try:
            for info in group:
                last = _clean_segment(job, info, mtimes[info.base] <= horizon, offset_map, facts, txn_has_data,
                                      writer, result, throttle) or last
            pending += group
            end = group_end(group)
            # A group cleaned down to nothing joins the next one rather than becoming a segment of its own: a run
            # of segments holding one empty batch each makes a consumer fetch nothing time after time (librdkafka
            # doubles its fetch size at each and gives up with MSG_SIZE_TOO_LARGE).
            if writer.size == 0 and n + 1 < len(groups) and group_end(groups[n + 1]) - writer.base < _MAX_RELATIVE:
                continue
            if writer.size == 0 and last is not None:
                writer.write(placeholder_batch(last), last.base_offset, last.max_timestamp)
            writer.finish(max(os.stat(i.path).st_mtime_ns for i in pending))
        except BaseException:
            writer.discard()
            raise
        result.bytes_written += writer.size
        base, writer = writer.base, None
        commit_swap(job.directory, base, end)
        complete_swap(job.directory, base, end)
        if job.on_swapped is not None:
            job.on_swapped(pending, end)
            result.groups.append((pending, None))
        else:
            result.groups.append((pending, open_cleaned(job, base)))
    result.first_dirty = following[0].base


def open_cleaned(job: CleanJob, base: int) -> Segment:
    """The Segment object for a group swapped in at `base` (its indexes were written with it)."""
    cleaned = Segment(job.directory, base, job.index_interval)
    cleaned.load(validate=False)
    return cleaned


def _clean_segment(job: CleanJob, info: SegmentInfo, past_horizon: bool, offset_map: dict, facts: _LogFacts,
                   txn_has_data: dict[int, bool], writer: _CleanedWriter, result: CleanResult,
                   throttle: IoThrottle) -> BatchHeader | None:
    """Write what survives of one segment; return the header of its last batch at or past the log start."""
    log_start = job.log_start
    last = None
    for _pos, h, raw in iter_file_batches(info.path, info.size):
        if job.abort.is_set():
            raise CleaningAborted()
        result.bytes_read += h.size
        throttle.account(h.size)
        if h.last_offset < log_start:
            continue
        last = h
        pid = h.producer_id
        base = h.base_offset
        keep_empty = pid >= 0 and facts.last_of_producer.get(pid) == base
        if h.is_control:
            if txn_has_data.pop(pid, False) or not past_horizon or keep_empty:
                writer.write(raw, base, h.max_timestamp)
                throttle.account(h.size)
            continue
        body = records_body(raw, h)
        kept: list[tuple[int, int]] = []  # (index, timestamp) of the records that stay
        if base not in facts.aborted:
            latest = offset_map.get
            for i, rec in enumerate(read_records(raw, h, body)):
                offset = rec.offset
                if offset < log_start:
                    continue
                key = rec.key
                if key is not None and latest(key, -1) > offset:
                    continue
                if past_horizon and rec.value is None:  # a tombstone
                    continue
                kept.append((i, rec.timestamp))
            throttle.records()
        result.records_read += h.record_count
        result.records_kept += len(kept)
        if kept and len(kept) == h.record_count:
            out = raw  # nothing removed: the batch is copied whole
        elif kept or keep_empty:
            spans = record_spans(body, h.record_count)
            base_ts = h.base_timestamp
            out = rewrite_batch(raw, h, body, [(*spans[i], ts - base_ts) for i, ts in kept])
        else:
            continue
        if h.is_transactional:
            txn_has_data[pid] = True
        writer.write(out, base, h.max_timestamp if out is raw else _max_ts(out))
        throttle.account(len(out))
    return last


def _max_ts(batch: bytes) -> int:
    return struct.unpack_from(">q", batch, 35)[0]

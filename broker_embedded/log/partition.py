"""A partition's log: an ordered list of segments, offsets, reads and recovery."""

from __future__ import annotations

import asyncio
import logging
import os
import struct
import threading
import time
from bisect import bisect_right

from .batch import BatchHeader, set_base_offset, set_log_append_time
from .cleaner_swap import recover_swaps
from .durable import fsync_directory, write_atomically
from .config import LogConfig
from .records import iter_records
from .region import FileRegion
from .segment import Segment

log = logging.getLogger(__name__)

CLEAN_SHUTDOWN = ".clean_shutdown"
LOG_START_FILE = "log-start-offset"


LEADER_EPOCH = 0
_LEADER_EPOCH = struct.Struct(">i")


class OffsetOutOfRange(Exception):
    """The requested offset is before the log start or after the log end."""


class LogDeleted(Exception):
    """The partition was deleted (its topic went away) before the operation on it completed."""


class PartitionLog:
    """The durable log of one partition: append batches, read them back by offset or timestamp."""

    def __init__(self, directory: str, config: LogConfig) -> None:
        self.directory = directory
        self.config = config
        self.segments: list[Segment] = []
        self._bases: list[int] = []
        self.log_start_offset = 0
        self.unflushed_messages = 0
        self.last_flush = time.monotonic()
        self._waiters: list[asyncio.Future] = []
        self._rolled: list[Segment] = []
        self._new_files = False
        self._log_start_lock = threading.Lock()
        # Held by the flusher's thread while it fsyncs this log, and by close/delete while they close its
        # descriptors: an fsync must never meet a closed descriptor, or a number reused by another file or socket.
        self.io_lock = threading.Lock()
        self.closed = False

    # ---- lifecycle ----

    def open(self) -> None:
        """Load the segments on disk; validate the tail after an unclean shutdown and truncate what is torn."""
        os.makedirs(self.directory, exist_ok=True)
        marker = os.path.join(self.directory, CLEAN_SHUTDOWN)
        clean = os.path.exists(marker)
        recover_swaps(self.directory)
        bases = sorted(int(n[:-4]) for n in os.listdir(self.directory) if n.endswith(".log") and n[:-4].isdigit())
        for i, base in enumerate(bases):
            seg = Segment(self.directory, base, self.config.index_interval_bytes)
            last = i == len(bases) - 1
            seg.load(validate=last and not clean)
            if seg.size == 0 and not last:
                seg.delete()
                continue
            self.segments.append(seg)
        if clean:
            os.unlink(marker)
        self.log_start_offset = self._read_log_start()
        if not self.segments:
            self.segments.append(Segment(self.directory, self.log_start_offset, self.config.index_interval_bytes))
            self._new_files = True
        self._bases = [s.base_offset for s in self.segments]
        self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)

    def _read_log_start(self) -> int:
        try:
            with open(os.path.join(self.directory, LOG_START_FILE)) as f:
                return int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            return 0

    def close(self) -> None:
        """Flush and close; leave a marker so that the next start can skip validation (not if the flush failed:
        then the next start validates the tail)."""
        flushed = True
        try:
            self.flush()
        except OSError as exc:
            flushed = False
            log.error("cannot flush %s on close: %s", self.directory, exc)
        with self.io_lock:
            self.closed = True
            for seg in self.segments:
                seg.close()
        if flushed:
            try:
                with open(os.path.join(self.directory, CLEAN_SHUTDOWN), "w"):
                    pass
            except OSError as exc:
                log.warning("cannot mark %s cleanly shut down: %s", self.directory, exc)
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)

    # ---- offsets ----

    @property
    def active(self) -> Segment:
        return self.segments[-1]

    @property
    def log_end_offset(self) -> int:
        return self.active.next_offset

    @property
    def high_watermark(self) -> int:
        # A single node is its own ISR: what is appended is replicated.
        return self.active.next_offset

    @property
    def size_bytes(self) -> int:
        return sum(s.size for s in self.segments)

    # ---- append ----

    def append(self, data: bytearray, batches: list[tuple[int, BatchHeader]]) -> int:
        """Assign offsets to the validated batches in `data`, write them, wake fetchers; return the base offset."""
        cfg = self.config
        seg = self.active
        if seg.size and (
            seg.size + len(data) > cfg.segment_bytes or (time.time() - seg.created) * 1000 >= cfg.segment_ms
        ):
            seg = self._roll()
        first = next_offset = seg.next_offset
        now_ms = int(time.time() * 1000) if cfg.log_append_time else 0
        placed = []
        count = 0
        for pos, header in batches:
            set_base_offset(data, pos, next_offset)
            header.base_offset = next_offset
            # As Kafka's leader does, stamp the leader epoch (0 on this node, forever; the CRC does not cover it):
            # consumers keep it in their positions and validate them with OffsetForLeaderEpoch, which knows epoch 0.
            _LEADER_EPOCH.pack_into(data, pos + 12, LEADER_EPOCH)
            header.leader_epoch = LEADER_EPOCH
            if now_ms:
                set_log_append_time(data, pos, header, now_ms)
            placed.append((pos, next_offset, header.size, header.max_timestamp))
            next_offset += header.last_offset_delta + 1
            count += header.record_count
        if seg.size == 0:
            seg.created = time.time()
        seg.append(data, placed, next_offset)
        self.unflushed_messages += count
        self._wake()
        return first

    def _roll(self) -> Segment:
        old = self.active
        seg = Segment(self.directory, old.next_offset, self.config.index_interval_bytes)  # may fail: disk full
        self._rolled.append(old)
        self.segments.append(seg)
        self._bases.append(seg.base_offset)
        self._new_files = True
        return seg

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(None)

    def wait_for_append(self) -> asyncio.Future:
        """A future resolved at the next append (for long-polling fetches)."""
        fut = asyncio.get_running_loop().create_future()
        if len(self._waiters) >= 64:
            # Long polls that timed out leave cancelled futures behind on a partition nobody writes to.
            self._waiters = [w for w in self._waiters if not w.done()]
        self._waiters.append(fut)
        return fut

    # ---- durability ----

    def needs_flush(self) -> bool:
        return bool(self._rolled) or self.active.dirty or self._new_files

    def flush_targets(self) -> tuple[list[Segment], bool]:
        """Take the segments to fsync and whether the directory needs it too (called on the event loop, before
        the fsyncs run in a thread)."""
        targets = self._rolled + [self.active]
        self._rolled = []
        self.unflushed_messages = 0
        self.last_flush = time.monotonic()
        return targets, self._new_files

    def flush(self) -> None:
        """fsync synchronously (shutdown and tests)."""
        segments, sync_dir = self.flush_targets()
        try:
            self.sync(segments, sync_dir)
        except OSError:
            self.flush_failed(segments, sync_dir)
            raise

    def sync(self, segments: list[Segment], sync_dir: bool) -> None:
        """fsync what `flush_targets` returned (blocking: the flusher runs it in a thread). Raises LogDeleted if
        the log was closed or deleted meanwhile, OSError if an fsync fails."""
        with self.io_lock:
            if self.closed:
                raise LogDeleted(f"{self.directory} was closed or deleted before its data reached the disk")
            for seg in segments:
                seg.flush()
            if sync_dir:
                self.sync_directory()

    def flush_failed(self, segments: list[Segment], sync_dir: bool) -> None:
        """Take back what a failed sync owed (called on the event loop): rolled segments that are still part of
        the log stay due, and so does the directory entry of a new file."""
        live = {id(s) for s in self.segments}
        due = {id(s) for s in self._rolled}
        back = [s for s in segments if s is not self.active and id(s) in live and id(s) not in due]
        self._rolled = back + self._rolled
        for seg in segments:
            seg.dirty = True
        if sync_dir:
            self._new_files = True

    def sync_directory(self) -> None:
        self._new_files = False
        try:
            fsync_directory(self.directory)
        except OSError:
            self._new_files = True
            raise

    # ---- reads ----

    def _segment_index(self, offset: int) -> int:
        return max(0, bisect_right(self._bases, offset) - 1)

    def read(self, offset: int, max_bytes: int, upper: int | None = None, min_one: bool = True) -> bytes:
        """Batches from the one holding `offset`, at most `max_bytes` (but at least one whole batch unless
        `min_one` is false: then nothing when the first batch does not fit), and nothing at or past `upper`
        (default: the high watermark). Raises OffsetOutOfRange."""
        found = self._range(offset, max_bytes, upper, min_one)
        if found is None:
            return b""
        seg, pos, length = found
        return seg.read(pos, pos + length)

    def read_region(self, offset: int, max_bytes: int, upper: int | None = None,
                    min_one: bool = True) -> FileRegion | bytes:
        """What `read` returns, as a region of the segment file to send without copying it (b"" if nothing)."""
        found = self._range(offset, max_bytes, upper, min_one)
        if found is None:
            return b""
        seg, pos, length = found
        return FileRegion(seg.fd, pos, length)

    def _range(self, offset: int, max_bytes: int, upper: int | None, min_one: bool) -> tuple[Segment, int, int] | None:
        """(segment, position, length) of what `read` returns, None for nothing."""
        hw = self.high_watermark
        if offset < self.log_start_offset or offset > hw:
            raise OffsetOutOfRange(offset)
        limit = hw if upper is None else min(upper, hw)
        if offset >= limit:
            return None
        i = self._segment_index(offset)
        while i < len(self.segments):
            seg = self.segments[i]
            found = seg.locate(offset)
            if found is not None:
                break
            i += 1
        else:
            return None
        pos, first_size = found
        end = seg.size if limit >= seg.next_offset else seg.position_of(limit)
        if end <= pos or (not min_one and first_size > max_bytes):
            return None
        length = min(end - pos, max(first_size, max_bytes))
        if pos + length == end and limit >= seg.next_offset:
            seg.remember_resume(seg.next_offset, end)
        return seg, pos, length

    def offset_for_timestamp(self, timestamp: int) -> tuple[int, int] | None:
        """(offset, timestamp) of the first record with timestamp >= `timestamp`, or None."""
        for seg in self.segments:
            if seg.max_timestamp < timestamp:
                continue
            for pos, header in seg.batches_from(seg.time_lookup_position(timestamp)):
                if header.max_timestamp < timestamp or header.is_control:
                    continue
                for rec in iter_records(seg.read(pos, pos + header.size), header):
                    if rec.timestamp >= timestamp and rec.offset >= self.log_start_offset:
                        return rec.offset, rec.timestamp
        return None

    def offset_of_max_timestamp(self) -> tuple[int, int] | None:
        """(offset, timestamp) of the record with the largest timestamp (ListOffsets MAX_TIMESTAMP)."""
        best: tuple[int, int] | None = None
        for seg in self.segments:
            if seg.size == 0 or (best and seg.max_timestamp <= best[1]):
                continue
            for pos, header in seg.batches_from(0):
                if header.is_control or (best and header.max_timestamp <= best[1]):
                    continue
                for rec in iter_records(seg.read(pos, pos + header.size), header):
                    if best is None or rec.timestamp > best[1]:
                        best = (rec.offset, rec.timestamp)
        return best

    # ---- log start, retention and cleaning (called on the event loop unless said otherwise) ----

    def advance_log_start(self, offset: int) -> bool:
        """Move the log start offset forward to `offset` (never back); True if it moved. The caller persists it
        with `write_log_start_offset` (blocking: run it in a thread)."""
        if offset <= self.log_start_offset:
            return False
        self.log_start_offset = offset
        return True

    def write_log_start_offset(self) -> None:
        """Persist the log start offset atomically (temp file, fsync, rename, fsync the directory)."""
        with self._log_start_lock:
            write_atomically(os.path.join(self.directory, LOG_START_FILE), str(self.log_start_offset))

    def roll(self) -> Segment:
        """Close the active segment and start a new one at the log end (time retention of a stale active one)."""
        return self._roll()

    def remove_segments(self, doomed: list[Segment]) -> None:
        """Drop segments from the log (their files are the caller's to unlink; their fds stay open until the
        caller closes them, so a flush in progress on them cannot fail). Never the active segment."""
        gone = {id(s) for s in doomed}
        assert id(self.active) not in gone, "the active segment cannot be removed"
        self.segments = [s for s in self.segments if id(s) not in gone]
        self._rolled = [s for s in self._rolled if id(s) not in gone]
        self._bases = [s.base_offset for s in self.segments]
        self.log_start_offset = max(self.log_start_offset, self.segments[0].base_offset)

    def replace_segments(self, group: list[Segment], cleaned: Segment) -> bool:
        """Put `cleaned` (already swapped in on disk) in place of the consecutive segments `group`; False if the
        group is no longer part of the log (the topic went away meanwhile)."""
        ids = [id(s) for s in self.segments]
        try:
            i = ids.index(id(group[0]))
        except ValueError:
            return False
        if ids[i : i + len(group)] != [id(s) for s in group] or i + len(group) >= len(self.segments):
            return False
        self.segments[i : i + len(group)] = [cleaned]
        gone = {id(s) for s in group}
        self._rolled = [s for s in self._rolled if id(s) not in gone]
        self._bases = [s.base_offset for s in self.segments]
        return True

    # ---- removal ----

    def delete(self) -> None:
        """Remove the partition's files (topic deletion); waits for an fsync of it in progress in the flusher."""
        with self.io_lock:
            self.closed = True
            for seg in self.segments:
                seg.delete()
        for fut in self._waiters:
            if not fut.done():
                fut.set_result(None)
        for name in os.listdir(self.directory):
            os.unlink(os.path.join(self.directory, name))
        os.rmdir(self.directory)

"""One log segment: a file of record batches plus a sparse offset index and a time index.

Files are named after the segment's base offset, as in Kafka: 00000000000000000042.log / .index / .timeindex.
The offset index holds (relative offset i32, position i32) every `index.interval.bytes`; the time index holds
(max timestamp i64, relative offset i32) whenever the segment's max timestamp grows past an interval. Both are
kept in memory as arrays and appended to their files; a missing or inconsistent index is rebuilt from the log.
"""

from __future__ import annotations

import errno
import logging
import os
import struct
import time
from array import array
from bisect import bisect_right
from typing import Iterator

from .batch import HEADER_SIZE, LOG_OVERHEAD, BatchHeader, InvalidBatch, batch_length_at, crc_ok, parse_header

log = logging.getLogger(__name__)

_INDEX_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
# Enough of a header to know a batch's span: baseOffset, batchLength, ..., lastOffsetDelta @23.
_SPAN = struct.Struct(">qi11xi")
_SPAN_SIZE = 27
_MAX_TS = struct.Struct(">q")
_CHUNK = 4 * 1024 * 1024


def iter_file_batches(path: str, size: int, start: int = 0) -> Iterator[tuple[int, BatchHeader, bytes]]:
    """Yield (position, header, whole batch bytes) for the batches in the first `size` bytes of a segment file,
    reading it in large sequential chunks through a descriptor of our own."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = start
        buf = b""
        buf_at = start
        while pos + HEADER_SIZE <= size:
            off = pos - buf_at
            if off + HEADER_SIZE > len(buf):
                buf, buf_at, off = os.pread(fd, min(_CHUNK, size - pos), pos), pos, 0
            header = parse_header(buf, off)
            if pos + header.size > size:
                return  # a torn tail past what the snapshot saw
            if off + header.size > len(buf):
                buf, buf_at, off = os.pread(fd, max(_CHUNK, header.size), pos), pos, 0
            yield pos, header, buf[off : off + header.size]
            pos += header.size
    finally:
        os.close(fd)


def _write_fully(fd: int, data: bytes | bytearray, at: int, path: str) -> None:
    """pwrite all of `data` at `at`; a full disk shows as a short write followed by ENOSPC."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.pwrite(fd, view[done:], at + done)
        if n <= 0:
            raise OSError(errno.ENOSPC, f"short write to {path}: {done} of {len(view)} bytes")
        done += n


def _append_fully(fd: int, data: bytes | bytearray, path: str) -> int:
    """write all of `data` to an O_APPEND descriptor; returns its length."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        n = os.write(fd, view[done:])
        if n <= 0:
            raise OSError(errno.ENOSPC, f"short write to {path}: {done} of {len(view)} bytes")
        done += n
    return done


def _open_for_append(path: str) -> tuple[int, int]:
    """An O_APPEND descriptor of an index file and its current size (kept in memory from then on, so that a
    failed append can be cut back without asking the file system)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    return fd, os.fstat(fd).st_size


def segment_name(base_offset: int) -> str:
    return f"{base_offset:020d}"


class Segment:
    """A segment of a partition's log; appends go to the newest (active) one."""

    def __init__(self, directory: str, base_offset: int, index_interval: int) -> None:
        self.directory = directory
        self.base_offset = base_offset
        self.index_interval = index_interval
        stem = os.path.join(directory, segment_name(base_offset))
        self.path = stem + ".log"
        self.index_path = stem + ".index"
        self.time_index_path = stem + ".timeindex"
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        self.size = os.fstat(self.fd).st_size
        self.next_offset = base_offset
        self.max_timestamp = -1
        self.created = time.time()
        # In-memory indexes (absolute offsets, positions; timestamps, absolute offsets).
        self.idx_offsets = array("q")
        self.idx_positions = array("q")
        self.ts_values = array("q")
        self.ts_offsets = array("q")
        self._bytes_since_index = 0
        self._index_fd: int | None = None
        self._time_fd: int | None = None
        self._index_size = 0
        self._time_size = 0
        # Fetches usually continue where the previous one ended: remember those ends.
        self._resume: dict[int, int] = {}
        self.dirty = False

    # ---- loading and recovery ----

    def load(self, validate: bool) -> None:
        """Establish next_offset, max_timestamp and the indexes; with `validate`, check every batch's CRC and
        truncate a torn or corrupt tail."""
        if not validate and self._load_indexes():
            last = self._last_batch_from(self.idx_positions[-1] if self.idx_positions else 0)
            if last is not None:
                return
        self._rebuild(validate)

    def _load_indexes(self) -> bool:
        try:
            with open(self.index_path, "rb") as f:
                raw = f.read()
            with open(self.time_index_path, "rb") as f:
                raw_ts = f.read()
        except FileNotFoundError:
            return False
        if len(raw) % 8 or len(raw_ts) % 12:
            return False
        prev = -1
        for rel, pos in _INDEX_ENTRY.iter_unpack(raw):
            if pos <= prev or pos >= self.size:
                return False
            self.idx_offsets.append(self.base_offset + rel)
            self.idx_positions.append(pos)
            prev = pos
        for ts, rel in _TIME_ENTRY.iter_unpack(raw_ts):
            self.ts_values.append(ts)
            self.ts_offsets.append(self.base_offset + rel)
        return True

    def _last_batch_from(self, pos: int) -> int | None:
        """Walk batch headers from an indexed position to the end; set next_offset and max_timestamp."""
        if self.size == 0:
            return 0
        last = None
        while pos < self.size:
            raw = os.pread(self.fd, HEADER_SIZE, pos)
            try:
                header = parse_header(raw)
            except InvalidBatch:
                return None
            if pos + header.size > self.size:
                return None
            self.next_offset = header.next_offset
            self.max_timestamp = max(self.max_timestamp, header.max_timestamp)
            last = pos
            pos += header.size
        if self.ts_values:
            self.max_timestamp = max(self.max_timestamp, self.ts_values[-1])
        return last

    def _rebuild(self, validate: bool) -> None:
        for arr in (self.idx_offsets, self.idx_positions, self.ts_values, self.ts_offsets):
            del arr[:]
        self.next_offset = self.base_offset
        self.max_timestamp = -1
        self._bytes_since_index = 0
        with open(self.path, "rb") as f:
            data = f.read()
        pos = 0
        valid_end = 0
        while pos < len(data):
            length = batch_length_at(data, pos)
            if length is None or pos + length > len(data):
                break
            try:
                header = parse_header(data, pos)
            except InvalidBatch:
                break
            if validate and not crc_ok(data, pos, header):
                break
            if header.base_offset < self.next_offset and pos:
                break
            self._note_batch(pos, header.base_offset, header.size, header.max_timestamp)
            self.next_offset = header.next_offset
            pos += header.size
            valid_end = pos
        if valid_end < len(data):
            log.warning(
                "segment %s: truncating %d bytes of torn or corrupt tail at position %d",
                self.path, len(data) - valid_end, valid_end,
            )
            os.ftruncate(self.fd, valid_end)
            os.fsync(self.fd)
        self.size = valid_end
        self._write_indexes()

    def _write_indexes(self) -> None:
        try:
            with open(self.index_path, "wb") as f:
                for off, pos in zip(self.idx_offsets, self.idx_positions):
                    f.write(_INDEX_ENTRY.pack(off - self.base_offset, pos))
            with open(self.time_index_path, "wb") as f:
                for ts, off in zip(self.ts_values, self.ts_offsets):
                    f.write(_TIME_ENTRY.pack(ts, off - self.base_offset))
        except OSError as exc:
            # A full disk at start: serve from the in-memory indexes; no index files means the next start
            # rebuilds them, while appends to half-written ones would describe the wrong positions.
            log.warning("segment %s: cannot write its indexes (%s); they will be rebuilt on the next start",
                        self.path, exc)
            for path in (self.index_path, self.time_index_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass

    def _note_batch(self, pos: int, base_offset: int, size: int, max_ts: int) -> tuple[bytes, bytes]:
        """Update the in-memory indexes for a batch at `pos`; return the index bytes to append to the files."""
        index_bytes = b""
        time_bytes = b""
        if not self.idx_positions or self._bytes_since_index >= self.index_interval:
            self.idx_offsets.append(base_offset)
            self.idx_positions.append(pos)
            index_bytes = _INDEX_ENTRY.pack(base_offset - self.base_offset, pos)
            self._bytes_since_index = 0
            if max_ts > self.max_timestamp:
                self.ts_values.append(max_ts)
                self.ts_offsets.append(base_offset)
                time_bytes = _TIME_ENTRY.pack(max_ts, base_offset - self.base_offset)
        self._bytes_since_index += size
        if max_ts > self.max_timestamp:
            self.max_timestamp = max_ts
        return index_bytes, time_bytes

    # ---- appending ----

    def append(self, data: bytes | bytearray, batches: list[tuple[int, int, int, int]], next_offset: int) -> None:
        """Append `data`, holding batches given as (position in data, base offset, size, max timestamp).

        All or nothing: if a write fails (ENOSPC on a full disk), the log file and both index files are cut back
        to where they were and the in-memory indexes restored, so that later appends and a restart see a clean log
        ending at the last whole batch; the OSError is raised.
        """
        start = self.size
        saved = (len(self.idx_offsets), len(self.ts_values), self.max_timestamp, self._bytes_since_index)
        index_bytes = bytearray()
        time_bytes = bytearray()
        for pos, base, size, max_ts in batches:
            ib, tb = self._note_batch(start + pos, base, size, max_ts)
            index_bytes += ib
            time_bytes += tb
        index_sizes: list[tuple[int, int]] = []
        try:
            if os.pwrite(self.fd, data, start) != len(data):
                _write_fully(self.fd, data, start, self.path)  # a short write: the disk is (nearly) full
            if index_bytes:
                if self._index_fd is None:
                    self._index_fd, self._index_size = _open_for_append(self.index_path)
                index_sizes.append((self._index_fd, self._index_size))
                self._index_size += _append_fully(self._index_fd, index_bytes, self.index_path)
            if time_bytes:
                if self._time_fd is None:
                    self._time_fd, self._time_size = _open_for_append(self.time_index_path)
                index_sizes.append((self._time_fd, self._time_size))
                self._time_size += _append_fully(self._time_fd, time_bytes, self.time_index_path)
        except OSError:
            self._undo_append(start, saved, index_sizes)
            raise
        self.size += len(data)
        self.next_offset = next_offset
        self.dirty = True

    def _undo_append(self, start: int, saved: tuple[int, int, int, int], index_sizes: list[tuple[int, int]]) -> None:
        """Cut the files back to their sizes before a failed append and forget its index entries."""
        n_index, n_time, self.max_timestamp, self._bytes_since_index = saved
        del self.idx_offsets[n_index:], self.idx_positions[n_index:]
        del self.ts_values[n_time:], self.ts_offsets[n_time:]
        self._resume.clear()
        try:
            os.ftruncate(self.fd, start)
            for fd, size in index_sizes:
                os.ftruncate(fd, size)
                if fd == self._index_fd:
                    self._index_size = size
                else:
                    self._time_size = size
        except OSError as exc:  # what is past self.size is never read, and the next append overwrites it
            log.error("segment %s: cannot cut a failed append back to %d bytes: %s", self.path, start, exc)

    # ---- reading ----

    def locate(self, offset: int) -> tuple[int, int] | None:
        """Position and size of the first batch whose last offset is >= `offset`, or None if there is none."""
        pos = self._resume.get(offset)
        if pos is None:
            i = bisect_right(self.idx_offsets, offset) - 1
            pos = self.idx_positions[i] if i >= 0 else 0
        size = self.size
        while pos + LOG_OVERHEAD <= size:
            base, length, last_delta = _SPAN.unpack(os.pread(self.fd, _SPAN_SIZE, pos))
            if base + last_delta >= offset:
                return pos, length + LOG_OVERHEAD
            pos += length + LOG_OVERHEAD
        return None

    def position_of(self, offset: int) -> int:
        """Position of the first batch whose base offset is >= `offset` (or the segment's size)."""
        found = self.locate(offset)
        if found is None:
            return self.size
        pos, size = found
        base = _SPAN.unpack(os.pread(self.fd, _SPAN_SIZE, pos))[0]
        return pos if base >= offset else pos + size

    def read(self, pos: int, end: int) -> bytes:
        return os.pread(self.fd, end - pos, pos)

    def remember_resume(self, next_offset: int, pos: int) -> None:
        if len(self._resume) > 256:
            self._resume.clear()
        self._resume[next_offset] = pos

    def batches_from(self, pos: int):
        """Yield (position, header) for each batch from `pos` to the end (headers only)."""
        while pos + HEADER_SIZE <= self.size:
            header = parse_header(os.pread(self.fd, HEADER_SIZE, pos))
            yield pos, header
            pos += header.size

    def time_lookup_position(self, timestamp: int) -> int:
        """A position from which to scan for the first batch with max timestamp >= `timestamp`."""
        i = bisect_right(self.ts_values, timestamp - 1) - 1
        if i < 0:
            return 0
        found = self.locate(self.ts_offsets[i])
        return found[0] if found else 0

    # ---- durability and lifecycle ----

    def flush(self) -> None:
        """fsync the log and its indexes (called from a worker thread)."""
        self.dirty = False
        os.fsync(self.fd)
        for fd in (self._index_fd, self._time_fd):
            if fd is not None:
                os.fsync(fd)

    def close(self) -> None:
        for fd in (self.fd, self._index_fd, self._time_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._index_fd = self._time_fd = None

    def delete(self) -> None:
        self.close()
        for path in (self.path, self.index_path, self.time_index_path):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass

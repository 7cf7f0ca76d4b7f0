"""Record-level work of the cleaner: walk a segment file's batches, list a batch's records, rewrite a batch
keeping some of its records.

A rewritten batch keeps its base offset, last offset delta, base timestamp, producer id, epoch and base sequence, so
every kept record keeps its offset (its offset delta is still relative to the same base) and the producer's
sequence bookkeeping still adds up. Kept records are copied as their original bytes; only the records section is
recompressed, with the batch's own codec.
"""

from __future__ import annotations

import os
import struct
from typing import Iterator

from aiokafka.record.default_records import DefaultRecordBatch
from crc32c import crc32c

from .batch import HEADER_SIZE, TIMESTAMP_LOG_APPEND, BatchHeader, parse_header
from .records import COMMIT, SNAPPY, XERIAL_MAGIC, compress, control_marker, decompress

_HEAD = struct.Struct(">qiibIhiqqqhii")
_ATTRIBUTES = struct.Struct(">h")
# aiokafka's reader may read a few bytes past a varint that runs off its buffer: it always gets zero padding.
_PAD = bytes(16)


def iter_file_headers(path: str, size: int) -> Iterator[tuple[int, BatchHeader]]:
    """Yield (position, header) for each batch, reading only the 61-byte headers."""
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos + HEADER_SIZE <= size:
            header = parse_header(os.pread(fd, HEADER_SIZE, pos))
            if pos + header.size > size:
                return
            yield pos, header
            pos += header.size
    finally:
        os.close(fd)


def read_batch(path: str, pos: int, size: int) -> bytes:
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.pread(fd, size, pos)
    finally:
        os.close(fd)


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    b = buf[pos]
    if b < 0x80:  # the common one-byte case, without the loop
        return (b >> 1) ^ -(b & 1), pos + 1
    shift = result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return (result >> 1) ^ -(result & 1), pos
        shift += 7


def records_body(raw: bytes, header: BatchHeader) -> bytes:
    """The batch's records section, decompressed."""
    return decompress(header.compression, raw[HEADER_SIZE:])


def read_records(raw: bytes, header: BatchHeader, body: bytes):
    """An iterator over the batch's records, parsed by aiokafka's C reader (each has .offset, .key, .value,
    .timestamp): the cleaner's per-record work without a Python loop over varints. `body` is
    `records_body(raw, header)`. Keep no record past its turn: the reader reuses their memory."""
    if header.compression:
        head = bytearray(raw[:HEADER_SIZE])
        _ATTRIBUTES.pack_into(head, 21, header.attributes & ~0x07)
        buf = bytes(head) + body + _PAD
    else:
        buf = bytes(raw[: header.size]) + _PAD
    return DefaultRecordBatch(memoryview(buf)[: len(buf) - len(_PAD)])


def record_spans(body: bytes, count: int) -> list[tuple[int, int]]:
    """(start, end) of each record's whole encoding in a records section: only the length prefixes are read."""
    spans = []
    pos = 0
    for _ in range(count):
        b = body[pos]
        if b < 0x80:
            end = pos + 1 + ((b >> 1) ^ -(b & 1))
        else:
            length, p = _varint(body, pos)
            end = p + length
        spans.append((pos, end))
        pos = end
    return spans


def control_type(raw: bytes, header: BatchHeader) -> int:
    """ABORT or COMMIT for a control batch (its one record's key says which)."""
    kind = control_marker(raw, header)[0]
    return COMMIT if kind < 0 else kind


def rewrite_batch(raw: bytes, header: BatchHeader, body: bytes, kept: list[tuple[int, int, int]]) -> bytes:
    """A copy of the batch holding only the records `kept`, given as (start, end, timestamp delta) in `body`
    (possibly none, for a batch retained empty). The header keeps everything that ties it to its offsets."""
    records = b"".join(body[s:e] for s, e, _t in kept)
    xerial = header.compression == SNAPPY and raw[HEADER_SIZE : HEADER_SIZE + 8] == XERIAL_MAGIC
    payload = compress(header.compression, records, xerial)
    if header.attributes & TIMESTAMP_LOG_APPEND or not kept:
        max_ts = header.max_timestamp
    else:
        max_ts = header.base_timestamp + max(t for _s, _e, t in kept)
    out = bytearray(_HEAD.pack(
        header.base_offset, HEADER_SIZE - 12 + len(payload), header.leader_epoch, 2, 0, header.attributes,
        header.last_offset_delta, header.base_timestamp, max_ts, header.producer_id, header.producer_epoch,
        header.base_sequence, len(kept),
    ))
    out += payload
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


def placeholder_batch(header: BatchHeader) -> bytes:
    """An empty batch spanning `header`'s offsets, with no producer: it keeps a cleaned segment that lost every
    record from being empty (an empty segment would be dropped on the next open, moving the log start)."""
    out = bytearray(_HEAD.pack(
        header.base_offset, HEADER_SIZE - 12, header.leader_epoch, 2, 0, header.attributes & TIMESTAMP_LOG_APPEND,
        header.last_offset_delta, header.base_timestamp, header.max_timestamp, -1, -1, -1, 0,
    ))
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)

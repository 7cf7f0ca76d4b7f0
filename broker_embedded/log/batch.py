"""RecordBatch v2 headers: parse, validate and patch the bytes a producer sent.

The log keeps the producer's bytes; the broker only looks at the 61-byte header (and the CRC over the rest).
Layout (big-endian): baseOffset i64 @0, batchLength i32 @8, partitionLeaderEpoch i32 @12, magic i8 @16,
crc u32 @17, attributes i16 @21, lastOffsetDelta i32 @23, baseTimestamp i64 @27, maxTimestamp i64 @35,
producerId i64 @43, producerEpoch i16 @51, baseSequence i32 @53, recordCount i32 @57, records @61.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from crc32c import crc32c

HEADER_SIZE = 61
# baseOffset + batchLength: what must be read to know how long a batch is.
LOG_OVERHEAD = 12
CRC_START = 21

COMPRESSION_MASK = 0x07
TIMESTAMP_LOG_APPEND = 0x08
TRANSACTIONAL = 0x10
CONTROL = 0x20

_HEADER = struct.Struct(">qiibIhiqqqhii")
_OFFSET_LEN = struct.Struct(">qi")
_I64 = struct.Struct(">q")
_U32 = struct.Struct(">I")


class InvalidBatch(ValueError):
    """The bytes are not a valid RecordBatch v2; `corrupt` says whether the CRC or framing is wrong, `unreadable`
    that its records cannot be decompressed or its codec is unknown (Kafka answers UNKNOWN_SERVER_ERROR)."""

    def __init__(self, message: str, *, corrupt: bool = True, unreadable: bool = False) -> None:
        super().__init__(message)
        self.corrupt = corrupt
        self.unreadable = unreadable


@dataclass(slots=True)
class BatchHeader:
    """The parsed fixed header of one record batch."""

    base_offset: int
    length: int  # batchLength: bytes after the length field
    leader_epoch: int
    magic: int
    crc: int
    attributes: int
    last_offset_delta: int
    base_timestamp: int
    max_timestamp: int
    producer_id: int
    producer_epoch: int
    base_sequence: int
    record_count: int

    @property
    def size(self) -> int:
        """Bytes the whole batch occupies in the log."""
        return self.length + LOG_OVERHEAD

    @property
    def last_offset(self) -> int:
        return self.base_offset + self.last_offset_delta

    @property
    def next_offset(self) -> int:
        return self.base_offset + self.last_offset_delta + 1

    @property
    def compression(self) -> int:
        return self.attributes & COMPRESSION_MASK

    @property
    def is_transactional(self) -> bool:
        return bool(self.attributes & TRANSACTIONAL)

    @property
    def is_control(self) -> bool:
        return bool(self.attributes & CONTROL)


def parse_header(buf: bytes | bytearray | memoryview, pos: int = 0) -> BatchHeader:
    """Parse the header at `pos`; raises InvalidBatch if there are fewer than 61 bytes or magic is not 2."""
    if len(buf) - pos < HEADER_SIZE:
        raise InvalidBatch("record batch shorter than its header")
    header = BatchHeader(*_HEADER.unpack_from(buf, pos))
    if header.magic != 2:
        # Kafka: a magic it has never defined is corrupt data, v0/v1 are refused as invalid in produce v3+.
        raise InvalidBatch(f"record batch magic {header.magic} is not supported (only v2)",
                           corrupt=not 0 <= header.magic <= 1)
    if header.length < HEADER_SIZE - LOG_OVERHEAD:
        raise InvalidBatch(f"record batch length {header.length} is too small")
    return header


def batch_length_at(buf: bytes | bytearray | memoryview, pos: int) -> int | None:
    """Total size of the batch starting at `pos`, or None when the buffer ends before its length field."""
    if len(buf) - pos < LOG_OVERHEAD:
        return None
    return _OFFSET_LEN.unpack_from(buf, pos)[1] + LOG_OVERHEAD


def crc_ok(buf: bytes | bytearray | memoryview, pos: int, header: BatchHeader) -> bool:
    end = pos + header.size
    return crc32c(memoryview(buf)[pos + CRC_START : end]) == header.crc


def split_batches(data: bytes) -> list[tuple[int, BatchHeader]]:
    """Validate every batch in a produce payload; return (position, header) pairs.

    Raises InvalidBatch for truncated data, bad magic or a CRC mismatch: the whole payload is then rejected,
    so nothing of a bad request reaches the log.
    """
    batches: list[tuple[int, BatchHeader]] = []
    pos = 0
    total = len(data)
    while pos < total:
        header = parse_header(data, pos)
        if pos + header.size > total:
            raise InvalidBatch("record batch is truncated")
        if not crc_ok(data, pos, header):
            raise InvalidBatch("record batch CRC mismatch")
        if header.record_count < 0 or header.last_offset_delta < 0:
            raise InvalidBatch("record batch has a negative record count", corrupt=False)
        batches.append((pos, header))
        pos += header.size
    if not batches:
        raise InvalidBatch("produce request carries no record batch", corrupt=False)
    return batches


def set_base_offset(buf: bytearray, pos: int, base_offset: int) -> None:
    """Patch the base offset in place; the CRC does not cover it."""
    _I64.pack_into(buf, pos, base_offset)


def set_log_append_time(buf: bytearray, pos: int, header: BatchHeader, now_ms: int) -> None:
    """Stamp LogAppendTime into a batch (attribute bit and max timestamp) and recompute its CRC."""
    header.attributes |= TIMESTAMP_LOG_APPEND
    header.max_timestamp = now_ms
    struct.pack_into(">h", buf, pos + 21, header.attributes)
    _I64.pack_into(buf, pos + 35, now_ms)
    header.crc = crc32c(memoryview(buf)[pos + CRC_START : pos + header.size])
    _U32.pack_into(buf, pos + 17, header.crc)

"""What a client's record batch must satisfy before it may reach the log (Kafka's LogValidator rules).

`split_batches` checks framing, magic and CRC. A batch can pass those and still be nonsense: a record count that
does not match its records, records that run past the batch or stop short of it, a control batch, sequences
without a producer. Stored, such a batch would stop every consumer of the partition at it, so it is refused as
Kafka refuses it: CORRUPT_MESSAGE for framing and CRC, INVALID_RECORD for a batch that breaks a rule or whose records
do not parse, UNKNOWN_SERVER_ERROR (what Kafka answers, with a message saying why) for an unknown codec or records
that do not decompress. Like Kafka, the broker then takes the batch's max timestamp from its records and, on a
CreateTime topic, ignores a producer's LogAppendTime flag.

One deliberate difference: Kafka stores an uncompressed batch whose records' offset deltas are not 0..n-1 as it is
(and rewrites a compressed one); this broker refuses both with INVALID_RECORD, since consumers would otherwise see
records with the same offset and it does not recompress batches. No client we know sends such a batch.

The records are walked by aiokafka's C record reader (a Python walk would cost more than the rest of the produce
path). It reads a few bytes past a varint that runs off the end of its buffer before it notices, so it is always
given a copy followed by zero padding, on which such a read stops at once.
"""

from __future__ import annotations

import struct

import cramjam
from aiokafka.record.default_records import DefaultRecordBatch
from crc32c import crc32c

from .batch import CRC_START, HEADER_SIZE, TIMESTAMP_LOG_APPEND, BatchHeader, InvalidBatch
from .records import GZIP, LZ4, SNAPPY, XERIAL_MAGIC, ZSTD

_PAD = bytes(16)
_ATTRIBUTES = struct.Struct(">h")
_MAX_TS = struct.Struct(">q")
_CRC = struct.Struct(">I")
_MAX_CODEC = 4  # zstd
# A few bytes of zstd can claim terabytes: records are decompressed into bounded buffers, never past
# min(MAX_DECOMPRESSED, max(16 MiB, 1000 x the compressed size)), so that a bomb costs little to refuse.
MAX_DECOMPRESSED = 256 * 1024 * 1024
_MIN_LIMIT = 16 * 1024 * 1024
_MAX_RATIO = 1000


def check_client_batch(data: bytes, header: BatchHeader, *, log_append_time: bool) -> bytes:
    """Validate the one batch of a produce payload (`data` is the whole batch, `header` its parsed header).

    Returns the bytes to append: `data` itself, or a copy whose max timestamp was corrected to the largest record
    timestamp (Kafka rewrites it rather than trusting the producer). Raises InvalidBatch.
    """
    if header.base_offset != 0:
        _invalid(f"The baseOffset of the record batch should be 0, but it is {header.base_offset}")
    count = header.record_count
    if header.last_offset_delta + 1 <= 0:
        _invalid(f"Batch has an invalid offset range: [0, {header.last_offset_delta}]")
    if count <= 0:
        _invalid(f"Invalid reported count for record batch: {count}")
    if header.last_offset_delta + 1 != count:
        _invalid(f"Inconsistent batch offset range [0, {header.last_offset_delta}] and count of records {count}")
    if header.is_control:
        _invalid("Clients are not allowed to write control records")
    if header.producer_id >= 0 and header.base_sequence < 0:
        _invalid(f"Invalid sequence number {header.base_sequence} in record batch with producerId "
                 f"{header.producer_id}")
    if header.compression > _MAX_CODEC:
        raise InvalidBatch(f"Unknown compression type id: {header.compression}", unreadable=True)
    if header.attributes & TIMESTAMP_LOG_APPEND and not log_append_time:
        # Kafka keeps a CreateTime topic's batches CreateTime: the flag goes, the records' own timestamps count.
        data = _patched(data, header, attributes=header.attributes & ~TIMESTAMP_LOG_APPEND)
    max_ts = _walk_records(data, header)
    if not log_append_time and max_ts != header.max_timestamp:
        data = _patched(data, header, max_timestamp=max_ts)
    return data


def _patched(data: bytes, header: BatchHeader, *, attributes: int | None = None,
             max_timestamp: int | None = None) -> bytes:
    """A copy of the batch with its attributes or max timestamp replaced and the CRC (which covers both) redone."""
    fixed = bytearray(data)
    if attributes is not None:
        header.attributes = attributes
        _ATTRIBUTES.pack_into(fixed, 21, attributes)
    if max_timestamp is not None:
        header.max_timestamp = max_timestamp
        _MAX_TS.pack_into(fixed, 35, max_timestamp)
    header.crc = crc32c(memoryview(fixed)[CRC_START:])
    _CRC.pack_into(fixed, 17, header.crc)
    return bytes(fixed)


def decompress_bounded(codec: int, data: bytes, limit: int | None = None) -> bytes:
    """Decompress a records section into buffers that grow fourfold from 16 times its size, up to `limit`;
    InvalidBatch if it needs more (a decompression bomb would otherwise make the codec allocate without end)."""
    if limit is None:
        limit = min(MAX_DECOMPRESSED, max(_MIN_LIMIT, _MAX_RATIO * len(data)))
    if codec == SNAPPY and data.startswith(XERIAL_MAGIC):  # the Java client's framing: blocks of raw snappy
        out = bytearray()
        pos = 16
        while pos < len(data):
            (n,) = struct.unpack_from(">i", data, pos)
            out += decompress_bounded(SNAPPY, data[pos + 4 : pos + 4 + n], limit - len(out))
            pos += 4 + n
        return bytes(out)
    into = {GZIP: cramjam.gzip.decompress_into, SNAPPY: cramjam.snappy.decompress_raw_into,
            LZ4: cramjam.lz4.decompress_into, ZSTD: cramjam.zstd.decompress_into}[codec]
    size = min(limit, max(64 * 1024, 16 * len(data)))
    while True:
        buf = bytearray(size)
        try:
            n = into(data, buf)
        except cramjam.DecompressionError as exc:
            text = str(exc)
            if "smaller than required" not in text and "whole buffer" not in text:
                raise
            if size >= limit:
                raise InvalidBatch(f"records decompress to more than {limit} bytes", unreadable=True) from None
            size = min(limit, size * 4)
            continue
        return bytes(memoryview(buf)[:n])


def _invalid(message: str) -> None:
    raise InvalidBatch(message, corrupt=False)


def _walk_records(data: bytes, header: BatchHeader) -> int:
    """Read every record; raise InvalidBatch unless exactly `record_count` records with offset deltas 0..n-1 fill
    the records section. Returns the largest record timestamp (-1 if none has one)."""
    view = memoryview(data)
    if header.compression:
        try:
            body = decompress_bounded(header.compression, bytes(view[HEADER_SIZE : header.size]))
        except InvalidBatch:
            raise
        except Exception as exc:  # cramjam's errors, or anything else a hostile payload provokes
            raise InvalidBatch(f"record batch cannot be decompressed: {exc}", unreadable=True) from exc
        head = bytearray(view[:HEADER_SIZE])
        _ATTRIBUTES.pack_into(head, 21, header.attributes & ~0x07)
        buf = bytes(head) + body + _PAD
    else:
        buf = bytes(view[: header.size]) + _PAD
    expected = 0
    max_ts = -1
    try:
        for rec in DefaultRecordBatch(memoryview(buf)[: len(buf) - len(_PAD)]):
            if rec.offset != expected:
                _invalid(f"record {expected} of the batch has offset delta {rec.offset}: deltas must run 0..n-1")
            expected += 1
            if rec.timestamp > max_ts:
                max_ts = rec.timestamp
    except InvalidBatch:
        raise
    except UnicodeDecodeError:
        # Kafka reads header keys without insisting on UTF-8; aiokafka's reader stops there. Walk it ourselves.
        return _walk_records_slowly(buf[HEADER_SIZE : len(buf) - len(_PAD)], header)
    except Exception as exc:
        raise InvalidBatch(f"Found invalid record structure: {exc}", corrupt=False) from exc
    if expected != header.record_count:
        _invalid(f"record batch declares {header.record_count} records but holds {expected}")
    return max_ts


def _walk_records_slowly(body: bytes, header: BatchHeader) -> int:
    """The same walk in Python, for the rare batch aiokafka's reader refuses but Kafka accepts."""
    pos = 0
    end = len(body)
    max_ts = -1

    def varint() -> int:
        nonlocal pos
        shift = result = 0
        while True:
            if pos >= end or shift > 63:
                _invalid("Found invalid record structure: a varint runs past the records")
            b = body[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return (result >> 1) ^ -(result & 1)
            shift += 7

    def skip_bytes(nullable: bool) -> None:
        nonlocal pos
        n = varint()
        if n < 0 and not nullable:
            _invalid(f"Invalid negative header key size {n}")
        if n > 0:
            if pos + n > end:
                _invalid("Found invalid record structure: a field runs past the records")
            pos += n

    for i in range(header.record_count):
        length = varint()
        start = pos
        pos += 1  # attributes
        ts_delta = varint()
        if varint() != i:
            _invalid(f"record {i} of the batch has a wrong offset delta: deltas must run 0..n-1")
        skip_bytes(True)
        skip_bytes(True)
        headers = varint()
        if headers < 0:
            _invalid(f"Found invalid number of record headers {headers}")
        for _ in range(headers):
            skip_bytes(False)
            skip_bytes(True)
        if pos - start != length:
            _invalid(f"Invalid record size: expected to read {length} bytes in record payload, but instead read "
                     f"{pos - start}")
        max_ts = max(max_ts, header.base_timestamp + ts_delta)
    if pos != end:
        _invalid(f"{end - pos} unconsumed bytes after all records consumed")
    return max_ts

"""Looking inside a record batch (decompress it, walk its records) and writing one (`build_batch`).

The broker only reads inside batches where it must (timestamp look-ups, compaction); produce and fetch never do.
It writes batches of its own for internal topics (committed offsets) and transaction markers.
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass

import cramjam
from crc32c import crc32c

from .batch import HEADER_SIZE, BatchHeader

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
# Transaction marker types: a control record's key is version i16 + type i16.
ABORT, COMMIT = 0, 1
XERIAL_MAGIC = b"\x82SNAPPY\x00"
_XERIAL_HEADER = XERIAL_MAGIC + struct.pack(">ii", 1, 1)
_XERIAL_BLOCK = 32 * 1024


@dataclass(slots=True)
class Record:
    """One record of a batch, with its absolute offset and timestamp."""

    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes | None]]


def _snappy(data: bytes) -> bytes:
    # The Java client frames snappy the xerial way; librdkafka may send raw blocks. Accept both.
    if data.startswith(XERIAL_MAGIC):
        out = bytearray()
        pos = 16
        while pos < len(data):
            (n,) = struct.unpack_from(">i", data, pos)
            out += bytes(cramjam.snappy.decompress_raw(data[pos + 4 : pos + 4 + n]))
            pos += 4 + n
        return bytes(out)
    return bytes(cramjam.snappy.decompress_raw(data))


def decompress(codec: int, data: bytes) -> bytes:
    """Decompress a batch's records section; raises ValueError for an unknown codec."""
    if codec == NONE:
        return data
    if codec == GZIP:
        return bytes(cramjam.gzip.decompress(data))
    if codec == SNAPPY:
        return _snappy(data)
    if codec == LZ4:
        return bytes(cramjam.lz4.decompress(data))
    if codec == ZSTD:
        return bytes(cramjam.zstd.decompress(data))
    raise ValueError(f"unknown compression codec {codec}")


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = 0
    result = 0
    while True:
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            break
        shift += 7
    return (result >> 1) ^ -(result & 1), pos


def _bytes(buf: bytes, pos: int) -> tuple[bytes | None, int]:
    n, pos = _varint(buf, pos)
    if n < 0:
        return None, pos
    return buf[pos : pos + n], pos + n


def iter_records(batch: bytes, header: BatchHeader):
    """Yield the records of one whole batch (its bytes start at the batch's base offset field)."""
    body = decompress(header.compression, bytes(batch[HEADER_SIZE : header.size]))
    pos = 0
    log_append = bool(header.attributes & 0x08)
    for _ in range(header.record_count):
        _length, pos = _varint(body, pos)
        pos += 1  # attributes
        ts_delta, pos = _varint(body, pos)
        off_delta, pos = _varint(body, pos)
        key, pos = _bytes(body, pos)
        value, pos = _bytes(body, pos)
        count, pos = _varint(body, pos)
        headers = []
        for _ in range(count):
            hk, pos = _bytes(body, pos)
            hv, pos = _bytes(body, pos)
            headers.append(((hk or b"").decode("utf-8", "replace"), hv))
        timestamp = header.max_timestamp if log_append else header.base_timestamp + ts_delta
        yield Record(header.base_offset + off_delta, timestamp, key, value, headers)


def keyless_records(batch: bytes | memoryview, header: BatchHeader) -> list[int]:
    """Indexes (within the batch) of the records that have no key. Reads only each record's length and skips to
    its key length (a null key is the one-byte varint 0x01), so a compacted topic's produce path stays cheap."""
    body = decompress(header.compression, bytes(batch[HEADER_SIZE : header.size]))
    out = []
    pos = 0
    for i in range(header.record_count):
        length = shift = 0
        while True:  # the record's length (a zigzag varint), inline: this loop runs for every record produced
            byte = body[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
        length = (length >> 1) ^ -(length & 1)
        p = pos + 1  # the attributes byte
        while body[p] & 0x80:  # timestamp delta
            p += 1
        p += 1
        while body[p] & 0x80:  # offset delta
            p += 1
        if body[p + 1] == 1:  # the key length, just after the offset delta's last byte
            out.append(i)
        pos += length
    return out


# ---- writing ----

_BATCH_HEAD = struct.Struct(">qiibIhiqqqhii")


def _zigzag(n: int, out: bytearray) -> None:
    """Append `n` as a zigzag varint (Kafka's varint and varlong share this encoding)."""
    v = (n << 1) ^ (n >> 63)
    v &= (1 << 64) - 1
    while v & ~0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)


def _put_bytes(data: bytes | None, out: bytearray) -> None:
    if data is None:
        _zigzag(-1, out)
    else:
        _zigzag(len(data), out)
        out += data


def compress(codec: int, data: bytes, xerial: bool = False) -> bytes:
    """Compress a records section with a batch codec; `xerial` frames snappy the Java client's way."""
    if codec == NONE:
        return data
    if codec == GZIP:
        return bytes(cramjam.gzip.compress(data))
    if codec == LZ4:
        return bytes(cramjam.lz4.compress(data))
    if codec == ZSTD:
        return bytes(cramjam.zstd.compress(data))
    if codec == SNAPPY:
        if not xerial:
            return bytes(cramjam.snappy.compress_raw(data))
        out = bytearray(_XERIAL_HEADER)
        for i in range(0, len(data), _XERIAL_BLOCK):
            block = bytes(cramjam.snappy.compress_raw(data[i : i + _XERIAL_BLOCK]))
            out += struct.pack(">i", len(block)) + block
        return bytes(out)
    raise ValueError(f"unknown compression codec {codec}")


def build_batch(
    records,
    *,
    base_offset: int = 0,
    attributes: int = 0,
    producer_id: int = -1,
    producer_epoch: int = -1,
    base_sequence: int = -1,
    partition_leader_epoch: int = 0,
) -> bytes:
    """Encode a RecordBatch v2 (magic 2) with a valid CRC-32C.

    `records` is a sequence of (key, value, headers, timestamp): key and value are bytes or None, headers a list
    of (str, bytes | None), timestamp in ms (None means now). `attributes` is written as given (codec bits select
    gzip, lz4 or zstd compression of the records; the transactional and control bits mark transaction data and
    markers). Offsets inside the batch are 0..n-1 relative to `base_offset`, which the log patches on append.
    """
    records = list(records)
    if not records:
        raise ValueError("build_batch needs at least one record")
    now = None
    stamps = []
    for _k, _v, _h, ts in records:
        if ts is None:
            if now is None:
                now = int(time.time() * 1000)
            ts = now
        stamps.append(ts)
    base_ts = stamps[0]
    body = bytearray()
    for delta, ((key, value, headers, _ts), ts) in enumerate(zip(records, stamps)):
        rec = bytearray(b"\x00")  # record attributes: unused in v2
        _zigzag(ts - base_ts, rec)
        _zigzag(delta, rec)
        _put_bytes(key, rec)
        _put_bytes(value, rec)
        headers = headers or ()
        _zigzag(len(headers), rec)
        for hk, hv in headers:
            _put_bytes(hk.encode("utf-8"), rec)
            _put_bytes(hv, rec)
        _zigzag(len(rec), body)
        body += rec
    payload = compress(attributes & 0x07, bytes(body))
    length = HEADER_SIZE - 12 + len(payload)
    out = bytearray(_BATCH_HEAD.pack(base_offset, length, partition_leader_epoch, 2, 0, attributes,
                                     len(records) - 1, base_ts, max(stamps), producer_id, producer_epoch,
                                     base_sequence, len(records)))
    out += payload
    struct.pack_into(">I", out, 17, crc32c(memoryview(out)[21:]))
    return bytes(out)


def control_marker(batch: bytes, header: BatchHeader) -> tuple[int, int]:
    """(type, coordinator epoch) of a control batch, -1 where absent: key = version i16 + type i16,
    value = version i16 + coordinator epoch i32."""
    for rec in iter_records(batch, header):
        kind = struct.unpack_from(">h", rec.key, 2)[0] if rec.key and len(rec.key) >= 4 else -1
        epoch = struct.unpack_from(">i", rec.value, 2)[0] if rec.value and len(rec.value) >= 6 else -1
        return kind, epoch
    return -1, -1

"""Looking inside a record batch: decompress it and walk its records.

The broker only does this where it must (timestamp look-ups, compaction); produce and fetch never do.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

import cramjam

from .batch import HEADER_SIZE, BatchHeader

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
_XERIAL_MAGIC = b"\x82SNAPPY\x00"


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
    if data.startswith(_XERIAL_MAGIC):
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

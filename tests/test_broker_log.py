"""The storage engine on its own: appends, reads, segment rolls, indexes and recovery from torn tails."""

from __future__ import annotations

import os
import struct

import pytest
from crc32c import crc32c

from broker_embedded.log.batch import InvalidBatch, split_batches
from broker_embedded.log.config import LogConfig
from broker_embedded.log.partition import OffsetOutOfRange, PartitionLog
from broker_embedded.log.records import iter_records


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def make_batch(values: list[bytes], base_ts: int = 1000) -> bytes:
    """An uncompressed RecordBatch v2 the way a producer would send it (base offset 0)."""
    recs = bytearray()
    for i, v in enumerate(values):
        body = b"\0" + _varint(i) + _varint(i) + _varint(-1) + _varint(len(v)) + v + _varint(0)
        recs += _varint(len(body)) + body
    n = len(values)
    after_crc = struct.pack(">hiqqqhii", 0, n - 1, base_ts, base_ts + n - 1, -1, -1, -1, n) + bytes(recs)
    crc = crc32c(after_crc)
    head = struct.pack(">qiibI", 0, 4 + 1 + 4 + len(after_crc), -1, 2, crc)
    return head + after_crc


def append(plog: PartitionLog, values: list[bytes], ts: int = 1000) -> int:
    data = make_batch(values, ts)
    return plog.append(bytearray(data), split_batches(data))


def read_values(plog: PartitionLog, offset: int = 0) -> list[tuple[int, bytes]]:
    out = []
    while offset < plog.high_watermark:
        data = plog.read(offset, 1 << 20)
        pos = 0
        from broker_embedded.log.batch import parse_header

        while pos + 61 <= len(data):
            h = parse_header(data, pos)
            if pos + h.size > len(data):
                break
            for r in iter_records(data[pos : pos + h.size], h):
                if r.offset >= offset:
                    out.append((r.offset, r.value))
            pos += h.size
            offset = h.next_offset
    return out


@pytest.fixture
def plog(tmp_path):
    p = PartitionLog(str(tmp_path / "t-0"), LogConfig(segment_bytes=2000, index_interval_bytes=100))
    p.open()
    yield p


def test_offsets_reads_and_segment_roll(plog, tmp_path):
    for i in range(50):
        assert append(plog, [b"a%d" % i, b"b%d" % i]) == 2 * i
    assert plog.high_watermark == 100
    assert len(plog.segments) >= 2, "segment.bytes=2000 must roll segments"
    assert read_values(plog) == [(2 * i + j, (b"a%d" if j == 0 else b"b%d") % i) for i in range(50) for j in (0, 1)]
    # A read inside a batch returns that batch; one in a later segment finds it.
    assert read_values(plog, 77)[0] == (77, b"b38")
    with pytest.raises(OffsetOutOfRange):
        plog.read(101, 1000)
    assert plog.read(100, 1000) == b""


def test_read_respects_max_bytes_but_returns_one_whole_batch(plog):
    append(plog, [b"x" * 500])
    append(plog, [b"y" * 500])
    first = plog.read(0, 10)
    h = split_batches(first)
    assert len(h) == 1 and h[0][1].base_offset == 0


def test_timestamp_lookup(plog):
    for i in range(20):
        append(plog, [b"v%d" % i], ts=10_000 + 100 * i)
    assert plog.offset_for_timestamp(10_450) == (5, 10_500)
    assert plog.offset_for_timestamp(0) == (0, 10_000)
    assert plog.offset_for_timestamp(99_999) is None
    assert plog.offset_of_max_timestamp() == (19, 11_900)


def test_reopen_after_clean_close_keeps_everything(tmp_path):
    cfg = LogConfig(segment_bytes=1500, index_interval_bytes=100)
    p = PartitionLog(str(tmp_path / "t-0"), cfg)
    p.open()
    for i in range(30):
        append(p, [b"v%d" % i])
    p.close()
    q = PartitionLog(str(tmp_path / "t-0"), cfg)
    q.open()
    assert q.high_watermark == 30
    assert read_values(q) == [(i, b"v%d" % i) for i in range(30)]
    assert append(q, [b"more"]) == 30


@pytest.mark.parametrize("damage", ["torn", "garbage", "bad_crc"])
def test_recovery_truncates_a_torn_or_corrupt_tail(tmp_path, damage):
    cfg = LogConfig(index_interval_bytes=50)
    p = PartitionLog(str(tmp_path / "t-0"), cfg)
    p.open()
    for i in range(10):
        append(p, [b"value-%d" % i])
    p.flush()
    path = p.active.path
    size = os.path.getsize(path)
    # No close(): as after kill -9, the clean-shutdown marker is absent.
    with open(path, "r+b") as f:
        if damage == "torn":
            f.seek(size)
            f.write(make_batch([b"half"])[:40])
        elif damage == "garbage":
            f.seek(size)
            f.write(os.urandom(300))
        else:
            f.seek(size - 3)
            f.write(b"XYZ")
    q = PartitionLog(str(tmp_path / "t-0"), cfg)
    q.open()
    expected = 10 if damage != "bad_crc" else 9
    assert q.high_watermark == expected
    assert read_values(q) == [(i, b"value-%d" % i) for i in range(expected)]
    assert append(q, [b"next"]) == expected
    assert read_values(q)[-1] == (expected, b"next")


def test_missing_or_broken_index_is_rebuilt(tmp_path):
    cfg = LogConfig(segment_bytes=800, index_interval_bytes=60)
    p = PartitionLog(str(tmp_path / "t-0"), cfg)
    p.open()
    for i in range(40):
        append(p, [b"v%d" % i])
    p.close()
    segs = sorted(n for n in os.listdir(tmp_path / "t-0") if n.endswith(".index"))
    os.unlink(tmp_path / "t-0" / segs[0])
    with open(tmp_path / "t-0" / segs[1], "r+b") as f:
        f.write(b"\xff" * 16)
    q = PartitionLog(str(tmp_path / "t-0"), cfg)
    q.open()
    assert read_values(q, 0) == [(i, b"v%d" % i) for i in range(40)]
    assert read_values(q, 23)[0] == (23, b"v23")


def test_invalid_batches_are_rejected_whole():
    good = make_batch([b"a"])
    with pytest.raises(InvalidBatch) as err:
        split_batches(good[:-1])
    assert err.value.corrupt
    bad = bytearray(good)
    bad[-1] ^= 0xFF
    with pytest.raises(InvalidBatch, match="CRC"):
        split_batches(bytes(bad))
    v1 = bytearray(good)
    v1[16] = 1
    with pytest.raises(InvalidBatch) as err:
        split_batches(bytes(v1))
    assert not err.value.corrupt
    with pytest.raises(InvalidBatch):
        split_batches(b"")

"""Hostile and malformed input: bad frames close only their own connection, bad batches get Kafka's error and never
reach the log, a connection that leaves its answers unread holds a bounded amount of memory.

The produce cases run against Apache Kafka too (`pytest --kafka`), which is where the expected codes come from.
"""

from __future__ import annotations

import asyncio
import datetime
import socket
import struct
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from crc32c import crc32c
from kio.index import load_payload_module
from kio.static.constants import EntityType

from broker_embedded.log.records import GZIP, build_batch
from wire import Conn

UNKNOWN_SERVER_ERROR, CORRUPT_MESSAGE, INVALID_RECORD = -1, 2, 87


def _varint(n: int) -> bytes:
    n = (n << 1) ^ (n >> 63)
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if not n:
            out.append(b)
            return bytes(out)
        out.append(b | 0x80)


def _record(delta: int, value: bytes, key: bytes | None = b"k", ts_delta: int = 0) -> bytes:
    body = b"\0" + _varint(ts_delta) + _varint(delta)
    body += _varint(-1) if key is None else _varint(len(key)) + key
    body += _varint(len(value)) + value + _varint(0)
    return _varint(len(body)) + body


def _batch(records: bytes, *, count: int, last_delta: int | None = None, base_offset: int = 0, magic: int = 2,
           attributes: int = 0, base_ts: int | None = None, max_ts: int | None = None, pid: int = -1,
           epoch: int = -1, seq: int = -1, crc: int | None = None) -> bytes:
    """A RecordBatch with every header field under the caller's control; the CRC is right unless given."""
    now = int(time.time() * 1000)
    base_ts = now if base_ts is None else base_ts
    after_crc = struct.pack(">hiqqqhii", attributes, count - 1 if last_delta is None else last_delta, base_ts,
                            base_ts if max_ts is None else max_ts, pid, epoch, seq, count) + records
    head = struct.pack(">qiibI", base_offset, 4 + 1 + 4 + len(after_crc), -1, magic,
                       crc32c(after_crc) if crc is None else crc)
    return head + after_crc


def _records(n: int) -> bytes:
    return b"".join(_record(i, b"value-%d" % i) for i in range(n))


class Raw(Conn):
    def produce(self, topic: str, data: bytes) -> tuple[int, str | None]:
        m = load_payload_module(0, 9, EntityType.request)
        resp = self.call((0, 9), transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=10),
                         topic_data=(m.TopicProduceData(name=topic, partition_data=(
                             m.PartitionProduceData(index=0, records=data),)),))
        p = resp.responses[0].partition_responses[0]
        return p.error_code, p.error_message


def _create(bootstrap: str, topic: str, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config=config)])[topic].result(15)
    time.sleep(0.3)  # Kafka: the partition's leader must be known before producing to it


async def _consume(bootstrap: str, topic: str) -> list:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        out = []
        while await consumer.position(tp) < end:
            for msgs in (await consumer.getmany(timeout_ms=1000)).values():
                out += msgs
        return out
    finally:
        await consumer.stop()


_GOOD = _records(3)

BAD_BATCHES = {
    "crc": (_batch(_GOOD, count=3, crc=12345), CORRUPT_MESSAGE),
    "magic 7": (_batch(_GOOD, count=3, magic=7), CORRUPT_MESSAGE),
    "magic 1": (_batch(_GOOD, count=3, magic=1), INVALID_RECORD),
    "count above the records": (_batch(_GOOD, count=4), INVALID_RECORD),
    "count below the records": (_batch(_GOOD, count=2), INVALID_RECORD),
    "count and last offset delta disagree": (_batch(_GOOD, count=3, last_delta=5), INVALID_RECORD),
    "no records": (_batch(b"", count=0), INVALID_RECORD),
    "negative count": (_batch(_GOOD, count=-1, last_delta=2), INVALID_RECORD),
    "base offset not 0": (_batch(_GOOD, count=3, base_offset=7), INVALID_RECORD),
    "control batch": (_batch(_GOOD, count=3, attributes=0x20), INVALID_RECORD),
    "producer id without a sequence": (_batch(_GOOD, count=3, pid=5, epoch=0, seq=-1), INVALID_RECORD),
    "record longer than the batch": (_batch(_GOOD[:-3], count=3), INVALID_RECORD),
    "bytes after the last record": (_batch(_GOOD + b"\0\0\0", count=3), INVALID_RECORD),
    "record length lies": (_batch(b"\x7f" + _GOOD[1:], count=3), INVALID_RECORD),
}
# Refused here, stored by Kafka as they are (see broker_embedded/log/validate.py): consumers would see three
# records at one offset.
OFFSET_DELTAS = {
    "offset deltas repeat": _batch(_record(0, b"a") + _record(0, b"b") + _record(0, b"c"), count=3),
    "offset deltas out of order": _batch(_record(0, b"a") + _record(2, b"b") + _record(1, b"c"), count=3),
}


@pytest.mark.parametrize("case", sorted(BAD_BATCHES))
def test_bad_batches_are_refused_and_never_stored(bootstrap, topic_name, case):
    data, code = BAD_BATCHES[case]
    _create(bootstrap, topic_name)
    conn = Raw(bootstrap)
    try:
        err, message = conn.produce(topic_name, data)
        assert err == code, (case, err, message)
        assert conn.produce(topic_name, _batch(_records(2), count=2))[0] == 0  # the connection still serves
    finally:
        conn.close()
    got = asyncio.run(_consume(bootstrap, topic_name))
    assert [m.value for m in got] == [b"value-0", b"value-1"], "only the good batch is in the log"


@pytest.mark.parametrize("case", sorted(OFFSET_DELTAS))
def test_batches_with_wrong_offset_deltas_are_refused(bootstrap, topic_name, case, only_embedded):
    _create(bootstrap, topic_name)
    conn = Raw(bootstrap)
    try:
        assert conn.produce(topic_name, OFFSET_DELTAS[case])[0] == INVALID_RECORD
    finally:
        conn.close()
    assert asyncio.run(_consume(bootstrap, topic_name)) == []


def test_undecompressible_and_unknown_codec_batches_are_refused(bootstrap, topic_name):
    """Kafka fails these while decompressing, with UNKNOWN_SERVER_ERROR; so do we, with a message saying why."""
    _create(bootstrap, topic_name)
    conn = Raw(bootstrap)
    try:
        good = build_batch([(b"k", b"v", None, None)], attributes=GZIP)
        broken = bytearray(good)
        broken[70:80] = b"\xff" * 10
        struct.pack_into(">I", broken, 17, crc32c(bytes(broken[21:])))
        assert conn.produce(topic_name, bytes(broken))[0] == UNKNOWN_SERVER_ERROR
        assert conn.produce(topic_name, _batch(_GOOD, count=3, attributes=6))[0] == UNKNOWN_SERVER_ERROR
        assert conn.produce(topic_name, good)[0] == 0
    finally:
        conn.close()
    assert [m.value for m in asyncio.run(_consume(bootstrap, topic_name))] == [b"v"]


def test_log_append_time_from_a_producer_is_ignored_on_a_create_time_topic(bootstrap, topic_name):
    _create(bootstrap, topic_name)
    base = int(time.time() * 1000) - 60_000
    conn = Raw(bootstrap)
    try:
        records = _record(0, b"a") + _record(1, b"b", ts_delta=7)
        assert conn.produce(topic_name, _batch(records, count=2, base_ts=base, max_ts=base, attributes=0x08))[0] == 0
    finally:
        conn.close()
    got = asyncio.run(_consume(bootstrap, topic_name))
    assert [(m.value, m.timestamp, m.timestamp_type) for m in got] == [(b"a", base, 0), (b"b", base + 7, 0)]


def test_a_wrong_max_timestamp_is_corrected(bootstrap, topic_name):
    """Kafka takes a batch's max timestamp from its records, whatever the producer wrote."""
    _create(bootstrap, topic_name)
    base = int(time.time() * 1000)
    records = _record(0, b"a", ts_delta=0) + _record(1, b"b", ts_delta=500)
    conn = Raw(bootstrap)
    try:
        assert conn.produce(topic_name, _batch(records, count=2, base_ts=base, max_ts=base + 10**9))[0] == 0
        m = load_payload_module(2, 7, EntityType.request)
        resp = conn.call((2, 7), replica_id=-1, isolation_level=0, topics=(m.ListOffsetsTopic(
            name=topic_name, partitions=(m.ListOffsetsPartition(partition_index=0, timestamp=-3,
                                                                current_leader_epoch=-1),)),))
        part = resp.topics[0].partitions[0]
        assert (part.offset, part.timestamp) == (1, base + 500)  # MAX_TIMESTAMP: the record's, not the header's
    finally:
        conn.close()
    assert [m.timestamp for m in asyncio.run(_consume(bootstrap, topic_name))] == [base, base + 500]


def _addr(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.rsplit(":", 1)
    return host, int(port)


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def _frame(key: int, version: int, body: bytes, corr: int = 1, flexible: bool = False) -> bytes:
    header = struct.pack(">hhih", key, version, corr, 4) + b"test" + (b"\0" if flexible else b"")
    return struct.pack(">i", len(header) + len(body)) + header + body


@pytest.mark.parametrize("frame", [
    struct.pack(">i", -1),
    struct.pack(">i", 0),
    struct.pack(">i", -2**31),
    _frame(3, 9, b"\x00")[:-1],  # a body cut short of its frame, then EOF
    _frame(1, 999, b"\0" * 40),  # a version of Fetch that does not exist
    _frame(0, 9, b"\xff" * 30, flexible=True),  # garbage where Produce's fields go
    _frame(32000, 0, b""),
], ids=["size -1", "size 0", "size -2^31", "truncated", "unknown version", "garbage body", "unknown key"])
def test_bad_frames_close_only_their_connection(bootstrap, frame):
    with socket.create_connection(_addr(bootstrap), timeout=5) as other:
        with socket.create_connection(_addr(bootstrap), timeout=5) as s:
            s.sendall(frame)
            if len(frame) > 4 and struct.unpack(">i", frame[:4])[0] > len(frame) - 4:
                s.shutdown(socket.SHUT_WR)
            assert _closed(s)
        conn = Conn.__new__(Conn)
        conn.sock, conn.corr = other, 0
        assert conn.call((18, 3), client_software_name="t", client_software_version="1").error_code == 0


def test_unread_answers_hold_bounded_memory(broker_process, topic_name):
    """A client that pipelines large fetches and reads none of the answers: the broker stops reading its requests
    once what it holds passes socket.request.max.bytes, instead of building every answer in memory."""
    broker = broker_process("--config", "socket.request.max.bytes=2097152").start()
    bootstrap = broker.bootstrap_servers
    _create(bootstrap, topic_name)
    conn = Raw(bootstrap)
    value = b"x" * 900_000
    for _ in range(6):
        assert conn.produce(topic_name, build_batch([(None, value, None, None)]))[0] == 0
    conn.close()

    def rss() -> int:
        with open(f"/proc/{broker.proc.pid}/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) * 1024

    before = rss()
    m = load_payload_module(1, 11, EntityType.request)
    body_cls = load_payload_module(1, 11, EntityType.request)
    from wire import payload_class

    req = payload_class(body_cls, EntityType.request)(
        replica_id=-1, max_wait=datetime.timedelta(0), min_bytes=1, max_bytes=8 << 20, isolation_level=0,
        session_id=0, session_epoch=-1, rack_id="", forgotten_topics_data=(),
        topics=(m.FetchTopic(topic=topic_name, partitions=(m.FetchPartition(
            partition=0, current_leader_epoch=-1, fetch_offset=0, log_start_offset=-1,
            partition_max_bytes=8 << 20),)),))
    import io

    from kio.serial import entity_writer

    buf = io.BytesIO()
    entity_writer(type(req))(buf, req)
    frames = b"".join(_frame(1, 11, buf.getvalue(), corr=i) for i in range(90))
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(frames)  # 90 answers of ~5.4 MB each would be ~490 MB
        time.sleep(3)
        grown = rss() - before
        with socket.create_connection(_addr(bootstrap), timeout=5) as other:  # everyone else is still served
            conn = Conn.__new__(Conn)
            conn.sock, conn.corr = other, 0
            assert conn.call((18, 3), client_software_name="t", client_software_version="1").error_code == 0
    assert grown < 120 * 1024 * 1024, f"the broker grew by {grown >> 20} MiB for one connection's unread answers"
    assert broker.proc.poll() is None


def test_pipelined_bad_requests_close_once_and_log_once(embedded_broker, caplog):
    """Two undecodable requests after a good one: the good one is answered, the connection closes, one line says
    why; and a bad request followed by more requests than the read-ahead queue holds does not leave the
    connection's task waiting forever for a sender that is gone."""
    bootstrap = embedded_broker.bootstrap_servers
    garbage = _frame(3, 9, b"\xff" * 8, corr=2, flexible=True)
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        port = s.getsockname()[1]
        s.sendall(_frame(18, 0, b"", corr=1) + garbage + garbage)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        assert struct.unpack(">i", s.recv(size, socket.MSG_WAITALL)[:4])[0] == 1
        assert _closed(s)
    time.sleep(0.3)
    lines = [r.getMessage() for r in caplog.records if f":{port}:" in r.getMessage()]
    assert len(lines) == 1 and "cannot decode API key 3" in lines[0], lines

    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        s.sendall(_frame(32000, 0, b"") + _frame(18, 0, b"") * 300)
        assert _closed(s)
    deadline = time.monotonic() + 5
    while len(embedded_broker.connections()) > 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert embedded_broker.connections() == [], "a closed connection is still being served"


def test_a_decompression_bomb_is_refused_cheaply(bootstrap, topic_name, only_embedded):
    """A few KB of zstd that decompress to 300 MB: decompressed into bounded buffers, refused (no codec allocates
    without end), and the broker keeps serving. Kafka would decompress it as it iterates."""
    from broker_embedded.log.records import ZSTD

    _create(bootstrap, topic_name)
    bomb = build_batch([(b"k", bytes(300_000_000), None, None)], attributes=ZSTD)
    assert len(bomb) < 100_000
    conn = Raw(bootstrap)
    try:
        started = time.monotonic()
        err, message = conn.produce(topic_name, bomb)
        assert err == UNKNOWN_SERVER_ERROR and "decompress to more than" in message, (err, message)
        assert time.monotonic() - started < 5
        assert conn.produce(topic_name, build_batch([(b"k", b"v", None, None)], attributes=ZSTD))[0] == 0
    finally:
        conn.close()
    assert [m.value for m in asyncio.run(_consume(bootstrap, topic_name))] == [b"v"]

"""Fetch answers on plain sockets are sent from the segment files by sendfile; they must be byte for byte what the
copying path sends, whatever the partitions, offsets, limits, concurrent appends, segment rolls and deletions."""

from __future__ import annotations

import asyncio
import datetime
import socket
import struct
import threading
import time

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from kio.index import load_payload_module
from kio.serial import entity_writer
from kio.static.constants import EntityType

import broker_embedded.api.fetch as fetch_api
from broker_embedded import EmbeddedBroker
from broker_embedded.log.config import LogConfig
from broker_embedded.log.partition import PartitionLog
from broker_embedded.log.records import build_batch
from broker_embedded.log.batch import split_batches
from broker_embedded.protocol import build
from broker_embedded.regions import write_chunks
from wire import payload_class


@pytest.fixture
def broker(tmp_path):
    b = EmbeddedBroker(data_dir=str(tmp_path / "broker"), port=0, group_initial_rebalance_delay_ms=0,
                       topic_defaults={"segment.bytes": "1048576"}).start_in_thread()
    yield b
    b.stop_thread()


def _fill(bootstrap: str, topic: str, partitions: int, per_partition: int, size: int = 700) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(15)
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "batch.size": 20000})
    for p in range(partitions):
        for i in range(per_partition):
            producer.produce(topic, value=b"%d-%d-" % (p, i) + b"x" * size, partition=p)
    assert producer.flush(30) == 0


def _fetch_frame(version: int, topic: str, parts: list[tuple[int, int, int]], max_bytes: int) -> bytes:
    m = load_payload_module(1, version, EntityType.request)
    cls = payload_class(m, EntityType.request)
    req = build(cls, dict(
        replica_id=-1, max_wait=datetime.timedelta(0), min_bytes=0, max_bytes=max_bytes, isolation_level=0,
        session_id=0, session_epoch=-1, rack_id="", forgotten_topics_data=(),
        topics=(build(m.FetchTopic, dict(topic=topic, partitions=tuple(
            build(m.FetchPartition, dict(partition=p, current_leader_epoch=-1, fetch_offset=off, log_start_offset=-1,
                                         partition_max_bytes=pmax)) for p, off, pmax in parts))),)))
    import io

    buf = io.BytesIO()
    entity_writer(cls)(buf, req)
    header = struct.pack(">hhih", 1, version, 7, 4) + b"test" + (b"\0" if cls.__flexible__ else b"")
    return struct.pack(">i", len(header) + buf.tell()) + header + buf.getvalue()


def _exchange(bootstrap: str, frame: bytes) -> bytes:
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(frame)
        size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
        data = bytearray()
        while len(data) < size:
            chunk = s.recv(size - len(data))
            assert chunk
            data += chunk
        return bytes(data)


def test_fetch_answers_are_byte_identical_to_the_copying_path(broker, topic_name, monkeypatch):
    _fill(broker.bootstrap_servers, topic_name, 3, 1800)  # ~1.3 MB a partition: two segments each
    cases = []
    for version in (4, 11, 12):  # legacy and flexible (compact) records fields
        cases += [
            (version, [(0, 0, 1 << 20), (1, 0, 1 << 20), (2, 0, 1 << 20)], 50 << 20),  # three partitions
            (version, [(0, 137, 1 << 20), (1, 299, 5000), (2, 450, 1)], 50 << 20),  # mid-segment, small limits
            (version, [(0, 1600, 1 << 20), (1, 1700, 3000)], 50 << 20),  # in the second segment
            (version, [(0, 0, 1 << 20), (1, 0, 1 << 20), (2, 0, 1 << 20)], 30000),  # the response-wide budget
            (version, [(0, 1799, 1 << 20), (1, 1800, 1 << 20), (2, 10**6, 1 << 20)], 50 << 20),  # last, end, beyond
        ]
    for version, parts, max_bytes in cases:
        frame = _fetch_frame(version, topic_name, parts, max_bytes)
        zero_copy = _exchange(broker.bootstrap_servers, frame)
        monkeypatch.setattr(fetch_api, "sendfile_allowed", lambda session: False)
        copied = _exchange(broker.bootstrap_servers, frame)
        monkeypatch.undo()
        assert zero_copy == copied, (version, parts, max_bytes)
        assert len(copied) > 100


async def _consume_all(bootstrap: str, topic: str, partitions: int, expected: int, timeout: float = 60) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                                max_partition_fetch_bytes=30000, fetch_max_bytes=70000)
    await consumer.start()
    got: dict[int, list[bytes]] = {p: [] for p in range(partitions)}
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        deadline = time.monotonic() + timeout
        while sum(map(len, got.values())) < expected and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                got[tp.partition] += [m.value for m in msgs]
    finally:
        await consumer.stop()
    return got


def test_concurrent_appends_and_segment_rolls_read_back_exactly(broker, topic_name):
    """A consumer with small fetch limits reads while a producer appends and segments roll (1 MiB)."""
    bootstrap = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 2, 1)])[topic_name].result(15)
    n = 5000

    def produce():
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 1})
        for i in range(n):
            producer.produce(topic_name, value=b"%d-" % i + b"y" * 900, partition=i % 2)
            if i % 100 == 0:
                producer.poll(0)
                time.sleep(0.01)
        assert producer.flush(30) == 0

    t = threading.Thread(target=produce)
    t.start()
    got = asyncio.run(_consume_all(bootstrap, topic_name, 2, n))
    t.join()
    for p in range(2):
        assert got[p] == [b"%d-" % i + b"y" * 900 for i in range(p, n, 2)]


def test_a_region_outlives_its_segment(tmp_path):
    """A region located before its segment was rolled away, deleted and closed still sends the bytes it located."""
    plog = PartitionLog(str(tmp_path / "p-0"), LogConfig(segment_bytes=3000))
    plog.open()
    for i in range(20):
        data = build_batch([(None, b"%03d" % i + b"z" * 400, None, None)])
        plog.append(bytearray(data), split_batches(data))
    expected = plog.read(0, 1500)
    region = plog.read_region(0, 1500)
    assert len(region) == len(expected)
    first = plog.segments[0]
    plog.remove_segments([first])
    first.delete()  # closes its descriptor and unlinks its files
    assert region.read() == expected

    async def send() -> bytes:
        a, b = socket.socketpair()
        reader, writer = await asyncio.open_connection(sock=a)
        await write_chunks(writer, [b"head", region, b"tail"])
        writer.close()
        out = bytearray()
        b.setblocking(True)
        while True:
            chunk = await asyncio.to_thread(b.recv, 65536)
            if not chunk:
                break
            out += chunk
        b.close()
        return bytes(out)

    assert asyncio.run(send()) == b"head" + expected + b"tail"
    assert region.fd == -1  # closed once sent
    plog.close()

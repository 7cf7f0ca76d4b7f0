"""Real clients against the broker: create topics, produce, consume by assignment, and see exactly what was sent.

Runs against the embedded broker by default and against Apache Kafka with --kafka.
"""

from __future__ import annotations

import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

CODECS = ["none", "gzip", "snappy", "lz4", "zstd"]


async def _create(bootstrap: str, name: str, partitions: int, configs: dict | None = None) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1, topic_configs=configs or {})])
    finally:
        await admin.close()


async def _consume_all(bootstrap: str, tps: list[TopicPartition], expected: int, *, start="earliest",
                       timeout: float = 20.0, **kwargs):
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset=start,
                                **kwargs)
    await consumer.start()
    try:
        consumer.assign(tps)
        got = []
        deadline = time.monotonic() + timeout
        while len(got) < expected and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=500)
            for msgs in batch.values():
                got.extend(msgs)
        return got
    finally:
        await consumer.stop()


@pytest.mark.parametrize("codec", CODECS)
async def test_aiokafka_roundtrip_every_codec(bootstrap, topic_name, codec):
    await _create(bootstrap, topic_name, 3)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                compression_type=None if codec == "none" else codec, linger_ms=5)
    await producer.start()
    sent = {}
    try:
        futures = []
        for i in range(300):
            key = f"k{i % 7}".encode()
            futures.append(await producer.send(topic_name, f"value-{i}".encode(), key=key,
                                               headers=[("n", str(i).encode()), ("empty", b"")],
                                               timestamp_ms=1_700_000_000_000 + i))
        for fut in futures:
            md = await fut
            sent.setdefault(md.partition, []).append(md.offset)
    finally:
        await producer.stop()
    got = await _consume_all(bootstrap, [TopicPartition(topic_name, p) for p in range(3)], 300)
    assert len(got) == 300
    by_partition: dict[int, list] = {}
    for m in got:
        by_partition.setdefault(m.partition, []).append(m)
    for p, msgs in by_partition.items():
        assert [m.offset for m in msgs] == sorted(sent[p])
        for m in msgs:
            i = int(m.value.decode().split("-")[1])
            assert m.key == f"k{i % 7}".encode()
            assert m.timestamp == 1_700_000_000_000 + i
            assert dict(m.headers) == {"n": str(i).encode(), "empty": b""}
    # Same key, same partition, in the order produced.
    for msgs in by_partition.values():
        per_key: dict[bytes, list[int]] = {}
        for m in msgs:
            per_key.setdefault(m.key, []).append(int(m.value.decode().split("-")[1]))
        for seq in per_key.values():
            assert seq == sorted(seq)


async def test_aiokafka_large_message_near_the_limit(bootstrap, topic_name):
    await _create(bootstrap, topic_name, 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=2_000_000)
    await producer.start()
    try:
        big = bytes(range(256)) * (1_000_000 // 256)
        await producer.send_and_wait(topic_name, big, key=b"big")
        with pytest.raises(Exception) as err:
            await producer.send_and_wait(topic_name, b"x" * 1_100_000)
        assert "MessageSizeTooLarge" in type(err.value).__name__ or "TooLarge" in repr(err.value)
    finally:
        await producer.stop()
    got = await _consume_all(bootstrap, [TopicPartition(topic_name, 0)], 1, max_partition_fetch_bytes=2_000_000)
    assert len(got) == 1 and got[0].value == big


async def test_aiokafka_seek_latest_and_by_timestamp(bootstrap, topic_name):
    await _create(bootstrap, topic_name, 1)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic_name, b"%d" % i, timestamp_ms=1_000_000 + i * 1000)
        tp = TopicPartition(topic_name, 0)
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
        await consumer.start()
        try:
            consumer.assign([tp])
            found = await consumer.offsets_for_times({tp: 1_004_500})
            assert found[tp].offset == 5 and found[tp].timestamp == 1_005_000
            assert (await consumer.offsets_for_times({tp: 9_999_999}))[tp] is None
            assert (await consumer.beginning_offsets([tp]))[tp] == 0
            assert (await consumer.end_offsets([tp]))[tp] == 10
            consumer.seek(tp, found[tp].offset)
            batch = await consumer.getmany(tp, timeout_ms=5000)
            assert [int(m.value) for m in batch[tp]] == [5, 6, 7, 8, 9]
            await consumer.seek_to_end(tp)
            await producer.send_and_wait(topic_name, b"after")
            batch = await consumer.getmany(tp, timeout_ms=5000)
            assert [m.value for m in batch[tp]] == [b"after"]
        finally:
            await consumer.stop()
    finally:
        await producer.stop()


def test_confluent_kafka_roundtrip(bootstrap, topic_name):
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition as TP
    from confluent_kafka.admin import AdminClient, NewTopic as CNewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([CNewTopic(topic_name, 4, 1)])[topic_name].result(15)
    for codec in CODECS:
        producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                             "compression.type": codec, "enable.idempotence": False})
        for i in range(250):
            producer.produce(topic_name, value=f"{codec}-{i}".encode(), key=f"k{i}".encode(),
                             headers=[("codec", codec.encode())], timestamp=1_700_000_000_000 + i)
        assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TP(topic_name, p, 0) for p in range(4)])
    got, eof = [], set()
    deadline = time.monotonic() + 30
    while len(eof) < 4 and time.monotonic() < deadline:
        m = consumer.poll(1)
        if m is None:
            continue
        if m.error():
            assert m.error().code() == KafkaError._PARTITION_EOF, m.error()
            eof.add(m.partition())
            continue
        got.append(m)
    consumer.close()
    assert len(got) == 250 * len(CODECS)
    values = sorted(m.value().decode() for m in got)
    assert values == sorted(f"{c}-{i}" for c in CODECS for i in range(250))
    for m in got:
        codec, i = m.value().decode().rsplit("-", 1)
        assert m.headers() == [("codec", codec.encode())]
        assert m.timestamp()[1] == 1_700_000_000_000 + int(i)
        assert m.key() == f"k{i}".encode()


def test_confluent_kafka_offsets_for_times_and_watermarks(bootstrap, topic_name):
    from confluent_kafka import Consumer, Producer, TopicPartition as TP

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": False})
    for i in range(20):
        producer.produce(topic_name, value=b"%d" % i, partition=0, timestamp=5_000_000 + i * 10)
    assert producer.flush(20) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "unused"})
    try:
        assert consumer.get_watermark_offsets(TP(topic_name, 0), timeout=10) == (0, 20)
        [tp] = consumer.offsets_for_times([TP(topic_name, 0, 5_000_095)], timeout=10)
        assert tp.offset == 10
        consumer.assign([TP(topic_name, 0, tp.offset)])
        m = consumer.poll(10)
        assert m is not None and m.value() == b"10"
    finally:
        consumer.close()


def test_kafka_python_roundtrip(bootstrap, topic_name):
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition as TP
    from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    admin.create_topics([KNewTopic(topic_name, 2, 1)])
    admin.close()
    for codec in [None, "gzip", "lz4", "zstd"]:
        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", compression_type=codec,
                                 enable_idempotence=False)
        for i in range(100):
            producer.send(topic_name, value=f"{codec}-{i}".encode(), key=b"%d" % (i % 5),
                          headers=[("h", b"v")], timestamp_ms=1_600_000_000_000 + i)
        producer.flush(20)
        producer.close()
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, consumer_timeout_ms=5000)
    consumer.assign([TP(topic_name, 0), TP(topic_name, 1)])
    consumer.seek_to_beginning()
    got = list(consumer)
    consumer.close()
    assert sorted(m.value.decode() for m in got) == sorted(f"{c}-{i}" for c in [None, "gzip", "lz4", "zstd"]
                                                           for i in range(100))
    for m in got:
        assert m.headers == [("h", b"v")]
        assert m.timestamp == 1_600_000_000_000 + int(m.value.decode().rsplit("-", 1)[1])


async def test_produce_to_unknown_partition_and_topic(bootstrap, topic_name):
    """The broker itself refuses (clients usually check metadata first, so send the Produce raw)."""
    import datetime

    from kio.schema.errors import ErrorCode

    from broker_embedded.log.records import build_batch
    from wire import Conn

    await _create(bootstrap, topic_name, 1)
    conn = Conn(bootstrap)
    try:
        m = conn.m((0, 3))
        batch = build_batch([(b"k", b"v", None, None)])
        for topic, partition in [(topic_name, 5), (topic_name + "-missing", 0)]:
            resp = conn.call((0, 3), transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=5),
                             topic_data=(m.TopicProduceData(name=topic, partition_data=(
                                 m.PartitionProduceData(index=partition, records=batch),)),))
            assert resp.responses[0].partition_responses[0].error_code == ErrorCode.unknown_topic_or_partition
    finally:
        conn.close()
    got = await _consume_all(bootstrap, [TopicPartition(topic_name, 0)], 1, timeout=1.0)
    assert got == [], "nothing of a refused produce may reach another partition"

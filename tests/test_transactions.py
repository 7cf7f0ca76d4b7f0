"""Transactions through real clients: what read_committed and read_uncommitted consumers see, offsets committed
with the transaction, zombie fencing and transaction timeouts (aiokafka, confluent-kafka, kafka-python)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.errors import KafkaError as AIOKafkaError
from aiokafka.structs import TopicPartition


def _tid() -> str:
    return "tx-" + uuid.uuid4().hex[:10]


async def _create(bootstrap: str, *topics: str, partitions: int = 1) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(t, partitions, 1) for t in topics])
    finally:
        await admin.close()


async def read_all(bootstrap: str, topic: str, isolation: str, partitions: int = 1) -> list[bytes]:
    """Every value of `topic` up to its end offset (LSO for read_committed), in partition order."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level=isolation)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(partitions)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        out: list[bytes] = []
        deadline = time.monotonic() + 20
        while any([await consumer.position(tp) < ends[tp] for tp in tps]) and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                out += [m.value for m in msgs]
        return out
    finally:
        await consumer.stop()


async def _producer(bootstrap: str, tid: str, **kw) -> AIOKafkaProducer:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=tid, **kw)
    await producer.start()
    return producer


async def test_aiokafka_committed_visible_aborted_never(bootstrap, topic_name):
    await _create(bootstrap, topic_name, partitions=2)
    producer = await _producer(bootstrap, _tid())
    try:
        async with producer.transaction():
            await producer.send(topic_name, b"c1", partition=0)
            await producer.send(topic_name, b"c2", partition=1)
        await producer.begin_transaction()
        await producer.send_and_wait(topic_name, b"a1", partition=0)
        await producer.send_and_wait(topic_name, b"a2", partition=1)
        await producer.abort_transaction()
        async with producer.transaction():
            await producer.send(topic_name, b"c3", partition=0)
    finally:
        await producer.stop()
    assert sorted(await read_all(bootstrap, topic_name, "read_committed", 2)) == [b"c1", b"c2", b"c3"]
    assert sorted(await read_all(bootstrap, topic_name, "read_uncommitted", 2)) == [b"a1", b"a2", b"c1", b"c2",
                                                                                       b"c3"]


async def test_read_committed_waits_for_the_open_transaction(bootstrap, topic_name):
    """The last stable offset stops read_committed consumers before an open transaction, even behind it."""
    await _create(bootstrap, topic_name)
    open_txn = await _producer(bootstrap, _tid())
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await plain.start()
    try:
        await plain.send_and_wait(topic_name, b"before")
        await open_txn.begin_transaction()
        await open_txn.send_and_wait(topic_name, b"in-txn")
        await plain.send_and_wait(topic_name, b"after")
        assert await read_all(bootstrap, topic_name, "read_committed") == [b"before"]
        await open_txn.commit_transaction()
        assert await read_all(bootstrap, topic_name, "read_committed") == [b"before", b"in-txn", b"after"]
    finally:
        await open_txn.stop()
        await plain.stop()


async def test_aiokafka_offsets_commit_only_with_the_transaction(bootstrap, topic_name):
    src, dst, group = topic_name + "-in", topic_name + "-out", "g-" + uuid.uuid4().hex[:8]
    await _create(bootstrap, src, dst)
    plain = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await plain.start()
    for i in range(10):
        await plain.send(src, b"%d" % i)
    await plain.stop()
    tp = TopicPartition(src, 0)
    producer = await _producer(bootstrap, _tid())
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False,
                                auto_offset_reset="earliest", isolation_level="read_committed")
    await consumer.start()
    try:
        consumer.assign([tp])
        await producer.begin_transaction()
        await producer.send_and_wait(dst, b"aborted")
        await producer.send_offsets_to_transaction({tp: 4}, group)
        await producer.abort_transaction()
        assert await consumer.committed(tp) is None
        async with producer.transaction():
            await producer.send_and_wait(dst, b"committed")
            await producer.send_offsets_to_transaction({tp: 7}, group)
        for _ in range(50):  # Kafka settles the offsets just after answering EndTxn
            if await consumer.committed(tp) == 7:
                break
            await asyncio.sleep(0.1)
        assert await consumer.committed(tp) == 7
    finally:
        await consumer.stop()
        await producer.stop()
    assert await read_all(bootstrap, dst, "read_committed") == [b"committed"]


async def test_zombie_producer_is_fenced(bootstrap, topic_name):
    """A second producer with the same transactional.id aborts the first one's transaction and fences it."""
    await _create(bootstrap, topic_name)
    tid = _tid()
    zombie = await _producer(bootstrap, tid)
    await zombie.begin_transaction()
    await zombie.send_and_wait(topic_name, b"zombie-open")
    successor = await _producer(bootstrap, tid)
    try:
        with pytest.raises(AIOKafkaError):
            await zombie.send_and_wait(topic_name, b"zombie-late")
            await zombie.commit_transaction()
        async with successor.transaction():
            await successor.send_and_wait(topic_name, b"successor")
    finally:
        await successor.stop()
        try:
            await zombie.stop()
        except AIOKafkaError:
            pass
    assert await read_all(bootstrap, topic_name, "read_committed") == [b"successor"]


async def test_transaction_open_past_its_timeout_is_aborted(bootstrap, topic_name, kafka_reference):
    await _create(bootstrap, topic_name)
    producer = await _producer(bootstrap, _tid(), transaction_timeout_ms=1000)
    try:
        await producer.begin_transaction()
        await producer.send_and_wait(topic_name, b"too-slow")
        # Kafka looks for timed-out transactions every 10 s; this broker every second.
        await asyncio.sleep(13 if kafka_reference else 2.5)
        assert await read_all(bootstrap, topic_name, "read_committed") == []
        with pytest.raises(AIOKafkaError):
            await producer.commit_transaction()
    finally:
        try:
            await producer.stop()
        except AIOKafkaError:
            pass
    assert await read_all(bootstrap, topic_name, "read_uncommitted") == [b"too-slow"]


def test_confluent_kafka_transactions(bootstrap, topic_name):
    from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition as TP

    src, dst, group = topic_name + "-in", topic_name + "-out", "g-" + uuid.uuid4().hex[:8]
    asyncio.run(_create(bootstrap, src, dst))
    seed = Producer({"bootstrap.servers": bootstrap})
    for i in range(5):
        seed.produce(src, b"%d" % i)
    assert seed.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                         "auto.offset.reset": "earliest", "isolation.level": "read_committed"})
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": _tid()})
    producer.init_transactions(30)
    producer.begin_transaction()
    producer.produce(dst, b"aborted")
    producer.flush(30)  # abort_transaction would otherwise drop it unsent
    producer.abort_transaction(30)
    producer.begin_transaction()
    producer.produce(dst, b"committed")
    producer.send_offsets_to_transaction([TP(src, 0, 3)], consumer.consumer_group_metadata(), 30)
    producer.commit_transaction(30)
    committed = consumer.committed([TP(src, 0)], timeout=30)
    consumer.close()
    assert committed[0].offset == 3
    assert asyncio.run(read_all(bootstrap, dst, "read_committed")) == [b"committed"]
    assert asyncio.run(read_all(bootstrap, dst, "read_uncommitted")) == [b"aborted", b"committed"]
    with pytest.raises(KafkaException):
        producer.abort_transaction(5)  # nothing open: a state error, and the producer is still usable
    producer.begin_transaction()
    producer.produce(dst, b"last")
    producer.commit_transaction(30)
    assert asyncio.run(read_all(bootstrap, dst, "read_committed")) == [b"committed", b"last"]


def test_confluent_kafka_zombie_is_fenced(bootstrap, topic_name):
    from confluent_kafka import KafkaException, Producer

    asyncio.run(_create(bootstrap, topic_name))
    tid = _tid()
    zombie = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid})
    zombie.init_transactions(30)
    zombie.begin_transaction()
    zombie.produce(topic_name, b"zombie")
    zombie.flush(30)
    successor = Producer({"bootstrap.servers": bootstrap, "transactional.id": tid})
    successor.init_transactions(30)
    with pytest.raises(KafkaException) as info:
        zombie.commit_transaction(30)
    assert info.value.args[0].fatal()
    successor.begin_transaction()
    successor.produce(topic_name, b"successor")
    successor.commit_transaction(30)
    assert asyncio.run(read_all(bootstrap, topic_name, "read_committed")) == [b"successor"]


def test_kafka_python_transactions(bootstrap, topic_name):
    from kafka import KafkaProducer

    asyncio.run(_create(bootstrap, topic_name))
    producer = KafkaProducer(bootstrap_servers=bootstrap, transactional_id=_tid())
    producer.init_transactions()
    producer.begin_transaction()
    producer.send(topic_name, b"committed")
    producer.commit_transaction()
    producer.begin_transaction()
    producer.send(topic_name, b"aborted").get(30)
    producer.abort_transaction()
    producer.close()
    assert asyncio.run(read_all(bootstrap, topic_name, "read_committed")) == [b"committed"]
    assert asyncio.run(read_all(bootstrap, topic_name, "read_uncommitted")) == [b"committed", b"aborted"]


async def test_offset_fetch_require_stable_while_offsets_are_pending(bootstrap, topic_name):
    """OffsetFetch with RequireStable answers UNSTABLE_OFFSET_COMMIT until the transaction holding the offset ends."""
    from kio.index import load_payload_module
    from kio.schema.errors import ErrorCode
    from kio.static.constants import EntityType

    from test_idempotence import RawClient

    await _create(bootstrap, topic_name)
    group = "g-" + uuid.uuid4().hex[:8]
    m = load_payload_module(9, 7, EntityType.request)

    def fetch(require_stable: bool):
        c = RawClient(bootstrap)
        try:
            resp = c.call((9, 7), group_id=group, require_stable=require_stable,
                          topics=(m.OffsetFetchRequestTopic(name=topic_name, partition_indexes=(0,)),))
        finally:
            c.close()
        p = resp.topics[0].partitions[0]
        return p.error_code, p.committed_offset

    producer = await _producer(bootstrap, _tid())
    try:
        await producer.begin_transaction()
        await producer.send_offsets_to_transaction({TopicPartition(topic_name, 0): 5}, group)
        assert await asyncio.to_thread(fetch, True) == (ErrorCode.unstable_offset_commit, -1)
        assert await asyncio.to_thread(fetch, False) == (ErrorCode.none, -1)
        await producer.commit_transaction()
        for _ in range(50):  # Kafka writes the offset topic's marker just after answering EndTxn
            answer = await asyncio.to_thread(fetch, True)
            if answer[0] != ErrorCode.unstable_offset_commit:
                break
            await asyncio.sleep(0.1)
        assert answer == (ErrorCode.none, 5)
    finally:
        await producer.stop()


def test_transaction_protocol_errors(bootstrap, topic_name):
    """The error codes Kafka gives for misuse: a transactional batch for a partition not in the transaction,
    EndTxn with nothing open, a fenced epoch on an old EndTxn version, a timeout above the maximum."""
    import datetime

    from kio.index import load_payload_module
    from kio.schema.errors import ErrorCode
    from kio.static.constants import EntityType

    from broker_embedded.log.records import build_batch
    from test_idempotence import RawClient

    asyncio.run(_create(bootstrap, topic_name))
    c = RawClient(bootstrap)
    tid = _tid()
    try:
        for _ in range(50):
            r = c.call((22, 1), transactional_id=tid, transaction_timeout=datetime.timedelta(seconds=60))
            if r.error_code != ErrorCode.coordinator_load_in_progress:
                break
            time.sleep(0.2)
        assert r.error_code == ErrorCode.none
        pid, epoch = r.producer_id, r.producer_epoch
        records = build_batch([(None, b"x", None, None)], producer_id=pid, producer_epoch=epoch, base_sequence=0,
                              attributes=0x10)
        m = load_payload_module(0, 3, EntityType.request)
        for _ in range(50):  # Kafka answers NOT_LEADER_OR_FOLLOWER until a new topic's leader is known
            resp = c.call((0, 3), transactional_id=tid, acks=-1, timeout=datetime.timedelta(seconds=10),
                          topic_data=(m.TopicProduceData(name=topic_name, partition_data=(
                              m.PartitionProduceData(index=0, records=records),)),))
            if resp.responses[0].partition_responses[0].error_code != ErrorCode.not_leader_or_follower:
                break
            time.sleep(0.1)
        assert resp.responses[0].partition_responses[0].error_code == ErrorCode.invalid_txn_state
        for commit in (True, False):
            r = c.call((26, 1), transactional_id=tid, producer_id=pid, producer_epoch=epoch, committed=commit)
            assert r.error_code == ErrorCode.invalid_txn_state
        r = c.call((26, 1), transactional_id=tid, producer_id=pid, producer_epoch=epoch + 5, committed=False)
        assert r.error_code == ErrorCode.invalid_producer_epoch
        r = c.call((22, 1), transactional_id=tid, transaction_timeout=datetime.timedelta(minutes=20))
        assert r.error_code == ErrorCode.invalid_transaction_timeout
    finally:
        c.close()
    assert asyncio.run(read_all(bootstrap, topic_name, "read_uncommitted")) == []

"""Idempotent producers: retried batches are written once, gaps and fenced epochs are refused.

The raw tests send the very same Produce bytes twice over a socket, which is what a client retry after a lost
response looks like to the broker.
"""

from __future__ import annotations

import asyncio
import datetime
import time

import pytest
from aiokafka import AIOKafkaProducer
from kio.index import load_payload_module
from kio.schema.errors import ErrorCode
from kio.static.constants import EntityType

from broker_embedded.log.records import build_batch
from wire import Conn
from readback import read_partition


class RawClient(Conn):
    """A blocking Kafka connection speaking non-flexible request versions through kio's codecs."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(bootstrap, timeout=10)

    def init_producer_id(self) -> tuple[int, int]:
        for _ in range(100):  # a freshly started Kafka answers COORDINATOR_LOAD_IN_PROGRESS for a while
            resp = self.call((22, 1), transactional_id=None,
                             transaction_timeout=datetime.timedelta(seconds=60))
            if resp.error_code != ErrorCode.coordinator_load_in_progress:
                break
            time.sleep(0.1)
        assert resp.error_code == ErrorCode.none
        return resp.producer_id, resp.producer_epoch

    def produce(self, topic: str, batch: bytes, partition: int = 0):
        """(error code, base offset) of a Produce v3 with acks=-1 carrying `batch`."""
        m = load_payload_module(0, 3, EntityType.request)
        resp = self.call((0, 3), transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=10),
                         topic_data=(m.TopicProduceData(name=topic, partition_data=(
                             m.PartitionProduceData(index=partition, records=batch),)),))
        p = resp.responses[0].partition_responses[0]
        return p.error_code, p.base_offset

    def close(self) -> None:
        self.sock.close()


def batch(values: list[bytes], pid: int, epoch: int, seq: int) -> bytes:
    return build_batch([(None, v, None, None) for v in values], producer_id=pid, producer_epoch=epoch,
                       base_sequence=seq)


async def _create(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 1, 1)])
    finally:
        await admin.close()


async def _values(bootstrap: str, topic: str) -> list[bytes]:
    return [m.value for m in await read_partition(bootstrap, topic)]


def _create_sync(bootstrap: str, topic: str) -> None:
    asyncio.run(_create(bootstrap, topic))


def test_duplicate_batch_is_acknowledged_with_its_original_offset(bootstrap, topic_name):
    _create_sync(bootstrap, topic_name)
    c = RawClient(bootstrap)
    try:
        pid, epoch = c.init_producer_id()
        first = batch([b"a", b"b"], pid, epoch, 0)
        assert c.produce(topic_name, first) == (ErrorCode.none, 0)
        second = batch([b"c"], pid, epoch, 2)
        assert c.produce(topic_name, second) == (ErrorCode.none, 2)
        # Retries of both (a lost response): acknowledged with the original offsets, not written again.
        assert c.produce(topic_name, first) == (ErrorCode.none, 0)
        assert c.produce(topic_name, second) == (ErrorCode.none, 2)
        assert c.produce(topic_name, batch([b"d"], pid, epoch, 3)) == (ErrorCode.none, 3)
    finally:
        c.close()
    assert asyncio.run(_values(bootstrap, topic_name)) == [b"a", b"b", b"c", b"d"]


def test_sequence_gap_and_old_epoch_are_refused(bootstrap, topic_name):
    _create_sync(bootstrap, topic_name)
    c = RawClient(bootstrap)
    try:
        pid, epoch = c.init_producer_id()
        assert c.produce(topic_name, batch([b"a"], pid, epoch, 0))[0] == ErrorCode.none
        assert c.produce(topic_name, batch([b"x"], pid, epoch, 5))[0] == ErrorCode.out_of_order_sequence_number
        assert c.produce(topic_name, batch([b"b"], pid, epoch, 1))[0] == ErrorCode.none
        # A new epoch must start at sequence 0; once it has, the old epoch is fenced.
        assert c.produce(topic_name, batch([b"x"], pid, epoch + 1, 3))[0] == ErrorCode.out_of_order_sequence_number
        assert c.produce(topic_name, batch([b"c"], pid, epoch + 1, 0))[0] == ErrorCode.none
        assert c.produce(topic_name, batch([b"x"], pid, epoch, 2))[0] == ErrorCode.invalid_producer_epoch
    finally:
        c.close()
    assert asyncio.run(_values(bootstrap, topic_name)) == [b"a", b"b", b"c"]


def test_producer_ids_are_unique(bootstrap):
    c = RawClient(bootstrap)
    try:
        ids = {c.init_producer_id()[0] for _ in range(20)}
    finally:
        c.close()
    assert len(ids) == 20


def test_state_and_ids_survive_a_restart(broker_process, topic_name):
    """Producer state is rebuilt from the log (also after kill -9) and producer ids are never reused."""
    broker = broker_process().start()
    _create_sync(broker.bootstrap_servers, topic_name)
    c = RawClient(broker.bootstrap_servers)
    pid, epoch = c.init_producer_id()
    first = batch([b"a"], pid, epoch, 0)
    assert c.produce(topic_name, first) == (ErrorCode.none, 0)
    assert c.produce(topic_name, batch([b"b"], pid, epoch, 1)) == (ErrorCode.none, 1)
    c.close()
    broker.kill()
    broker.start()
    c = RawClient(broker.bootstrap_servers)
    try:
        assert c.produce(topic_name, first) == (ErrorCode.none, 0)
        assert c.produce(topic_name, batch([b"x"], pid, epoch, 7))[0] == ErrorCode.out_of_order_sequence_number
        assert c.produce(topic_name, batch([b"c"], pid, epoch, 2)) == (ErrorCode.none, 2)
        assert c.init_producer_id()[0] != pid
    finally:
        c.close()
    assert asyncio.run(_values(broker.bootstrap_servers, topic_name)) == [b"a", b"b", b"c"]


@pytest.mark.asyncio
async def test_aiokafka_idempotent_producer(bootstrap, topic_name):
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await producer.start()
    try:
        for i in range(50):
            await producer.send(topic_name, b"%d" % i)
        await producer.flush()
    finally:
        await producer.stop()
    assert await _values(bootstrap, topic_name) == [b"%d" % i for i in range(50)]


def test_kafka_python_and_confluent_idempotent_producers(bootstrap, topic_name):
    from confluent_kafka import Producer
    from kafka import KafkaProducer

    kp = KafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    for i in range(20):
        kp.send(topic_name, b"k%d" % i)
    kp.flush()
    kp.close()
    cp = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for i in range(20):
        cp.produce(topic_name, b"c%d" % i)
    assert cp.flush(30) == 0
    values = asyncio.run(_values(bootstrap, topic_name))
    assert values == [b"k%d" % i for i in range(20)] + [b"c%d" % i for i in range(20)]

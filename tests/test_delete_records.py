"""DeleteRecords through the admin clients of kafka-python and confluent-kafka: the low watermark moves, consumers
start from it, and the request is refused beyond the high watermark and on compact-only topics."""

from __future__ import annotations

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from kafka import KafkaAdminClient
from kafka import TopicPartition as KTopicPartition
from kafka.errors import OffsetOutOfRangeError, PolicyViolationError

from broker_embedded import EmbeddedBroker


def _create(bootstrap: str, topic: str, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        fut.result(30)


def _produce(bootstrap: str, topic: str, n: int) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(n):
        producer.produce(topic, key=b"k%d" % i, value=b"v%d" % i)
    assert producer.flush(30) == 0


def _first_offset(bootstrap: str, topic: str) -> tuple[int, int, int]:
    """(low watermark, high watermark, offset of the first record a consumer from the beginning gets)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "dr", "enable.auto.commit": False})
    try:
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        for _ in range(60):
            msgs = consumer.consume(1, 0.5)
            if msgs:
                assert msgs[0].error() is None, msgs[0].error()
                return low, high, msgs[0].offset()
        raise AssertionError("no record consumed")
    finally:
        consumer.close()


def test_delete_records_with_confluent_kafka(bootstrap, topic_name):
    _create(bootstrap, topic_name)
    _produce(bootstrap, topic_name, 100)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    done = admin.delete_records([TopicPartition(topic_name, 0, 40)])
    result = done[TopicPartition(topic_name, 0, 40)].result(30)
    assert result.low_watermark == 40
    assert _first_offset(bootstrap, topic_name) == (40, 100, 40)
    # Moving backwards is not an error: the low watermark stays where it is.
    again = admin.delete_records([TopicPartition(topic_name, 0, 10)])
    assert list(again.values())[0].result(30).low_watermark == 40
    beyond = admin.delete_records([TopicPartition(topic_name, 0, 1000)])
    with pytest.raises(KafkaException) as info:
        list(beyond.values())[0].result(30)
    assert "OFFSET_OUT_OF_RANGE" in str(info.value)


def test_delete_records_with_kafka_python(bootstrap, topic_name):
    _create(bootstrap, topic_name)
    _produce(bootstrap, topic_name, 50)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        tp = KTopicPartition(topic_name, 0)
        result = admin.delete_records({tp: 20})
        assert result[tp]["low_watermark"] == 20
        assert _first_offset(bootstrap, topic_name)[2] == 20
        with pytest.raises(OffsetOutOfRangeError):
            admin.delete_records({tp: 51})
        # -1 means "up to the high watermark": everything is deleted.
        assert admin.delete_records({tp: -1})[tp]["low_watermark"] == 50
    finally:
        admin.close()


def test_delete_records_refused_on_a_compact_only_topic(bootstrap, topic_name):
    _create(bootstrap, topic_name, **{"cleanup.policy": "compact"})
    _produce(bootstrap, topic_name, 10)
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        with pytest.raises(PolicyViolationError):
            admin.delete_records({KTopicPartition(topic_name, 0): 5})
    finally:
        admin.close()


def test_low_watermark_survives_a_restart_and_frees_the_disk(tmp_path, only_embedded, topic_name):
    """The log start offset is durable, and whole segments below it are deleted at once."""
    data = str(tmp_path / "broker")
    broker = EmbeddedBroker(data_dir=data, port=0).start_in_thread()
    try:
        _create(broker.bootstrap_servers, topic_name, **{"segment.bytes": "1048576"})
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
        for i in range(3000):
            producer.produce(topic_name, value=b"x" * 1000)
        assert producer.flush(30) == 0
        plog = broker.broker.partition(topic_name, 0)
        segments_before = len(plog.segments)
        assert segments_before >= 3
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        list(admin.delete_records([TopicPartition(topic_name, 0, 2500)]).values())[0].result(30)
        assert len(plog.segments) < segments_before
        assert plog.segments[0].base_offset <= 2500
    finally:
        broker.stop_thread()
    broker = EmbeddedBroker(data_dir=data, port=0).start_in_thread()
    try:
        low, high, first = _first_offset(broker.bootstrap_servers, topic_name)
        assert (low, high, first) == (2500, 3000, 2500)
    finally:
        broker.stop_thread()

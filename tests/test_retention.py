"""Retention: old segments are deleted by size and by time while producers keep writing, disk use stays bounded,
and a consumer positioned before the new log start is reset by its auto.offset.reset policy."""

from __future__ import annotations

import os
import time

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from broker_embedded import EmbeddedBroker

SEGMENT_BYTES = 1024 * 1024  # Kafka's minimum segment.bytes


@pytest.fixture
def retention_broker(log_services_broker):
    return log_services_broker


def _create(bootstrap: str, topic: str, **config: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        fut.result(30)


def _watermarks(bootstrap: str, topic: str) -> tuple[int, int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "wm"})
    try:
        return consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
    finally:
        consumer.close()


def _dir_bytes(broker: EmbeddedBroker, topic: str) -> int:
    """The bytes of the partition's segment files now on disk. Retention deletes files while this runs: one listed
    and then gone before its size is read is no longer on disk, so it counts for nothing."""
    path = os.path.join(broker.config.data_dir, f"{topic}-0")
    total = 0
    with os.scandir(path) as entries:
        for entry in entries:
            if entry.name.endswith(".log"):
                try:
                    total += entry.stat().st_size
                except FileNotFoundError:
                    pass
    return total


# Under --kafka the retention tests wait for Kafka's retention check, every 300 s (log.retention.check.interval.ms
# is not a dynamic config): up to 420 s, more than pytest's default timeout of 300 s.
KAFKA_RETENTION_TIMEOUT = pytest.mark.timeout(600)


@KAFKA_RETENTION_TIMEOUT
def test_size_retention_keeps_disk_bounded_under_continuous_produce(retention_broker, kafka_reference, topic_name):
    bootstrap, broker = retention_broker
    limit = 3 * SEGMENT_BYTES
    _create(bootstrap, topic_name, **{"segment.bytes": str(SEGMENT_BYTES), "retention.bytes": str(limit)})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    value = b"x" * 1000
    peak = 0
    deadline = time.monotonic() + (420 if kafka_reference else 60)  # Kafka checks every 300 s
    low = 0
    for round_ in range(12):  # about 12 MB in rounds of 1 MB, four times the retained size
        for _ in range(1000):
            producer.produce(topic_name, value=value)
        assert producer.flush(30) == 0
        if broker is not None:
            peak = max(peak, _dir_bytes(broker, topic_name))
        time.sleep(0.2)
    while time.monotonic() < deadline:
        low, high = _watermarks(bootstrap, topic_name)
        if (high - low) * 1000 <= limit + 2 * SEGMENT_BYTES:
            break
        time.sleep(1)
    low, high = _watermarks(bootstrap, topic_name)
    assert high == 12000
    assert low > 0, "no segment was deleted"
    assert (high - low) * 1000 <= limit + 2 * SEGMENT_BYTES
    if broker is not None:
        # Between two checks at most a segment or two more than retention.bytes is on disk.
        assert peak <= limit + 3 * SEGMENT_BYTES
        assert _dir_bytes(broker, topic_name) <= limit + 2 * SEGMENT_BYTES


@KAFKA_RETENTION_TIMEOUT
def test_time_retention_deletes_old_segments_and_consumers_reset(retention_broker, kafka_reference, topic_name):
    """Records an hour old under retention.ms of a minute are deleted, even from the active segment (rolled);
    a consumer whose position fell before the log start resets to the earliest offset."""
    bootstrap, _broker = retention_broker
    _create(bootstrap, topic_name, **{"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "60000"})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    old = int(time.time() * 1000) - 3600 * 1000
    for i in range(3000):
        producer.produce(topic_name, value=b"o" * 1000, timestamp=old + i)
    assert producer.flush(30) == 0
    deadline = time.monotonic() + (400 if kafka_reference else 30)
    while time.monotonic() < deadline:
        low, high = _watermarks(bootstrap, topic_name)
        if low == high == 3000:
            break
        time.sleep(1)
    assert _watermarks(bootstrap, topic_name) == (3000, 3000)
    for i in range(5):
        producer.produce(topic_name, value=b"new-%d" % i)
    assert producer.flush(30) == 0
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "g-" + topic_name,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    try:
        consumer.assign([TopicPartition(topic_name, 0, 10)])  # a position retention has deleted
        got = []
        end = time.monotonic() + 30
        while len(got) < 5 and time.monotonic() < end:
            for msg in consumer.consume(10, 0.5):
                assert msg.error() is None, msg.error()
                got.append((msg.offset(), msg.value()))
        assert got == [(3000 + i, b"new-%d" % i) for i in range(5)]
    finally:
        consumer.close()


def test_unlimited_retention_keeps_everything(retention_broker, only_embedded, topic_name):
    """retention.ms=-1 and retention.bytes=-1 disable both limits, however old the records."""
    bootstrap, broker = retention_broker
    _create(bootstrap, topic_name, **{"segment.bytes": str(SEGMENT_BYTES), "retention.ms": "-1"})
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5})
    for i in range(3000):
        producer.produce(topic_name, value=b"o" * 1000, timestamp=1000 + i)
    assert producer.flush(30) == 0
    time.sleep(0.5)  # several retention checks
    assert _watermarks(bootstrap, topic_name) == (0, 3000)


def test_log_start_offset_survives_restart(tmp_path, only_embedded, topic_name):
    data = str(tmp_path / "broker")
    settings = dict(data_dir=data, port=0, log_retention_check_interval_ms=100)
    broker = EmbeddedBroker(**settings).start_in_thread()
    try:
        _create(broker.bootstrap_servers, topic_name, **{"segment.bytes": str(SEGMENT_BYTES)})
        producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "linger.ms": 5})
        for i in range(4000):
            producer.produce(topic_name, value=b"x" * 1000)
        assert producer.flush(30) == 0
        # retention.bytes only now, with every record written: one retention check deletes all it ever will, so
        # the log start seen below is final (a check during the produce would leave the next one more to delete,
        # before or after the restart, and the log start would move after the test read it).
        admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
        res = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
            ConfigEntry("retention.bytes", str(SEGMENT_BYTES), incremental_operation=AlterConfigOpType.SET)])
        admin.incremental_alter_configs([res])[res].result(30)
        deadline = time.monotonic() + 10
        while _watermarks(broker.bootstrap_servers, topic_name)[0] == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        low_before = _watermarks(broker.bootstrap_servers, topic_name)[0]
        assert low_before > 0
    finally:
        broker.stop_thread()
    broker = EmbeddedBroker(**settings).start_in_thread()
    try:
        assert _watermarks(broker.bootstrap_servers, topic_name) == (low_before, 4000)
    finally:
        broker.stop_thread()

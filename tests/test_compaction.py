"""Log compaction seen by clients: after cleaning, a compacted topic holds about one record per live key, and a
consumer reading it from the start rebuilds exactly the latest value of every live key, whatever the codec and
with aborted transactions mixed in. Also passes against Apache Kafka (`--kafka`), whose cleaner is slower: the
tests poll with a timeout rather than wait for a fixed time.
"""

from __future__ import annotations

import glob
import os
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic

from broker_embedded import EmbeddedBroker
from broker_embedded.log.segment import iter_file_batches

# Kafka's smallest segment.bytes (4.x): the same configs work on both brokers.
SEGMENT_BYTES = 1024 * 1024


@pytest.fixture
def cleaning_broker(log_services_broker):
    return log_services_broker


def create_compacted(bootstrap: str, topic: str, **extra: str) -> None:
    config = {"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES), "segment.ms": "1000",
              "min.cleanable.dirty.ratio": "0.01", "min.compaction.lag.ms": "0", **extra}
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for fut in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
        fut.result(30)


def roll_active_segment(bootstrap: str, topic: str) -> None:
    """segment.ms has passed once this returns: one more record rolls the segment that holds the last updates,
    so that all of them become cleanable (the active segment never is)."""
    time.sleep(1.2)
    producer = Producer({"bootstrap.servers": bootstrap})
    producer.produce(topic, key=b"~end", value=b"end")
    assert producer.flush(30) == 0


def read_all(bootstrap: str, topic: str, committed: bool = True) -> list[tuple[int, bytes | None, bytes | None]]:
    """Every record of partition 0 from the log start to the high watermark: (offset, key, value)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                         "isolation.level": "read_committed" if committed else "read_uncommitted"})
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            for msg in consumer.consume(10000, 0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.offset(), msg.key(), msg.value()))
            position = consumer.position([TopicPartition(topic, 0)])[0].offset
            if position >= high:
                return out
        raise AssertionError(f"could not read {topic} up to {high}: at {out[-1][0] if out else None}")
    finally:
        consumer.close()


def latest_values(records) -> dict[bytes, bytes]:
    """What a table built from the topic holds: the last value per key, tombstones deleting."""
    table: dict[bytes, bytes] = {}
    for _offset, key, value in records:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value
    table.pop(b"~end", None)
    return table


def wait_compacted(bootstrap: str, topic: str, most: int, timeout: float) -> list:
    """Read the topic until it holds at most `most` records (the cleaner has caught up); return the records."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_all(bootstrap, topic, committed=False)
        if len(records) <= most or time.monotonic() > deadline:
            return records
        time.sleep(1)


def batches_on_disk(broker: EmbeddedBroker, topic: str) -> tuple[int, dict[int, int]]:
    """(records, {base offset: codec} of the data batches of the closed segments) in the partition's segment
    files."""
    count, codecs = 0, {}
    paths = sorted(glob.glob(os.path.join(broker.config.data_dir, f"{topic}-0", "*.log")))
    for path in paths:
        for _pos, header, _raw in iter_file_batches(path, os.path.getsize(path)):
            count += header.record_count
            if header.record_count and not header.is_control and path != paths[-1]:
                codecs[header.base_offset] = header.compression
    return count, codecs


def allow_cleaning(bootstrap: str, topic: str) -> None:
    """Let the cleaner at the records that `min.compaction.lag.ms` of an hour held back until now."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    res = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[
        ConfigEntry("min.compaction.lag.ms", "0", incremental_operation=AlterConfigOpType.SET)])
    admin.incremental_alter_configs([res])[res].result(30)


def produce_updates(bootstrap: str, topic: str, keys: int, rounds: int, codec: str) -> dict[bytes, bytes]:
    """`rounds` updates of every key, but the last round deletes every tenth key and leaves the other even keys at
    their previous value (so that the cleaner rewrites the batches of the round before, keeping part of each).
    Returns the live table."""
    producer = Producer({"bootstrap.servers": bootstrap, "compression.type": codec, "linger.ms": 20,
                         "queue.buffering.max.messages": 1_000_000})
    expected: dict[bytes, bytes] = {}
    for r in range(rounds):
        for i in range(keys):
            if r == rounds - 1 and i % 2 == 0 and i % 10:
                continue
            key = b"key-%d" % i
            value = None if r == rounds - 1 and i % 10 == 0 else b"value-%d-%d" % (i, r)
            producer.produce(topic, key=key, value=value)
            if value is None:
                expected.pop(key, None)
            else:
                expected[key] = value
            if i % 20000 == 0:
                producer.poll(0)
        assert producer.flush(60) == 0
    return expected


CODECS = {"none": 0, "gzip": 1, "lz4": 3, "zstd": 4}


def _compaction_scenario(cleaning_broker, topic: str, keys: int, rounds: int, codec: str, timeout: float) -> None:
    bootstrap, broker = cleaning_broker
    # The cleaner waits until the test has seen the batches as the producer sent them: librdkafka sends a batch
    # uncompressed when compressing does not make it smaller (a batch of a record or two, which a loaded machine
    # makes more likely), so the codec to expect is each batch's own, not always the configured one.
    create_compacted(bootstrap, topic, **{"min.compaction.lag.ms": "3600000"})
    expected = produce_updates(bootstrap, topic, keys, rounds, codec)
    roll_active_segment(bootstrap, topic)
    sent = batches_on_disk(broker, topic)[1] if broker is not None else {}
    allow_cleaning(bootstrap, topic)
    # About one record per key: the live ones, the tombstones of the deleted ones (kept for delete.retention.ms)
    # and the record that rolled the segment.
    most = keys + keys // 100 + 10
    records = wait_compacted(bootstrap, topic, most, timeout)
    assert len(records) <= most, f"{len(records)} records left of {keys * rounds}"
    assert latest_values(records) == expected
    offsets = [o for o, _k, _v in records]
    assert offsets == sorted(set(offsets))
    if broker is not None:
        on_disk, kept = batches_on_disk(broker, topic)
        assert on_disk <= most
        assert CODECS[codec] in kept.values(), "the cleaned segments hold compressed batches"
        changed = {base: (sent.get(base), now) for base, now in kept.items() if sent.get(base) != now}
        assert not changed, f"rewritten batches keep the producer's codec (base: (sent, kept)): {changed}"


@pytest.mark.parametrize("codec", list(CODECS))
def test_compacted_topic_keeps_the_latest_value_of_every_live_key(cleaning_broker, kafka_reference, topic_name,
                                                                    codec):
    _compaction_scenario(cleaning_broker, topic_name, 20_000, 5, codec, 120 if kafka_reference else 30)


@pytest.mark.slow
@pytest.mark.parametrize("codec", list(CODECS))
def test_compaction_of_100k_keys_updated_ten_times(cleaning_broker, kafka_reference, topic_name, codec):
    _compaction_scenario(cleaning_broker, topic_name, 100_000, 10, codec, 300 if kafka_reference else 120)


def test_tombstones_go_after_delete_retention(cleaning_broker, kafka_reference, topic_name):
    """With delete.retention.ms=0 a later pass drops the tombstones too: deleted keys leave no record at all."""
    bootstrap, _broker = cleaning_broker
    create_compacted(bootstrap, topic_name, **{"delete.retention.ms": "0"})
    keys = 2000
    expected = produce_updates(bootstrap, topic_name, keys, 3, "none")
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20})
    deadline = time.monotonic() + (300 if kafka_reference else 30)
    round_ = 0
    while True:
        # Fresh updates keep the partition dirty, so that later passes see the tombstones in their clean
        # section, past the delete horizon (a cleaner only runs where there is dirty data).
        round_ += 1
        for i in range(1, keys, 10):
            producer.produce(topic_name, key=b"key-%d" % i, value=b"again-%d-%d" % (i, round_))
            expected[b"key-%d" % i] = b"again-%d-%d" % (i, round_)
        assert producer.flush(30) == 0
        roll_active_segment(bootstrap, topic_name)
        time.sleep(1)
        records = read_all(bootstrap, topic_name, committed=False)
        tombstones = [r for r in records if r[2] is None]
        if not tombstones or time.monotonic() > deadline:
            break
    assert latest_values(records) == expected
    assert not tombstones, f"{len(tombstones)} tombstones remain after delete.retention.ms"


def test_aborted_transactions_are_cleaned_away(cleaning_broker, kafka_reference, topic_name):
    """Committed updates interleaved with aborted ones: after cleaning, not even a read_uncommitted consumer
    sees an aborted record, and read_committed sees the latest committed value of every key."""
    bootstrap, broker = cleaning_broker
    create_compacted(bootstrap, topic_name)
    keys = 5000
    producer = Producer({"bootstrap.servers": bootstrap, "transactional.id": "tx-" + topic_name,
                         "linger.ms": 20, "compression.type": "lz4"})
    producer.init_transactions(30)
    expected: dict[bytes, bytes] = {}
    for r in range(4):
        producer.begin_transaction()
        for i in range(keys):
            producer.produce(topic_name, key=b"key-%d" % i, value=b"value-%d-%d" % (i, r))
            expected[b"key-%d" % i] = b"value-%d-%d" % (i, r)
        producer.commit_transaction(30)
        producer.begin_transaction()
        for i in range(0, keys, 3):
            producer.produce(topic_name, key=b"key-%d" % i, value=b"ABORTED")
        # Kafka 4.1 answers an abort racing in-flight produces with INVALID_TXN_STATE: deliver first.
        producer.flush(30)
        producer.abort_transaction(30)
    roll_active_segment(bootstrap, topic_name)
    most = keys + 10
    records = wait_compacted(bootstrap, topic_name, most, 180 if kafka_reference else 30)
    assert len(records) <= most
    assert not [r for r in records if r[2] == b"ABORTED"], "aborted records survived cleaning"
    assert latest_values(read_all(bootstrap, topic_name, committed=True)) == expected
    assert latest_values(records) == expected

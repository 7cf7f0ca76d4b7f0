"""Answers that must match Apache Kafka 4.1 exactly on one node (run them against Kafka too:
`KAFKA_BOOTSTRAP=127.0.0.1:19092 pytest tests/test_broker_parity.py`)."""

from __future__ import annotations

import time

import pytest
from kio.schema.errors import ErrorCode

from wire import Conn

BIG = 900 * 1024


def _create(conn: Conn, name: str, partitions: int = 1, configs: dict[str, str] | None = None, version: int = 7):
    m = conn.m((19, version))
    cfg = tuple(m.CreatableTopicConfig(name=k, value=v) for k, v in (configs or {}).items())
    return conn.call((19, version), topics=(m.CreatableTopic(name=name, num_partitions=partitions,
                                                             replication_factor=1, assignments=(), configs=cfg),),
                     timeout=__import__("datetime").timedelta(seconds=30), validate_only=False).topics[0]


# ---- Fetch: the response-wide max_bytes -------------------------------------------------------------------


def _fill_big(bootstrap: str, topic: str, partitions: int, per_partition: int) -> None:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(per_partition):
        for part in range(partitions):
            p.produce(topic, value=bytes([i % 256]) * BIG, key=f"{part}-{i}".encode(), partition=part)
        p.flush(30)


def test_librdkafka_consumes_large_records_across_partitions(bootstrap, topic_name):
    """Every partition holds several records of almost 1 MiB: each Fetch answer must fit the client's
    fetch.max.bytes or librdkafka drops it and asks again forever."""
    from confluent_kafka import Consumer

    partitions, per_partition = 6, 3
    conn = Conn(bootstrap)
    assert _create(conn, topic_name, partitions).error_code == ErrorCode.none
    conn.close()
    _fill_big(bootstrap, topic_name, partitions, per_partition)
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic_name, "auto.offset.reset": "earliest",
                  # librdkafka refuses a response larger than receive.message.max.bytes (then asks again).
                  "fetch.max.bytes": 1_000_000, "receive.message.max.bytes": 1_000_512})
    c.subscribe([topic_name])
    got: dict[int, list[bytes]] = {}
    deadline = time.monotonic() + 30
    try:
        while sum(map(len, got.values())) < partitions * per_partition and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is None or msg.error():
                continue
            assert len(msg.value()) == BIG
            got.setdefault(msg.partition(), []).append(msg.key())
    finally:
        c.close()
    assert {p: got.get(p) for p in range(partitions)} == {
        p: [f"{p}-{i}".encode() for i in range(per_partition)] for p in range(partitions)}


def _whole_batches(records: bytes | None) -> int:
    """How many complete record batches a Fetch answer holds (a trailing partial one is not counted)."""
    pos, n, data = 0, 0, records or b""
    while pos + 12 <= len(data):
        size = 12 + int.from_bytes(data[pos + 8:pos + 12], "big")
        if pos + size > len(data):
            break
        pos, n = pos + size, n + 1
    return n


def _fetch(conn: Conn, topic: str, offsets: dict[int, int], max_bytes: int, partition_max_bytes: int = 10 << 20):
    m = conn.m((1, 12))
    import datetime

    parts = tuple(m.FetchPartition(partition=p, current_leader_epoch=-1, fetch_offset=o, last_fetched_epoch=-1,
                                   log_start_offset=-1, partition_max_bytes=partition_max_bytes)
                  for p, o in offsets.items())
    resp = conn.call((1, 12), replica_id=-1, max_wait=datetime.timedelta(milliseconds=0), min_bytes=1,
                     max_bytes=max_bytes, isolation_level=0, session_id=0, session_epoch=-1,
                     topics=(m.FetchTopic(topic=topic, partitions=parts),), forgotten_topics_data=(), rack_id="")
    return {p.partition_index: p for p in resp.responses[0].partitions}


def test_fetch_max_bytes_is_response_wide(bootstrap, topic_name):
    """Raw Fetch v12 against partitions of 10 kB batches: at least one whole batch when the first is larger
    than the budget, otherwise never more than max_bytes over all partitions."""
    from confluent_kafka import Producer

    size = 10_000
    conn = Conn(bootstrap)
    assert _create(conn, topic_name, 3).error_code == ErrorCode.none
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for _ in range(2):  # two batches per partition, one record each
        for part in range(3):
            p.produce(topic_name, value=b"x" * size, partition=part)
        p.flush(30)
    everything = {0: 0, 1: 0, 2: 0}
    whole = _fetch(conn, topic_name, everything, max_bytes=50 << 20)
    batch = len(whole[0].records) // 2
    assert [_whole_batches(whole[i].records) for i in range(3)] == [2, 2, 2]

    # The budget is smaller than one batch: the first partition still returns exactly one whole batch.
    got = _fetch(conn, topic_name, everything, max_bytes=1)
    assert [_whole_batches(got[i].records) for i in range(3)] == [1, 0, 0]
    assert len(got[0].records) == batch

    # Two and a half batches: the first partition's two fit, the second's first does not (no records).
    limit = 2 * batch + batch // 2
    got = _fetch(conn, topic_name, everything, max_bytes=limit)
    assert sum(len(got[i].records or b"") for i in range(3)) <= limit
    assert [_whole_batches(got[i].records) for i in range(3)] == [2, 0, 0]

    # partition_max_bytes still applies per partition, and the budget across them.
    got = _fetch(conn, topic_name, everything, max_bytes=limit, partition_max_bytes=batch + 10)
    assert sum(len(got[i].records or b"") for i in range(3)) <= limit
    assert [_whole_batches(got[i].records) for i in range(3)] == [1, 1, 0]

    # A partition with nothing to return does not use up the "one batch" allowance.
    got = _fetch(conn, topic_name, {0: 2, 1: 0, 2: 0}, max_bytes=1)
    assert [_whole_batches(got[i].records) for i in range(3)] == [0, 1, 0]
    conn.close()


# ---- Produce: records without a key on a compacted topic ---------------------------------------------------


def _produce(conn: Conn, topic: str, data: bytes, version: int = 11):
    import datetime

    m = conn.m((0, version))
    resp = conn.call((0, version), transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=30),
                     topic_data=(m.TopicProduceData(name=topic, partition_data=(
                         m.PartitionProduceData(index=0, records=data),)),))
    return resp.responses[0].partition_responses[0]


@pytest.mark.parametrize("codec", [0, 1, 4], ids=["none", "gzip", "zstd"])
def test_compacted_topic_refuses_records_without_key(bootstrap, topic_name, codec):
    """KIP-467: the whole batch is refused with INVALID_RECORD and each keyless record is named."""
    from broker_embedded.log.records import build_batch

    conn = Conn(bootstrap)
    assert _create(conn, topic_name, 1, {"cleanup.policy": "compact"}).error_code == ErrorCode.none
    batch = build_batch([(b"a", b"1", [], None), (None, b"2", [], None), (b"b", b"3", [], None),
                         (None, b"4", [], None)], attributes=codec)
    got = _produce(conn, topic_name, batch)
    partition = f"{topic_name}-0"
    assert got.error_code == ErrorCode.invalid_record
    assert [(e.batch_index, e.batch_index_error_message) for e in got.record_errors] == [
        (i, f"Compacted topic cannot accept message without key in topic partition {partition}") for i in (1, 3)]
    assert got.error_message.startswith("One or more records have been rejected due to 2 record errors")
    # Nothing of the refused batch was appended; a keyed batch goes in at offset 0.
    ok = _produce(conn, topic_name, build_batch([(b"a", b"1", [], None)], attributes=codec))
    assert (ok.error_code, ok.base_offset) == (ErrorCode.none, 0)
    conn.close()


def test_client_hears_invalid_record_for_keyless_record_on_compacted_topic(bootstrap, topic_name):
    from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

    conn = Conn(bootstrap)
    assert _create(conn, topic_name, 1, {"cleanup.policy": "compact"}).error_code == ErrorCode.none
    conn.close()
    errors = []
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    p.produce(topic_name, value=b"no key", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    p.produce(topic_name, key=b"k", value=b"keyed", on_delivery=lambda err, msg: errors.append(err))
    p.flush(30)
    assert errors[0] is not None and errors[0].code() == KafkaError.INVALID_RECORD
    assert errors[1] is None
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic_name})
    try:
        assert c.get_watermark_offsets(TopicPartition(topic_name, 0), timeout=10) == (0, 1)
    finally:
        c.close()


def test_produce_carries_one_batch_per_partition(bootstrap, topic_name):
    """Kafka refuses a v3+ produce whose partition data holds two batches (INVALID_RECORD), appending none."""
    from broker_embedded.log.records import build_batch

    conn = Conn(bootstrap)
    assert _create(conn, topic_name, 1).error_code == ErrorCode.none
    one = build_batch([(b"a", b"1", [], None)])
    assert _produce(conn, topic_name, one + one).error_code == ErrorCode.invalid_record
    ok = _produce(conn, topic_name, one)
    assert (ok.error_code, ok.base_offset) == (ErrorCode.none, 0)
    conn.close()

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


# ---- Topic configs: Kafka 4.1's validators and messages -----------------------------------------------------

# (name, value, Kafka 4.1.1's error message or None when accepted), as Kafka answers CreateTopics.
CONFIG_CASES = [
    ("segment.bytes", "100", "Invalid value 100 for configuration segment.bytes: Value must be at least 1048576"),
    ("segment.bytes", "abc", "Invalid value abc for configuration segment.bytes: Not a number of type INT"),
    ("segment.bytes", "2147483648",
     "Invalid value 2147483648 for configuration segment.bytes: Not a number of type INT"),
    ("segment.bytes", " 1048576 ", None),
    ("internal.segment.bytes", "4096", None),
    ("retention.bytes", "-5", None),
    ("retention.ms", "-2", "Invalid value -2 for configuration retention.ms: Value must be at least -1"),
    ("cleanup.policy", "", None),
    ("cleanup.policy", "compact,delete", None),
    ("cleanup.policy", "Compact",
     "Invalid value Compact for configuration cleanup.policy: String must be one of: compact, delete"),
    ("compression.type", "none", "Invalid value none for configuration compression.type: String must be one of: "
                                 "uncompressed, zstd, lz4, snappy, gzip, producer"),
    ("compression.gzip.level", "10",
     "Invalid value 10 for configuration compression.gzip.level: Value must be between 1 and 9 or equal to -1"),
    ("compression.zstd.level", "-131072", None),
    ("compression.zstd.level", "23",
     "Invalid value 23 for configuration compression.zstd.level: Value must be no more than 22"),
    ("compression.lz4.level", "0", "Invalid value 0 for configuration compression.lz4.level: Value must be at least 1"),
    ("min.cleanable.dirty.ratio", "1.5",
     "Invalid value 1.5 for configuration min.cleanable.dirty.ratio: Value must be no more than 1"),
    ("min.cleanable.dirty.ratio", "abc",
     "Invalid value abc for configuration min.cleanable.dirty.ratio: Not a number of type DOUBLE"),
    ("preallocate", "TRUE", None),
    ("preallocate", "yes",
     "Invalid value yes for configuration preallocate: Expected value to be either true or false"),
    ("remote.storage.enable", "true", "Tiered Storage functionality is disabled in the broker. "
                                      "Topic cannot be configured with remote log storage."),
    ("local.retention.ms", "-3", "Invalid value -3 for configuration local.retention.ms: Value must be at least -2"),
    ("leader.replication.throttled.replicas", "0:1", None),
    ("leader.replication.throttled.replicas", "bad",
     "Invalid value [bad] for configuration leader.replication.throttled.replicas: "
     "leader.replication.throttled.replicas must be the literal '*' or a list of replicas in the following format: "
     "[partitionId]:[brokerId],[partitionId]:[brokerId],..."),
    ("message.downconversion.enable", "true", "Unknown topic config name: message.downconversion.enable"),
    ("flush.messages", "0", "Invalid value 0 for configuration flush.messages: Value must be at least 1"),
    ("segment.ms", "0", "Invalid value 0 for configuration segment.ms: Value must be at least 1"),
    ("max.compaction.lag.ms", "0", "Invalid value 0 for configuration max.compaction.lag.ms: Value must be at least 1"),
]


@pytest.mark.parametrize("name,value,message", CONFIG_CASES, ids=[f"{n}={v}" for n, v, _ in CONFIG_CASES])
def test_create_topics_validates_configs_as_kafka(bootstrap, topic_name, name, value, message):
    conn = Conn(bootstrap)
    m = conn.m((19, 7))
    import datetime

    got = conn.call((19, 7), topics=(m.CreatableTopic(
        name=topic_name, num_partitions=1, replication_factor=1, assignments=(),
        configs=(m.CreatableTopicConfig(name=name, value=value),)),),
        timeout=datetime.timedelta(seconds=30), validate_only=True).topics[0]
    conn.close()
    expected = (ErrorCode.none, None) if message is None else (ErrorCode.invalid_config, message)
    assert (got.error_code, got.error_message) == expected


def test_configs_checked_together_and_on_alter(bootstrap, topic_name):
    """min.compaction.lag.ms may not exceed max.compaction.lag.ms; AlterConfigs and IncrementalAlterConfigs
    apply the same validators (and Kafka's words for null values and APPEND to a non-list)."""
    conn = Conn(bootstrap)
    lag = {"min.compaction.lag.ms": "10", "max.compaction.lag.ms": "5"}
    got = _create(conn, topic_name, 1, lag)
    assert (got.error_code, got.error_message) == (
        ErrorCode.invalid_config, "conflict topic config setting min.compaction.lag.ms (10) > max.compaction.lag.ms (5)")
    assert _create(conn, topic_name, 1).error_code == ErrorCode.none

    ma = conn.m((33, 2))

    def alter(cfg):
        r = conn.call((33, 2), validate_only=False, resources=(ma.AlterConfigsResource(
            resource_type=2, resource_name=topic_name,
            configs=tuple(ma.AlterableConfig(name=k, value=v) for k, v in cfg.items())),)).responses[0]
        return r.error_code, r.error_message

    mi = conn.m((44, 1))

    def incremental(*ops):
        r = conn.call((44, 1), validate_only=False, resources=(mi.AlterConfigsResource(
            resource_type=2, resource_name=topic_name,
            configs=tuple(mi.AlterableConfig(name=k, config_operation=op, value=v) for k, op, v in ops)),)
        ).responses[0]
        return r.error_code, r.error_message

    small = "Invalid value 100 for configuration segment.bytes: Value must be at least 1048576"
    assert alter({"segment.bytes": "100"}) == (ErrorCode.invalid_config, small)
    assert alter({"nope": "1"}) == (ErrorCode.invalid_config, "Unknown topic config name: nope")
    assert alter({"segment.bytes": None}) == (ErrorCode.invalid_request, "Null value not supported for : segment.bytes")
    assert alter(lag)[0] == ErrorCode.invalid_config
    assert incremental(("segment.bytes", 0, "100")) == (ErrorCode.invalid_config, small)
    assert incremental(("nope", 1, None)) == (ErrorCode.none, None)  # deleting an unknown name is fine
    assert incremental(("segment.bytes", 0, None)) == (
        ErrorCode.invalid_request, "Null value not supported for : segment.bytes")
    assert incremental(("segment.bytes", 2, "1")) == (
        ErrorCode.invalid_config, "Can't APPEND to key segment.bytes because its type is not LIST.")
    assert incremental(("cleanup.policy", 2, "foo")) == (
        ErrorCode.invalid_config,
        "Invalid value foo for configuration cleanup.policy: String must be one of: compact, delete")
    assert incremental(("min.compaction.lag.ms", 0, "10"), ("max.compaction.lag.ms", 0, "5"))[0] == \
        ErrorCode.invalid_config
    assert incremental(("segment.bytes", 0, "1048576"), ("cleanup.policy", 2, "compact")) == (ErrorCode.none, None)
    conn.close()


# ---- Replica assignments naming brokers that do not exist; TxnOffsetCommit for missing partitions ----------


def _node_id(conn: Conn) -> int:
    return conn.call((3, 12), topics=(), allow_auto_topic_creation=False,
                     include_topic_authorized_operations=False).brokers[0].node_id


def test_create_topics_checks_manual_assignments(bootstrap, topic_name):
    import datetime

    conn = Conn(bootstrap)
    node = _node_id(conn)
    m = conn.m((19, 7))

    def create(assignments, partitions=-1, rf=-1):
        t = m.CreatableTopic(name=topic_name, num_partitions=partitions, replication_factor=rf, configs=(),
                             assignments=tuple(m.CreatableReplicaAssignment(partition_index=i, broker_ids=tuple(b))
                                               for i, b in assignments))
        got = conn.call((19, 7), topics=(t,), timeout=datetime.timedelta(seconds=30), validate_only=True).topics[0]
        return got.error_code, got.error_message

    bad = ErrorCode.invalid_replica_assignment
    assert create([(0, [7])]) == (bad, "The manual partition assignment includes broker 7, but no such broker is registered.")
    assert create([(0, [node, 7])]) == (bad, "The manual partition assignment includes broker 7, but no such broker is registered.")
    assert create([(0, [node, node])]) == (bad, f"The manual partition assignment includes the broker {node} more than once.")
    assert create([(0, [])]) == (bad, "The manual partition assignment includes an empty replica list.")
    assert create([(1, [node])]) == (bad, "partitions should be a consecutive 0-based integer sequence")
    assert create([(0, [node]), (0, [node])]) == (bad, "Found multiple manual partition assignments for partition 0")
    assert create([(0, [node])], partitions=1) == (
        ErrorCode.invalid_request, "A manual partition assignment was specified, but numPartitions was not set to -1.")
    assert create([(0, [node])], rf=1) == (
        ErrorCode.invalid_request,
        "A manual partition assignment was specified, but replication factor was not set to -1.")
    assert create([(0, [node]), (1, [node])]) == (ErrorCode.none, None)
    conn.close()


def test_create_partitions_checks_assignments(bootstrap, topic_name):
    import datetime

    conn = Conn(bootstrap)
    node = _node_id(conn)
    assert _create(conn, topic_name, 3).error_code == ErrorCode.none
    m = conn.m((37, 3))

    def grow(count, assignments):
        t = m.CreatePartitionsTopic(name=topic_name, count=count, assignments=None if assignments is None else tuple(
            m.CreatePartitionsAssignment(broker_ids=tuple(b)) for b in assignments))
        got = conn.call((37, 3), topics=(t,), timeout=datetime.timedelta(seconds=30), validate_only=True).results[0]
        return got.error_code, got.error_message

    bad = ErrorCode.invalid_replica_assignment
    assert grow(4, [[7]]) == (bad, "The manual partition assignment includes broker 7, but no such broker is registered.")
    assert grow(4, [[node, node]]) == (bad, f"The manual partition assignment includes the broker {node} more than once.")
    assert grow(4, [[]]) == (bad, "The manual partition assignment includes an empty replica list.")
    assert grow(5, [[node]]) == (bad, "Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified.")
    assert grow(3, None) == (ErrorCode.invalid_partitions, "Topic already has 3 partition(s).")
    assert grow(2, None) == (ErrorCode.invalid_partitions,
                             f"The topic {topic_name} currently has 3 partition(s); 2 would not be an increase.")
    assert grow(5, [[node], [node]]) == (ErrorCode.none, None)
    conn.close()


def test_txn_offset_commit_for_missing_partitions(bootstrap, topic_name):
    """Partitions that do not exist get UNKNOWN_TOPIC_OR_PARTITION; the others are committed."""
    import datetime

    conn = Conn(bootstrap)
    assert _create(conn, topic_name, 1).error_code == ErrorCode.none
    tid, group = topic_name + "-txn", topic_name + "-group"
    deadline = time.monotonic() + 30
    for key_type, key in ((1, tid), (0, group)):
        while conn.call((10, 3), key=key, key_type=key_type).error_code != ErrorCode.none:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    while True:  # a fresh Kafka may still be loading its transaction log
        init = conn.call((22, 4), transactional_id=tid, transaction_timeout=datetime.timedelta(seconds=60),
                         producer_id=-1, producer_epoch=-1)
        if init.error_code == ErrorCode.none:
            break
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pid, epoch = init.producer_id, init.producer_epoch
    assert conn.call((25, 3), transactional_id=tid, producer_id=pid, producer_epoch=epoch,
                     group_id=group).error_code == ErrorCode.none
    m = conn.m((28, 3))

    def part(i):
        return m.TxnOffsetCommitRequestPartition(partition_index=i, committed_offset=0, committed_leader_epoch=-1,
                                                 committed_metadata="")

    got = conn.call((28, 3), transactional_id=tid, group_id=group, producer_id=pid, producer_epoch=epoch,
                    generation_id=-1, member_id="", group_instance_id=None, topics=(
                        m.TxnOffsetCommitRequestTopic(name=topic_name, partitions=(part(0), part(5))),
                        m.TxnOffsetCommitRequestTopic(name=topic_name + "-missing", partitions=(part(0),))))
    codes = {(t.name, p.partition_index): p.error_code for t in got.topics for p in t.partitions}
    assert codes == {(topic_name, 0): ErrorCode.none, (topic_name, 5): ErrorCode.unknown_topic_or_partition,
                     (topic_name + "-missing", 0): ErrorCode.unknown_topic_or_partition}
    conn.close()


# ---- Broker and group configs; authorized operations ------------------------------------------------------


def _admin(bootstrap: str):
    from confluent_kafka.admin import AdminClient

    return AdminClient({"bootstrap.servers": bootstrap})


def test_describe_broker_configs_through_an_admin_client(bootstrap):
    from confluent_kafka.admin import ConfigResource, ConfigSource, ResourceType

    conn = Conn(bootstrap)
    node = _node_id(conn)
    conn.close()
    res = ConfigResource(ResourceType.BROKER, str(node))
    admin = _admin(bootstrap)
    configs = admin.describe_configs([res])[res].result(30)
    for name in ("listeners", "advertised.listeners", "log.dirs", "num.partitions", "auto.create.topics.enable",
                 "message.max.bytes", "log.segment.bytes", "log.retention.bytes", "log.cleanup.policy"):
        assert name in configs, name
    assert configs["node.id"].value == str(node)
    host, port = bootstrap.rsplit(":", 1)
    assert f"://{host}:{port}" in configs["advertised.listeners"].value
    assert configs["num.partitions"].is_read_only and not configs["log.segment.bytes"].is_read_only
    assert configs["log.segment.bytes"].source in (ConfigSource.DEFAULT_CONFIG.value,
                                                   ConfigSource.STATIC_BROKER_CONFIG.value)


def _incremental(conn: Conn, resource_type: int, name: str, *ops, validate_only: bool = False):
    m = conn.m((44, 1))
    r = conn.call((44, 1), validate_only=validate_only, resources=(m.AlterConfigsResource(
        resource_type=resource_type, resource_name=name,
        configs=tuple(m.AlterableConfig(name=k, config_operation=op, value=v) for k, op, v in ops)),)).responses[0]
    return r.error_code, r.error_message


def _describe(conn: Conn, resource_type: int, name: str, keys=None):
    m = conn.m((32, 4))
    r = conn.call((32, 4), include_synonyms=True, include_documentation=False, resources=(
        m.DescribeConfigsResource(resource_type=resource_type, resource_name=name, configuration_keys=keys),))
    res = r.results[0]
    return res.error_code, res.error_message, {e.name: e for e in res.configs}


def test_broker_config_alterations_as_kafka(bootstrap):
    """A dynamic broker config is accepted and shown as DYNAMIC_BROKER_CONFIG, and deleting it restores the
    default; static ones and bad values are refused with Kafka's code and words (the refusals run validate-only,
    so this leaves a shared Kafka as it was)."""
    conn = Conn(bootstrap)
    node = str(_node_id(conn))

    def backoff(expected: str):  # Kafka applies a change when its metadata log reaches the broker: wait for it
        deadline = time.monotonic() + 15
        while True:
            entry = _describe(conn, 4, node, ("log.cleaner.backoff.ms",))[2]["log.cleaner.backoff.ms"]
            if entry.value == expected or time.monotonic() > deadline:
                return entry
            time.sleep(0.1)

    assert _incremental(conn, 4, node, ("log.cleaner.backoff.ms", 0, "15001")) == (ErrorCode.none, None)
    entry = backoff("15001")
    assert (entry.value, entry.config_source, entry.read_only) == ("15001", 2, False)
    assert _incremental(conn, 4, node, ("log.cleaner.backoff.ms", 1, None)) == (ErrorCode.none, None)
    assert backoff("15000").config_source == 5

    refused = ErrorCode.invalid_request
    for name in (node, ""):
        assert _incremental(conn, 4, name, ("num.partitions", 0, "2"), validate_only=True) == (
            refused, "Cannot update these configs dynamically: Set(num.partitions)")
        assert _incremental(conn, 4, name, ("log.segment.bytes", 0, "100"), validate_only=True) == (
            refused, "Invalid value 100 for configuration log.segment.bytes: Value must be at least 1048576")
        assert _incremental(conn, 4, name, ("message.max.bytes", 0, "2000000"), validate_only=True) == (
            ErrorCode.none, None)
    assert _incremental(conn, 4, "", ("listeners", 0, "PLAINTEXT://127.0.0.1:1"), validate_only=True) == (
        refused, "Cannot update these configs at default cluster level, broker id must be specified: Set(listeners)")
    assert _incremental(conn, 4, "7", ("message.max.bytes", 0, "2000000"), validate_only=True) == (
        refused, f"Unexpected broker id, expected {node}, but received 7")
    assert _incremental(conn, 4, "abc", ("message.max.bytes", 0, "2000000"), validate_only=True) == (
        refused, "Node id must be an integer, but it is: abc")
    assert _describe(conn, 4, "7")[:2] == (refused, f"Unexpected broker id, expected {node} or empty string, "
                                                    "but received 7")
    assert _describe(conn, 4, "abc")[:2] == (refused, "Broker id must be an integer, but it is: abc")
    conn.close()


GROUP_DEFAULTS = {
    "consumer.session.timeout.ms": "45000", "consumer.heartbeat.interval.ms": "5000",
    "share.session.timeout.ms": "45000", "share.heartbeat.interval.ms": "5000",
    "share.record.lock.duration.ms": "30000", "share.auto.offset.reset": "latest",
    "share.isolation.level": "read_uncommitted", "streams.session.timeout.ms": "45000",
    "streams.heartbeat.interval.ms": "5000", "streams.num.standby.replicas": "0",
}


def test_group_configs_as_kafka(bootstrap, topic_name):
    conn = Conn(bootstrap)
    group = topic_name + "-group"
    code, message, configs = _describe(conn, 32, group)
    assert (code, message) == (ErrorCode.none, "")
    assert {n: (e.value, e.config_source) for n, e in configs.items()} == {n: (v, 5) for n, v in GROUP_DEFAULTS.items()}

    bad = ErrorCode.invalid_config
    for name, value, message in [
        ("consumer.session.timeout.ms", "60001",
         "consumer.session.timeout.ms must be less than or equal to group.consumer.max.session.timeout.ms"),
        ("consumer.session.timeout.ms", "abc",
         "Invalid value abc for configuration consumer.session.timeout.ms: Not a number of type INT"),
        ("consumer.heartbeat.interval.ms", "4999",
         "consumer.heartbeat.interval.ms must be greater than or equal to group.consumer.min.heartbeat.interval.ms"),
        ("share.record.lock.duration.ms", "999",
         "Invalid value 999 for configuration share.record.lock.duration.ms: Value must be at least 1000"),
        ("streams.num.standby.replicas", "3",
         "streams.num.standby.replicas must be less than or equal to group.streams.max.standby.replicas"),
        ("share.isolation.level", "bad", "Invalid value bad for configuration share.isolation.level: "
                                         "String must be one of: read_committed, read_uncommitted"),
        ("nope", "1", "Unknown group config name: nope"),
    ]:
        assert _incremental(conn, 32, group, (name, 0, value), validate_only=True) == (bad, message), name
    assert _incremental(conn, 32, "", ("consumer.session.timeout.ms", 0, "50000")) == (
        ErrorCode.invalid_request, "Default group resources are not allowed.")
    assert _describe(conn, 32, "")[:2] == (ErrorCode.invalid_request, "Group name must not be empty")

    assert _incremental(conn, 32, group, ("consumer.session.timeout.ms", 0, "50000")) == (ErrorCode.none, None)
    entry = _describe(conn, 32, group, ("consumer.session.timeout.ms",))[2]["consumer.session.timeout.ms"]
    assert (entry.value, entry.config_source) == ("50000", 8)  # GROUP_CONFIG
    assert _incremental(conn, 32, group, ("consumer.session.timeout.ms", 1, None)) == (ErrorCode.none, None)
    entry = _describe(conn, 32, group, ("consumer.session.timeout.ms",))[2]["consumer.session.timeout.ms"]
    assert (entry.value, entry.config_source) == ("45000", 5)
    conn.close()


def test_dynamic_broker_configs_set_topic_defaults_and_survive_a_restart(tmp_path, only_embedded):
    """log.segment.bytes for this broker and log.retention.ms as the cluster default apply at once to topics
    without overrides of their own, are shown with Kafka's sources, and are still in force after a restart."""
    from broker_embedded import EmbeddedBroker

    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), port=0).start_in_thread()
    try:
        conn = Conn(broker.bootstrap_servers)
        node = str(_node_id(conn))
        assert _create(conn, "plain", 1).error_code == ErrorCode.none
        assert _create(conn, "own", 1, {"segment.bytes": "2097152"}).error_code == ErrorCode.none
        assert _incremental(conn, 4, node, ("log.segment.bytes", 0, "4194304")) == (ErrorCode.none, None)
        assert _incremental(conn, 4, "", ("log.retention.ms", 0, "3600000")) == (ErrorCode.none, None)
        assert broker.broker.topics.get("plain").logs[0].config.segment_bytes == 4194304
        assert broker.broker.topics.get("own").logs[0].config.segment_bytes == 2097152
        assert broker.broker.topics.get("plain").logs[0].config.retention_ms == 3600000
        conn.close()
    finally:
        broker.stop_thread()
    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), port=0).start_in_thread()
    try:
        conn = Conn(broker.bootstrap_servers)
        configs = _describe(conn, 2, "plain")[2]
        assert (configs["segment.bytes"].value, configs["segment.bytes"].config_source) == ("4194304", 2)
        assert (configs["retention.ms"].value, configs["retention.ms"].config_source) == ("3600000", 3)
        assert [(s.name, s.value, s.source) for s in configs["segment.bytes"].synonyms] == [
            ("log.segment.bytes", "4194304", 2), ("log.segment.bytes", "1073741824", 5)]
        default = _describe(conn, 4, "")[2]
        assert {n: (e.value, e.config_source) for n, e in default.items()} == {"log.retention.ms": ("3600000", 3)}
        assert broker.broker.topics.get("plain").logs[0].config.segment_bytes == 4194304
        conn.close()
    finally:
        broker.stop_thread()


def test_authorized_operations_without_an_authorizer(bootstrap, topic_name):
    """With no authorizer Kafka reports every operation of the resource (not 'unknown'): admin clients'
    describe_topics / describe_cluster(include_authorized_operations=True) list them."""
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AclOperation

    conn = Conn(bootstrap)
    assert _create(conn, topic_name, 1).error_code == ErrorCode.none
    conn.close()
    admin = _admin(bootstrap)
    topic = admin.describe_topics(TopicCollection([topic_name]), include_authorized_operations=True)[topic_name]
    assert set(topic.result(30).authorized_operations) == {
        AclOperation.READ, AclOperation.WRITE, AclOperation.CREATE, AclOperation.DELETE, AclOperation.ALTER,
        AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS}
    cluster = admin.describe_cluster(include_authorized_operations=True).result(30)
    assert set(cluster.authorized_operations) == {
        AclOperation.CREATE, AclOperation.ALTER, AclOperation.DESCRIBE, AclOperation.CLUSTER_ACTION,
        AclOperation.DESCRIBE_CONFIGS, AclOperation.ALTER_CONFIGS, AclOperation.IDEMPOTENT_WRITE}

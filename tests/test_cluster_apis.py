"""The APIs of a one-node cluster that clients and admin tools use beyond produce/consume: log dirs, elections,
reassignments, the quorum, paged topic descriptions, config resources, leader epochs, topic ids, and the APIs a
default Kafka 4.1 node lists but refuses. Each test passes against Apache Kafka 4.1.1 too (`--kafka`).
"""

from __future__ import annotations

import datetime
import os
import time
import uuid

from confluent_kafka import Producer
from kio.schema.errors import ErrorCode
from kio.static.primitive import i8, i16, i32

from wire import Conn

MS = datetime.timedelta(milliseconds=1)


def _create(conn: Conn, name: str, partitions: int) -> uuid.UUID:
    m = conn.m((19, 7))
    r = conn.call((19, 7), topics=(m.CreatableTopic(name=name, num_partitions=i32(partitions), replication_factor=i16(1),
                                                     assignments=(), configs=()),), timeout=30_000 * MS,
                  validate_only=False)
    assert r.topics[0].error_code == ErrorCode.none, r
    # Kafka answers CreateTopics before its metadata cache has the topic: wait until Metadata shows it.
    mm = conn.m((3, 12))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        md = conn.call((3, 12), topics=(mm.MetadataRequestTopic(topic_id=None, name=name),),
                       allow_auto_topic_creation=False, include_topic_authorized_operations=False)
        if md.topics[0].error_code == ErrorCode.none and len(md.topics[0].partitions) == partitions:
            break
        time.sleep(0.05)
    return r.topics[0].topic_id


def _produce(bootstrap: str, topic: str, partition: int, count: int) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
    for i in range(count):
        p.produce(topic, value=b"v%d" % i, key=b"k", partition=partition)
    assert p.flush(30) == 0


def _node_id(conn: Conn) -> int:
    return conn.call((3, 12), topics=(), allow_auto_topic_creation=False,
                     include_topic_authorized_operations=False).brokers[0].node_id


def test_describe_log_dirs_reports_partition_sizes(bootstrap, topic_name, kafka_reference, tmp_path):
    conn = Conn(bootstrap)
    _create(conn, topic_name, 2)
    _produce(bootstrap, topic_name, 0, 5)
    m = conn.m((35, 4))
    r = conn.call((35, 4), topics=(m.DescribableLogDirTopic(topic=topic_name, partitions=(i32(0), i32(1), i32(7))),
                                   m.DescribableLogDirTopic(topic=topic_name + "-nope", partitions=(i32(0),))))
    assert r.error_code == ErrorCode.none
    (result,) = r.results
    assert result.error_code == ErrorCode.none and os.path.isabs(result.log_dir)
    assert 0 < result.usable_bytes <= result.total_bytes
    # Only what the node hosts: the unknown topic and partition 7 are simply absent.
    assert [t.name for t in result.topics] == [topic_name]
    sizes = {p.partition_index: p for p in result.topics[0].partitions}
    assert set(sizes) == {0, 1}
    assert sizes[0].partition_size > 0 and sizes[1].partition_size == 0
    assert all(p.offset_lag == 0 and not p.is_future_key for p in sizes.values())
    if not kafka_reference:  # the size is what the partition's segments hold on disk
        part_dir = tmp_path / "broker" / f"{topic_name}-0"
        assert sizes[0].partition_size == sum(f.stat().st_size for f in part_dir.glob("*.log"))
    # Every topic when none is named.
    everything = conn.call((35, 4), topics=None).results[0]
    assert topic_name in {t.name for t in everything.topics}
    conn.close()


def test_alter_replica_log_dirs_accepts_only_the_one_log_dir(bootstrap, topic_name):
    conn = Conn(bootstrap)
    _create(conn, topic_name, 2)
    log_dir = conn.call((35, 4), topics=None).results[0].log_dir
    m = conn.m((34, 2))
    r = conn.call((34, 2), dirs=(
        m.AlterReplicaLogDir(path=log_dir, topics=(m.AlterReplicaLogDirTopic(name=topic_name, partitions=(i32(0), i32(9))),)),
        m.AlterReplicaLogDir(path=log_dir + "-elsewhere", topics=(
            m.AlterReplicaLogDirTopic(name=topic_name, partitions=(i32(1),)),)),
    ))
    codes = {p.partition_index: p.error_code for t in r.results for p in t.partitions}
    assert codes == {0: ErrorCode.none, 9: ErrorCode.unknown_topic_or_partition, 1: ErrorCode.log_dir_not_found}
    conn.close()


def test_elections_are_never_needed(bootstrap, topic_name):
    conn = Conn(bootstrap)
    _create(conn, topic_name, 1)
    m = conn.m((43, 2))
    for election in (0, 1):  # preferred, unclean
        r = conn.call((43, 2), election_type=i8(election), timeout=5000 * MS, topic_partitions=(
            m.TopicPartitions(topic=topic_name, partitions=(i32(0), i32(5))),
            m.TopicPartitions(topic=topic_name + "-nope", partitions=(i32(0),))))
        assert r.error_code == ErrorCode.none
        got = {(t.topic, p.partition_id): (p.error_code, p.error_message)
               for t in r.replica_election_results for p in t.partition_result}
        assert got == {
            (topic_name, 0): (ErrorCode.election_not_needed, "Leader election not needed for topic partition."),
            (topic_name, 5): (ErrorCode.unknown_topic_or_partition, f"No such partition as {topic_name}-5"),
            (topic_name + "-nope", 0): (ErrorCode.unknown_topic_or_partition, f"No such topic as {topic_name}-nope"),
        }
    r = conn.call((43, 2), election_type=i8(7), timeout=5000 * MS,
                  topic_partitions=(m.TopicPartitions(topic=topic_name, partitions=(i32(0),)),))
    assert r.error_code == ErrorCode.invalid_request
    assert r.replica_election_results[0].partition_result[0].error_message == "Unknown election type 7"
    conn.close()


def test_confluent_admin_elect_leaders(bootstrap, topic_name):
    from confluent_kafka import ElectionType, TopicPartition
    from confluent_kafka.admin import AdminClient

    conn = Conn(bootstrap)
    _create(conn, topic_name, 1)
    conn.close()
    admin = AdminClient({"bootstrap.servers": bootstrap})
    result = admin.elect_leaders(ElectionType.PREFERRED, [TopicPartition(topic_name, 0)]).result(30)
    (error,) = result.values()
    assert error.code() == ErrorCode.election_not_needed.value


def test_reassignment_to_the_only_broker_is_a_no_op(bootstrap, topic_name):
    conn = Conn(bootstrap)
    _create(conn, topic_name, 4)
    node = _node_id(conn)
    m = conn.m((45, 1))
    parts = (m.ReassignablePartition(partition_index=i32(0), replicas=(i32(node),)),
             m.ReassignablePartition(partition_index=i32(1), replicas=(i32(node + 41),)),
             m.ReassignablePartition(partition_index=i32(2), replicas=None),
             m.ReassignablePartition(partition_index=i32(3), replicas=(i32(node), i32(node))),
             m.ReassignablePartition(partition_index=i32(9), replicas=(i32(node),)))
    r = conn.call((45, 1), timeout=5000 * MS, allow_replication_factor_change=True,
                  topics=(m.ReassignableTopic(name=topic_name, partitions=parts),
                          m.ReassignableTopic(name=topic_name + "-nope", partitions=parts[:1])))
    assert r.error_code == ErrorCode.none
    got = {(t.name, p.partition_index): (p.error_code, p.error_message) for t in r.responses for p in t.partitions}
    bad = ErrorCode.invalid_replica_assignment
    assert got == {
        (topic_name, 0): (ErrorCode.none, None),
        (topic_name, 1): (bad, f"The manual partition assignment includes broker {node + 41}, but no such broker is registered."),
        (topic_name, 2): (ErrorCode.no_reassignment_in_progress, None),
        (topic_name, 3): (bad, f"The manual partition assignment includes the broker {node} more than once."),
        (topic_name, 9): (ErrorCode.unknown_topic_or_partition, f"Unable to find partition {topic_name}:9."),
        (topic_name + "-nope", 0): (ErrorCode.unknown_topic_or_partition, f"Unable to find a topic named {topic_name}-nope."),
    }
    listed = conn.call((46, 0), timeout=5000 * MS, topics=None)
    assert listed.error_code == ErrorCode.none and listed.topics == ()
    conn.close()


def test_describe_quorum_is_one_voter_led_by_this_node(bootstrap):
    conn = Conn(bootstrap)
    node = _node_id(conn)
    m = conn.m((55, 2))
    r = conn.call((55, 2), topics=(m.TopicData(topic_name="__cluster_metadata",
                                               partitions=(m.PartitionData(partition_index=i32(0)),)),))
    assert r.error_code == ErrorCode.none
    (p,) = r.topics[0].partitions
    assert p.error_code == ErrorCode.none and p.leader_id == node
    assert [v.replica_id for v in p.current_voters] == [node] and p.observers == ()
    assert [n.node_id for n in r.nodes] == [node]
    other = conn.call((55, 2), topics=(m.TopicData(topic_name="nope", partitions=(m.PartitionData(partition_index=i32(0)),)),))
    assert other.topics[0].partitions[0].error_code == ErrorCode.unknown_topic_or_partition
    conn.close()


def test_describe_topic_partitions_pages_with_a_cursor(bootstrap, topic_name):
    conn = Conn(bootstrap)
    a, b = topic_name + "-a", topic_name + "-b"
    ids = {a: _create(conn, a, 3), b: _create(conn, b, 2)}
    m = conn.m((75, 0))
    names = (m.TopicRequest(name=b), m.TopicRequest(name=a), m.TopicRequest(name=topic_name + "-c"))

    def page(limit, cursor=None):
        r = conn.call((75, 0), topics=names, response_partition_limit=i32(limit), cursor=cursor)
        return r, [(t.name, t.error_code, [p.partition_index for p in t.partitions]) for t in r.topics]

    # Name order; the limit counts partitions across topics; the cursor names the first partition left.
    r, got = page(2)
    assert got == [(a, ErrorCode.none, [0, 1])]
    assert (r.next_cursor.topic_name, r.next_cursor.partition_index) == (a, 2)
    r, got = page(2, r.next_cursor)
    assert got == [(a, ErrorCode.none, [2]), (b, ErrorCode.none, [0])]
    r, got = page(2, r.next_cursor)
    assert got == [(b, ErrorCode.none, [1]), (topic_name + "-c", ErrorCode.unknown_topic_or_partition, [])]
    assert r.next_cursor is None
    # A topic that ends exactly at the limit: the cursor moves to the next topic.
    r, got = page(3)
    assert got == [(a, ErrorCode.none, [0, 1, 2])] and (r.next_cursor.topic_name, r.next_cursor.partition_index) == (b, 0)
    r, _ = page(10)
    described = {t.name: t for t in r.topics}
    assert described[a].topic_id == ids[a] and described[b].topic_id == ids[b]
    p = described[a].partitions[0]
    assert p.replica_nodes == p.isr_nodes == (p.leader_id,) and p.eligible_leader_replicas == ()
    # A cursor on a topic that was not asked for is an invalid request.
    r = conn.call((75, 0), topics=(m.TopicRequest(name=a),), response_partition_limit=i32(10),
                  cursor=m.Cursor(topic_name=b, partition_index=i32(0)))
    assert [t.error_code for t in r.topics] == [ErrorCode.invalid_request]
    conn.close()


def test_list_config_resources(bootstrap, topic_name):
    conn = Conn(bootstrap)
    _create(conn, topic_name, 1)
    node = _node_id(conn)
    r = conn.call((74, 1), resource_types=())
    assert r.error_code == ErrorCode.none
    listed = {(c.resource_type, c.resource_name) for c in r.config_resources}
    assert (2, topic_name) in listed and (4, str(node)) in listed
    topics_only = conn.call((74, 1), resource_types=(i8(2),))
    assert {c.resource_type for c in topics_only.config_resources} == {2}
    assert conn.call((74, 1), resource_types=(i8(3),)).error_code == ErrorCode.unsupported_version
    conn.close()


def test_offset_for_leader_epoch(bootstrap, topic_name):
    conn = Conn(bootstrap)
    _create(conn, topic_name, 2)
    _produce(bootstrap, topic_name, 0, 3)
    m = conn.m((23, 4))
    r = conn.call((23, 4), replica_id=i32(-1), topics=(m.OffsetForLeaderTopic(topic=topic_name, partitions=(
        m.OffsetForLeaderPartition(partition=i32(0), current_leader_epoch=i32(0), leader_epoch=i32(0)),
        m.OffsetForLeaderPartition(partition=i32(1), current_leader_epoch=i32(-1), leader_epoch=i32(5)),
        m.OffsetForLeaderPartition(partition=i32(0), current_leader_epoch=i32(9), leader_epoch=i32(0)),
        m.OffsetForLeaderPartition(partition=i32(4), current_leader_epoch=i32(-1), leader_epoch=i32(0)))),))
    got = [(p.error_code, p.partition, p.leader_epoch, p.end_offset) for p in r.topics[0].partitions]
    assert got == [(ErrorCode.none, 0, 0, 3), (ErrorCode.none, 1, -1, -1), (ErrorCode.unknown_leader_epoch, 0, -1, -1),
                   (ErrorCode.unknown_topic_or_partition, 4, -1, -1)]
    conn.close()


def _fetch_by_id(conn: Conn, topic_id: uuid.UUID, version: int = 17):
    m = conn.m((1, version))
    return conn.call((1, version), max_wait=10 * MS, min_bytes=i32(1), max_bytes=i32(1 << 20), isolation_level=i8(0),
                     session_id=i32(0), session_epoch=i32(-1), forgotten_topics_data=(), rack_id="",
                     topics=(m.FetchTopic(topic_id=topic_id, partitions=(m.FetchPartition(
                         partition=i32(0), fetch_offset=0, partition_max_bytes=i32(1 << 20)),)),))


def test_fetch_by_topic_id(bootstrap, topic_name):
    conn = Conn(bootstrap)
    topic_id = _create(conn, topic_name, 1)
    _produce(bootstrap, topic_name, 0, 4)
    for version in (13, 16, 17, 18):
        r = _fetch_by_id(conn, topic_id, version)
        (t,) = r.responses
        assert t.topic_id == topic_id
        (p,) = t.partitions
        assert p.error_code == ErrorCode.none and p.high_watermark == 4 and len(p.records) > 0
    unknown = _fetch_by_id(conn, uuid.uuid4())
    assert unknown.responses[0].partitions[0].error_code == ErrorCode.unknown_topic_id
    # Metadata v13 names the same id, with its top-level error code.
    md = conn.call((3, 13), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    assert md.error_code == ErrorCode.none
    assert {t.name: t.topic_id for t in md.topics}[topic_name] == topic_id
    conn.close()


def test_topic_ids_survive_a_restart(broker_process, topic_name):
    broker = broker_process().start()
    conn = Conn(broker.bootstrap_servers)
    topic_id = _create(conn, topic_name, 1)
    conn.close()
    _produce(broker.bootstrap_servers, topic_name, 0, 2)
    assert broker.stop() == 0
    broker.start()
    conn = Conn(broker.bootstrap_servers)
    md = conn.call((3, 13), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
    assert {t.name: t.topic_id for t in md.topics}[topic_name] == topic_id
    p = _fetch_by_id(conn, topic_id).responses[0].partitions[0]
    assert p.error_code == ErrorCode.none and p.high_watermark == 2
    conn.close()


def test_features_and_their_updates(bootstrap):
    conn = Conn(bootstrap)
    r = conn.call((18, 4), client_software_name="t", client_software_version="1")
    finalized = {f.name: f.max_version_level for f in r.finalized_features}
    assert finalized["metadata.version"] == 27
    m = conn.m((57, 2))

    def update(feature, level, upgrade_type=1, validate_only=True):
        return conn.call((57, 2), timeout=5000 * MS, validate_only=validate_only, feature_updates=(
            m.FeatureUpdateKey(feature=feature, max_version_level=i16(level), upgrade_type=i8(upgrade_type)),))

    same = update("metadata.version", 27, validate_only=False)
    assert same.error_code == ErrorCode.none
    unknown = update("no.such.version", 1)
    assert unknown.error_code == ErrorCode.invalid_update_version and "does not support this feature" in unknown.error_message
    down = update("metadata.version", 26)
    assert down.error_code == ErrorCode.invalid_update_version and "Can't downgrade" in down.error_message
    conn.close()


def test_what_a_default_node_lists_but_refuses(bootstrap):
    """Share groups are off and delegation tokens need SASL and a token secret: listed, refused with Kafka's errors."""
    conn = Conn(bootstrap)
    r = conn.call((76, 1), group_id="g", member_id=str(uuid.uuid4()), member_epoch=i32(0), rack_id=None,
                  subscribed_topic_names=("t",))
    assert r.error_code == ErrorCode.unsupported_version
    r = conn.call((77, 1), group_ids=("g",), include_authorized_operations=False)
    assert r.groups[0].error_code == ErrorCode.unsupported_version
    r = conn.call((41, 3), owners=None)
    assert r.error_code == ErrorCode.delegation_token_request_not_allowed
    r = conn.call((64, 0), broker_id=i32(_node_id(conn) + 99))
    assert r.error_code == ErrorCode.broker_id_not_registered
    conn.close()


def test_produce_v13_by_topic_id(bootstrap, topic_name):
    from broker_embedded.log.records import build_batch

    conn = Conn(bootstrap)
    topic_id = _create(conn, topic_name, 1)
    m = conn.m((0, 13))

    def produce(tid):
        r = conn.call((0, 13), transactional_id=None, acks=i16(-1), timeout=5000 * MS, topic_data=(
            m.TopicProduceData(topic_id=tid, partition_data=(m.PartitionProduceData(
                index=i32(0), records=build_batch([(b"k", b"by-id", [], None)])),)),))
        (t,) = r.responses
        return t.topic_id, t.partition_responses[0].error_code, t.partition_responses[0].base_offset

    assert produce(topic_id) == (topic_id, ErrorCode.none, 0)
    missing = uuid.uuid4()
    assert produce(missing)[:2] == (missing, ErrorCode.unknown_topic_id)
    p = _fetch_by_id(conn, topic_id).responses[0].partitions[0]
    assert p.high_watermark == 1 and b"by-id" in bytes(p.records)
    conn.close()

"""Authorization with real clients and real principals (SCRAM-SHA-256 over SASL_PLAINTEXT; PLAIN for kcat): a
principal without READ on a topic gets TOPIC_AUTHORIZATION_FAILED as aiokafka, kafka-python, confluent-kafka,
the Java client, franz-go and kcat each report it (and, for the last three, a produce without WRITE and a group
without READ); prefixed ACLs; deny beats allow; super users; Metadata hides what a principal may not describe;
group and transactional-id checks; ACL administration through confluent-kafka's and kafka-python's admin
clients; ACLs survive a restart. Raw-protocol checks run as User:ANONYMOUS on a PLAINTEXT listener of the same
broker.
"""

from __future__ import annotations

import datetime
import shutil
import socket
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import GroupAuthorizationFailedError, TopicAuthorizationFailedError
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation, AclPermissionType, AdminClient,
                                   NewTopic, ResourcePatternType, ResourceType)

from broker_embedded import EmbeddedBroker
from kafka_nodes import kafka_node
from test_java_client import java_classpath  # noqa: F401  (the fixture: kafka-clients 4.1.1 jars)
from wire import Conn

ROOT = Path(__file__).resolve().parent.parent

PASSWORD = "secret-pw"
USERS = ("admin", "alice", "bob")


def _settings(data_dir) -> dict:
    return dict(data_dir=str(data_dir), group_initial_rebalance_delay_ms=0,
                listeners="SASL_PLAINTEXT://127.0.0.1:0,PLAINTEXT://127.0.0.1:0",
                scram_users={u: PASSWORD for u in USERS}, sasl_plain_users={u: PASSWORD for u in USERS},
                authorizer=True, super_users="User:admin")


@pytest.fixture
def secured(tmp_path):
    broker = EmbeddedBroker(**_settings(tmp_path / "broker")).start_in_thread()
    yield broker
    broker.stop_thread()


@pytest.fixture(scope="session")
def acl_kafka(kafka_reference):
    """Under --kafka: a Kafka of its own (port 19500, .kafka/acl) configured as _settings: the StandardAuthorizer,
    super.users=User:admin, users admin, alice and bob for PLAIN and SCRAM-SHA-256 on SASL_PLAINTEXT, and
    PLAINTEXT; stopped and removed at the end. The tests using it share it, so each one names its topics afresh
    and grants only what it may share."""
    if not kafka_reference:
        yield None
        return
    with kafka_node(19500, "acl", KAFKA_SASL="1", KAFKA_SASL_USERS=",".join(f"{u}:{PASSWORD}" for u in USERS),
                    KAFKA_AUTHORIZER_ADMIN="admin") as node:
        yield node


@pytest.fixture
def authorizing(request, acl_kafka):
    """Where the client scenarios run: the `secured` broker, or under --kafka Apache Kafka configured the same way
    (acl_kafka). Tests of what only ours shows (raw requests as ANONYMOUS that expect no one else's ACLs, restarts,
    the authorizer itself) keep using `secured`."""
    if acl_kafka is not None:
        return acl_kafka
    return request.getfixturevalue("secured")


def _librdkafka(broker, user: str, **extra) -> dict:
    return {"bootstrap.servers": broker.listener_address("SASL_PLAINTEXT"), "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "SCRAM-SHA-256", "sasl.username": user, "sasl.password": PASSWORD, **extra}


def _aiokafka(broker, user: str) -> dict:
    return dict(bootstrap_servers=broker.listener_address("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=user, sasl_plain_password=PASSWORD)


def _kafka_python(broker, user: str) -> dict:
    return dict(bootstrap_servers=broker.listener_address("SASL_PLAINTEXT"), security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="SCRAM-SHA-256", sasl_plain_username=user, sasl_plain_password=PASSWORD)


def _admin(broker, user: str = "admin") -> AdminClient:
    return AdminClient(_librdkafka(broker, user))


def _acl(rtype, name, principal, op, perm=AclPermissionType.ALLOW, pattern=ResourcePatternType.LITERAL, host="*"):
    return AclBinding(rtype, name, pattern, principal, host, op, perm)


def _create_acls(broker, acls) -> None:
    admin = _admin(broker)  # held until the futures are done: a collected client cancels them
    for f in admin.create_acls(acls).values():
        assert f.result(timeout=10) is None


def _create_topic(broker, name: str, partitions: int = 1) -> None:
    admin = _admin(broker)
    for f in admin.create_topics([NewTopic(name, partitions, 1)]).values():
        f.result(timeout=10)


def _describe_acls(broker, flt) -> list[str]:
    admin = _admin(broker)
    return sorted(map(str, admin.describe_acls(flt).result(10)))


def _produce_as(broker, user: str, topic: str, values) -> None:
    p = Producer(_librdkafka(broker, user, acks="all"))
    failures = []
    for v in values:
        p.produce(topic, v, on_delivery=lambda err, _m: err and failures.append(err))
    assert p.flush(15) == 0
    assert not failures, failures


def test_read_denied_as_each_client_reports_it(authorizing):
    """alice may describe the topic (so its metadata and offsets are visible) but not read it."""
    topic = "secret-" + uuid.uuid4().hex[:6]
    _create_topic(authorizing, topic)
    _produce_as(authorizing, "admin", topic, [b"x"] * 3)
    _create_acls(authorizing, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.DESCRIBE),
                           _acl(ResourceType.GROUP, "alice-g", "User:alice", AclOperation.READ)])

    # confluent-kafka: the fetch error arrives as a message whose error() is TOPIC_AUTHORIZATION_FAILED.
    c = Consumer(_librdkafka(authorizing, "alice", **{"group.id": "alice-g", "enable.auto.commit": False}))
    try:
        from confluent_kafka import TopicPartition as CTP
        c.assign([CTP(topic, 0, 0)])
        code = None
        deadline = time.monotonic() + 15
        while code is None and time.monotonic() < deadline:
            m = c.poll(0.5)
            if m is not None and m.error():
                code = m.error().code()
            assert m is None or m.error(), "alice must not read the topic"
        assert code == KafkaError.TOPIC_AUTHORIZATION_FAILED
    finally:
        c.close()

    # kafka-python: poll() raises TopicAuthorizationFailedError.
    from kafka import KafkaConsumer
    from kafka import TopicPartition as KTP
    from kafka.errors import TopicAuthorizationFailedError as KafkaPythonTopicAuthFailed
    kc = KafkaConsumer(**_kafka_python(authorizing, "alice"), enable_auto_commit=False)
    try:
        kc.assign([KTP(topic, 0)])
        kc.seek(KTP(topic, 0), 0)
        with pytest.raises(KafkaPythonTopicAuthFailed):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                assert not kc.poll(timeout_ms=500)
    finally:
        kc.close()


async def test_read_denied_aiokafka(authorizing):
    topic = "secret-" + uuid.uuid4().hex[:6]
    _create_topic(authorizing, topic)
    _produce_as(authorizing, "admin", topic, [b"x"] * 3)
    _create_acls(authorizing, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.DESCRIBE)])
    consumer = AIOKafkaConsumer(**_aiokafka(authorizing, "alice"), enable_auto_commit=False)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek(tp, 0)
        with pytest.raises(TopicAuthorizationFailedError):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                assert not await consumer.getmany(timeout_ms=500)
    finally:
        await consumer.stop()
    # The same principal joining a group it has no READ on is refused with the group error.
    grouped = AIOKafkaConsumer(topic, **_aiokafka(authorizing, "alice"), group_id="no-access")
    try:
        with pytest.raises(GroupAuthorizationFailedError):
            await grouped.start()
    finally:
        await grouped.stop()


async def test_prefixed_acl_and_group_read(authorizing):
    """READ on the prefix "pub-" and on the group let alice consume pub-* in a group, and nothing else."""
    pub, priv = "pub-" + uuid.uuid4().hex[:6], "priv-" + uuid.uuid4().hex[:6]
    for t in (pub, priv):
        _create_topic(authorizing, t)
        _produce_as(authorizing, "admin", t, [b"a", b"b"])
    _create_acls(authorizing, [
        _acl(ResourceType.TOPIC, "pub-", "User:alice", AclOperation.READ, pattern=ResourcePatternType.PREFIXED),
        _acl(ResourceType.GROUP, "alice-", "User:alice", AclOperation.READ, pattern=ResourcePatternType.PREFIXED),
    ])
    consumer = AIOKafkaConsumer(pub, **_aiokafka(authorizing, "alice"), group_id="alice-g",
                                auto_offset_reset="earliest")
    await consumer.start()
    try:
        got = []
        deadline = time.monotonic() + 15
        while len(got) < 2 and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500)).values():
                got += [m.value for m in msgs]
        assert got == [b"a", b"b"]
        await consumer.commit()
    finally:
        await consumer.stop()
    # Metadata for every topic shows alice the pub- topic and hides the other.
    from kafka import KafkaAdminClient
    admin = KafkaAdminClient(**_kafka_python(authorizing, "alice"))
    try:
        topics = set(admin.list_topics())
    finally:
        admin.close()
    assert pub in topics and priv not in topics


def test_deny_beats_allow_and_super_users(authorizing):
    topic, other = "d-" + uuid.uuid4().hex[:6], "o-" + uuid.uuid4().hex[:6]
    for t in (topic, other):
        _create_topic(authorizing, t)
    _create_acls(authorizing, [
        _acl(ResourceType.TOPIC, "*", "User:bob", AclOperation.ALL),
        _acl(ResourceType.TOPIC, topic, "User:*", AclOperation.WRITE, AclPermissionType.DENY),
    ])
    _produce_as(authorizing, "bob", other, [b"ok"])
    p = Producer(_librdkafka(authorizing, "bob", acks="all", **{"message.timeout.ms": 5000}))
    errors = []
    p.produce(topic, b"no", on_delivery=lambda err, _m: errors.append(err))
    p.flush(10)
    assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    # A super user is not bound by ACLs, not even by a DENY for everyone.
    _produce_as(authorizing, "admin", topic, [b"yes"])


def test_acl_admin_with_confluent_and_kafka_python_and_restart(tmp_path):
    settings = _settings(tmp_path / "broker")
    broker = EmbeddedBroker(**settings).start_in_thread()
    try:
        acls = [
            _acl(ResourceType.TOPIC, "t1", "User:alice", AclOperation.READ),
            _acl(ResourceType.TOPIC, "logs-", "User:*", AclOperation.WRITE, AclPermissionType.DENY,
                 ResourcePatternType.PREFIXED),
            _acl(ResourceType.GROUP, "g1", "User:alice", AclOperation.READ, host="127.0.0.1"),
        ]
        _create_acls(broker, acls)
        everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None, AclOperation.ANY,
                                      AclPermissionType.ANY)
        assert _describe_acls(broker, everything) == sorted(map(str, acls))
        # MATCH: the ACLs that apply to a named resource (the prefixed deny applies to logs-app).
        match = AclBindingFilter(ResourceType.TOPIC, "logs-app", ResourcePatternType.MATCH, None, None,
                                 AclOperation.ANY, AclPermissionType.ANY)
        assert _describe_acls(broker, match) == [str(acls[1])]
        # A principal that is not allowed to ALTER the cluster cannot change ACLs.
        alice = _admin(broker, "alice")
        with pytest.raises(KafkaException) as refused:
            for f in alice.create_acls([acls[0]]).values():
                f.result(10)
        assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED

        # kafka-python's admin client sees and deletes the same ACLs.
        from kafka import KafkaAdminClient
        from kafka.admin import ACLFilter, ACLOperation, ACLPermissionType, ResourcePatternFilter
        from kafka.admin import ACLResourcePatternType, ResourceType as KResourceType
        kadmin = KafkaAdminClient(**_kafka_python(broker, "admin"))
        try:
            flt = ACLFilter(principal=None, host=None, operation=ACLOperation.ANY,
                            permission_type=ACLPermissionType.ANY,
                            resource_pattern=ResourcePatternFilter(KResourceType.GROUP, None,
                                                                   ACLResourcePatternType.ANY))
            found, error = kadmin.describe_acls(flt)
            assert error.errno == 0 and [(a.principal, a.host) for a in found] == [("User:alice", "127.0.0.1")]
            deleted = kadmin.delete_acls([flt])
            assert len(deleted[0][1]) == 1
        finally:
            kadmin.close()
    finally:
        broker.stop_thread()

    restarted = EmbeddedBroker(**settings).start_in_thread()
    try:
        assert _describe_acls(restarted, everything) == sorted(map(str, acls[:2]))
        # ...and they still decide: the prefixed deny refuses a write by anyone but a super user.
        _create_topic(restarted, "logs-x")
        p = Producer(_librdkafka(restarted, "alice", acks="all", **{"message.timeout.ms": 5000}))
        errors = []
        p.produce("logs-x", b"no", on_delivery=lambda err, _m: errors.append(err))
        p.flush(10)
        assert [e.code() for e in errors] == [KafkaError.TOPIC_AUTHORIZATION_FAILED]
    finally:
        restarted.stop_thread()


def test_transactional_id_needs_write(authorizing):
    topic = "tx-" + uuid.uuid4().hex[:6]
    _create_topic(authorizing, topic)
    _create_acls(authorizing, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.WRITE)])
    p = Producer(_librdkafka(authorizing, "alice", **{"transactional.id": "alice-tx"}))
    with pytest.raises(KafkaException) as refused:
        p.init_transactions(10)
    assert refused.value.args[0].code() == KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED
    _create_acls(authorizing, [_acl(ResourceType.TRANSACTIONAL_ID, "alice-tx", "User:alice", AclOperation.WRITE)])
    p = Producer(_librdkafka(authorizing, "alice", **{"transactional.id": "alice-tx"}))
    p.init_transactions(10)
    p.begin_transaction()
    p.produce(topic, b"in-txn")
    p.commit_transaction(10)


# ---- raw protocol, as User:ANONYMOUS on the PLAINTEXT listener ----

def _raw(broker) -> Conn:
    return Conn(broker.listener_address("PLAINTEXT"))


def _grant_anonymous(broker, *acls) -> None:
    _create_acls(broker, [_acl(rt, name, "User:ANONYMOUS", op, pattern=pt) for rt, name, op, pt in acls])


def test_metadata_describe_and_auto_create(secured):
    visible, hidden = "v-" + uuid.uuid4().hex[:6], "h-" + uuid.uuid4().hex[:6]
    for t in (visible, hidden):
        _create_topic(secured, t)
    _grant_anonymous(secured, (ResourceType.TOPIC, visible, AclOperation.READ, ResourcePatternType.LITERAL))
    with closing(_raw(secured)) as c:
        m = c.m((3, 12))
        everything = c.call((3, 12), topics=None, allow_auto_topic_creation=False,
                            include_topic_authorized_operations=True)
        assert [t.name for t in everything.topics] == [visible]
        # READ implies DESCRIBE: bits 3 (READ) and 8 (DESCRIBE).
        assert everything.topics[0].topic_authorized_operations == (1 << 3) | (1 << 8)
        named = c.call((3, 12), topics=(m.MetadataRequestTopic(name=hidden, topic_id=None),
                                        m.MetadataRequestTopic(name="new-" + visible, topic_id=None)),
                       allow_auto_topic_creation=True, include_topic_authorized_operations=False)
        assert [(t.name, t.error_code) for t in named.topics] == [(hidden, 29), ("new-" + visible, 29)]
    # DESCRIBE and CREATE on a prefix: the topic is auto-created.
    _grant_anonymous(secured, (ResourceType.TOPIC, "auto-", AclOperation.CREATE, ResourcePatternType.PREFIXED),
                     (ResourceType.TOPIC, "auto-", AclOperation.DESCRIBE, ResourcePatternType.PREFIXED))
    with closing(_raw(secured)) as c:
        m = c.m((3, 12))
        created = c.call((3, 12), topics=(m.MetadataRequestTopic(name="auto-x", topic_id=None),),
                         allow_auto_topic_creation=True, include_topic_authorized_operations=False)
        assert created.topics[0].error_code in (0, 5) and len(created.topics[0].partitions) == 1
        # CreateTopics: CREATE on the topic suffices; its configs are shown only with DESCRIBE_CONFIGS.
        m = c.m((19, 7))
        res = c.call((19, 7), topics=(m.CreatableTopic(name="auto-made", num_partitions=2, replication_factor=1,
                                                       assignments=(), configs=()),
                                      m.CreatableTopic(name="other-made", num_partitions=1, replication_factor=1,
                                                       assignments=(), configs=())),
                     timeout=datetime.timedelta(seconds=10), validate_only=False)
        assert [(t.name, t.error_code, t.topic_config_error_code, len(t.configs)) for t in res.topics] == [
            ("auto-made", 0, 29, 0), ("other-made", 29, 0, 0)]


def test_cluster_operations_and_acl_validation(secured):
    with closing(_raw(secured)) as c:
        cluster = c.call((60, 1), include_cluster_authorized_operations=True, endpoint_type=1)
        assert cluster.cluster_authorized_operations == 0  # ANONYMOUS may not even describe the cluster
        refused = c.call((29, 3), resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
                         principal_filter=None, host_filter=None, operation=1, permission_type=1)
        assert refused.error_code == 31  # CLUSTER_AUTHORIZATION_FAILED
    # confluent-kafka calls the CLUSTER resource type BROKER (code 4).
    _grant_anonymous(secured, (ResourceType.BROKER, "kafka-cluster", AclOperation.ALTER, ResourcePatternType.LITERAL))
    with closing(_raw(secured)) as c:
        cluster = c.call((60, 1), include_cluster_authorized_operations=True, endpoint_type=1)
        assert cluster.cluster_authorized_operations == (1 << 7) | (1 << 8)  # ALTER, and DESCRIBE implied
        m = c.m((30, 3))
        bad = [
            m.AclCreation(resource_type=4, resource_name="other", resource_pattern_type=3, principal="User:x",
                          host="*", operation=3, permission_type=3),  # CLUSTER must be named kafka-cluster
            m.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=2, principal="User:x",
                          host="*", operation=3, permission_type=3),  # MATCH is a filter, not a pattern
            m.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=3, principal="nocolon",
                          host="*", operation=3, permission_type=3),
            m.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=3, principal="User:x",
                          host="*", operation=1, permission_type=3),  # ANY is a filter value
            m.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=3, principal="User:x",
                          host="*", operation=3, permission_type=3),  # valid
        ]
        res = c.call((30, 3), creations=tuple(bad))
        assert [r.error_code for r in res.results] == [42, 42, 42, 42, 0]


def test_acl_calls_without_an_authorizer(bootstrap):
    """No authorizer (the default here, and scripts/kafka-up's Kafka): ACL calls answer SECURITY_DISABLED, and
    authorized operations list everything a resource supports."""
    with closing(Conn(bootstrap)) as c:
        res = c.call((29, 3), resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
                     principal_filter=None, host_filter=None, operation=1, permission_type=1)
        assert res.error_code == 54
        m = c.m((30, 3))
        created = c.call((30, 3), creations=(m.AclCreation(resource_type=2, resource_name="t", resource_pattern_type=3,
                                                           principal="User:x", host="*", operation=3,
                                                           permission_type=3),))
        assert [r.error_code for r in created.results] == [54]
        m = c.m((31, 3))
        deleted = c.call((31, 3), filters=(m.DeleteAclsFilter(resource_type_filter=1, resource_name_filter=None,
                                                              pattern_type_filter=1, principal_filter=None,
                                                              host_filter=None, operation=1, permission_type=1),))
        assert [r.error_code for r in deleted.filter_results] == [54]
        cluster = c.call((60, 1), include_cluster_authorized_operations=True, endpoint_type=1)
        assert cluster.cluster_authorized_operations == sum(1 << op for op in (5, 9, 10, 11, 12, 7, 8))
        m = c.m((3, 12))
        meta = c.call((3, 12), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=True)
        for t in meta.topics:
            assert t.topic_authorized_operations == sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


def test_allow_everyone_if_no_acl_found(tmp_path):
    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), port=0, authorizer=True,
                            allow_everyone_if_no_acl_found=True).start_in_thread()
    try:
        with closing(Conn(broker.bootstrap_servers)) as c:
            m = c.m((3, 12))
            res = c.call((3, 12), topics=(m.MetadataRequestTopic(name="free", topic_id=None),),
                         allow_auto_topic_creation=True, include_topic_authorized_operations=False)
            assert res.topics[0].error_code in (0, 5)  # no ACL mentions it: allowed (and auto-created)
    finally:
        broker.stop_thread()


def test_admin_apis_check_their_permissions(secured):
    """As User:ANONYMOUS with no ACLs: cluster-level admin calls answer CLUSTER_AUTHORIZATION_FAILED, topic-level
    ones TOPIC_AUTHORIZATION_FAILED, and SCRAM credentials can be neither read nor changed."""
    topic = "adm-" + uuid.uuid4().hex[:6]
    _create_topic(secured, topic)
    with closing(_raw(secured)) as c:
        assert c.call((35, 4), topics=None).error_code == 31  # DescribeLogDirs
        assert c.call((46, 0), timeout=datetime.timedelta(seconds=5), topics=None).error_code == 31
        assert c.call((50, 0), users=None).error_code == 31  # DescribeUserScramCredentials
        m = c.m((51, 0))
        altered = c.call((51, 0), deletions=(m.ScramCredentialDeletion(name="alice", mechanism=1),), upsertions=())
        assert [(x.user, x.error_code) for x in altered.results] == [("alice", 31)]
        m = c.m((23, 4))
        epochs = c.call((23, 4), replica_id=-1, topics=(m.OffsetForLeaderTopic(topic=topic, partitions=(
            m.OffsetForLeaderPartition(partition=0, current_leader_epoch=-1, leader_epoch=0),)),))
        assert epochs.topics[0].partitions[0].error_code == 29
        m = c.m((75, 0))
        described = c.call((75, 0), topics=(m.TopicRequest(name=topic),), response_partition_limit=10, cursor=None)
        assert [(t.name, t.error_code) for t in described.topics] == [(topic, 29)]
        everything = c.call((75, 0), topics=(), response_partition_limit=10, cursor=None)
        assert topic not in [t.name for t in everything.topics]
    # alice still authenticates: her credential was not deleted.
    assert 1 in _admin(secured, "alice").list_topics(timeout=10).brokers


def test_server_command_settings(broker_process):
    """Kafka's broker config names on the command line: the authorizer, super users, connection limits."""
    broker = broker_process("--config", "authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer",
                            "--config", "super.users=User:ANONYMOUS", "--config", "max.connections.per.ip=2").start()
    time.sleep(0.3)  # the readiness probe's connection is gone
    try:
        with closing(Conn(broker.bootstrap_servers)) as c, closing(Conn(broker.bootstrap_servers)) as c2:
            res = c.call((29, 3), resource_type_filter=1, resource_name_filter=None, pattern_type_filter=1,
                         principal_filter=None, host_filter=None, operation=1, permission_type=1)
            assert res.error_code == 0  # an authorizer, and ANONYMOUS is a super user
            assert c2.call((18, 0)).error_code == 0
            host, port = broker.bootstrap_servers.rsplit(":", 1)
            with closing(socket.create_connection((host, int(port)))) as third:
                third.settimeout(5)
                assert third.recv(1) == b""  # a third connection from this address is closed
    finally:
        assert broker.stop() == 0


@pytest.mark.parametrize("setting", ["authorizer.class.name=com.example.MyAuthorizer", "super.users=alice",
                                     "max.connections.per.ip.overrides=nohost", "quota.window.num=0"])
def test_server_command_refuses_bad_security_settings(tmp_path, setting):
    res = subprocess.run([sys.executable, "-m", "broker_embedded", "--data-dir", str(tmp_path), "--port", "0",
                          "--config", setting], capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert setting.split("=")[0].split(".")[0].replace(".", "_") in res.stderr.replace(".", "_"), res.stderr


def test_unreadable_acl_file_stops_the_broker(tmp_path):
    """A damaged __acls.json is refused with its path named, never read as "no ACLs" (which would lock everyone
    out, or with allow.everyone.if.no.acl.found let everyone in)."""
    data = tmp_path / "b"
    data.mkdir()
    (data / "__acls.json").write_text('{"acls": [{"resource_type": 2')
    with pytest.raises(ValueError, match="__acls.json"):
        EmbeddedBroker(data_dir=str(data), port=0, authorizer=True).start_in_thread()


# ---- the decisions themselves (acl.Authorizer, the class the broker uses) ----

def _authorizer(tmp_path, acls, **kw):
    from broker_embedded.acl import Authorizer
    a = Authorizer(str(tmp_path), **kw)
    a.create([_binding(*acl) for acl in acls])
    return a


def _binding(rtype, name, principal, op, perm="ALLOW", pattern="LITERAL", host="*"):
    from broker_embedded.acl import AclBinding, Operation, PatternType, Permission, ResourceType
    return AclBinding(ResourceType[rtype], name, PatternType[pattern], principal, host, Operation[op],
                      Permission[perm])


@pytest.mark.parametrize("acls,principal,host,op,name,expected", [
    # implied operations: READ/WRITE/DELETE/ALTER allow DESCRIBE; ALTER_CONFIGS allows DESCRIBE_CONFIGS
    ([("TOPIC", "t", "User:a", "WRITE")], "User:a", "1.2.3.4", "DESCRIBE", "t", True),
    ([("TOPIC", "t", "User:a", "ALTER_CONFIGS")], "User:a", "1.2.3.4", "DESCRIBE_CONFIGS", "t", True),
    ([("TOPIC", "t", "User:a", "DESCRIBE")], "User:a", "1.2.3.4", "READ", "t", False),
    # ...but a DENY of DESCRIBE does not deny READ, and a DENY of ALL denies everything
    ([("TOPIC", "t", "User:a", "READ"), ("TOPIC", "t", "User:a", "DESCRIBE", "DENY")], "User:a", "h", "READ", "t",
     True),
    ([("TOPIC", "t", "User:a", "READ"), ("TOPIC", "t", "User:a", "ALL", "DENY")], "User:a", "h", "READ", "t", False),
    # wildcards: User:*, resource "*", host
    ([("TOPIC", "*", "User:*", "READ")], "User:b", "h", "READ", "anything", True),
    ([("TOPIC", "t", "User:a", "READ", "ALLOW", "LITERAL", "10.0.0.1")], "User:a", "10.0.0.2", "READ", "t", False),
    ([("TOPIC", "t", "User:a", "READ", "ALLOW", "LITERAL", "10.0.0.1")], "User:a", "10.0.0.1", "READ", "t", True),
    # prefixes, and a prefixed DENY beating a literal ALLOW
    ([("TOPIC", "app-", "User:a", "READ", "ALLOW", "PREFIXED")], "User:a", "h", "READ", "app-1", True),
    ([("TOPIC", "app-", "User:a", "READ", "ALLOW", "PREFIXED")], "User:a", "h", "READ", "ap", False),
    ([("TOPIC", "app-1", "User:a", "READ"), ("TOPIC", "app", "User:*", "READ", "DENY", "PREFIXED")], "User:a", "h",
     "READ", "app-1", False),
])
def test_authorizer_decisions(tmp_path, acls, principal, host, op, name, expected):
    from broker_embedded.acl import Operation, ResourceType
    a = _authorizer(tmp_path, acls, allow_if_no_acl=False)
    assert a.authorize(principal, host, Operation[op], ResourceType.TOPIC, name) is expected


def test_no_acl_default_only_where_no_acl_matches(tmp_path):
    """allow.everyone.if.no.acl.found opens a resource no ACL mentions; an ACL for someone else closes it."""
    from broker_embedded.acl import Operation, ResourceType
    a = _authorizer(tmp_path, [("TOPIC", "t", "User:b", "READ")], allow_if_no_acl=True)
    assert not a.authorize("User:a", "h", Operation.READ, ResourceType.TOPIC, "t")
    assert a.authorize("User:a", "h", Operation.READ, ResourceType.TOPIC, "u")


def test_authorizer_defaults_and_super_users(tmp_path):
    from broker_embedded.acl import Operation, ResourceType
    closed = _authorizer(tmp_path / "a", [], super_users=["User:root"])
    assert not closed.authorize("User:a", "h", Operation.READ, ResourceType.TOPIC, "t")
    assert closed.authorize("User:root", "h", Operation.ALTER, ResourceType.CLUSTER, "kafka-cluster")
    assert _authorizer(tmp_path / "b", [], allow_if_no_acl=True).authorize("User:a", "h", Operation.READ,
                                                                         ResourceType.TOPIC, "t")


def test_authorize_any_topic_write_for_idempotence(tmp_path):
    """KIP-679: WRITE on some topic lets a producer be idempotent, unless a DENY dominates every such ALLOW."""
    from broker_embedded.acl import Operation, ResourceType
    allowed = _authorizer(tmp_path / "a", [("TOPIC", "t1", "User:a", "WRITE")])
    assert allowed.authorize_any("User:a", "h", Operation.WRITE, ResourceType.TOPIC)
    dominated = _authorizer(tmp_path / "b", [("TOPIC", "app-1", "User:a", "WRITE"),
                                             ("TOPIC", "app", "User:a", "WRITE", "DENY", "PREFIXED")])
    assert not dominated.authorize_any("User:a", "h", Operation.WRITE, ResourceType.TOPIC)
    assert not _authorizer(tmp_path / "c", [("TOPIC", "t1", "User:b", "WRITE")]).authorize_any(
        "User:a", "h", Operation.WRITE, ResourceType.TOPIC)


# ---- the Java client, franz-go and kcat: the same denials, then the same client allowed ----

def _alice_may_only_describe(broker) -> str:
    """A topic with three records that alice may describe but neither read nor write; READ on her group alice-g;
    WRITE on a topic of her own, so that an idempotent producer may start (KIP-679) and the produce is refused
    for the topic itself."""
    topic = "secret-" + uuid.uuid4().hex[:6]
    _create_topic(broker, topic)
    _produce_as(broker, "admin", topic, [b"x"] * 3)
    _create_acls(broker, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.DESCRIBE),
                          _acl(ResourceType.GROUP, "alice-g", "User:alice", AclOperation.READ),
                          _acl(ResourceType.TOPIC, "alice-own", "User:alice", AclOperation.WRITE)])
    return topic


def test_read_and_write_denied_java_client(authorizing, java_classpath):
    """kafka-clients 4.1.1: a group consumer without READ on the topic gets TopicAuthorizationException naming
    it; without READ on the group, GroupAuthorizationException; a produce without WRITE, TopicAuthorizationException.
    Once the Admin client has added READ (then WRITE), the same calls consume the records (and produce)."""
    topic = _alice_may_only_describe(authorizing)
    steps = [["alice", "consume", topic, "alice-g", "0"],
             ["alice", "consume", topic, "no-access", "0"],
             ["alice", "produce", topic],
             ["admin", "allow", "TOPIC", topic, "User:alice", "READ"],
             ["alice", "consume", topic, "alice-g", "3"],
             ["admin", "allow", "TOPIC", topic, "User:alice", "WRITE"],
             ["alice", "produce", topic]]
    args = [authorizing.listener_address("SASL_PLAINTEXT"), PASSWORD]
    for step in steps:
        args += [*step, "--"]
    res = subprocess.run(["java", "-cp", java_classpath, str(ROOT / "tests" / "java" / "AclClient.java"), *args],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.splitlines() == [
        f"1 TopicAuthorizationException [{topic}]",
        "2 GroupAuthorizationException no-access",
        f"3 TopicAuthorizationException [{topic}]",
        f"4 allowed User:alice READ TOPIC {topic}",
        "5 consumed 3",
        f"6 allowed User:alice WRITE TOPIC {topic}",
        "7 produced",
    ], res.stdout + res.stderr


def _franz(franzsecure, broker, user: str, *step: str) -> str:
    res = subprocess.run([str(franzsecure), "acl", broker.listener_address("SASL_PLAINTEXT"), user, PASSWORD, *step],
                         capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout.strip()


def test_read_and_write_denied_franz_go(authorizing, franzsecure):
    """franz-go: the group consumer's fetch error is TOPIC_AUTHORIZATION_FAILED for the topic; a group without
    READ, GROUP_AUTHORIZATION_FAILED (the group session's error); a produce without WRITE,
    TOPIC_AUTHORIZATION_FAILED. With READ, then WRITE, added, the same steps consume the records and produce."""
    topic = _alice_may_only_describe(authorizing)
    assert _franz(franzsecure, authorizing, "alice", "consume", topic, "alice-g", "0") == \
        f"denied TOPIC_AUTHORIZATION_FAILED {topic}"
    assert _franz(franzsecure, authorizing, "alice", "consume", topic, "no-access", "0") == \
        "group denied GROUP_AUTHORIZATION_FAILED"
    assert _franz(franzsecure, authorizing, "alice", "produce", topic) == "denied TOPIC_AUTHORIZATION_FAILED"
    _create_acls(authorizing, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ)])
    assert _franz(franzsecure, authorizing, "alice", "consume", topic, "alice-g", "3") == "consumed 3"
    _create_acls(authorizing, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.WRITE)])
    assert _franz(franzsecure, authorizing, "alice", "produce", topic) == "produced"


def _kcat(broker, user: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    """kcat as USER over SASL PLAIN: Debian's kcat has librdkafka 2.0.2, whose SCRAM Kafka 4.1 refuses (and we do;
    see test_broker_security.py::test_kcat)."""
    auth = ["-X", "security.protocol=SASL_PLAINTEXT", "-X", "sasl.mechanisms=PLAIN", "-X", f"sasl.username={user}",
            "-X", f"sasl.password={PASSWORD}"]
    return subprocess.run(["kcat", "-b", broker.listener_address("SASL_PLAINTEXT"), *auth, *args], input=stdin,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run (Debian package kcat)")
def test_read_and_write_denied_kcat(authorizing):
    """kcat (librdkafka): consuming to the end (-C -e) fails with the fetch's "Broker: Topic authorization
    failed", a balanced consumer (-G) in a group without READ with the group's, a produce (-P) without WRITE with
    the delivery report's. With READ, then WRITE, added, the same commands consume the records and produce."""
    topic = _alice_may_only_describe(authorizing)
    res = _kcat(authorizing, "alice", "-C", "-t", topic, "-o", "beginning", "-e")
    assert res.returncode != 0 and res.stdout == "", res.stdout + res.stderr
    assert f"Topic {topic} [0] error: Fetch from broker 1 failed: Broker: Topic authorization failed" in res.stderr
    res = _kcat(authorizing, "alice", "-G", "no-access", "-e", topic)
    assert res.returncode != 0 and "Group authorization failed" in res.stderr, res.stderr
    res = _kcat(authorizing, "alice", "-P", "-t", topic, stdin="denied\n")
    assert res.returncode != 0 and "Delivery failed for message: Broker: Topic authorization failed" in res.stderr, \
        res.stderr
    _create_acls(authorizing, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.READ)])
    res = _kcat(authorizing, "alice", "-C", "-t", topic, "-o", "beginning", "-e")
    assert res.returncode == 0 and res.stdout.split() == ["x"] * 3, res.stdout + res.stderr
    _create_acls(authorizing, [_acl(ResourceType.TOPIC, topic, "User:alice", AclOperation.WRITE)])
    res = _kcat(authorizing, "alice", "-P", "-t", topic, stdin="allowed\n")
    assert res.returncode == 0, res.stderr
    res = _kcat(authorizing, "alice", "-C", "-t", topic, "-o", "beginning", "-e")
    assert res.returncode == 0 and res.stdout.split() == ["x"] * 3 + ["allowed"], res.stdout + res.stderr

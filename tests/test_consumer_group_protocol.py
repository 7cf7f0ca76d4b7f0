"""The consumer group protocol (KIP-848) driven with raw ConsumerGroupHeartbeat requests, so that every epoch and
assignment the coordinator hands out is visible: server-side assignment, the revoke-before-assign reconciliation,
leaving, static members, offsets committed with member epochs, and the rules between classic and consumer groups.

Scenarios that need no broker setting run against the embedded broker and, with `--kafka`, against Apache Kafka.
"""

from __future__ import annotations

import datetime
import time
import uuid

import pytest
from kio.schema.errors import ErrorCode

from wire import Conn

pytestmark = pytest.mark.timeout(90)

HEARTBEAT, CG_DESCRIBE, COMMIT, FETCH, JOIN, DESCRIBE, LIST, DELETE, METADATA = (
    (68, 1), (69, 1), (8, 9), (9, 9), (11, 9), (15, 6), (16, 5), (42, 2), (3, 12))


def _ms(n: int) -> datetime.timedelta:
    return datetime.timedelta(milliseconds=n)


def create_topic(bootstrap: str, name: str, partitions: int) -> uuid.UUID:
    """Create a topic and wait until Metadata shows it with its id."""
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, partitions, 1)])[name].result(30)
    c = Conn(bootstrap)
    m = c.m(METADATA)
    try:
        deadline = time.monotonic() + 30
        while True:
            resp = c.call(METADATA, topics=(m.MetadataRequestTopic(topic_id=None, name=name),),
                          allow_auto_topic_creation=False, include_topic_authorized_operations=False)
            t = resp.topics[0]
            if t.error_code == ErrorCode.none and len(t.partitions) == partitions:
                return t.topic_id
            assert time.monotonic() < deadline, t
            time.sleep(0.1)
    finally:
        c.close()


class Member:
    """A consumer-protocol member on its own connection; `owned` is what it reports owning."""

    def __init__(self, bootstrap: str, group: str, topics: tuple[str, ...] = (), regex: str | None = None,
                 instance_id: str | None = None) -> None:
        self.c = Conn(bootstrap)
        self.group = group
        self.topics = topics
        self.regex = regex
        self.instance_id = instance_id
        self.member_id = str(uuid.uuid4())
        self.epoch = 0
        self.owned: dict[uuid.UUID, set[int]] = {}
        self.rebalance_ms = 30000

    def heartbeat(self, epoch: int | None = None, owned: dict | None = None, full: bool = False):
        """One heartbeat; on success adopt the epoch and the assignment (immediately, as if revoked at once)."""
        m = self.c.m(HEARTBEAT)
        epoch = self.epoch if epoch is None else epoch
        joining = epoch == 0 or full
        owned = self.owned if owned is None else owned
        resp = self.c.call(
            HEARTBEAT, group_id=self.group, member_id=self.member_id, member_epoch=epoch,
            instance_id=self.instance_id, rack_id=None, rebalance_timeout=_ms(self.rebalance_ms if joining else -1),
            subscribed_topic_names=(self.topics if self.regex is None else ()) if joining else None,
            subscribed_topic_regex=self.regex if joining else None, server_assignor=None,
            topic_partitions=tuple(m.TopicPartitions(topic_id=t, partitions=tuple(sorted(ps)))
                                   for t, ps in owned.items() if ps) if epoch > 0 or joining else None)
        if resp.error_code == ErrorCode.none and epoch >= 0:
            self.epoch = resp.member_epoch
            if resp.assignment is not None:
                self.owned = {tp.topic_id: set(tp.partitions) for tp in resp.assignment.topic_partitions
                              if tp.partitions}
        return resp

    def count(self) -> int:
        return sum(len(ps) for ps in self.owned.values())

    def leave(self, epoch: int = -1):
        return self.heartbeat(epoch=epoch, owned={})

    def close(self) -> None:
        self.c.close()


def heartbeat_until(member: Member, predicate, timeout: float = 20, **kw):
    deadline = time.monotonic() + timeout
    while True:
        resp = member.heartbeat(**kw)
        assert resp.error_code == ErrorCode.none, resp
        if predicate(resp):
            return resp
        assert time.monotonic() < deadline, (resp, member.owned)
        time.sleep(0.1)


def describe(conn: Conn, group: str):
    return conn.call(CG_DESCRIBE, group_ids=(group,), include_authorized_operations=False).groups[0]


@pytest.fixture
def group() -> str:
    return "cg-" + uuid.uuid4().hex[:12]


def test_partitions_move_only_after_their_owner_revoked_them(bootstrap, group, topic_name):
    topic_id = create_topic(bootstrap, topic_name, 4)
    a = Member(bootstrap, group, (topic_name,))
    b = Member(bootstrap, group, (topic_name,))
    try:
        first = a.heartbeat()
        assert first.error_code == ErrorCode.none and first.member_id == a.member_id
        assert first.heartbeat_interval.total_seconds() > 0
        heartbeat_until(a, lambda r: a.owned == {topic_id: {0, 1, 2, 3}})
        epoch_a = a.epoch
        assert epoch_a >= 1

        # B joins: the group epoch goes up, but A still owns everything, so B gets nothing yet.
        resp = b.heartbeat()
        assert resp.error_code == ErrorCode.none and resp.member_epoch > epoch_a
        assert resp.assignment is not None and b.owned == {}
        # A is told to give up two partitions and keeps its epoch until it has done so.
        resp = a.heartbeat(owned={topic_id: {0, 1, 2, 3}})
        assert resp.member_epoch == epoch_a and resp.assignment is not None
        kept = {tp.topic_id: set(tp.partitions) for tp in resp.assignment.topic_partitions}
        assert len(kept[topic_id]) == 2
        # Until A's heartbeat says it revoked them, B is still not given them.
        assert b.heartbeat().error_code == ErrorCode.none and b.owned == {}
        assert a.heartbeat(owned={topic_id: {0, 1, 2, 3}}).member_epoch == epoch_a
        assert b.heartbeat().error_code == ErrorCode.none and b.owned == {}
        # A acknowledges the revocation: it moves to the new epoch, B gets the two partitions.
        resp = a.heartbeat(owned=kept)
        assert resp.member_epoch == b.epoch
        a.owned = kept
        heartbeat_until(b, lambda r: b.count() == 2)
        assert a.owned[topic_id].isdisjoint(b.owned[topic_id])
        assert a.owned[topic_id] | b.owned[topic_id] == {0, 1, 2, 3}

        c = Conn(bootstrap)
        d = describe(c, group)
        assert d.error_code == ErrorCode.none and d.group_state == "Stable" and d.assignor_name == "uniform"
        assert d.group_epoch == d.assignment_epoch == b.epoch
        members = {m.member_id: m for m in d.members}
        assert set(members) == {a.member_id, b.member_id}
        assert {p for tp in members[b.member_id].assignment.topic_partitions for p in tp.partitions} == \
            b.owned[topic_id]
        assert members[a.member_id].assignment.topic_partitions[0].topic_name == topic_name
        listed = c.call(LIST, states_filter=(), types_filter=("consumer",)).groups
        assert [(g.group_id, g.protocol_type, g.group_state, g.group_type) for g in listed
                if g.group_id == group] == [(group, "consumer", "Stable", "consumer")]
        assert group not in [g.group_id for g in c.call(LIST, states_filter=(), types_filter=("classic",)).groups]
        c.close()

        # Rejoining at epoch 0 is only accepted from a member whose last answer was lost (previous epoch 0).
        assert a.heartbeat(epoch=0, owned={}).error_code == ErrorCode.fenced_member_epoch

        # A leaves: B gets everything.
        left = a.leave()
        assert left.error_code == ErrorCode.none and left.member_epoch == -1
        heartbeat_until(b, lambda r: b.owned == {topic_id: {0, 1, 2, 3}})
        assert a.heartbeat(epoch=a.epoch).error_code == ErrorCode.unknown_member_id
    finally:
        a.close()
        b.close()


def test_heartbeat_errors(bootstrap, group, topic_name):
    create_topic(bootstrap, topic_name, 1)
    a = Member(bootstrap, group, (topic_name,))
    try:
        # Unknown member, unknown group, missing fields on join, epochs the coordinator never gave.
        assert a.heartbeat(epoch=3).error_code == ErrorCode.group_id_not_found
        m = a.c.m(HEARTBEAT)
        resp = a.c.call(HEARTBEAT, group_id=group, member_id=a.member_id, member_epoch=0, instance_id=None,
                        rack_id=None, rebalance_timeout=_ms(-1), subscribed_topic_names=(topic_name,),
                        subscribed_topic_regex=None, server_assignor=None, topic_partitions=())
        assert resp.error_code == ErrorCode.invalid_request
        resp = a.c.call(HEARTBEAT, group_id=group, member_id="", member_epoch=0, instance_id=None, rack_id=None,
                        rebalance_timeout=_ms(1000), subscribed_topic_names=(topic_name,),
                        subscribed_topic_regex=None, server_assignor=None, topic_partitions=())
        assert resp.error_code == ErrorCode.invalid_request
        resp = a.c.call(HEARTBEAT, group_id=group, member_id=a.member_id, member_epoch=0, instance_id=None,
                        rack_id=None, rebalance_timeout=_ms(1000), subscribed_topic_names=(topic_name,),
                        subscribed_topic_regex=None, server_assignor="nope", topic_partitions=())
        assert resp.error_code == ErrorCode.unsupported_assignor
        resp = a.c.call(HEARTBEAT, group_id=group, member_id=a.member_id, member_epoch=0, instance_id=None,
                        rack_id=None, rebalance_timeout=_ms(1000), subscribed_topic_names=None,
                        subscribed_topic_regex="(", server_assignor=None, topic_partitions=())
        assert resp.error_code == ErrorCode.invalid_regular_expression
        # Version 0 lets the coordinator choose the member id.
        resp = a.c.call((68, 0), group_id=group + "-v0", member_id="", member_epoch=0, instance_id=None,
                        rack_id=None, rebalance_timeout=_ms(1000), subscribed_topic_names=(topic_name,),
                        server_assignor=None, topic_partitions=())
        assert resp.error_code == ErrorCode.none and resp.member_id and resp.member_epoch >= 1
        assert m is not None
        heartbeat_until(a, lambda r: a.count() == 1)
        assert a.heartbeat(epoch=a.epoch + 5).error_code == ErrorCode.fenced_member_epoch
        stranger = Member(bootstrap, group, (topic_name,))
        assert stranger.heartbeat(epoch=1).error_code == ErrorCode.unknown_member_id
        stranger.close()
        c = Conn(bootstrap)
        d = describe(c, "cg-unknown-" + uuid.uuid4().hex[:8])
        assert d.error_code == ErrorCode.group_id_not_found
        c.close()
    finally:
        a.close()


def test_offsets_are_committed_with_the_member_epoch(bootstrap, group, topic_name, kafka_reference):
    topic_id = create_topic(bootstrap, topic_name, 1)
    a = Member(bootstrap, group, (topic_name,))
    c = Conn(bootstrap)
    try:
        heartbeat_until(a, lambda r: a.owned == {topic_id: {0}})

        def commit(member_id: str, epoch: int, offset: int):
            m = c.m(COMMIT)
            resp = c.call(COMMIT, group_id=group, generation_id_or_member_epoch=epoch, member_id=member_id,
                          group_instance_id=None, topics=(m.OffsetCommitRequestTopic(name=topic_name, partitions=(
                              m.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset,
                                                             committed_leader_epoch=-1, committed_metadata=""),)),))
            return resp.topics[0].partitions[0].error_code

        def fetch(member_id: str | None, epoch: int):
            m = c.m(FETCH)
            resp = c.call(FETCH, groups=(m.OffsetFetchRequestGroup(
                group_id=group, member_id=member_id, member_epoch=epoch,
                topics=(m.OffsetFetchRequestTopics(name=topic_name, partition_indexes=(0,)),)),), require_stable=True)
            g = resp.groups[0]
            return g.error_code, [p.committed_offset for t in g.topics for p in t.partitions]

        assert commit(a.member_id, a.epoch, 5) == ErrorCode.none
        assert commit(a.member_id, a.epoch + 1, 6) == ErrorCode.stale_member_epoch
        assert commit(a.member_id, a.epoch - 1, 6) == ErrorCode.stale_member_epoch
        assert commit("someone-else", a.epoch, 6) == ErrorCode.unknown_member_id
        assert commit("", -1, 6) == ErrorCode.unknown_member_id  # the group is not empty
        assert fetch(a.member_id, a.epoch) == (ErrorCode.none, [5])
        assert fetch(None, -1) == (ErrorCode.none, [5])  # an admin fetch
        assert fetch(a.member_id, a.epoch + 1)[0] == ErrorCode.stale_member_epoch
        assert fetch("someone-else", a.epoch)[0] == ErrorCode.unknown_member_id

        if not kafka_reference:
            # A classic JoinGroup for a consumer group with members is refused (Kafka would take the classic
            # member into the consumer group: online migration, which this broker does not do).
            m = c.m(JOIN)
            join = c.call(JOIN, group_id=group, session_timeout=_ms(10000), rebalance_timeout=_ms(10000),
                          member_id="", group_instance_id=None, protocol_type="consumer",
                          protocols=(m.JoinGroupRequestProtocol(name="range", metadata=b"\0\0\0\0\0\0"),),
                          reason=None)
            assert join.error_code == ErrorCode.inconsistent_group_protocol
        # DescribeGroups does not show a consumer group.
        described = c.call(DESCRIBE, groups=(group,), include_authorized_operations=False).groups[0]
        assert described.error_code == ErrorCode.group_id_not_found
        assert c.call(DELETE, groups_names=(group,)).results[0].error_code == ErrorCode.non_empty_group

        # Once the last member left, the group is Empty and an admin commit is accepted; it can be deleted.
        assert a.leave().error_code == ErrorCode.none
        assert describe(c, group).group_state == "Empty"
        assert commit("", -1, 7) == ErrorCode.none
        assert fetch(None, -1) == (ErrorCode.none, [7])
        assert c.call(DELETE, groups_names=(group,)).results[0].error_code == ErrorCode.none
        assert describe(c, group).error_code == ErrorCode.group_id_not_found
    finally:
        a.close()
        c.close()


def test_classic_group_refuses_consumer_heartbeats_until_empty(bootstrap, group, topic_name):
    create_topic(bootstrap, topic_name, 1)
    c = Conn(bootstrap)
    m = c.m(JOIN)

    def join(member_id: str = ""):
        return c.call(JOIN, group_id=group, session_timeout=_ms(10000), rebalance_timeout=_ms(10000),
                      member_id=member_id, group_instance_id=None, protocol_type="consumer",
                      protocols=(m.JoinGroupRequestProtocol(name="range", metadata=b"\0\0\0\0\0\0"),), reason=None)

    a = Member(bootstrap, group, (topic_name,))
    try:
        first = join()
        assert join(first.member_id).error_code == ErrorCode.none
        resp = a.heartbeat()
        assert resp.error_code == ErrorCode.group_id_not_found
        d = describe(c, group)
        assert d.error_code == ErrorCode.group_id_not_found
        # The classic member leaves: the empty classic group becomes a consumer group on the next heartbeat.
        mm = c.m((13, 5))
        c.call((13, 5), group_id=group, members=(mm.MemberIdentity(member_id=first.member_id, group_instance_id=None,
                                                                   reason=None),))
        assert a.heartbeat().error_code == ErrorCode.none
        assert describe(c, group).error_code == ErrorCode.none
    finally:
        a.close()
        c.close()


def test_regex_subscription_follows_new_topics(bootstrap, group, topic_name):
    """A regex subscription gets the matching topics, and new ones as they are created. Regexes are RE2 (linear
    time): a pattern that backtracks exponentially in other engines is answered at once."""
    create_topic(bootstrap, "a" * 100 + "-" + topic_name, 1)  # Python's re would take ages on this name
    slow = Member(bootstrap, group + "-slow", regex="(a+)+b")
    started = time.monotonic()
    assert slow.heartbeat().error_code == ErrorCode.none
    slow.close()
    assert time.monotonic() - started < 5
    first = create_topic(bootstrap, topic_name + "-a", 2)
    a = Member(bootstrap, group, regex=topic_name.replace("-", "\\-") + "\\-.*")
    try:
        heartbeat_until(a, lambda r: a.owned == {first: {0, 1}})
        second = create_topic(bootstrap, topic_name + "-b", 1)
        heartbeat_until(a, lambda r: a.owned == {first: {0, 1}, second: {0}}, timeout=30)
        c = Conn(bootstrap)
        d = describe(c, group)
        assert d.members[0].subscribed_topic_regex == a.regex
        c.close()
    finally:
        a.close()


def test_static_member_comes_back_to_its_partitions(bootstrap, group, topic_name):
    topic_id = create_topic(bootstrap, topic_name, 2)
    a = Member(bootstrap, group, (topic_name,), instance_id="instance-a")
    b = Member(bootstrap, group, (topic_name,), instance_id="instance-b")
    try:
        heartbeat_until(a, lambda r: a.count() == 2)
        b.heartbeat()
        heartbeat_until(a, lambda r: a.count() == 1 and a.epoch == b.epoch)  # revoked, and said so
        heartbeat_until(b, lambda r: b.count() == 1)
        b_partitions = b.owned
        # Another process with B's instance id cannot join while B is there.
        intruder = Member(bootstrap, group, (topic_name,), instance_id="instance-b")
        assert intruder.heartbeat().error_code == ErrorCode.unreleased_instance_id
        # B leaves for a while (epoch -2): it keeps its partitions, and a new B process takes them over at once.
        assert b.leave(epoch=-2).member_epoch == -2
        resp = intruder.heartbeat()
        assert resp.error_code == ErrorCode.none and intruder.owned == b_partitions
        assert resp.member_epoch == a.epoch
        # The old B process is fenced; A is not disturbed.
        assert b.heartbeat(epoch=b.epoch).error_code in (ErrorCode.fenced_instance_id, ErrorCode.unknown_member_id)
        assert a.heartbeat().member_epoch == resp.member_epoch and a.count() == 1
        assert topic_id in intruder.owned
        intruder.close()
    finally:
        a.close()
        b.close()


def test_group_state_survives_a_broker_kill(broker_process, group):
    """Members keep their epochs and partitions across a kill -9 and restart: their next heartbeat is accepted
    as if nothing happened, and what they committed is there."""
    broker = broker_process().start()
    bootstrap = broker.bootstrap_servers
    topic = "t-" + uuid.uuid4().hex[:8]
    topic_id = create_topic(bootstrap, topic, 4)
    a = Member(bootstrap, group, (topic,), instance_id="static-a")
    b = Member(bootstrap, group, (topic,))
    a.heartbeat()
    b.heartbeat()
    heartbeat_until(a, lambda r: a.count() == 2 and a.epoch == b.epoch)
    heartbeat_until(b, lambda r: b.count() == 2)
    c = Conn(bootstrap)
    m = c.m(COMMIT)
    resp = c.call(COMMIT, group_id=group, generation_id_or_member_epoch=b.epoch, member_id=b.member_id,
                  group_instance_id=None, topics=(m.OffsetCommitRequestTopic(name=topic, partitions=tuple(
                      m.OffsetCommitRequestPartition(partition_index=p, committed_offset=10 + p,
                                                     committed_leader_epoch=-1, committed_metadata="")
                      for p in sorted(b.owned[topic_id]))),))
    assert all(p.error_code == ErrorCode.none for t in resp.topics for p in t.partitions)
    before = describe(c, group)
    for conn in (a, b, c):
        conn.close()
    broker.kill()
    broker.start()

    a.c, b.c, c = Conn(bootstrap), Conn(bootstrap), Conn(bootstrap)
    deadline = time.monotonic() + 30
    while (resp := a.heartbeat()).error_code == ErrorCode.coordinator_load_in_progress:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert resp.error_code == ErrorCode.none and resp.member_epoch == before.group_epoch
    assert b.heartbeat().member_epoch == before.group_epoch and b.count() == 2
    after = describe(c, group)
    assert (after.group_state, after.group_epoch, after.assignment_epoch) == ("Stable", before.group_epoch,
                                                                              before.assignment_epoch)
    assert {m.member_id: (m.instance_id, m.member_epoch, m.assignment) for m in after.members} == \
        {m.member_id: (m.instance_id, m.member_epoch, m.assignment) for m in before.members}
    m = c.m(FETCH)
    fetched = c.call(FETCH, groups=(m.OffsetFetchRequestGroup(
        group_id=group, member_id=b.member_id, member_epoch=b.epoch,
        topics=(m.OffsetFetchRequestTopics(name=topic, partition_indexes=tuple(sorted(b.owned[topic_id]))),)),),
        require_stable=True).groups[0]
    assert fetched.error_code == ErrorCode.none
    assert [p.committed_offset for t in fetched.topics for p in t.partitions] == \
        [10 + p for p in sorted(b.owned[topic_id])]
    # A leaves after the restart; B then gets everything, and the group can be emptied and deleted.
    assert a.leave().error_code == ErrorCode.none
    heartbeat_until(b, lambda r: b.owned == {topic_id: {0, 1, 2, 3}})
    assert b.leave().error_code == ErrorCode.none
    assert c.call(DELETE, groups_names=(group,)).results[0].error_code == ErrorCode.none
    for conn in (a, b, c):
        conn.close()
    broker.stop()
    broker.start()
    c = Conn(bootstrap)
    deadline = time.monotonic() + 30
    while (d := describe(c, group)).error_code == ErrorCode.coordinator_load_in_progress:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert d.error_code == ErrorCode.group_id_not_found  # the deletion survived too
    c.close()


@pytest.fixture
def short_session_broker(tmp_path):
    from broker_embedded import EmbeddedBroker

    broker = EmbeddedBroker(data_dir=str(tmp_path / "broker"), port=0, group_initial_rebalance_delay_ms=0,
                            group_consumer_session_timeout_ms=1500,
                            group_consumer_heartbeat_interval_ms=500).start_in_thread()
    yield broker.bootstrap_servers
    broker.stop_thread()


def test_silent_member_expires_and_a_stuck_revocation_is_fenced(short_session_broker, group):
    """A member that stops heartbeating leaves after the session timeout; one that heartbeats but never revokes
    is fenced after its rebalance timeout. Either way its partitions go to the others."""
    bootstrap = short_session_broker
    topic = "t-" + uuid.uuid4().hex[:8]
    topic_id = create_topic(bootstrap, topic, 2)
    a = Member(bootstrap, group, (topic,))
    b = Member(bootstrap, group, (topic,))
    try:
        heartbeat_until(a, lambda r: a.count() == 2)
        b.heartbeat()
        heartbeat_until(a, lambda r: a.count() == 1 and a.epoch == b.epoch)
        heartbeat_until(b, lambda r: b.count() == 1)
        # B stops heartbeating: after the session timeout (1.5 s here) A gets its partition.
        started = time.monotonic()
        heartbeat_until(a, lambda r: a.owned == {topic_id: {0, 1}}, timeout=10)
        assert time.monotonic() - started >= 1.0
        assert b.heartbeat().error_code == ErrorCode.unknown_member_id

        # A now holds on to a partition it was told to revoke: fenced after its rebalance timeout (1 s).
        c = Member(bootstrap, group, (topic,))
        c.rebalance_ms = 1000
        held = {topic_id: {0, 1}}
        a.rebalance_ms = 1000
        assert a.heartbeat(full=True, owned=held).error_code == ErrorCode.none
        c.heartbeat()
        deadline = time.monotonic() + 10
        while (resp := a.heartbeat(owned=held)).error_code == ErrorCode.none:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert resp.error_code == ErrorCode.unknown_member_id
        heartbeat_until(c, lambda r: c.owned == {topic_id: {0, 1}}, timeout=10)
        c.close()
    finally:
        a.close()
        b.close()


def test_heartbeat_and_describe_need_group_and_topic_acls(tmp_path, group):
    """With an authorizer: READ on the group to heartbeat (GROUP_AUTHORIZATION_FAILED otherwise), DESCRIBE on every
    subscribed topic (TOPIC_AUTHORIZATION_FAILED), DESCRIBE on the group to describe it (READ implies it)."""
    from confluent_kafka.admin import AclOperation, ResourcePatternType, ResourceType

    from broker_embedded import EmbeddedBroker
    from test_broker_acl import _create_topic, _grant_anonymous, _raw, _settings

    broker = EmbeddedBroker(**_settings(tmp_path / "broker")).start_in_thread()
    try:
        topic = "t-" + uuid.uuid4().hex[:8]
        _create_topic(broker, topic)
        a = Member(broker.listener_address("PLAINTEXT"), group, (topic,))
        c = _raw(broker)
        assert describe(c, group).error_code == ErrorCode.group_authorization_failed
        assert a.heartbeat().error_code == ErrorCode.group_authorization_failed
        _grant_anonymous(broker, (ResourceType.GROUP, group, AclOperation.READ, ResourcePatternType.LITERAL))
        assert a.heartbeat().error_code == ErrorCode.topic_authorization_failed
        _grant_anonymous(broker, (ResourceType.TOPIC, topic, AclOperation.DESCRIBE, ResourcePatternType.LITERAL))
        assert a.heartbeat().error_code == ErrorCode.none
        d = c.call(CG_DESCRIBE, group_ids=(group,), include_authorized_operations=True).groups[0]
        assert d.error_code == ErrorCode.none and d.authorized_operations == (1 << 3) | (1 << 8)  # READ, DESCRIBE
        a.close()
        c.close()
    finally:
        broker.stop_thread()


def test_range_assignor_lines_up_co_partitioned_topics(bootstrap, group, topic_name):
    """server_assignor="range": each member gets the same contiguous range of both topics (3 partitions each, so
    2 and 1)."""
    first = create_topic(bootstrap, topic_name + "-x", 3)
    second = create_topic(bootstrap, topic_name + "-y", 3)
    topics = (topic_name + "-x", topic_name + "-y")
    members = [Member(bootstrap, group, topics), Member(bootstrap, group, topics)]
    m = members[0].c.m(HEARTBEAT)
    try:
        for member in members:
            resp = member.c.call(
                HEARTBEAT, group_id=group, member_id=member.member_id, member_epoch=0, instance_id=None,
                rack_id=None, rebalance_timeout=_ms(30000), subscribed_topic_names=topics,
                subscribed_topic_regex=None, server_assignor="range", topic_partitions=())
            assert resp.error_code == ErrorCode.none
            member.epoch = resp.member_epoch
            member.owned = {tp.topic_id: set(tp.partitions) for tp in resp.assignment.topic_partitions
                            if tp.partitions}

        def settled() -> bool:
            for member in members:
                resp = member.heartbeat()
                assert resp.error_code == ErrorCode.none
            return sorted(x.count() for x in members) == [2, 4] and members[0].epoch == members[1].epoch

        deadline = time.monotonic() + 20
        while not settled():
            assert time.monotonic() < deadline, [x.owned for x in members]
            time.sleep(0.1)
        for member in members:
            x, y = member.owned.get(first, set()), member.owned.get(second, set())
            assert x == y and x and max(x) - min(x) == len(x) - 1  # the same contiguous range of both
        c = Conn(bootstrap)
        assert describe(c, group).assignor_name == "range"
        c.close()
    finally:
        for member in members:
            member.close()


def test_classic_and_offset_apis_meet_a_consumer_group(bootstrap, group, topic_name):
    """What the classic group APIs, OffsetCommit v8 and OffsetDelete answer for a consumer group, as Kafka 4.1."""
    create_topic(bootstrap, topic_name, 2)
    a = Member(bootstrap, group, (topic_name,))
    c = Conn(bootstrap)
    try:
        heartbeat_until(a, lambda r: a.count() == 2)
        m = c.m((8, 8))
        resp = c.call((8, 8), group_id=group, generation_id_or_member_epoch=a.epoch, member_id=a.member_id,
                      group_instance_id=None, topics=(m.OffsetCommitRequestTopic(name=topic_name, partitions=(
                          m.OffsetCommitRequestPartition(partition_index=0, committed_offset=1,
                                                         committed_leader_epoch=-1, committed_metadata=""),)),))
        assert resp.topics[0].partitions[0].error_code == ErrorCode.unsupported_version
        m = c.m((47, 0))
        resp = c.call((47, 0), group_id=group, topics=(m.OffsetDeleteRequestTopic(name=topic_name, partitions=(
            m.OffsetDeleteRequestPartition(partition_index=0),)),))
        assert resp.topics[0].partitions[0].error_code == ErrorCode.group_subscribed_to_topic
        old = c.call((15, 5), groups=(group,), include_authorized_operations=False).groups[0]
        assert (old.error_code, old.group_state) == (ErrorCode.none, "Dead")
        assert c.call((12, 4), group_id=group, generation_id=a.epoch, member_id=a.member_id,
                      group_instance_id=None).error_code == ErrorCode.unknown_member_id
        assert c.call((14, 5), group_id=group, generation_id=a.epoch, member_id=a.member_id, group_instance_id=None,
                      protocol_type="consumer", protocol_name="range",
                      assignments=()).error_code == ErrorCode.unknown_member_id
        assert [(g.group_state, g.protocol_type) for g in c.call((16, 4), states_filter=()).groups
                if g.group_id == group] == [("Stable", "consumer")]
        # LeaveGroup removes members of a consumer group (admin clients' removeMembersFromConsumerGroup).
        s = Member(bootstrap, group, (topic_name,), instance_id="instance-s")
        assert s.heartbeat().error_code == ErrorCode.none
        m = c.m((13, 5))
        resp = c.call((13, 5), group_id=group, members=(
            m.MemberIdentity(member_id="", group_instance_id="instance-s", reason=None),
            m.MemberIdentity(member_id="other", group_instance_id="instance-s", reason=None),
            m.MemberIdentity(member_id="nobody", group_instance_id=None, reason=None)))
        assert (resp.error_code, [x.error_code for x in resp.members]) == (
            ErrorCode.none, [ErrorCode.none, ErrorCode.fenced_instance_id, ErrorCode.unknown_member_id])
        assert s.heartbeat().error_code == ErrorCode.unknown_member_id
        s.close()
        d = describe(c, group)
        assert [x.member_id for x in d.members] == [a.member_id] and d.group_state == "Assigning"
        left = a.leave()
        assert (left.error_code, left.member_epoch, left.heartbeat_interval.total_seconds()) == (0, -1, 0)
        # Leaving bumps the group epoch (by how much more depends on when Kafka's metadata caught up).
        empty = describe(c, group)
        assert empty.group_state == "Empty" and empty.group_epoch > d.group_epoch
        again = a.leave()
        assert (again.error_code, again.error_message) == (ErrorCode.unknown_member_id,
                                                           f"Member {a.member_id} is not a member of group {group}.")
        gone = Member(bootstrap, "nothing-" + group, (topic_name,)).leave()
        assert (gone.error_code, gone.error_message) == (ErrorCode.group_id_not_found,
                                                         f"Group nothing-{group} not found.")
    finally:
        a.close()
        c.close()


def test_group_config_sets_the_heartbeat_interval(bootstrap, group, topic_name):
    """consumer.heartbeat.interval.ms set on the group (IncrementalAlterConfigs, GROUP resource) is what its
    members are told; removing it brings back the broker's."""
    from test_broker_parity import _incremental

    create_topic(bootstrap, topic_name, 1)
    c = Conn(bootstrap)
    a = Member(bootstrap, group, (topic_name,))
    try:
        assert a.heartbeat().heartbeat_interval.total_seconds() == 5
        assert _incremental(c, 32, group, ("consumer.heartbeat.interval.ms", 0, "7000")) == (ErrorCode.none, None)
        heartbeat_until(a, lambda r: r.heartbeat_interval.total_seconds() == 7, timeout=10)
        assert _incremental(c, 32, group, ("consumer.heartbeat.interval.ms", 1, None)) == (ErrorCode.none, None)
        # Kafka applies config changes through its metadata log: give the removal a moment to arrive.
        heartbeat_until(a, lambda r: r.heartbeat_interval.total_seconds() == 5, timeout=10)
    finally:
        a.close()
        c.close()


def test_uniform_assignor_with_different_subscriptions(bootstrap, group, topic_name):
    """A subscribes to one topic, B to both: every partition goes to a member subscribed to its topic, two each."""
    one = create_topic(bootstrap, topic_name + "-1", 2)
    two = create_topic(bootstrap, topic_name + "-2", 2)
    a = Member(bootstrap, group, (topic_name + "-1",))
    b = Member(bootstrap, group, (topic_name + "-1", topic_name + "-2"))
    try:
        heartbeat_until(a, lambda r: a.owned == {one: {0, 1}})
        b.heartbeat()
        deadline = time.monotonic() + 20
        while not (a.owned == {one: {0, 1}} and b.owned == {two: {0, 1}} and a.epoch == b.epoch):
            assert time.monotonic() < deadline, (a.owned, b.owned)
            for member in (a, b):
                assert member.heartbeat().error_code == ErrorCode.none
            time.sleep(0.05)
    finally:
        a.close()
        b.close()


def test_random_joins_leaves_and_slow_revocations_never_share_a_partition(bootstrap, group, topic_name):
    """Members join, leave and heartbeat in a random order, and some hold on to partitions they were told to
    revoke for a few heartbeats: at no point do two members hold the same partition, and once everyone has
    caught up every partition is held, two or three per member."""
    import random

    topic_id = create_topic(bootstrap, topic_name, 8)
    rng = random.Random(848)
    members: list[Member] = []
    held: dict[Member, set[int]] = {}  # what each member really holds (revocations may lag)
    lag: dict[Member, int] = {}

    def step(member: Member) -> None:
        report = {topic_id: held[member]} if held[member] else {}
        resp = member.heartbeat(owned=report)
        assert resp.error_code == ErrorCode.none, resp
        given = member.owned.get(topic_id, set())
        # New partitions are taken at once; revoked ones are let go at once or a few heartbeats later.
        if held[member] - given and lag[member] > 0:
            lag[member] -= 1
            held[member] |= given
        else:
            held[member] = set(given)
            lag[member] = rng.choice((0, 0, 1, 3))
        member.owned = {topic_id: set(held[member])} if held[member] else {}
        holders = [p for m in members for p in held[m]]
        assert len(holders) == len(set(holders)), {m.member_id[:8]: sorted(held[m]) for m in members}

    try:
        for _ in range(150):
            roll = rng.random()
            if roll < 0.1 and len(members) < 4 or not members:
                m = Member(bootstrap, group, (topic_name,))
                members.append(m)
                held[m], lag[m] = set(), 0
                step(m)
            elif roll < 0.15 and len(members) > 1:
                m = members.pop(rng.randrange(len(members)))
                assert m.leave().error_code == ErrorCode.none
                m.close()
            else:
                step(rng.choice(members))
        deadline = time.monotonic() + 30
        while True:
            for m in members:
                lag[m] = 0
                step(m)
            counts = sorted(len(held[m]) for m in members)
            if sum(counts) == 8 and counts[-1] - counts[0] <= 1 and len({m.epoch for m in members}) == 1:
                break
            assert time.monotonic() < deadline, counts
    finally:
        for m in members:
            m.close()

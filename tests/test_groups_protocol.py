"""Group protocol errors as a client meets them, driven with raw requests (kio) so that nothing hides them.

Every scenario runs against the embedded broker and, with `--kafka`, against Apache Kafka.
"""

from __future__ import annotations

import struct
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from kio.schema.errors import ErrorCode

from wire import Conn

pytestmark = pytest.mark.timeout(60)

JOIN, SYNC, HEARTBEAT, LEAVE, COMMIT, FETCH, DESCRIBE, LIST, DELETE, FIND, OFFSET_DELETE = (
    (11, 9), (14, 5), (12, 4), (13, 5), (8, 9), (9, 9), (15, 5), (16, 5), (42, 2), (10, 6), (47, 0))


def _subscription(topic: str) -> bytes:
    """A consumer-protocol subscription (v0) to one topic."""
    name = topic.encode()
    return struct.pack(">hih", 0, 1, len(name)) + name + struct.pack(">i", -1)


class Member:
    """A raw group member on its own connection."""

    def __init__(self, bootstrap: str, group: str, topic: str, instance_id: str | None = None) -> None:
        self.c = Conn(bootstrap)
        self.group = group
        self.topic = topic
        self.instance_id = instance_id
        self.member_id = ""
        self.generation = -1

    def join(self, session_ms: int = 10000, rebalance_ms: int = 10000):
        import datetime

        m = self.c.m(JOIN)
        resp = self.c.call(
            JOIN, group_id=self.group, session_timeout=datetime.timedelta(milliseconds=session_ms),
            rebalance_timeout=datetime.timedelta(milliseconds=rebalance_ms), member_id=self.member_id,
            group_instance_id=self.instance_id, protocol_type="consumer",
            protocols=(m.JoinGroupRequestProtocol(name="range", metadata=_subscription(self.topic)),), reason=None)
        if resp.error_code in (ErrorCode.none, ErrorCode.member_id_required):
            self.member_id = resp.member_id
        if resp.error_code == ErrorCode.none:
            self.generation = resp.generation_id
        return resp

    def join_until_member(self, **kw):
        resp = self.join(**kw)
        if resp.error_code == ErrorCode.member_id_required:
            resp = self.join(**kw)
        return resp

    def sync(self, assignments: dict[str, bytes] | None = None, generation: int | None = None):
        m = self.c.m(SYNC)
        return self.c.call(
            SYNC, group_id=self.group, generation_id=self.generation if generation is None else generation,
            member_id=self.member_id, group_instance_id=self.instance_id, protocol_type="consumer",
            protocol_name="range",
            assignments=tuple(m.SyncGroupRequestAssignment(member_id=k, assignment=v)
                              for k, v in (assignments or {}).items()))

    def heartbeat(self, generation: int | None = None, member_id: str | None = None):
        return self.c.call(HEARTBEAT, group_id=self.group,
                           generation_id=self.generation if generation is None else generation,
                           member_id=self.member_id if member_id is None else member_id,
                           group_instance_id=self.instance_id).error_code

    def commit(self, offset: int, generation: int | None = None, member_id: str | None = None,
               metadata: str | None = "meta"):
        m = self.c.m(COMMIT)
        resp = self.c.call(
            COMMIT, group_id=self.group, generation_id_or_member_epoch=self.generation if generation is None else generation,
            member_id=self.member_id if member_id is None else member_id, group_instance_id=self.instance_id,
            topics=(m.OffsetCommitRequestTopic(name=self.topic, partitions=(
                m.OffsetCommitRequestPartition(partition_index=0, committed_offset=offset, committed_leader_epoch=-1,
                                               committed_metadata=metadata),)),))
        return resp.topics[0].partitions[0].error_code

    def leave(self, member_id: str | None = None):
        m = self.c.m(LEAVE)
        resp = self.c.call(LEAVE, group_id=self.group, members=(
            m.MemberIdentity(member_id=self.member_id if member_id is None else member_id,
                             group_instance_id=self.instance_id, reason=None),))
        return resp.error_code, [x.error_code for x in resp.members]

    def close(self) -> None:
        self.c.close()


@pytest.fixture
def group() -> str:
    return "g-" + uuid.uuid4().hex[:12]


@pytest.fixture
def topic(bootstrap, topic_name) -> str:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic_name, 1, 1)])[topic_name].result(30)
    return topic_name


def _fetch(conn: Conn, group: str, topics=None):
    m = conn.m(FETCH)
    req_topics = None if topics is None else tuple(
        m.OffsetFetchRequestTopics(name=t, partition_indexes=(0,)) for t in topics)
    resp = conn.call(FETCH, groups=(m.OffsetFetchRequestGroup(group_id=group, member_id=None, member_epoch=-1,
                                                                 topics=req_topics),), require_stable=False)
    g = resp.groups[0]
    return g.error_code, {(t.name, p.partition_index): (p.committed_offset, p.metadata, p.error_code)
                          for t in g.topics for p in t.partitions}


def _describe(conn: Conn, group: str):
    return conn.call(DESCRIBE, groups=(group,), include_authorized_operations=False).groups[0]


def _stable_single(bootstrap, group, topic, **kw) -> Member:
    a = Member(bootstrap, group, topic, **kw)
    resp = a.join_until_member()
    assert resp.error_code == ErrorCode.none
    assert resp.leader == a.member_id
    assert [x.member_id for x in resp.members] == [a.member_id]
    sync = a.sync({a.member_id: b"assignment-a"})
    assert sync.error_code == ErrorCode.none and sync.assignment == b"assignment-a"
    return a


def test_member_id_required_then_join_sync_commit_leave(bootstrap, group, topic):
    a = Member(bootstrap, group, topic)
    first = a.join()
    assert first.error_code == ErrorCode.member_id_required and first.member_id
    second = a.join()
    assert second.error_code == ErrorCode.none and second.generation_id >= 1
    assert second.protocol_name == "range" and second.leader == a.member_id
    assert a.sync({a.member_id: b"x"}).assignment == b"x"
    assert a.heartbeat() == ErrorCode.none
    described = _describe(a.c, group)
    assert described.group_state == "Stable" and described.protocol_data == "range"
    assert [m.member_id for m in described.members] == [a.member_id]
    assert described.members[0].member_assignment == b"x"
    assert a.commit(42) == ErrorCode.none
    assert _fetch(a.c, group, [topic])[1][(topic, 0)] == (42, "meta", ErrorCode.none)
    assert a.leave() == (ErrorCode.none, [ErrorCode.none])
    assert _describe(a.c, group).group_state == "Empty"
    a.close()


def test_stale_generation_and_unknown_member_are_refused(bootstrap, group, topic):
    a = _stable_single(bootstrap, group, topic)
    assert a.heartbeat(generation=a.generation + 5) == ErrorCode.illegal_generation
    assert a.heartbeat(member_id="nobody") == ErrorCode.unknown_member_id
    assert a.commit(1, generation=a.generation + 5) == ErrorCode.illegal_generation
    assert a.commit(1, member_id="nobody") == ErrorCode.unknown_member_id
    # A commit without member and generation is refused while the group has members.
    assert a.commit(1, generation=-1, member_id="") == ErrorCode.unknown_member_id
    assert a.sync(generation=a.generation + 5).error_code == ErrorCode.illegal_generation
    other = Member(bootstrap, "g-" + uuid.uuid4().hex[:12], topic)
    assert other.heartbeat(generation=1, member_id="nobody") == ErrorCode.unknown_member_id
    resp = other.join()
    assert resp.error_code == ErrorCode.member_id_required
    assert other.join(session_ms=1000).error_code == ErrorCode.invalid_session_timeout
    a.close()
    other.close()


def test_new_member_puts_the_group_into_rebalance(bootstrap, group, topic):
    a = _stable_single(bootstrap, group, topic)
    b = Member(bootstrap, group, topic)
    assert b.join().error_code == ErrorCode.member_id_required
    with ThreadPoolExecutor(2) as pool:
        b_join = pool.submit(b.join)
        # The first member learns of the rebalance from its heartbeat, and may still commit meanwhile.
        deadline = threading.Event()
        for _ in range(100):
            code = a.heartbeat()
            if code == ErrorCode.rebalance_in_progress:
                break
            deadline.wait(0.05)
        assert code == ErrorCode.rebalance_in_progress
        assert a.commit(7) == ErrorCode.none
        a_join = pool.submit(a.join)
        ra, rb = a_join.result(30), b_join.result(30)
    assert ra.error_code == rb.error_code == ErrorCode.none
    assert ra.generation_id == rb.generation_id == a.generation == b.generation
    assert ra.leader == rb.leader == a.member_id
    assert sorted(m.member_id for m in ra.members) == sorted([a.member_id, b.member_id])
    assert rb.members == ()
    # The old generation is gone for good.
    assert a.commit(8, generation=a.generation - 1) == ErrorCode.illegal_generation
    with ThreadPoolExecutor(1) as pool:
        b_sync = pool.submit(b.sync)
        assert a.sync({a.member_id: b"A", b.member_id: b"B"}).assignment == b"A"
        assert b_sync.result(30).assignment == b"B"
    a.close()
    b.close()


def test_a_follower_waiting_in_sync_longer_than_its_session_keeps_its_membership(bootstrap, group, topic):
    """A follower parked in SyncGroup sends no heartbeats (kafka-python stops them for the whole rebalance). When
    the leader syncs later than the follower's session, the follower's session starts over with its assignment,
    as in Kafka; it is not expelled as soon as it has been answered."""
    session = dict(session_ms=6000, rebalance_ms=30000)  # Kafka's smallest session timeout
    a, b = Member(bootstrap, group, topic), Member(bootstrap, group, topic)
    assert a.join_until_member(**session).error_code == ErrorCode.none
    assert a.sync({a.member_id: b"A0"}).assignment == b"A0"
    assert b.join(**session).error_code == ErrorCode.member_id_required
    with ThreadPoolExecutor(2) as pool:
        b_join = pool.submit(b.join, **session)
        for _ in range(100):
            if a.heartbeat() == ErrorCode.rebalance_in_progress:
                break
            threading.Event().wait(0.05)
        ra = a.join(**session)
        assert ra.error_code == b_join.result(30).error_code == ErrorCode.none and ra.leader == a.member_id
        b_sync = pool.submit(b.sync)
        # The leader takes 8 s to assign (heartbeating meanwhile); the follower waits in SyncGroup, silent.
        for _ in range(8):
            threading.Event().wait(1)
            assert a.heartbeat() == ErrorCode.none
        assert a.sync({a.member_id: b"A", b.member_id: b"B"}).assignment == b"A"
        assert b_sync.result(30).assignment == b"B"
    threading.Event().wait(1)  # well inside the new session; several of the broker's session checks
    assert b.heartbeat() == ErrorCode.none
    assert a.heartbeat() == ErrorCode.none
    described = _describe(a.c, group)
    assert described.group_state == "Stable" and len(described.members) == 2
    a.close()
    b.close()


def test_static_member_replacement_fences_the_old_instance(bootstrap, group, topic):
    a = _stable_single(bootstrap, group, topic, instance_id="instance-1")
    old_id, generation = a.member_id, a.generation
    # The same instance comes back without its member id (a restart): it takes over without a rebalance.
    b = Member(bootstrap, group, topic, instance_id="instance-1")
    resp = b.join()
    assert resp.error_code == ErrorCode.none
    assert b.member_id != old_id and resp.generation_id == generation
    assert b.sync().assignment == b"assignment-a"
    assert a.heartbeat() == ErrorCode.fenced_instance_id
    assert a.commit(3) == ErrorCode.fenced_instance_id
    assert a.leave() == (ErrorCode.none, [ErrorCode.fenced_instance_id])
    assert a.sync().error_code == ErrorCode.fenced_instance_id
    assert b.heartbeat() == ErrorCode.none
    assert b.leave() == (ErrorCode.none, [ErrorCode.none])
    a.close()
    b.close()


def test_simple_consumer_commits_and_group_admin(bootstrap, group, topic):
    c = Conn(bootstrap)
    simple = Member(bootstrap, group, topic)
    # Generation -1 and no member id: a consumer that assigns itself partitions still commits.
    assert simple.commit(11, generation=-1, member_id="", metadata=None) == ErrorCode.none
    assert _fetch(c, group, [topic])[1][(topic, 0)] == (11, "", ErrorCode.none)
    assert _fetch(c, group, None)[1] == {(topic, 0): (11, "", ErrorCode.none)}
    assert _fetch(c, "g-none-" + uuid.uuid4().hex[:8], [topic])[1][(topic, 0)][0] == -1
    listed = {g.group_id: g for g in c.call(LIST, states_filter=(), types_filter=()).groups}
    assert listed[group].group_state == "Empty" and listed[group].protocol_type == ""
    m = c.m(OFFSET_DELETE)
    resp = c.call(OFFSET_DELETE, group_id=group, topics=(m.OffsetDeleteRequestTopic(
        name=topic, partitions=(m.OffsetDeleteRequestPartition(partition_index=0),)),))
    assert resp.error_code == ErrorCode.none and resp.topics[0].partitions[0].error_code == ErrorCode.none
    assert _fetch(c, group, [topic])[1][(topic, 0)][0] == -1
    simple.close()
    c.close()


def test_delete_groups(bootstrap, group, topic):
    a = _stable_single(bootstrap, group, topic)
    assert a.commit(5) == ErrorCode.none
    c = Conn(bootstrap)
    unknown = "g-none-" + uuid.uuid4().hex[:8]
    results = {r.group_id: r.error_code for r in c.call(DELETE, groups_names=(group, unknown)).results}
    assert results == {group: ErrorCode.non_empty_group, unknown: ErrorCode.group_id_not_found}
    a.leave()
    results = {r.group_id: r.error_code for r in c.call(DELETE, groups_names=(group,)).results}
    assert results == {group: ErrorCode.none}
    assert _fetch(c, group, [topic])[1][(topic, 0)][0] == -1
    a.close()
    c.close()


def test_find_coordinator_for_groups_and_transactions(bootstrap):
    c = Conn(bootstrap)
    host, port = bootstrap.rsplit(":", 1)
    for key_type in (0, 1):
        resp = c.call(FIND, key_type=key_type, coordinator_keys=("a", "b"))
        assert [(x.key, x.error_code, x.port) for x in resp.coordinators] == [
            ("a", ErrorCode.none, int(port)), ("b", ErrorCode.none, int(port))]
    c.close()

"""Committed offsets last: across a clean restart and a kill -9 of the broker, and they go away with their topic."""

from __future__ import annotations

import socket
import struct
import time
import uuid

import pytest
from confluent_kafka import Consumer, TopicPartition
from kio.schema.errors import ErrorCode

from test_groups import create_topic, produce, wait_for
from test_groups_protocol import Conn

pytestmark = pytest.mark.timeout(120)
NO_OFFSET = -1001


def _consumer(bootstrap: str, group: str) -> Consumer:
    return Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                     "enable.auto.commit": False, "session.timeout.ms": 6000})


def _committed(bootstrap: str, group: str, topic: str, partitions: int) -> list[int]:
    c = _consumer(bootstrap, group)
    try:
        found = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=30)
        return [tp.offset for tp in found]
    finally:
        c.close()


def _commit(bootstrap: str, group: str, topic: str, offsets: list[int]) -> None:
    """Commit as a member of the group (join, wait for the assignment, commit explicit offsets, leave)."""
    c = _consumer(bootstrap, group)
    c.subscribe([topic])
    try:
        deadline = time.monotonic() + 60
        while len(c.assignment()) < len(offsets) and time.monotonic() < deadline:
            c.poll(0.2)
        assert len(c.assignment()) == len(offsets)
        c.commit(offsets=[TopicPartition(topic, p, o) for p, o in enumerate(offsets)], asynchronous=False)
    finally:
        c.close()


def _resume(bootstrap: str, group: str, topic: str, expected: int) -> list[tuple[int, int]]:
    c = _consumer(bootstrap, group)
    c.subscribe([topic])
    got: list[tuple[int, int]] = []
    try:
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            for m in c.consume(1000, timeout=0.2):
                if m.error() is None:
                    got.append((m.partition(), m.offset()))
    finally:
        c.close()
    return got


def test_committed_offsets_survive_restart_and_kill(broker_process, topic_name):
    broker = broker_process().start()
    bootstrap = broker.bootstrap_servers
    group = "g-" + uuid.uuid4().hex[:12]
    create_topic(bootstrap, topic_name, 3)
    produce(bootstrap, topic_name, 300, 3)
    _commit(bootstrap, group, topic_name, [40, 41, 42])
    assert broker.stop() == 0
    broker.start()
    assert _committed(bootstrap, group, topic_name, 3) == [40, 41, 42]
    _commit(bootstrap, group, topic_name, [70, 71, 72])
    # Acknowledged commits are on disk: a kill -9 right after loses none of them.
    broker.kill()
    broker.start()
    assert _committed(bootstrap, group, topic_name, 3) == [70, 71, 72]
    got = _resume(bootstrap, group, topic_name, 300 - 213)
    assert sorted(got) == sorted((p, o) for p, first in enumerate([70, 71, 72]) for o in range(first, 100))
    broker.stop()


def test_offsets_of_a_deleted_topic_go_away(bootstrap, topic_name):
    from confluent_kafka.admin import AdminClient, NewTopic

    group = "g-" + uuid.uuid4().hex[:12]
    create_topic(bootstrap, topic_name, 2)
    produce(bootstrap, topic_name, 20, 2)
    _commit(bootstrap, group, topic_name, [5, 6])
    assert _committed(bootstrap, group, topic_name, 2) == [5, 6]
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.delete_topics([topic_name])[topic_name].result(30)

    def recreated() -> bool:
        try:
            admin.create_topics([NewTopic(topic_name, 2, 1)])[topic_name].result(30)
            return True
        except Exception:  # Kafka deletes asynchronously: the name is free a moment later
            return False

    wait_for(recreated, 30, "the topic to be created again")
    wait_for(lambda: _committed(bootstrap, group, topic_name, 2) == [NO_OFFSET, NO_OFFSET], 30,
             "the deleted topic's offsets to be gone")


def _commit_many(bootstrap: str, group: str, topic: str, partitions: int, rounds: int) -> None:
    """Pipeline `rounds` simple commits of every partition on one socket (a large __consumer_offsets)."""
    import io

    from kio.index import load_payload_module
    from kio.serial import entity_writer
    from kio.static.constants import EntityType

    m = load_payload_module(8, 9, EntityType.request)
    write = entity_writer(m.OffsetCommitRequest)
    host, port = bootstrap.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=60) as s:
        for r in range(rounds):
            if r and r % 50 == 0:  # read the answers so far, so that neither side's buffers fill up
                for _ in range(50):
                    size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
                    s.recv(size, socket.MSG_WAITALL)
            req = m.OffsetCommitRequest(group_id=group, generation_id_or_member_epoch=-1, member_id="",
                                        group_instance_id=None, topics=(m.OffsetCommitRequestTopic(
                                            name=topic, partitions=tuple(
                                                m.OffsetCommitRequestPartition(partition_index=p, committed_offset=r,
                                                                               committed_leader_epoch=-1,
                                                                               committed_metadata=None)
                                                for p in range(partitions))),))
            buf = io.BytesIO()
            write(buf, req)
            frame = struct.pack(">hhih", 8, 9, r, 1) + b"t" + b"\0" + buf.getvalue()
            s.sendall(struct.pack(">i", len(frame)) + frame)
        for _ in range(rounds - (rounds - 1) // 50 * 50):
            size = struct.unpack(">i", s.recv(4, socket.MSG_WAITALL))[0]
            s.recv(size, socket.MSG_WAITALL)


def test_coordinator_load_in_progress_while_offsets_load(broker_process, topic_name):
    broker = broker_process().start()
    bootstrap = broker.bootstrap_servers
    group = "g-" + uuid.uuid4().hex[:12]
    create_topic(bootstrap, topic_name, 200)
    # Enough offsets (200 x 1500) that loading them takes longer than the first request takes to arrive.
    _commit_many(bootstrap, group, topic_name, 200, 1500)
    assert broker.stop() == 0
    broker.start()
    c = Conn(bootstrap)
    m = c.m((9, 9))
    request = dict(groups=(m.OffsetFetchRequestGroup(group_id=group, member_id=None, member_epoch=-1, topics=(
        m.OffsetFetchRequestTopics(name=topic_name, partition_indexes=(0, 199)),)),), require_stable=False)
    codes = []
    while True:
        g = c.call((9, 9), **request).groups[0]
        codes.append(g.error_code)
        if g.error_code == ErrorCode.none:
            break
        time.sleep(0.01)
    c.close()
    # Requests during the load are told to retry; afterwards every offset is back.
    assert codes[0] == ErrorCode.coordinator_load_in_progress
    assert [p.committed_offset for p in g.topics[0].partitions] == [1499, 1499]
    broker.stop()


def test_offsets_expire_after_retention_unless_the_group_is_active(tmp_path, only_embedded, topic_name):
    from broker_embedded import EmbeddedBroker
    from test_groups_protocol import LIST, Member, _fetch

    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), group_initial_rebalance_delay_ms=0,
                            offsets_retention_minutes=0, offsets_retention_check_interval_ms=200).start_in_thread()
    try:
        bootstrap = broker.bootstrap_servers
        create_topic(bootstrap, topic_name, 1)
        simple, active = "g-simple-" + uuid.uuid4().hex[:8], "g-active-" + uuid.uuid4().hex[:8]
        s = Member(bootstrap, simple, topic_name)
        assert s.commit(3, generation=-1, member_id="") == ErrorCode.none
        a = Member(bootstrap, active, topic_name)
        assert a.join_until_member().error_code == ErrorCode.none
        a.sync({a.member_id: b""})
        assert a.commit(4) == ErrorCode.none
        c = Conn(bootstrap)

        def simple_gone() -> bool:
            a.heartbeat()
            listed = {g.group_id for g in c.call(LIST, states_filter=(), types_filter=()).groups}
            return _fetch(c, simple, [topic_name])[1][(topic_name, 0)][0] == -1 and simple not in listed

        wait_for(simple_gone, 10, "the standalone group's offsets to expire")
        # The Stable group still subscribes to the topic: its offset stays.
        assert _fetch(c, active, [topic_name])[1][(topic_name, 0)][0] == 4
        for x in (s, a, c):
            x.close()
    finally:
        broker.stop_thread()

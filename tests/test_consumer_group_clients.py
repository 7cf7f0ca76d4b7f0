"""Real clients in consumer groups of the consumer group protocol (KIP-848): the Java client with
group.protocol=consumer (tests/java/GroupMember.java) and franz-go with its server-side balancer (tests/go,
`franzcheck member`). Each member is its own process, prints what it is assigned and consumes, and commits after
every batch.

- two members share the partitions, one leaves (SIGTERM: a clean leave) and the other gets everything, and no
  record is consumed twice;
- a member killed with SIGKILL is expired after the session timeout and the survivor takes over, losing nothing.

They run against the embedded broker and, with `--kafka`, against Apache Kafka (where the kill test waits out
Kafka's minimum session timeout of 45 s).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest

from test_franz_go import franzcheck  # noqa: F401  (fixture)
from test_java_client import java_classpath  # noqa: F401  (fixture)

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4
pytestmark = pytest.mark.timeout(300)


class MemberProcess:
    """A group member in a child process; its stdout lines are collected as they come."""

    def __init__(self, argv: list[str], name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.assigned: set[int] = set()
        self.records: list[tuple[int, int, str]] = []
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            line = line.strip()
            with self._lock:
                self.lines.append(line)
                kind, _, rest = line.partition(" ")
                if kind == "assigned":
                    self.assigned = {int(p) for p in rest.split(",") if p}
                elif kind in ("revoked", "lost"):
                    self.assigned -= {int(p) for p in rest.split(",") if p}
                elif kind == "record":
                    p, o, v = rest.split(" ", 2)
                    self.records.append((int(p), int(o), v))

    def values(self) -> list[str]:
        with self._lock:
            return [v for _, _, v in self.records]

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(60)
        self._reader.join(10)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(30)
        self._reader.join(10)

    def diagnostics(self) -> str:
        err = ""
        if self.proc.poll() is not None:
            err = self.proc.stderr.read()[-3000:]
        return f"{self.name}: {self.lines[-20:]} {err}"


def wait_for(condition, timeout: float, *members: MemberProcess) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out; " + " | ".join(m.diagnostics() for m in members))
        for m in members:
            if m.proc.poll() is not None:
                raise AssertionError("member exited; " + m.diagnostics())
        time.sleep(0.2)


def produce(bootstrap: str, topic: str, start: int, count: int) -> list[str]:
    from confluent_kafka import Producer

    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5})
    values = [f"v{i}" for i in range(start, start + count)]
    for i, v in enumerate(values):
        producer.produce(topic, key=str(start + i).encode(), value=v.encode(), partition=(start + i) % PARTITIONS)
    assert producer.flush(30) == 0
    return values


def create_topic(bootstrap: str, topic: str) -> None:
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])[topic].result(30)


@pytest.fixture(scope="session")
def java_member_classpath(java_classpath) -> str:
    """GroupMember.java compiled once (a JVM launching the source file compiles it at every start)."""
    source = ROOT / "tests" / "java" / "GroupMember.java"
    classes = ROOT / ".tools" / "java-classes"
    compiled = classes / "GroupMember.class"
    if not compiled.exists() or compiled.stat().st_mtime < source.stat().st_mtime:
        res = subprocess.run(["javac", "-cp", java_classpath, "-d", str(classes), str(source)],
                             capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stdout + res.stderr
    return f"{java_classpath}{os.pathsep}{classes}"


@pytest.fixture(params=["java", "franz-go"])
def member_factory(request):
    """Start a member of the given client: (bootstrap, topic, group, name[, instance id]) -> MemberProcess."""
    if request.param == "java":
        classpath = request.getfixturevalue("java_member_classpath")

        def start(bootstrap: str, topic: str, group: str, name: str, instance: str = "-") -> MemberProcess:
            return MemberProcess(["java", "-cp", classpath, "GroupMember", bootstrap, topic, group, instance], name)
    else:
        binary = str(request.getfixturevalue("franzcheck"))

        def start(bootstrap: str, topic: str, group: str, name: str, instance: str = "-") -> MemberProcess:
            return MemberProcess([binary, "member", bootstrap, topic, group, instance], name)
    start.client = request.param
    return start


@pytest.fixture
def group_broker(kafka_reference, tmp_path):
    """start(session_ms) -> (bootstrap, session timeout in s): a broker whose consumer group members heartbeat
    every half second, so that reconciliation takes seconds, with the given session timeout (under --kafka: Kafka,
    whose session timeout is 45 s at least, and heartbeats every 5 s)."""
    brokers = []

    def start(session_ms: int) -> tuple[str, float]:
        if kafka_reference:
            return kafka_reference, 45
        from broker_embedded import EmbeddedBroker

        broker = EmbeddedBroker(data_dir=str(tmp_path / f"broker-{len(brokers)}"), port=0,
                                group_initial_rebalance_delay_ms=0, group_consumer_session_timeout_ms=session_ms,
                                group_consumer_heartbeat_interval_ms=500).start_in_thread()
        brokers.append(broker)
        return broker.bootstrap_servers, session_ms / 1000

    yield start
    for broker in brokers:
        broker.stop_thread()


def test_members_share_then_one_leaves_without_duplicates(group_broker, topic_name, member_factory):
    bootstrap, _ = group_broker(10000)
    group = "g-" + uuid.uuid4().hex[:10]
    create_topic(bootstrap, topic_name)
    expected = produce(bootstrap, topic_name, 0, 200)
    a = member_factory(bootstrap, topic_name, group, "a")
    b = member_factory(bootstrap, topic_name, group, "b")
    try:
        # Both members end up with two partitions each, disjoint.
        wait_for(lambda: len(a.assigned) == 2 and len(b.assigned) == 2 and not a.assigned & b.assigned,
                 90, a, b)
        wait_for(lambda: set(a.values()) | set(b.values()) >= set(expected), 60, a, b)
        expected += produce(bootstrap, topic_name, 200, 200)
        wait_for(lambda: set(a.values()) | set(b.values()) >= set(expected), 60, a, b)
        # A leaves: B gets every partition and everything produced afterwards.
        a.terminate()
        assert "closed" in a.lines
        wait_for(lambda: b.assigned == set(range(PARTITIONS)), 60, b)
        expected += produce(bootstrap, topic_name, 400, 200)
        wait_for(lambda: set(a.values()) | set(b.values()) >= set(expected), 60, b)
        consumed = a.values() + b.values()
        assert sorted(consumed) == sorted(expected), "records consumed twice or lost"
    finally:
        for m in (a, b):
            if m.proc.poll() is None:
                m.kill()


def test_killed_member_expires_after_the_session_timeout(group_broker, topic_name, member_factory):
    bootstrap, session_s = group_broker(5000)
    group = "g-" + uuid.uuid4().hex[:10]
    create_topic(bootstrap, topic_name)
    expected = produce(bootstrap, topic_name, 0, 100)
    a = member_factory(bootstrap, topic_name, group, "a")
    b = member_factory(bootstrap, topic_name, group, "b")
    try:
        wait_for(lambda: len(a.assigned) == 2 and len(b.assigned) == 2 and not a.assigned & b.assigned,
                 90, a, b)
        wait_for(lambda: set(a.values()) | set(b.values()) >= set(expected), 60, a, b)
        killed_at = time.monotonic()
        b.kill()
        wait_for(lambda: a.assigned == set(range(PARTITIONS)), session_s + 60, a)
        assert time.monotonic() - killed_at >= session_s * 0.8
        expected += produce(bootstrap, topic_name, 100, 100)
        wait_for(lambda: set(a.values()) >= set(expected[100:]), 60, a)
        consumed = a.values() + b.values()
        assert set(consumed) == set(expected)  # nothing lost
        # Everything B committed stays consumed once: only B's last uncommitted batch may come again.
        assert len(consumed) - len(set(consumed)) <= 100
    finally:
        for m in (a, b):
            if m.proc.poll() is None:
                m.kill()


def test_static_member_restarts_into_its_partitions(group_broker, topic_name, member_factory):
    """Static members (group.instance.id): one stops (a clean close leaves with epoch -2) and a new process with
    the same instance id takes its partitions back; the other member's partitions never move."""
    if member_factory.client == "franz-go":
        pytest.skip("franz-go's static members do not leave on Close (its InstanceID docs): a restart waits for "
                    "the old member's session to expire, as on Kafka")
    # The session outlasts the restart of a JVM: the instance must come back before it expires.
    bootstrap, _ = group_broker(30000)
    group = "g-" + uuid.uuid4().hex[:10]
    create_topic(bootstrap, topic_name)
    expected = produce(bootstrap, topic_name, 0, 100)
    a = member_factory(bootstrap, topic_name, group, "a", "instance-a")
    b = member_factory(bootstrap, topic_name, group, "b", "instance-b")
    again = None
    try:
        wait_for(lambda: len(a.assigned) == 2 and len(b.assigned) == 2 and not a.assigned & b.assigned,
                 90, a, b)
        wait_for(lambda: set(a.values()) | set(b.values()) >= set(expected), 60, a, b)
        a_partitions, b_partitions, b_lines = set(a.assigned), set(b.assigned), len(b.lines)
        a.terminate()
        again = member_factory(bootstrap, topic_name, group, "a-again", "instance-a")
        wait_for(lambda: again.assigned == a_partitions, 90, again, b)
        expected += produce(bootstrap, topic_name, 100, 100)
        wait_for(lambda: set(a.values()) | set(b.values()) | set(again.values()) >= set(expected), 60, again, b)
        assert b.assigned == b_partitions
        assert not [line for line in b.lines[b_lines:] if line.split(" ")[0] in ("revoked", "lost")]
        consumed = a.values() + b.values() + again.values()
        assert sorted(consumed) == sorted(expected), "records consumed twice or lost"
    finally:
        for m in (a, b, again):
            if m is not None and m.proc.poll() is None:
                m.kill()

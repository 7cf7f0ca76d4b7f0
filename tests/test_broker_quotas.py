"""Client quotas and connection limits: DescribeClientQuotas/AlterClientQuotas with Kafka's validation (the same
scenario passes against Apache Kafka 4.1.1: `pytest --kafka`), quotas that survive a restart, a producer over its
byte-rate quota throttled to it while another client id is not, a consumer over its fetch quota, and
max.connections.per.ip, max.connections and connections.max.idle.ms.
"""

from __future__ import annotations

import datetime
import socket
import struct
import subprocess
import time
import uuid
from contextlib import closing

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition

from broker_embedded import EmbeddedBroker
from test_java_client import ROOT, java_classpath  # noqa: F401  (the fixture)
from wire import Conn

INVALID_REQUEST, UNSUPPORTED_VERSION = 42, 35
EXACT, DEFAULT, SPECIFIED = 0, 1, 2


def _alter(conn, entries, validate_only=False):
    """entries: [(entity [(type, name)], ops [(key, value or None to remove)])] -> [(error code, message)]."""
    m = conn.m((49, 1))
    req = tuple(m.EntryData(entity=tuple(m.EntityData(entity_type=t, entity_name=n) for t, n in entity),
                            ops=tuple(m.OpData(key=k, value=float(v or 0), remove=v is None) for k, v in ops))
                for entity, ops in entries)
    res = conn.call((49, 1), entries=req, validate_only=validate_only)
    return [(e.error_code, e.error_message) for e in res.entries]


def _describe(conn, components, strict=False):
    """components: [(type, match type, match)] -> (error code, {entity: {key: value}})."""
    m = conn.m((48, 1))
    res = conn.call((48, 1), components=tuple(m.ComponentData(entity_type=t, match_type=mt, match=v)
                                              for t, mt, v in components), strict=strict)
    found = {tuple(sorted((e.entity_type, e.entity_name) for e in entry.entity)): {v.key: v.value for v in entry.values}
             for entry in res.entries or ()}
    return res.error_code, found


def _eventually(fn, timeout=10.0):
    """Apache Kafka applies quota changes through its metadata log: a describe right after may not see them yet."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return fn()
        except AssertionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_client_quota_apis(bootstrap):
    u, c = "qa-" + uuid.uuid4().hex[:6], "qc-" + uuid.uuid4().hex[:6]
    user, client, both = [("user", u)], [("client-id", c)], [("user", u), ("client-id", c)]
    user_default = [("user", None)]
    with closing(Conn(bootstrap)) as conn:
        assert [e for e, _ in _alter(conn, [(user, [("producer_byte_rate", 1024)]),
                                            (both, [("consumer_byte_rate", 2048), ("request_percentage", 50.5)]),
                                            (client, [("producer_byte_rate", 4096)])])] == [0, 0, 0]

        def described():
            code, found = _describe(conn, [("user", EXACT, u)])
            assert code == 0
            assert found == {(("user", u),): {"producer_byte_rate": 1024.0},
                             (("client-id", c), ("user", u)): {"consumer_byte_rate": 2048.0,
                                                               "request_percentage": 50.5}}
        _eventually(described)
        # strict: only entities with exactly the filtered types; SPECIFIED: any non-default name of the type.
        assert _describe(conn, [("user", EXACT, u)], strict=True)[1] == {(("user", u),): {"producer_byte_rate": 1024.0}}
        code, found = _describe(conn, [("user", EXACT, u), ("client-id", SPECIFIED, None)])
        assert code == 0 and list(found) == [(("client-id", c), ("user", u))]
        assert _describe(conn, [("client-id", EXACT, c)], strict=True)[1] == {
            (("client-id", c),): {"producer_byte_rate": 4096.0}}

        # Validation, one entry per request (Kafka answers per entity, in no particular order).
        invalid = [
            (user, [("no_such_quota", 1)]),
            (client, [("producer_byte_rate", 1.5)]),           # LONG quotas are whole numbers
            (client, [("producer_byte_rate", -1)]),
            (client, [("producer_byte_rate", 1), ("producer_byte_rate", 2)]),
            ([], [("producer_byte_rate", 1)]),
            ([("ip", "127.0.0.1"), ("user", u)], [("connection_creation_rate", 1)]),
            ([("ip", "127.0.0.1")], [("producer_byte_rate", 1)]),   # not an IP quota
            ([("group", "g")], [("producer_byte_rate", 1)]),
            ([("user", "")], [("producer_byte_rate", 1)]),
        ]
        errors = [_alter(conn, [entry])[0] for entry in invalid]
        assert [e for e, _ in errors] == [INVALID_REQUEST] * len(invalid), errors
        # The same entity twice in one request: Kafka refuses it.
        assert INVALID_REQUEST in [e for e, _ in _alter(conn, [(client, [("producer_byte_rate", 1)]),
                                                             (client, [("consumer_byte_rate", 1)])])]
        assert _describe(conn, [("user", EXACT, u), ("user", EXACT, u)])[0] == INVALID_REQUEST
        assert _describe(conn, [("user", EXACT, None)])[0] == INVALID_REQUEST
        assert _describe(conn, [("user", DEFAULT, u)])[0] == INVALID_REQUEST
        assert _describe(conn, [("ip", SPECIFIED, None), ("user", SPECIFIED, None)])[0] == INVALID_REQUEST
        assert _describe(conn, [("topic", SPECIFIED, None)])[0] == UNSUPPORTED_VERSION

        # validate_only changes nothing; removing the last key removes the entity.
        assert _alter(conn, [(user, [("producer_byte_rate", 999)])], validate_only=True) == [(0, None)]
        assert _alter(conn, [(user, [("producer_byte_rate", None)]), (both, [("consumer_byte_rate", None),
                                                                             ("request_percentage", None)]),
                             (client, [("producer_byte_rate", None)])]) == [(0, None)] * 3

        def removed():
            assert _describe(conn, [("user", EXACT, u)])[1] == {}
            assert _describe(conn, [("client-id", EXACT, c)])[1] == {}
        _eventually(removed)
        # The default entity is named None.
        assert _alter(conn, [(user_default, [("consumer_byte_rate", 1e9)])]) == [(0, None)]
        _eventually(lambda: _check(_describe(conn, [("user", DEFAULT, None)], strict=True)[1] == {
            (("user", None),): {"consumer_byte_rate": 1e9}}))
        assert _alter(conn, [(user_default, [("consumer_byte_rate", None)])]) == [(0, None)]


def _check(condition: bool) -> None:
    assert condition


def test_quotas_survive_restart(tmp_path):
    settings = dict(data_dir=str(tmp_path / "b"), port=0)
    broker = EmbeddedBroker(**settings).start_in_thread()
    try:
        with closing(Conn(broker.bootstrap_servers)) as conn:
            assert _alter(conn, [([("user", "alice"), ("client-id", None)], [("producer_byte_rate", 1000)])]) == [
                (0, None)]
    finally:
        broker.stop_thread()
    broker = EmbeddedBroker(**settings).start_in_thread()
    try:
        with closing(Conn(broker.bootstrap_servers)) as conn:
            assert _describe(conn, [])[1] == {(("client-id", None), ("user", "alice")): {"producer_byte_rate": 1000.0}}
    finally:
        broker.stop_thread()


QUOTA = 256 * 1024


@pytest.fixture
def quota_broker(tmp_path):
    # Three 1 s samples: the rate settles within the few seconds a test may take (Kafka's default is 11).
    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), port=0, quota_window_num=3).start_in_thread()
    yield broker
    broker.stop_thread()


def _produce_rate(broker, client_id: str, seconds: float) -> float:
    """Bytes/s acknowledged to a producer that sends as fast as it can for `seconds`."""
    p = Producer({"bootstrap.servers": broker.bootstrap_servers, "client.id": client_id, "linger.ms": 5,
                  "batch.size": 16384, "queue.buffering.max.kbytes": 4096, "acks": 1})
    acked = [0]

    def delivered(err, msg):
        if err is None:
            acked[0] += len(msg.value())

    payload = b"x" * 1000
    start = time.monotonic()
    while (elapsed := time.monotonic() - start) < seconds:
        try:
            p.produce("quota-t", payload, on_delivery=delivered)
        except BufferError:
            p.poll(0.01)
        p.poll(0)
    rate = acked[0] / elapsed
    p.purge()
    p.flush(1)
    return rate


def test_producer_throttled_to_its_quota(quota_broker):
    with closing(Conn(quota_broker.bootstrap_servers)) as conn:
        assert _alter(conn, [([("client-id", "slow")], [("producer_byte_rate", QUOTA)])]) == [(0, None)]
    fast = _produce_rate(quota_broker, "fast", 1.0)  # first: it also creates the topic
    slow = _produce_rate(quota_broker, "slow", 4.0)
    assert 0.8 * QUOTA <= slow <= 1.2 * QUOTA, slow / QUOTA
    assert fast > 5 * QUOTA, fast / QUOTA


def test_throttle_time_and_muting_without_client_cooperation(quota_broker):
    """A raw client ignores throttle_time_ms; the broker mutes its connection for that time instead (KIP-219)."""
    with closing(Conn(quota_broker.bootstrap_servers)) as conn:
        assert _alter(conn, [([("client-id", "test")], [("producer_byte_rate", 100_000)]),
                             ([("client-id", "acks0")], [("producer_byte_rate", 100_000)])]) == [(0, None)] * 2
    producer = Producer({"bootstrap.servers": quota_broker.bootstrap_servers})
    producer.produce("muted", b"warm-up")
    producer.flush(10)
    batch = _record_batch(b"v" * 300_000)
    with closing(Conn(quota_broker.bootstrap_servers)) as conn:  # wire.Conn sends client id "test"
        m = conn.m((0, 9))
        req = dict(transactional_id=None, acks=1, timeout=datetime.timedelta(seconds=5), topic_data=(m.TopicProduceData(
            name="muted", partition_data=(m.PartitionProduceData(index=0, records=batch),)),))
        first = conn.call((0, 9), **req)
        throttle = first.throttle_time.total_seconds()
        assert first.responses[0].partition_responses[0].error_code == 0
        assert throttle > 0.3  # 300 kB against 100 kB/s: (150 - 100) / 100 x 2 s
        started = time.monotonic()
        conn.call((18, 3), client_software_name="t", client_software_version="1")
        assert time.monotonic() - started >= throttle - 0.05  # the next request waited out the throttle
    with closing(Conn(quota_broker.bootstrap_servers)) as conn:
        # acks=0 gets no answer to carry a throttle time: the connection is muted all the same, as in Kafka.
        _send_acks0(conn, req, "acks0")
        # A request already read when the first throttle of a connection is decided is served (requests are
        # read ahead until a quota bites); send the next one after that decision.
        time.sleep(0.1)
        started = time.monotonic()
        conn.call((18, 3), client_software_name="t", client_software_version="1")
        assert time.monotonic() - started > 0.3


def _send_acks0(conn: Conn, req: dict, client_id: str) -> None:
    """A Produce with acks=0: sent, and no response read (none comes)."""
    import io

    from kio.serial import entity_writer
    from kio.static.constants import EntityType
    from wire import payload_class

    cls = payload_class(conn.m((0, 9)), EntityType.request)
    buf = io.BytesIO()
    entity_writer(cls)(buf, cls(**{**req, "acks": 0}))
    conn.corr += 1
    frame = struct.pack(">hhih", 0, 9, conn.corr, len(client_id)) + client_id.encode() + b"\0" + buf.getvalue()
    conn.sock.sendall(struct.pack(">i", len(frame)) + frame)


def _record_batch(value: bytes) -> bytes:
    """One uncompressed RecordBatch v2 holding one record."""
    from crc32c import crc32c

    def varint(n: int) -> bytes:
        n = (n << 1) ^ (n >> 63)
        out = b""
        while True:
            b = n & 0x7F
            n >>= 7
            if n:
                out += bytes([b | 0x80])
            else:
                return out + bytes([b])

    body = b"\x00" + varint(0) + varint(0) + varint(-1) + varint(len(value)) + value + varint(0)
    record = varint(len(body)) + body
    now = int(time.time() * 1000)
    after_crc = struct.pack(">hiqqqhii", 0, 0, now, now, -1, -1, -1, 1) + record
    head = struct.pack(">qiib", 0, 4 + 1 + 4 + len(after_crc), -1, 2)
    return head + struct.pack(">I", crc32c(after_crc)) + after_crc


def test_consumer_throttled_to_its_fetch_quota(quota_broker):
    # Small batches: a fetch returns at least one whole batch, which must fit in the quota window.
    producer = Producer({"bootstrap.servers": quota_broker.bootstrap_servers, "linger.ms": 20, "batch.size": 16384})
    for _ in range(3000):
        producer.produce("fetched", b"y" * 1000)
    producer.flush(30)
    with closing(Conn(quota_broker.bootstrap_servers)) as conn:
        assert _alter(conn, [([("client-id", "reader")], [("consumer_byte_rate", QUOTA)])]) == [(0, None)]
    # Small fetches, so that the rate is measured at a finer grain than the quota window.
    c = Consumer({"bootstrap.servers": quota_broker.bootstrap_servers, "group.id": "q", "client.id": "reader",
                  "enable.auto.commit": False, "fetch.max.bytes": 65536, "max.partition.fetch.bytes": 65536,
                  "message.max.bytes": 65536})
    try:
        c.assign([TopicPartition("fetched", 0, 0)])
        got = 0
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < 4.0 and got < 3_000_000:
            m = c.poll(0.1)
            if m is not None and not m.error():
                got += len(m.value())
    finally:
        c.close()
    # A throttled fetch is answered empty and its bytes taken back (as in Kafka), so over a few seconds the rate
    # swings around the quota by a fetch's worth per window; over minutes it converges. Unthrottled, this
    # consumer reads the 3 MB in well under a second.
    assert 0.5 * QUOTA <= got / elapsed <= 1.5 * QUOTA, got / elapsed / QUOTA


# ---- connection limits ----

def _api_versions_frame() -> bytes:
    body = struct.pack(">hhih", 18, 0, 1, 1) + b"t"
    return struct.pack(">i", len(body)) + body


def _answers(sock: socket.socket, timeout: float) -> bool:
    """Whether the broker answers an ApiVersions request on `sock` within `timeout` (False: closed or silent)."""
    sock.settimeout(timeout)
    try:
        sock.sendall(_api_versions_frame())
        return len(sock.recv(4)) == 4
    except (socket.timeout, ConnectionError):
        return False


@pytest.mark.parametrize("settings", [dict(max_connections_per_ip=2),
                                      dict(max_connections_per_ip=1, max_connections_per_ip_overrides="127.0.0.1:2")],
                         ids=["per-ip", "override"])
def test_connections_per_ip(tmp_path, settings):
    """Beyond its address's limit a connection is closed at once (a closed one frees its slot)."""
    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), port=0, **settings).start_in_thread()
    host, port = broker.bootstrap_servers.rsplit(":", 1)
    socks = []
    try:
        for _ in range(2):
            socks.append(socket.create_connection((host, int(port))))
            assert _answers(socks[-1], 5)
        extra = socket.create_connection((host, int(port)))
        assert not _answers(extra, 5)
        extra.close()
        socks.pop().close()
        time.sleep(0.2)
        again = socket.create_connection((host, int(port)))
        assert _answers(again, 5)
        again.close()
    finally:
        for s in socks:
            s.close()
        broker.stop_thread()


def test_max_connections_waits_for_a_free_slot(tmp_path):
    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), port=0, max_connections=2).start_in_thread()
    host, port = broker.bootstrap_servers.rsplit(":", 1)
    try:
        first = socket.create_connection((host, int(port)))
        second = socket.create_connection((host, int(port)))
        assert _answers(first, 5) and _answers(second, 5)
        third = socket.create_connection((host, int(port)))
        assert not _answers(third, 1.0)  # held, not refused
        first.close()
        third.settimeout(5)
        assert len(third.recv(4)) == 4  # answered once a slot is free
        second.close()
        third.close()
    finally:
        broker.stop_thread()


def test_idle_connections_are_closed(tmp_path):
    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), port=0, connections_max_idle_ms=300).start_in_thread()
    host, port = broker.bootstrap_servers.rsplit(":", 1)
    try:
        s = socket.create_connection((host, int(port)))
        assert _answers(s, 5)
        s.recv(1 << 16)  # the rest of the answer
        s.settimeout(5)
        started = time.monotonic()
        assert s.recv(1) == b""  # closed by the broker
        assert 0.1 <= time.monotonic() - started < 3
        s.close()
    finally:
        broker.stop_thread()


def test_java_admin_client_quotas(bootstrap, java_classpath):
    """The Java Admin client sets, describes, validates and removes quotas; the lines were checked against
    Apache Kafka 4.1.1 (the same test passes under --kafka)."""
    res = subprocess.run(["java", "-cp", java_classpath, str(ROOT / "tests" / "java" / "ClientQuotas.java"), bootstrap,
                          "jq-" + uuid.uuid4().hex[:6]], capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stdout + res.stderr
    assert [line for line in res.stdout.splitlines() if not line.startswith("SLF4J")] == [
        "alter ok",
        "describe user 2 {producer_byte_rate=1024.0} {consumer_byte_rate=2048.0}",
        "describe strict 1 {producer_byte_rate=1024.0}",
        "fractional InvalidRequestException",
        "unknown key InvalidRequestException",
        "after removal 0",
    ], res.stdout + res.stderr


def test_quota_precedence(tmp_path):
    """Kafka's order, most specific first, and which clients share a rate (the tags)."""
    from broker_embedded.quotas import QuotaStore, entity_key
    store = QuotaStore(str(tmp_path))
    levels = [
        ([("user", "alice"), ("client-id", "app")], 1),
        ([("user", "alice"), ("client-id", None)], 2),
        ([("user", "alice")], 3),
        ([("user", None), ("client-id", "app")], 4),
        ([("user", None), ("client-id", None)], 5),
        ([("user", None)], 6),
        ([("client-id", "app")], 7),
        ([("client-id", None)], 8),
    ]
    store.alter([(entity_key(e), {"producer_byte_rate": v}) for e, v in levels])
    expected_tags = [("alice", "app"), ("alice", "app"), ("alice", ""), ("alice", "app"), ("alice", "app"),
                     ("alice", ""), ("", "app"), ("", "app")]
    for (entity, value), tags in zip(levels, expected_tags):
        assert store.lookup("producer_byte_rate", "alice", "app") == (value, tags)
        store.alter([(entity_key(entity), {"producer_byte_rate": None})])  # the next level shows through
    assert store.lookup("producer_byte_rate", "alice", "app") is None

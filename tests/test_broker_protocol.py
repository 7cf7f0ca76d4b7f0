"""Bad input on the wire and through admin clients gets Kafka's answer, and the broker keeps serving."""

from __future__ import annotations

import socket
import struct

import pytest
from confluent_kafka import KafkaError, KafkaException
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewPartitions,
                                   NewTopic)


def _addr(bootstrap: str) -> tuple[str, int]:
    host, port = bootstrap.rsplit(":", 1)
    return host, int(port)


def _request(sock: socket.socket, api_key: int, version: int, body: bytes, corr: int = 7,
             flexible: bool = False) -> None:
    header = struct.pack(">hhih", api_key, version, corr, 4) + b"test"
    if flexible:
        header += b"\0"
    frame = header + body
    sock.sendall(struct.pack(">i", len(frame)) + frame)


def _response(sock: socket.socket) -> bytes:
    size = struct.unpack(">i", _recv(sock, 4))[0]
    return _recv(sock, size)


def _recv(sock: socket.socket, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = sock.recv(n - len(out))
        if not chunk:
            raise ConnectionError("closed")
        out += chunk
    return out


def _closed(sock: socket.socket) -> bool:
    sock.settimeout(5)
    try:
        return sock.recv(1) == b""
    except ConnectionError:
        return True


def _alive(bootstrap: str) -> None:
    """A fresh connection still gets ApiVersions answered."""
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        _request(s, 18, 0, b"", corr=99)
        resp = _response(s)
        corr, err = struct.unpack(">ih", resp[:6])
        assert corr == 99 and err == 0


def test_api_versions_unknown_version_falls_back_to_v0(bootstrap):
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        _request(s, 18, 999, b"\0\0\0", corr=5)
        resp = _response(s)
    corr, err, n = struct.unpack(">ihi", resp[:10])
    assert corr == 5 and err == 35  # UNSUPPORTED_VERSION, with the v0 list of APIs
    entries = [struct.unpack(">hhh", resp[10 + 6 * i: 16 + 6 * i]) for i in range(n)]
    assert [key for key, _, _ in entries] == [18]  # only ApiVersions' own range, as Kafka answers
    assert entries[0][1] == 0 and entries[0][2] >= 3


def test_produce_v0_to_v2_is_advertised_but_refused(bootstrap, kafka_reference):
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        _request(s, 18, 0, b"")
        resp = _response(s)
        n = struct.unpack(">i", resp[6:10])[0]
        ranges = {k: (lo, hi) for k, lo, hi in (struct.unpack(">hhh", resp[10 + 6 * i: 16 + 6 * i]) for i in range(n))}
        assert ranges[0][0] == 0
        body = struct.pack(">hii", 1, 1000, 1) + struct.pack(">h", 1) + b"t" + struct.pack(">i", 1)
        body += struct.pack(">ii", 0, 0)
        _request(s, 0, 2, body, corr=11)
        if kafka_reference:
            # Kafka 4 closes the connection; the issue asks for an UNSUPPORTED_VERSION answer instead, which
            # tells the client why. Either way nothing is appended.
            assert _closed(s)
            return
        resp = _response(s)
    corr, ntopics = struct.unpack(">ii", resp[:8])
    assert corr == 11 and ntopics == 1
    name_len = struct.unpack(">h", resp[8:10])[0]
    _nparts, part, err = struct.unpack(">iih", resp[10 + name_len: 20 + name_len])
    assert part == 0 and err == 35


def test_garbage_unknown_keys_and_oversized_frames_close_only_that_connection(bootstrap, kafka_reference):
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        s.sendall(b"\x00\x00\x00\x03abc")  # shorter than any request header
        assert _closed(s)
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        _request(s, 4242, 0, b"")
        assert _closed(s)
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        s.sendall(struct.pack(">i", 200 * 1024 * 1024))  # over socket.request.max.bytes
        assert _closed(s)
    with socket.create_connection(_addr(bootstrap), timeout=5) as s:
        _request(s, 3, 9, b"\xff\xff\xff\xff\xff\xff")  # a Metadata body that cannot be decoded
        assert _closed(s)
    _alive(bootstrap)


def _admin(bootstrap: str) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap})


def _error_of(future) -> int:
    with pytest.raises(KafkaException) as err:
        future.result(15)
    return err.value.args[0].code()


def test_create_topics_errors(bootstrap, topic_name):
    admin = _admin(bootstrap)
    admin.create_topics([NewTopic(topic_name, 2, 1)])[topic_name].result(15)
    assert _error_of(admin.create_topics([NewTopic(topic_name, 2, 1)])[topic_name]) == KafkaError.TOPIC_ALREADY_EXISTS
    bad = "bad/name"
    assert _error_of(admin.create_topics([NewTopic(bad, 1, 1)])[bad]) == KafkaError.TOPIC_EXCEPTION
    other = topic_name + "-cfg"
    assert _error_of(admin.create_topics([NewTopic(other, 1, 1, config={"no.such.config": "1"})])[other]) == \
        KafkaError.INVALID_CONFIG
    assert _error_of(admin.create_topics([NewTopic(other, 1, 1, config={"retention.ms": "soon"})])[other]) == \
        KafkaError.INVALID_CONFIG
    assert _error_of(admin.create_topics([NewTopic(other, 1, 1, config={"cleanup.policy": "shred"})])[other]) == \
        KafkaError.INVALID_CONFIG
    assert _error_of(admin.create_topics([NewTopic(other, 1, 3)])[other]) == KafkaError.INVALID_REPLICATION_FACTOR
    assert _error_of(admin.create_topics([NewTopic(other, 0, 1)])[other]) in (KafkaError.INVALID_PARTITIONS,
                                                                           KafkaError.INVALID_REQUEST)
    # validate_only creates nothing.
    admin.create_topics([NewTopic(other, 1, 1)], validate_only=True)[other].result(15)
    assert other not in admin.list_topics(timeout=10).topics


def test_partitions_configs_and_deletion(bootstrap, topic_name):
    admin = _admin(bootstrap)
    admin.create_topics([NewTopic(topic_name, 1, 1, config={"cleanup.policy": "compact"})])[topic_name].result(15)
    admin.create_partitions([NewPartitions(topic_name, 3)])[topic_name].result(15)
    assert len(admin.list_topics(topic_name, timeout=10).topics[topic_name].partitions) == 3
    assert _error_of(admin.create_partitions([NewPartitions(topic_name, 2)])[topic_name]) == \
        KafkaError.INVALID_PARTITIONS

    res = ConfigResource(ConfigResource.Type.TOPIC, topic_name)
    configs = admin.describe_configs([res])[res].result(15)
    assert configs["cleanup.policy"].value == "compact" and not configs["cleanup.policy"].is_default
    assert configs["retention.ms"].value == "604800000" and configs["retention.ms"].is_default

    ops = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("retention.ms", "1000", incremental_operation=AlterConfigOpType.SET),
        ConfigEntry("cleanup.policy", "delete", incremental_operation=AlterConfigOpType.APPEND),
    ])
    admin.incremental_alter_configs([ops])[ops].result(15)
    configs = admin.describe_configs([res])[res].result(15)
    assert configs["retention.ms"].value == "1000"
    assert set(configs["cleanup.policy"].value.split(",")) == {"compact", "delete"}

    bad = ConfigResource(ConfigResource.Type.TOPIC, topic_name, incremental_configs=[
        ConfigEntry("max.message.bytes", "-5", incremental_operation=AlterConfigOpType.SET)])
    assert _error_of(admin.incremental_alter_configs([bad])[bad]) == KafkaError.INVALID_CONFIG
    configs = admin.describe_configs([res])[res].result(15)
    assert configs["retention.ms"].value == "1000", "a refused change leaves the configs as they were"

    admin.delete_topics([topic_name])[topic_name].result(15)
    import time

    deadline = time.monotonic() + 10
    while topic_name in admin.list_topics(timeout=10).topics and time.monotonic() < deadline:
        time.sleep(0.2)
    assert topic_name not in admin.list_topics(timeout=10).topics
    assert _error_of(admin.delete_topics([topic_name])[topic_name]) == KafkaError.UNKNOWN_TOPIC_OR_PART


def test_describe_cluster(bootstrap):
    admin = _admin(bootstrap)
    cluster = admin.describe_cluster().result(15)
    assert cluster.cluster_id
    assert len(cluster.nodes) == 1
    assert f"{cluster.nodes[0].host}:{cluster.nodes[0].port}" == bootstrap

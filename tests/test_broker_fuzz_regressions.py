"""Requests the fuzzer (tests/test_broker_fuzz.py) found the broker failing on, each answered now."""

from __future__ import annotations

import datetime
import uuid

from wire import Conn


def test_consumer_group_heartbeat_v0_is_answered(bootstrap):
    """v0 has no subscribed_topic_regex; the handler read it and closed the connection instead of answering."""
    conn = Conn(bootstrap)
    try:
        m = conn.m((68, 0))
        resp = conn.call((68, 0), group_id="fuzz-g1", member_id=str(uuid.uuid4()), member_epoch=0,
                         rebalance_timeout=datetime.timedelta(seconds=5), subscribed_topic_names=("t",),
                         server_assignor=None, topic_partitions=())
        assert resp.error_code == 0 and resp.member_epoch >= 1, resp
        assert m is not None
    finally:
        conn.close()


def test_produce_to_an_empty_topic_name_is_answered(bootstrap):
    """"" was taken for a missing name: Produce v3-12 then read a topic_id those versions lack, and closed the
    connection; Kafka answers UNKNOWN_TOPIC_OR_PARTITION."""
    from kio.index import load_payload_module
    from kio.static.constants import EntityType

    from broker_embedded.log.records import build_batch

    conn = Conn(bootstrap)
    try:
        for version in (3, 9):
            m = load_payload_module(0, version, EntityType.request)
            resp = conn.call((0, version), transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=5),
                             topic_data=(m.TopicProduceData(name="", partition_data=(m.PartitionProduceData(
                                 index=0, records=build_batch([(None, b"x", None, None)])),)),))
            assert resp.responses[0].name == ""
            assert resp.responses[0].partition_responses[0].error_code == 3  # UNKNOWN_TOPIC_OR_PARTITION
    finally:
        conn.close()


def test_a_null_where_the_schema_forbids_one_closes_like_a_malformed_request(bootstrap, caplog):
    """kio reads an array of length -1 as None even where the field is not nullable; ListTransactions then failed
    in its handler (a traceback). Kafka refuses such a request as malformed and closes the connection; so do we,
    before any handler sees it, and a fresh connection is served."""
    import socket
    import struct

    host, port = bootstrap.rsplit(":", 1)
    # ListTransactions v0 (flexible): header v2, then state_filters = null compact array, producer_id_filters = [].
    header = struct.pack(">hhih", 66, 0, 1, 4) + b"test" + b"\0"
    body = b"\x00" + b"\x01" + b"\x00"
    frame = header + body
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(struct.pack(">i", len(frame)) + frame)
        s.settimeout(5)
        assert s.recv(1) == b""
    assert not [r for r in caplog.records if r.exc_info], "no handler may have failed"
    conn = Conn(bootstrap)
    try:
        assert conn.call((66, 0), state_filters=(), producer_id_filters=()).error_code == 0
    finally:
        conn.close()


def test_an_array_longer_than_its_frame_closes_the_connection_not_the_broker(broker_process):
    """kio's native reader sized an array's storage from the length on the wire: twenty bytes claiming two billion
    topics made it ask for tens of GB, and the failed allocation aborted the broker process. Kafka refuses such a
    length and closes the connection; so does the broker now, and it keeps serving."""
    import socket
    import struct

    broker = broker_process().start()
    host, port = broker.bootstrap_servers.rsplit(":", 1)
    frames = [
        struct.pack(">hhih", 3, 4, 1, 4) + b"test" + struct.pack(">i", 2**31 - 1) + b"\0",  # Metadata v4 topics
        struct.pack(">hhih", 3, 12, 1, 4) + b"test" + b"\0" + b"\xff\xff\xff\xff\x0f",  # Metadata v12: 2^32 - 2 topics
        struct.pack(">hhih", 1, 11, 1, 4) + b"test" + struct.pack(">iiiibii", -1, 0, 1, 1, 0, 0, -1)
        + struct.pack(">i", 2**31 - 1),  # Fetch v11 topics
    ]
    for frame in frames:
        with socket.create_connection((host, int(port)), timeout=5) as s:
            s.sendall(struct.pack(">i", len(frame)) + frame)
            s.settimeout(10)
            try:
                assert s.recv(1) == b""
            except ConnectionError:
                pass
        assert broker.proc.poll() is None, "the broker process died"
    conn = Conn(broker.bootstrap_servers)
    try:
        assert conn.call((18, 3), client_software_name="t", client_software_version="1").error_code == 0
    finally:
        conn.close()


def test_metadata_v10_v11_refuse_topic_ids_and_null_names(bootstrap):
    """v10-11 have a topic_id field they may not use: the handler echoed a null name into a response field that
    cannot be null, and closed the connection. Kafka answers each topic INVALID_REQUEST (a null name as "")."""
    conn = Conn(bootstrap)
    try:
        for version in (10, 11):
            m = conn.m((3, version))
            extra = {"include_cluster_authorized_operations": False} if version < 11 else {}
            resp = conn.call((3, version), topics=(m.MetadataRequestTopic(topic_id=uuid.uuid4(), name=None),
                                                   m.MetadataRequestTopic(topic_id=uuid.uuid4(), name="fuzz-a")),
                             allow_auto_topic_creation=False, include_topic_authorized_operations=False, **extra)
            assert [(t.name, t.error_code) for t in resp.topics] == [("", 42), ("fuzz-a", 42)]
            assert resp.brokers == ()
    finally:
        conn.close()

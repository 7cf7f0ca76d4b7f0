"""Listeners, TLS and SASL with real clients: produce, consume in a group, a transaction and an admin call over
SASL_PLAINTEXT with PLAIN and over SASL_SSL with SCRAM-SHA-256/512, for aiokafka, kafka-python and
confluent-kafka; wrong passwords refused with each client's authentication error; the principal of a client
certificate; SCRAM credentials that survive a restart and never hit the disk as passwords.

Certificates are made for each test session (tests/certs.py).
"""

from __future__ import annotations

import asyncio
import functools
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
import uuid
from contextlib import closing
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from broker_embedded import EmbeddedBroker
from certs import CertificateAuthority
from kafka_nodes import kafka_node
from test_java_client import java_classpath  # noqa: F401  (the fixture: kafka-clients 4.1.1 jars)
from wire import Conn

PASSWORD = "alice-secret"
# (listener, mechanism): the three ways a client authenticates in these scenarios.
MODES = [("SASL_PLAINTEXT", "PLAIN"), ("SASL_SSL", "SCRAM-SHA-256"), ("SASL_SSL", "SCRAM-SHA-512")]
MODE_IDS = ["plain", "scram-256", "scram-512"]
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    """A CA, the broker's certificate (127.0.0.1, localhost) and a client certificate for alice."""
    directory = tmp_path_factory.mktemp("pki")
    ca = CertificateAuthority(directory)
    server = ca.issue("server", [("CN", "localhost")], server=True)
    client = ca.issue("alice", [("C", "US"), ("O", "Acme, Inc."), ("OU", "eng"), ("CN", "alice")])
    return ca, server, client


def _settings(pki, data_dir) -> dict:
    ca, server, _client = pki
    return dict(
        data_dir=str(data_dir), group_initial_rebalance_delay_ms=0,
        listeners="PLAINTEXT://127.0.0.1:0,SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0",
        ssl_keystore_location=str(server.cert), ssl_key_location=str(server.key),
        ssl_truststore_location=str(ca.pem.cert), ssl_client_auth="requested",
        sasl_plain_users={"alice": PASSWORD}, scram_users={"alice": PASSWORD},
    )


@pytest.fixture(scope="session")
def secured_kafka(pki, kafka_reference, tmp_path_factory):
    """Under --kafka: a second Kafka (port 19300, .kafka/secure) with SSL, SASL_PLAINTEXT and SASL_SSL listeners
    whose certificate comes from this session's CA; stopped and removed at the end."""
    if not kafka_reference:
        yield None
        return
    _ca, server, _client = pki
    keystore = tmp_path_factory.mktemp("kafka-tls") / "keystore.pem"
    keystore.write_text(server.key.read_text() + server.cert.read_text())
    with kafka_node(19300, "secure", KAFKA_TLS_KEYSTORE=str(keystore), KAFKA_SASL="1") as node:
        yield node


@pytest.fixture
def secured(pki, tmp_path, secured_kafka):
    """The broker under test with PLAINTEXT, SSL, SASL_PLAINTEXT and SASL_SSL listeners, PLAIN and SCRAM user
    alice: ours, or Apache Kafka configured the same way under --kafka."""
    if secured_kafka is not None:
        yield secured_kafka
        return
    broker = EmbeddedBroker(**_settings(pki, tmp_path / "broker")).start_in_thread()
    yield broker
    broker.stop_thread()


def _ssl_context(pki, client_cert: bool = False) -> ssl.SSLContext:
    ca, _server, client = pki
    ctx = ssl.create_default_context(cafile=str(ca.pem.cert))
    if client_cert:
        ctx.load_cert_chain(str(client.cert), str(client.key))
    return ctx


# ---- aiokafka ----

def _aiokafka_auth(pki, listener, mechanism, password=PASSWORD) -> dict:
    kw = dict(security_protocol=listener, sasl_mechanism=mechanism, sasl_plain_username="alice",
              sasl_plain_password=password)
    if listener == "SASL_SSL":
        kw["ssl_context"] = _ssl_context(pki)
    return kw


@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
async def test_aiokafka_scenarios(secured, pki, listener, mechanism):
    bootstrap = secured.listener_address(listener)
    auth = _aiokafka_auth(pki, listener, mechanism)
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **auth)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        # (Kafka answers CreateTopics once the controller has it; its broker's metadata may follow a moment later)
        deadline = time.monotonic() + 10
        while topic not in await admin.list_topics() and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert topic in await admin.list_topics()
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **auth)
    await producer.start()
    try:
        for i in range(20):
            await producer.send(topic, f"plain-{i}".encode(), key=str(i).encode())
        await producer.flush()
    finally:
        await producer.stop()
    txn = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-" + uuid.uuid4().hex[:8], **auth)
    await txn.start()
    try:
        async with txn.transaction():
            await txn.send(topic, b"committed", key=b"t")
        await txn.begin_transaction()
        await txn.send(topic, b"aborted", key=b"t")
        await txn.abort_transaction()
    finally:
        await txn.stop()
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="g-" + topic, auto_offset_reset="earliest",
                                isolation_level="read_committed", enable_auto_commit=False, **auth)
    await consumer.start()
    try:
        got: list[bytes] = []
        deadline = time.monotonic() + 20
        while len(got) < 21 and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=300)).values():
                got.extend(m.value for m in msgs)
        await consumer.commit()
        committed = {tp.partition: await consumer.committed(tp) for tp in consumer.assignment()}
    finally:
        await consumer.stop()
    assert sorted(got) == sorted([f"plain-{i}".encode() for i in range(20)] + [b"committed"])
    assert sum(committed.values()) >= 21  # offsets (and the abort's markers) committed by the group
    if secured.connections() is not None:  # ours lists its connections: every one on this listener is alice's
        principals = {p for listener_name, _host, p in secured.connections() if listener_name == listener}
        assert principals <= {"User:alice"}


@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
async def test_aiokafka_wrong_password(secured, pki, listener, mechanism, caplog):
    from aiokafka.errors import KafkaConnectionError, SaslAuthenticationFailed

    producer = AIOKafkaProducer(bootstrap_servers=secured.listener_address(listener),
                                **_aiokafka_auth(pki, listener, mechanism, password="wrong"))
    with pytest.raises((SaslAuthenticationFailed, KafkaConnectionError)):  # bootstrap wraps the SASL error
        await producer.start()
    await producer.stop()
    message = caplog.text
    assert "SaslAuthenticationFailed" in message
    if mechanism == "PLAIN":
        assert "Authentication failed: Invalid username or password" in message
    else:
        assert ("Authentication failed during authentication due to invalid credentials with SASL mechanism "
                f"{mechanism}") in message


# ---- kafka-python ----

def _kafka_python_auth(pki, listener, mechanism, password=PASSWORD) -> dict:
    kw = dict(security_protocol=listener, sasl_mechanism=mechanism, sasl_plain_username="alice",
              sasl_plain_password=password)
    if listener == "SASL_SSL":
        kw["ssl_cafile"] = str(pki[0].pem.cert)
    return kw


@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
def test_kafka_python_scenarios(secured, pki, listener, mechanism):
    from kafka import KafkaConsumer, KafkaProducer
    from kafka.admin import KafkaAdminClient, NewTopic as KNewTopic

    bootstrap = secured.listener_address(listener)
    auth = _kafka_python_auth(pki, listener, mechanism)
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, **auth)
    try:
        admin.create_topics([KNewTopic(topic, 1, 1)])
        assert topic in admin.list_topics()
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", **auth)
    for i in range(10):
        producer.send(topic, f"v{i}".encode())
    producer.flush()
    producer.close()
    txn = KafkaProducer(bootstrap_servers=bootstrap, transactional_id="tx-" + uuid.uuid4().hex[:8], **auth)
    txn.init_transactions()
    txn.begin_transaction()
    txn.send(topic, b"committed")
    txn.commit_transaction()
    txn.close()
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, group_id="g-" + topic, auto_offset_reset="earliest",
                             isolation_level="read_committed", enable_auto_commit=False, consumer_timeout_ms=10000,
                             **auth)
    got = []
    for message in consumer:
        got.append(message.value)
        if len(got) == 11:
            break
    consumer.commit()
    consumer.close()
    assert sorted(got) == sorted([f"v{i}".encode() for i in range(10)] + [b"committed"])


@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
def test_kafka_python_wrong_password(secured, pki, listener, mechanism, caplog):
    from kafka import KafkaAdminClient
    from kafka.errors import KafkaError

    with pytest.raises(KafkaError):  # bootstrap gives up; the SASL error is what each attempt met
        KafkaAdminClient(bootstrap_servers=secured.listener_address(listener), bootstrap_timeout_ms=1500,
                         **_kafka_python_auth(pki, listener, mechanism, password="wrong")).close()
    if secured.connections() is None:
        # Kafka sends its error response only when it closes the connection, 100 ms late
        # (connection.failed.authentication.delay.ms), and kafka-python drops data that arrives with the close.
        return
    assert "SaslAuthenticationFailedError" in caplog.text
    if mechanism == "PLAIN":
        assert "Authentication failed: Invalid username or password" in caplog.text
    else:
        assert "invalid credentials with SASL mechanism " + mechanism in caplog.text


# ---- confluent-kafka (librdkafka) ----

def _confluent_auth(pki, listener, mechanism, password=PASSWORD) -> dict:
    conf = {"security.protocol": listener, "sasl.mechanism": mechanism, "sasl.username": "alice",
            "sasl.password": password}
    if listener == "SASL_SSL":
        conf["ssl.ca.location"] = str(pki[0].pem.cert)
    return conf


@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
def test_confluent_kafka_scenarios(secured, pki, listener, mechanism):
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient, NewTopic as CNewTopic

    bootstrap = secured.listener_address(listener)
    conf = {"bootstrap.servers": bootstrap, **_confluent_auth(pki, listener, mechanism)}
    topic = "t-" + uuid.uuid4().hex[:8]
    admin = AdminClient(conf)
    admin.create_topics([CNewTopic(topic, 2, 1)])[topic].result(timeout=20)
    assert topic in admin.list_topics(timeout=10).topics
    producer = Producer({**conf, "linger.ms": 5})
    for i in range(10):
        producer.produce(topic, f"v{i}".encode(), key=str(i).encode())
    assert producer.flush(20) == 0
    txn = Producer({**conf, "transactional.id": "tx-" + uuid.uuid4().hex[:8]})
    txn.init_transactions(20)
    txn.begin_transaction()
    txn.produce(topic, b"committed", key=b"t")
    txn.commit_transaction(20)
    consumer = Consumer({**conf, "group.id": "g-" + topic, "auto.offset.reset": "earliest",
                         "isolation.level": "read_committed", "enable.auto.commit": False})
    consumer.subscribe([topic])
    got = []
    deadline = time.monotonic() + 30
    while len(got) < 11 and time.monotonic() < deadline:
        msg = consumer.poll(0.5)
        if msg is not None and not msg.error():
            got.append(msg.value())
    consumer.commit(asynchronous=False)
    consumer.close()
    assert sorted(got) == sorted([f"v{i}".encode() for i in range(10)] + [b"committed"])


@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
def test_confluent_kafka_wrong_password(secured, pki, listener, mechanism):
    from confluent_kafka import KafkaError, Producer

    errors = []
    producer = Producer({"bootstrap.servers": secured.listener_address(listener), "error_cb": errors.append,
                         **_confluent_auth(pki, listener, mechanism, password="wrong")})
    deadline = time.monotonic() + 15
    while not errors and time.monotonic() < deadline:
        producer.poll(0.2)
    assert errors and errors[0].code() == KafkaError._AUTHENTICATION
    if mechanism == "PLAIN":
        assert "Authentication failed: Invalid username or password" in errors[0].str()
    else:
        assert "invalid credentials with SASL mechanism " + mechanism in errors[0].str()


# ---- the protocol, raw ----

def test_unauthenticated_requests_close_the_connection(secured):
    """Before authentication only ApiVersions and SaslHandshake are served; Metadata closes the connection."""
    address = secured.listener_address("SASL_PLAINTEXT")
    with closing(Conn(address)) as c:
        assert c.call((18, 3), client_software_name="t", client_software_version="1").error_code == 0
        with pytest.raises((ConnectionError, EOFError, OSError)):
            c.call((3, 12), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)


def test_sasl_errors_as_kafka(secured):
    from kio.schema.errors import ErrorCode

    with closing(Conn(secured.listener_address("SASL_PLAINTEXT"))) as c:
        r = c.call((17, 1), mechanism="GSSAPI")
        assert r.error_code == ErrorCode.unsupported_sasl_mechanism
        assert set(r.mechanisms) == {"PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"}
        with pytest.raises((ConnectionError, EOFError, OSError)):  # closed after the answer
            c.call((17, 1), mechanism="PLAIN")
    with closing(Conn(secured.listener_address("PLAINTEXT"))) as c:  # SASL on a listener without it
        assert c.call((17, 1), mechanism="PLAIN").error_code == ErrorCode.illegal_sasl_state
        r = c.call((36, 2), auth_bytes=b"\0alice\0" + PASSWORD.encode())
        assert r.error_code == ErrorCode.illegal_sasl_state
        assert r.error_message == "SaslAuthenticate request received after successful authentication"
    with closing(Conn(secured.listener_address("SASL_PLAINTEXT"))) as c:
        assert c.call((17, 1), mechanism="PLAIN").error_code == 0
        r = c.call((36, 2), auth_bytes=b"\0alice\0" + PASSWORD.encode())
        assert r.error_code == 0 and r.session_lifetime.total_seconds() == 0
        # Authenticated: a second handshake is refused (no re-authentication without connections.max.reauth.ms).
        assert c.call((17, 1), mechanism="PLAIN").error_code == ErrorCode.illegal_sasl_state


def test_session_lifetime_and_reauthentication(only_embedded, pki, tmp_path):
    """KIP-368: with connections.max.reauth.ms the session lifetime is returned; re-authenticating on the same
    connection works; a connection whose session expired is closed at its next request."""
    from kio.schema.errors import ErrorCode

    broker = EmbeddedBroker(**_settings(pki, tmp_path / "b"), connections_max_reauth_ms=2000).start_in_thread()
    try:
        with closing(Conn(broker.listener_address("SASL_PLAINTEXT"))) as c:
            assert c.call((17, 1), mechanism="PLAIN").error_code == 0
            r = c.call((36, 2), auth_bytes=b"\0alice\0" + PASSWORD.encode())
            assert r.error_code == 0 and r.session_lifetime.total_seconds() == 2
            time.sleep(0.2)
            assert c.call((17, 1), mechanism="PLAIN").error_code == 0  # re-authentication
            r = c.call((36, 2), auth_bytes=b"\0alice\0" + PASSWORD.encode())
            assert r.error_code == 0 and r.session_lifetime.total_seconds() == 2
            # A second re-authentication within a second of the first is refused, as in Kafka.
            assert c.call((17, 1), mechanism="PLAIN").error_code == ErrorCode.illegal_sasl_state
            time.sleep(1.0)  # within the renewed session
            r = c.call((3, 12), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
            assert [b.node_id for b in r.brokers] == [1]
            time.sleep(1.3)  # past the renewed session's expiry
            with pytest.raises((ConnectionError, EOFError, OSError)):
                c.call((3, 12), topics=None, allow_auto_topic_creation=False,
                       include_topic_authorized_operations=False)
    finally:
        broker.stop_thread()


# ---- TLS principals ----

async def _connect_tls(address: str, ctx: ssl.SSLContext) -> None:
    host, port = address.rsplit(":", 1)
    reader, writer = await asyncio.open_connection(host, int(port), ssl=ctx)
    # One ApiVersions request, so that the connection is known to the broker when we look.
    writer.write(bytes.fromhex("0000000f00120000000000010005") + b"probe")
    await writer.drain()
    await reader.readexactly(4)
    return writer


async def test_mtls_principal_is_the_certificate_subject(only_embedded, secured, pki):
    """Kafka's default principal builder: User:<subject DN in RFC 2253 form, most specific first>; no client
    certificate gives User:ANONYMOUS."""
    address = secured.listener_address("SSL")
    with_cert = await _connect_tls(address, _ssl_context(pki, client_cert=True))
    without = await _connect_tls(address, _ssl_context(pki))
    try:
        principals = sorted(p for name, _h, p in secured.connections() if name == "SSL")
        assert principals == ["User:ANONYMOUS", "User:CN=alice,OU=eng,O=Acme\\, Inc.,C=US"]
    finally:
        with_cert.close()
        without.close()


async def test_aiokafka_over_ssl_with_client_certificate(secured, pki):
    producer = AIOKafkaProducer(bootstrap_servers=secured.listener_address("SSL"), security_protocol="SSL",
                                ssl_context=_ssl_context(pki, client_cert=True))
    await producer.start()
    try:
        md = await producer.send_and_wait("tls-topic", b"over tls")
        assert md.offset == 0
    finally:
        await producer.stop()


def test_metadata_advertises_the_listener_the_client_came_through(secured):
    for name in ("PLAINTEXT", "SASL_PLAINTEXT"):
        address = secured.listener_address(name)
        with closing(Conn(address)) as c:
            if name.startswith("SASL"):
                c.call((17, 1), mechanism="PLAIN")
                c.call((36, 2), auth_bytes=b"\0alice\0" + PASSWORD.encode())
            r = c.call((3, 12), topics=None, allow_auto_topic_creation=False,
                       include_topic_authorized_operations=False)
            assert [f"{b.host}:{b.port}" for b in r.brokers] == [address]


# ---- SCRAM credentials: the admin APIs and the file ----

async def test_scram_credentials_admin_and_restart(only_embedded, pki, tmp_path):
    """AlterUserScramCredentials from a client creates bob; the credentials survive a restart, the file holds
    no password (nor salted password), and bob authenticates after the restart."""
    from kafka.admin import KafkaAdminClient, ScramMechanism, UserScramCredentialUpsertion

    data = tmp_path / "b"
    broker = EmbeddedBroker(**_settings(pki, data))
    await broker.start()
    address = broker.listener_address("SASL_PLAINTEXT")
    try:
        admin = await asyncio.to_thread(
            KafkaAdminClient, bootstrap_servers=address, security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-256", sasl_plain_username="alice", sasl_plain_password=PASSWORD)
        await asyncio.to_thread(admin.alter_user_scram_credentials, [
            UserScramCredentialUpsertion("bob", ScramMechanism.SCRAM_SHA_512, "bob-secret-password", iterations=8192)])
        described = await asyncio.to_thread(admin.describe_user_scram_credentials, ["bob"])
        await asyncio.to_thread(admin.close)
    finally:
        await broker.stop()
    assert described is not None
    text = (data / "scram-credentials.json").read_text()
    assert "bob-secret-password" not in text and PASSWORD not in text
    stored = json.loads(text)["users"]
    assert set(stored["bob"]) == {"SCRAM-SHA-512"} and stored["bob"]["SCRAM-SHA-512"]["iterations"] == 8192
    broker = EmbeddedBroker(**{**_settings(pki, data), "scram_users": {}})
    await broker.start()
    try:
        producer = AIOKafkaProducer(bootstrap_servers=broker.listener_address("SASL_SSL"), security_protocol="SASL_SSL",
                                    ssl_context=_ssl_context(pki), sasl_mechanism="SCRAM-SHA-512",
                                    sasl_plain_username="bob", sasl_plain_password="bob-secret-password")
        await producer.start()
        await producer.send_and_wait("after-restart", b"x")
        await producer.stop()
    finally:
        await broker.stop()


# ---- the command line ----

def _cli(*args: str, data_dir) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "broker_embedded", "--data-dir", str(data_dir),
                             "--loglevel", "WARNING", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_cli_listeners_tls_and_first_scram_user(only_embedded, pki, tmp_path):
    """`broker-embedded --listeners ... --ssl-keystore ... --scram-user alice:secret` serves SCRAM over TLS; the
    user is kept (hashed) for the next start without the option."""
    ca, server, _client = pki
    users = tmp_path / "jaas.conf"
    users.write_text('KafkaServer { org.apache.kafka.common.security.plain.PlainLoginModule required\n'
                     '  user_carol="carol-secret"; };\n')
    args = ["--listeners", "PLAINTEXT://127.0.0.1:0,SASL_SSL://127.0.0.1:0,SASL_PLAINTEXT://127.0.0.1:0",
            "--ssl-keystore", str(server.cert), "--ssl-key", str(server.key), "--plain-users-file", str(users)]
    for extra in (["--scram-user", "alice:s3cret:SCRAM-SHA-512"], []):
        proc = _cli(*args, *extra, data_dir=tmp_path / "data")
        try:
            lines = [proc.stdout.readline().strip() for _ in range(3)]
            assert lines[0].startswith("listening on 127.0.0.1:"), lines
            addresses = dict(line.split()[-1].split("://") for line in lines[1:])
            producer = AIOKafkaProducer(bootstrap_servers=addresses["SASL_SSL"], security_protocol="SASL_SSL",
                                        ssl_context=_ssl_context(pki), sasl_mechanism="SCRAM-SHA-512",
                                        sasl_plain_username="alice", sasl_plain_password="s3cret")
            await producer.start()
            await producer.send_and_wait("cli", b"x")
            await producer.stop()
            producer = AIOKafkaProducer(bootstrap_servers=addresses["SASL_PLAINTEXT"],
                                        security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN",
                                        sasl_plain_username="carol", sasl_plain_password="carol-secret")
            await producer.start()
            await producer.send_and_wait("cli", b"y")
            await producer.stop()
        finally:
            proc.terminate()
            assert proc.wait(30) == 0


@pytest.mark.parametrize("args,message", [
    (["--listeners", "FOO://127.0.0.1:0"], "No security protocol defined for listener FOO"),
    (["--listeners", "SSL://127.0.0.1:0"], "needs ssl_keystore_location"),
    (["--listeners", "SSL://127.0.0.1:0", "--ssl-keystore", "/nonexistent.pem"], "cannot load ssl.keystore.location"),
    (["--listeners", "PLAINTEXT://127.0.0.1:0", "--advertised-listeners", "PLAINTEXT://0.0.0.0:9092"],
     "nonroutable meta-address"),
    (["--scram-user", "alice"], "--scram-user expects NAME:PASSWORD"),
    (["--sasl-mechanisms", "GSSAPI"], "unsupported SASL mechanism 'GSSAPI'"),
])
def test_cli_refuses_bad_security_settings(only_embedded, tmp_path, args, message):
    proc = _cli(*args, data_dir=tmp_path / "data")
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2, out + err
    assert message in err and "Traceback" not in err


# ---- the Java client and franz-go ----

def test_java_client(secured, pki, java_classpath):
    """kafka-clients 4.1.1: the scenarios over PLAIN and SCRAM-SHA-256/512 (with its DescribeUserScramCredentials
    admin call), then a wrong password, which the client reports as a SaslAuthenticationException with Kafka's
    message. One JVM runs every case."""
    cases = []
    for listener, mechanism in MODES:
        ca = str(pki[0].pem.cert) if listener == "SASL_SSL" else "-"
        cases += [secured.listener_address(listener), "t-" + uuid.uuid4().hex[:8], listener, mechanism, "alice",
                  PASSWORD, ca, "--"]
    cases += [secured.listener_address("SASL_SSL"), "t-x", "SASL_SSL", "SCRAM-SHA-256", "alice", "wrong",
              str(pki[0].pem.cert), "expect-auth-failure"]
    res = subprocess.run(["java", "-cp", java_classpath, str(ROOT / "tests" / "java" / "SecureClient.java"), *cases],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout + res.stderr
    lines = res.stdout.splitlines()
    for n in (1, 2, 3):
        assert f"{n} consumed 101" in lines, res.stdout
    assert "2 scram credentials 2" in lines and "3 scram credentials 2" in lines
    assert ("4 auth failed: Authentication failed during authentication due to invalid credentials with SASL "
            "mechanism SCRAM-SHA-256") in lines


@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
def test_franz_go(secured, pki, listener, mechanism, franzsecure):
    ca = str(pki[0].pem.cert) if listener == "SASL_SSL" else "-"
    res = subprocess.run([str(franzsecure), secured.listener_address(listener), "t-" + uuid.uuid4().hex[:8],
                          mechanism, "alice", PASSWORD, ca], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "consumed 101" in res.stdout.splitlines()
    if mechanism != "PLAIN":
        assert "scram credentials 2" in res.stdout.splitlines()


def test_franz_go_wrong_password(secured, pki, franzsecure):
    res = subprocess.run([str(franzsecure), secured.listener_address("SASL_SSL"), "t-x", "SCRAM-SHA-512", "alice",
                          "wrong", str(pki[0].pem.cert), "expect-auth-failure"], capture_output=True, text=True,
                         timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert "SASL_AUTHENTICATION_FAILED" in res.stdout
    assert "invalid credentials with SASL mechanism SCRAM-SHA-512" in res.stdout


# ---- kcat: with the distribution's librdkafka (2.0 on Debian 12), and with the one confluent-kafka bundles ----

def _kcat_env(library: str, tmp_path_factory) -> dict | None:
    """The environment kcat runs in: "system" is the librdkafka it was built against; "bundled" loads the newer
    librdkafka that the confluent-kafka wheel ships (a symlink named by its soname, first on LD_LIBRARY_PATH).
    None when there is no bundled copy (a confluent-kafka built against the system library)."""
    env = dict(os.environ)
    if library == "system":
        return env
    import confluent_kafka
    found = sorted(Path(confluent_kafka.__file__).parent.parent.glob("confluent_kafka.libs/librdkafka*.so.1"))
    if not found:
        return None
    folder = tmp_path_factory.mktemp("librdkafka")
    (folder / "librdkafka.so.1").symlink_to(found[0])
    env["LD_LIBRARY_PATH"] = f"{folder}:{env['LD_LIBRARY_PATH']}" if env.get("LD_LIBRARY_PATH") else str(folder)
    return env


def _kcat(secured, pki, listener, mechanism, password, *args, stdin=None, env=None) -> subprocess.CompletedProcess:
    auth = ["-X", f"security.protocol={listener}", "-X", f"sasl.mechanisms={mechanism}",
            "-X", "sasl.username=alice", "-X", f"sasl.password={password}"]
    if listener == "SASL_SSL":
        auth += ["-X", f"ssl.ca.location={pki[0].pem.cert}"]
    return subprocess.run(["kcat", "-b", secured.listener_address(listener), *auth, *args], input=stdin,
                          capture_output=True, text=True, timeout=60, env=env)


def _librdkafka_version(env: dict | None = None) -> tuple[int, ...]:
    out = subprocess.run(["kcat", "-V"], capture_output=True, text=True, env=env).stdout
    match = re.search(r"librdkafka (\d+)\.(\d+)\.(\d+)", out)
    return tuple(int(x) for x in match.groups()) if match else (0,)


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run (Debian package kcat)")
@pytest.mark.parametrize("library", ["system", "bundled"])
@pytest.mark.parametrize("listener,mechanism", MODES, ids=MODE_IDS)
def test_kcat(secured, pki, listener, mechanism, library, tmp_path_factory):
    """Metadata (-L), produce, and a balanced group consumer (-G) over SASL; a wrong password fails with
    librdkafka's authentication error. librdkafka before 2.6.1 (Debian's kcat has 2.0.2) answers SCRAM's
    server-first message with the client nonce twice; Kafka 4.1 refuses that (CVE-2024-56128), and so do we.
    The same kcat on the librdkafka that confluent-kafka bundles (2.12) then runs every scenario over SCRAM too."""
    env = _kcat_env(library, tmp_path_factory)
    if env is None:
        pytest.skip("this confluent-kafka has no bundled librdkafka")
    if library == "bundled":
        assert _librdkafka_version(env) >= (2, 6, 1), "kcat did not load the bundled librdkafka"
    kcat = functools.partial(_kcat, env=env)
    topic = "t-" + uuid.uuid4().hex[:8]
    res = kcat(secured, pki, listener, mechanism, PASSWORD, "-P", "-t", topic, "-K", ":", "-X", "acks=all",
               stdin="".join(f"k{i}:v{i}\n" for i in range(10)))
    if mechanism != "PLAIN" and _librdkafka_version(env) < (2, 6, 1):
        assert res.returncode != 0
        assert ("Authentication failed during authentication due to invalid credentials with SASL mechanism "
                + mechanism) in res.stderr, res.stderr
        return
    assert res.returncode == 0, res.stderr
    res = kcat(secured, pki, listener, mechanism, PASSWORD, "-L", "-t", topic)
    assert res.returncode == 0 and f'topic "{topic}" with 1 partitions' in res.stdout, res.stdout + res.stderr
    res = kcat(secured, pki, listener, mechanism, PASSWORD, "-X", "auto.offset.reset=earliest", "-e", "-f", "%s\\n",
               "-G", "g-" + topic, topic)
    assert res.returncode == 0, res.stderr
    assert sorted(res.stdout.split()) == sorted(f"v{i}" for i in range(10))
    res = kcat(secured, pki, listener, mechanism, "wrong", "-L", "-m", "1")
    assert res.returncode != 0
    assert "Authentication failed" in res.stderr or "authentication" in res.stderr.lower(), res.stderr


# ---- SCRAM credential APIs and SASL v0 framing, raw ----

def test_alter_user_scram_credentials_validation(secured):
    """Kafka's checks: iterations within 4096..16384, one alteration per user per request, deleting a credential
    that does not exist, an unknown mechanism, an empty name; what passes is applied."""
    from kio.schema.errors import ErrorCode

    from broker_embedded.security.scram import salted_password

    def upsert(m, name, mech=1, iterations=4096):
        return m.ScramCredentialUpsertion(name=name, mechanism=mech, iterations=iterations, salt=b"salt",
                                          salted_password=salted_password("SCRAM-SHA-256", "pw", b"salt", 4096))

    with closing(Conn(secured.listener_address("PLAINTEXT"))) as c:
        m = c.m((51, 0))
        r = c.call((51, 0), deletions=(m.ScramCredentialDeletion(name="ghost", mechanism=1),
                                       m.ScramCredentialDeletion(name="alice", mechanism=1)),
                   upsertions=(upsert(m, "few", iterations=4095), upsert(m, "many", iterations=16385),
                               upsert(m, "alice", mech=2), upsert(m, "weird", mech=3), upsert(m, ""),
                               upsert(m, "bob")))
        results = {x.user: (x.error_code, x.error_message) for x in r.results}
        assert results == {
            "ghost": (ErrorCode.resource_not_found, "Attempt to delete a user credential that does not exist"),
            "alice": (ErrorCode.duplicate_resource, "A user credential cannot be altered twice in the same request"),
            "few": (ErrorCode.unacceptable_credential, "Too few iterations"),
            "many": (ErrorCode.unacceptable_credential, "Too many iterations"),
            "weird": (ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"),
            "": (ErrorCode.unacceptable_credential, "Username must not be empty"),
            "bob": (ErrorCode.none, None),
        }
        d = c.call((50, 0), users=None)
        # (in no particular order: Kafka 4.1 lists alice's SCRAM-SHA-512 first)
        assert {x.user: sorted((i.mechanism, i.iterations) for i in x.credential_infos) for x in d.results} == {
            "alice": [(1, 4096), (2, 4096)], "bob": [(1, 4096)]}
        dm = c.m((50, 0))
        d = c.call((50, 0), users=(dm.UserName(name="nobody"), dm.UserName(name="bob"), dm.UserName(name="bob")))
        assert {x.user: x.error_code for x in d.results} == {"nobody": ErrorCode.resource_not_found,
                                                              "bob": ErrorCode.duplicate_resource}
        r = c.call((51, 0), deletions=(m.ScramCredentialDeletion(name="bob", mechanism=1),), upsertions=())
        assert [(x.user, x.error_code) for x in r.results] == [("bob", ErrorCode.none)]
        assert [x.user for x in c.call((50, 0), users=None).results] == ["alice"]


def test_sasl_handshake_v0_raw_tokens(secured):
    """SaslHandshake v0 (clients before KIP-152): the exchange goes on in bare size-prefixed tokens."""
    import socket
    import struct

    with closing(Conn(secured.listener_address("SASL_PLAINTEXT"))) as c:
        assert c.call((17, 0), mechanism="PLAIN").error_code == 0
        token = b"\0alice\0" + PASSWORD.encode()
        c.sock.sendall(struct.pack(">i", len(token)) + token)
        assert c._recv(4) == b"\0\0\0\0"  # PLAIN's empty answer
        r = c.call((3, 12), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
        assert len(r.brokers) == 1
    with closing(Conn(secured.listener_address("SASL_PLAINTEXT"))) as c:
        assert c.call((17, 0), mechanism="PLAIN").error_code == 0
        token = b"\0alice\0wrong"
        c.sock.sendall(struct.pack(">i", len(token)) + token)
        with pytest.raises((ConnectionError, socket.timeout, OSError)):
            c._recv(4)  # no answer: v0 has no way to carry the error; the connection closes


async def test_client_certificate_required_on_ssl_only(only_embedded, pki, tmp_path):
    """ssl.client.auth=required: an SSL client without a certificate cannot connect; SASL_SSL clients are not
    asked for one (Kafka applies ssl.client.auth to SASL_SSL listeners only when set for that listener)."""
    settings = {**_settings(pki, tmp_path / "b"), "ssl_client_auth": "required"}
    async with EmbeddedBroker(**settings) as broker:
        host, port = broker.listener_address("SSL").rsplit(":", 1)
        with pytest.raises((ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)):
            reader, writer = await asyncio.open_connection(host, int(port), ssl=_ssl_context(pki))
            writer.write(bytes.fromhex("0000000f00120000000000010005") + b"probe")
            await writer.drain()
            await reader.readexactly(4)
        writer = await _connect_tls(broker.listener_address("SSL"), _ssl_context(pki, client_cert=True))
        writer.close()
        producer = AIOKafkaProducer(bootstrap_servers=broker.listener_address("SASL_SSL"), security_protocol="SASL_SSL",
                                    ssl_context=_ssl_context(pki), sasl_mechanism="SCRAM-SHA-256",
                                    sasl_plain_username="alice", sasl_plain_password=PASSWORD)
        await producer.start()
        await producer.send_and_wait("t", b"x")
        await producer.stop()


def test_custom_listener_names_and_advertised_addresses(only_embedded, tmp_path):
    """listener.security.protocol.map gives custom names a protocol; advertised.listeners is what Metadata answers
    on that listener (the other keeps its bound address); connections are listed under the listener's name."""
    broker = EmbeddedBroker(data_dir=str(tmp_path / "b"), listeners="INTERNAL://127.0.0.1:0,EXTERNAL://127.0.0.1:0",
                            listener_security_protocol_map="INTERNAL:PLAINTEXT,EXTERNAL:SASL_PLAINTEXT",
                            advertised_listeners="EXTERNAL://broker.example.com:19999",
                            sasl_plain_users={"alice": PASSWORD}).start_in_thread()
    try:
        internal = broker.listener_address("INTERNAL")
        with closing(Conn(internal)) as c:
            r = c.call((3, 12), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
            assert [f"{b.host}:{b.port}" for b in r.brokers] == [internal]
        with closing(Conn(broker.listener_address("EXTERNAL"))) as c:
            assert c.call((17, 1), mechanism="PLAIN").error_code == 0
            assert c.call((36, 2), auth_bytes=b"\0alice\0" + PASSWORD.encode()).error_code == 0
            r = c.call((3, 12), topics=None, allow_auto_topic_creation=False, include_topic_authorized_operations=False)
            assert [f"{b.host}:{b.port}" for b in r.brokers] == ["broker.example.com:19999"]
            assert ("EXTERNAL", "127.0.0.1", "User:alice") in broker.connections()
    finally:
        broker.stop_thread()


def test_large_frame_before_authentication_closes_the_connection(secured):
    """sasl.server.max.receive.size (512 KiB): an unauthenticated client cannot make the broker read a large
    frame; the connection closes at the size."""
    import socket
    import struct

    host, port = secured.listener_address("SASL_PLAINTEXT").rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(struct.pack(">i", 524289) + b"\0" * 1000)
        assert s.recv(10) == b""  # closed without an answer


async def test_ssl_principal_mapping_rules(only_embedded, pki, tmp_path):
    """ssl.principal.mapping.rules: the first rule matching the whole subject DN names the user (L lower-cases);
    a certificate no rule matches is refused; a rule Kafka would not parse is refused at start."""
    rules = r"RULE:^CN=(.*?),OU=(.*?),.*$/$1@$2/U, RULE:^O=nothing$/x/"
    async with EmbeddedBroker(**{**_settings(pki, tmp_path / "a"), "ssl_principal_mapping_rules": rules}) as broker:
        writer = await _connect_tls(broker.listener_address("SSL"), _ssl_context(pki, client_cert=True))
        try:
            assert [p for name, _h, p in broker.connections() if name == "SSL"] == ["User:ALICE@ENG"]
        finally:
            writer.close()
    strict = r"RULE:^CN=(.*?),OU=ServiceUsers,.*$/$1/"
    async with EmbeddedBroker(**{**_settings(pki, tmp_path / "b"), "ssl_principal_mapping_rules": strict}) as broker:
        with pytest.raises((ConnectionError, asyncio.IncompleteReadError, ssl.SSLError)):
            await _connect_tls(broker.listener_address("SSL"), _ssl_context(pki, client_cert=True))
        writer = await _connect_tls(broker.listener_address("SSL"), _ssl_context(pki))  # no certificate: anonymous
        writer.close()
    with pytest.raises(ValueError, match="Invalid rule"):
        EmbeddedBroker(**{**_settings(pki, tmp_path / "c"), "ssl_principal_mapping_rules": "RULE:abc"})

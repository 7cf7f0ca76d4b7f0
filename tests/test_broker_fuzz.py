"""Property-based fuzzing of the broker (hypothesis): valid requests of every served API, and mutations of them, sent
at a broker in a child process while a probe client keeps working and data written before stays as it was.

Properties, for every example (one connection, one to three pipelined requests, then the client's half-close):
- the broker process never dies and never logs a traceback (a handler that raised is a bug: it closes the
  connection of a request it should have answered);
- every request is answered, in order, or the connection is closed, within a timeout (a valid request must be
  answered unless it asks for no answer, acks=0, or may legitimately wait: a long-poll Fetch, JoinGroup, SyncGroup);
- a valid request's answer decodes with kio for its version, and nothing is left over;
- another client, on its own connection, is served throughout (Metadata, Produce, Fetch every 0.3 s);
- topics written before the fuzzing read back the same after it.

`pytest tests/test_broker_fuzz.py` runs it for FUZZ_SECONDS (25 s by default); the long run is
`pytest -m slow tests/test_broker_fuzz.py` (FUZZ_SLOW_SECONDS, 180 s by default).
"""

from __future__ import annotations

import asyncio
import os
import socket
import struct
import threading
import time

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kio.index import load_payload_module
from kio.serial import entity_reader
from kio.serial.errors import OutOfBoundValue
from kio.static.constants import EntityType

from broker_embedded.api import load_handlers
from fuzz_requests import EXCLUDED_KEYS, Request, requests
from wire import Conn, payload_class

ANSWER_TIMEOUT = 15.0
MAY_WAIT = {1, 11, 14}  # Fetch (max_wait), JoinGroup (rebalance), SyncGroup (the leader's assignment)
KEEP = {"keep-plain": 3, "keep-compact": 1}


class Done(BaseException):
    """The time budget is spent (a BaseException, so hypothesis stops instead of shrinking)."""


def _served_apis() -> list[tuple[int, int, int]]:
    return sorted((a.key, a.min_version, a.max_version) for a in load_handlers().values()
                  if a.key not in EXCLUDED_KEYS)


class StderrDrain(threading.Thread):
    """Reads the broker's stderr so that its logging never blocks on a full pipe; keeps tracebacks."""

    def __init__(self, stream) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.tracebacks: list[str] = []
        self.lines = 0
        self._current: list[str] | None = None

    def run(self) -> None:
        for line in self.stream:
            self.lines += 1
            if line.startswith("Traceback"):
                self._current = [line]
            elif self._current is not None:
                self._current.append(line)
                if not line.startswith((" ", "\t")):
                    self.tracebacks.append("".join(self._current))
                    self._current = None


class Probe(threading.Thread):
    """Another client: Metadata, Produce and Fetch on its own connection, every 0.3 s; records failures."""

    def __init__(self, bootstrap: str) -> None:
        super().__init__(daemon=True)
        self.bootstrap = bootstrap
        self.stop = threading.Event()
        self.rounds = 0
        self.failures: list[str] = []

    def run(self) -> None:
        import datetime

        from broker_embedded.log.records import build_batch

        conn = Conn(self.bootstrap, timeout=10)
        m_produce = load_payload_module(0, 9, EntityType.request)
        m_fetch = load_payload_module(1, 11, EntityType.request)
        offset = 0
        while not self.stop.wait(0.3):
            try:
                assert conn.call((3, 9), topics=None, allow_auto_topic_creation=False,
                                 include_cluster_authorized_operations=False,
                                 include_topic_authorized_operations=False).brokers
                resp = conn.call((0, 9), transactional_id=None, acks=-1, timeout=datetime.timedelta(seconds=5),
                                 topic_data=(m_produce.TopicProduceData(name="probe", partition_data=(
                                     m_produce.PartitionProduceData(
                                         index=0, records=build_batch([(None, b"probe", None, None)])),)),))
                assert resp.responses[0].partition_responses[0].error_code == 0, resp
                resp = conn.call((1, 11), replica_id=-1, max_wait=datetime.timedelta(0), min_bytes=0,
                                 max_bytes=1 << 20, isolation_level=0, session_id=0, session_epoch=-1, rack_id="",
                                 forgotten_topics_data=(), topics=(m_fetch.FetchTopic(topic="probe", partitions=(
                                     m_fetch.FetchPartition(partition=0, current_leader_epoch=-1,
                                                            fetch_offset=offset, log_start_offset=-1,
                                                            partition_max_bytes=1 << 20),)),))
                part = resp.responses[0].partitions[0]
                assert part.error_code == 0 and part.records, resp
                offset = part.high_watermark
                self.rounds += 1
            except Exception as exc:  # noqa: BLE001 - every failure of the probe is reported
                self.failures.append(f"{type(exc).__name__}: {exc}")
                conn.close()
                conn = Conn(self.bootstrap, timeout=10)
        conn.close()


async def _write_keep(bootstrap: str) -> dict:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for topic, parts in KEEP.items():
            for i in range(300):
                await producer.send(topic, key=b"k%d" % (i % 50), value=b"v%d" % i, partition=i % parts)
        await producer.flush()
    finally:
        await producer.stop()
    return await _read_keep(bootstrap)


async def _read_keep(bootstrap: str) -> dict:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        out = {}
        tps = [TopicPartition(t, p) for t, n in KEEP.items() for p in range(n)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        for tp in tps:
            out[tp] = []
        deadline = time.monotonic() + 60
        async def behind() -> bool:
            return any([await consumer.position(tp) < ends[tp] for tp in tps])

        while await behind() and time.monotonic() < deadline:
            for tp, msgs in (await consumer.getmany(timeout_ms=500)).items():
                out[tp] += [(m.offset, m.key, m.value, m.timestamp) for m in msgs]
        return out
    finally:
        await consumer.stop()


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes | None:
    """n bytes, or None at EOF / reset; raises TimeoutError past the deadline."""
    out = bytearray()
    while len(out) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(n - len(out))
        except socket.timeout:
            raise TimeoutError from None
        except ConnectionError:
            return None
        if not chunk:
            return None
        out += chunk
    return bytes(out)


def _expects_answer(req: Request) -> bool:
    """False for a request that asks for no answer (Produce with acks=0), as far as its bytes can be read. The key
    and version are read from the frame: a mutation may have changed them."""
    from broker_embedded.protocol import codec, parse_header

    try:
        header, pos = parse_header(req.frame[4:])
        if header.api_key != 0:
            return True
        if header.api_version < 3:  # no kio schema; acks is the body's first field
            return struct.unpack_from(">h", req.frame, 4 + pos)[0] != 0
        return codec(header.api_key, header.api_version).decode(req.frame[4:], pos).acks != 0
    except Exception:
        return True


def _may_wait(req: Request) -> bool:
    """The request, as its bytes say (a mutation may have changed its key), may be answered only much later."""
    return len(req.frame) >= 6 and struct.unpack_from(">h", req.frame, 4)[0] in MAY_WAIT


def _check_answer(req: Request, frame: bytes) -> None:
    """A valid request's answer must decode for its version with nothing left over."""
    if req.mutated is not None:
        return
    cls = payload_class(load_payload_module(req.key, req.version, EntityType.response), EntityType.response)
    pos = 5 if cls.__flexible__ and req.key != 18 else 4
    try:
        _value, size = entity_reader(cls)(frame, pos)
    except OutOfBoundValue as exc:
        # kio reads datetime fields and refuses -1, which Kafka itself writes for "no time" (delegation tokens).
        assert "negative timestamp" in str(exc), exc
        return
    assert pos + size == len(frame), f"{len(frame) - pos - size} bytes left over in the answer to {req}"


def exchange(bootstrap: str, batch: list[Request]) -> None:
    """Send the requests pipelined, half-close, and check the answers (see the module docstring)."""
    host, port = bootstrap.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=5)
    try:
        frames = []
        for corr, req in enumerate(batch, start=1):
            frame = bytearray(req.frame)
            if len(frame) >= 12:
                struct.pack_into(">i", frame, 8, corr)
            frames.append(bytes(frame))
        try:
            sock.sendall(b"".join(frames))
            sock.shutdown(socket.SHUT_WR)
        except ConnectionError:
            return  # closed on an earlier frame while we were still sending: allowed
        deadline = time.monotonic() + ANSWER_TIMEOUT
        clean = True  # no request before this one was mutated (a mutated one may close the connection, or shift
        # the framing of everything after it)
        for corr, req in enumerate(batch, start=1):
            if corr > 1:
                clean = clean and batch[corr - 2].mutated is None
            if not _expects_answer(req):
                continue
            try:
                head = _recv_exact(sock, 4, deadline)
                if head is None:  # closed
                    assert not clean or req.mutated is not None or _may_wait(req), \
                        f"closed instead of answering {req}"
                    return
                size = struct.unpack(">i", head)[0]
                assert 4 <= size <= 64 << 20, f"answer of {size} bytes to {req}"
                frame = _recv_exact(sock, size, deadline)
            except TimeoutError:
                assert any(_may_wait(r) for r in batch[:corr]), \
                    f"no answer and no close within {ANSWER_TIMEOUT} s for {req}"
                return
            assert frame is not None, f"closed in the middle of the answer to {req}"
            got = struct.unpack_from(">i", frame)[0]
            if not clean:
                return  # the framing may have shifted: what comes back answers some other bytes
            assert got == corr, f"answer for correlation id {got} where {corr} was due, for {req}"
            _check_answer(req, frame)
    finally:
        sock.close()


def _fuzz(broker_process, seconds: float) -> None:
    broker = broker_process("--config", "group.min.session.timeout.ms=10").start()
    drain = StderrDrain(broker.proc.stderr)
    drain.start()
    bootstrap = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    new = [NewTopic("keep-plain", 3, 1), NewTopic("keep-compact", 1, 1, config={"cleanup.policy": "compact"}),
           NewTopic("probe", 1, 1)] + [NewTopic(t, 2, 1) for t in ("fuzz-a", "fuzz-b")]
    for fut in admin.create_topics(new).values():
        fut.result(15)
    before = asyncio.run(_write_keep(bootstrap))
    assert sum(len(v) for v in before.values()) == 600

    probe = Probe(bootstrap)
    probe.start()
    apis = _served_apis()
    start = time.monotonic()
    failed = []
    count = [0]

    @settings(max_examples=10**7, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(requests(apis), min_size=1, max_size=3))
    def run(batch):
        if not failed and time.monotonic() - start > seconds:
            raise Done
        count[0] += 1
        try:
            assert broker.proc.poll() is None, "the broker process died"
            exchange(bootstrap, batch)
        except AssertionError:
            failed.append(batch)
            raise

    try:
        try:
            run()
        except Done:
            pass
    finally:
        probe.stop.set()
        probe.join(15)
    assert broker.proc.poll() is None, "the broker process died"
    assert not drain.tracebacks, "handlers raised:\n" + "\n".join(sorted({t.strip().splitlines()[-1] + "\n" + t
                                                                       for t in drain.tracebacks}))
    assert probe.rounds > seconds, f"the probe client was served only {probe.rounds} times"
    assert not probe.failures, probe.failures[:5]
    after = asyncio.run(_read_keep(bootstrap))
    assert after == before, "data written before the fuzzing changed"
    print(f"fuzzed {count[0]} examples in {time.monotonic() - start:.0f} s; probe rounds {probe.rounds}; "
          f"broker log lines {drain.lines}")


def test_fuzz_short(broker_process):
    _fuzz(broker_process, float(os.environ.get("FUZZ_SECONDS", 25)))


@pytest.mark.slow
def test_fuzz_long(broker_process):
    _fuzz(broker_process, float(os.environ.get("FUZZ_SLOW_SECONDS", 180)))

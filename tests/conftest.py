"""Shared fixtures: a real broker on a free port, or Apache Kafka when asked.

`pytest --kafka` (or KAFKA_BOOTSTRAP=host:port, or TEST_KAFKA=1) runs the client scenarios against Apache Kafka
started by scripts/kafka-up instead of the embedded broker, so that the two can be compared. Tests that need to
restart or kill the broker use the `embedded` fixtures only and are skipped against Kafka.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from broker_embedded import EmbeddedBroker

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser):
    parser.addoption("--kafka", action="store_true", help="run client scenarios against Apache Kafka (scripts/kafka-up)")


def _kafka_bootstrap(config) -> str | None:
    if os.environ.get("KAFKA_BOOTSTRAP"):
        return os.environ["KAFKA_BOOTSTRAP"]
    if config.getoption("--kafka") or os.environ.get("TEST_KAFKA") == "1":
        out = subprocess.run([str(ROOT / "scripts" / "kafka-up")], check=True, capture_output=True, text=True).stdout
        for line in out.splitlines():
            if line.startswith("bootstrap "):
                bootstrap = line.split()[1]
                _wait_for_coordinators(bootstrap)
                return bootstrap
        raise RuntimeError(f"scripts/kafka-up printed no bootstrap line: {out!r}")
    return None


def _wait_for_coordinators(bootstrap: str, timeout: float = 60) -> None:
    """A fresh Kafka creates __consumer_offsets and __transaction_state on the first FindCoordinator and answers
    NOT_COORDINATOR/COORDINATOR_NOT_AVAILABLE until they exist. Clients retry that; raw-request tests do not, so
    wait here until both coordinators answer."""
    from wire import Conn

    deadline = time.monotonic() + timeout
    conn = Conn(bootstrap)
    try:
        for key_type in (0, 1):
            while True:
                resp = conn.call((10, 3), key="warm-up", key_type=key_type)
                if resp.error_code == 0 or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    finally:
        conn.close()


@pytest.fixture(scope="session")
def kafka_reference(pytestconfig) -> str | None:
    """The bootstrap address of Apache Kafka when the suite runs against it, else None."""
    return _kafka_bootstrap(pytestconfig)


@pytest.fixture
def embedded_broker(tmp_path):
    """An embedded broker on a free port, in a background thread, with its data in a fresh directory."""
    # No initial join delay for new groups, as in the Kafka that scripts/kafka-up starts.
    broker = EmbeddedBroker(data_dir=str(tmp_path / "broker"), port=0,
                            group_initial_rebalance_delay_ms=0).start_in_thread()
    yield broker
    broker.stop_thread()


@pytest.fixture
def log_services_broker(kafka_reference, tmp_path):
    """(bootstrap, EmbeddedBroker or None): retention and the cleaner look for work every 100 ms, not minutes.
    Under --kafka it is the reference Kafka, whose intervals the tests wait out."""
    if kafka_reference:
        yield kafka_reference, None
        return
    broker = EmbeddedBroker(data_dir=str(tmp_path / "broker"), port=0, log_cleaner_backoff_ms=100,
                            log_retention_check_interval_ms=100).start_in_thread()
    yield broker.bootstrap_servers, broker
    broker.stop_thread()


@pytest.fixture
def bootstrap(request, kafka_reference) -> str:
    """Where the client scenarios connect: a fresh embedded broker, or Apache Kafka under --kafka."""
    if kafka_reference:
        return kafka_reference
    return request.getfixturevalue("embedded_broker").bootstrap_servers


@pytest.fixture
def topic_name() -> str:
    """A topic name no other test uses (so scenarios can share one Kafka)."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.fixture
def only_embedded(kafka_reference):
    if kafka_reference:
        pytest.skip("needs to restart or kill the embedded broker")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class BrokerProcess:
    """`python -m broker_embedded` in a child process, for restart and kill -9 tests."""

    def __init__(self, data_dir: Path, port: int | None = None, *extra: str) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 30) -> "BrokerProcess":
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "broker_embedded", "--data-dir", str(self.data_dir), "--port", str(self.port),
             "--loglevel", "WARNING", "--config", "group.initial.rebalance.delay.ms=0", *self.extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        deadline = time.monotonic() + timeout
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            self.proc.kill()
            raise RuntimeError(f"broker did not start: {line!r} {self.proc.stderr.read()}")
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return self
            time.sleep(0.05)
        raise RuntimeError("broker port never opened")

    def stop(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(30)


@pytest.fixture
def broker_process(tmp_path, only_embedded):
    procs: list[BrokerProcess] = []

    def make(*extra: str, data_dir: Path | None = None, port: int | None = None) -> BrokerProcess:
        p = BrokerProcess(data_dir or tmp_path / "broker", port, *extra)
        procs.append(p)
        return p

    yield make
    for p in procs:
        if p.proc and p.proc.poll() is None:
            p.proc.kill()
            p.proc.wait()


@pytest.fixture(scope="session")
def franzsecure() -> Path:
    """tests/go/secure built once into .tools/franzsecure (rebuilt when a source file is newer): franz-go over
    SASL and TLS (test_broker_security.py), and its "acl" steps (test_broker_acl.py)."""
    if shutil.which("go") is None:
        pytest.skip("go is needed for the franz-go client tests")
    source = ROOT / "tests" / "go"
    binary = ROOT / ".tools" / "franzsecure"
    newest = max(p.stat().st_mtime for p in (source / "secure").iterdir())
    if not binary.exists() or binary.stat().st_mtime < newest:
        res = subprocess.run(["go", "build", "-o", str(binary), "./secure"], cwd=source, capture_output=True,
                             text=True, timeout=600)
        assert res.returncode == 0, res.stderr
    return binary

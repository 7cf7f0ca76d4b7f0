"""One broker per data directory: a second one is refused at once, a killed one never blocks a restart, and the
directory tells workers where its live broker listens (and a restart with port=None listens there again)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from broker_embedded import DirectoryLock, DirectoryLocked, EmbeddedBroker, is_locked
from readback import read_partition

TOPIC = "owned"


def _second_cli(data_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker_embedded", "--data-dir", str(data_dir), "--port", "0"],
                          capture_output=True, text=True, timeout=30)


async def _produce(bootstrap: str, values: list[bytes]) -> None:
    """Send with acks=all, no idempotence (the setting that the lost-record report used); every send must be
    acknowledged."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=2)
    await producer.start()
    try:
        results = await asyncio.gather(*[await producer.send(TOPIC, v) for v in values])
        assert all(r.offset >= 0 for r in results)
    finally:
        await producer.stop()


async def _read_all(bootstrap: str, topic: str = TOPIC) -> list[tuple[int, bytes]]:
    """(offset, value) of every record of partition 0, from the start to the end (CRCs checked by the client)."""
    return [(m.offset, m.value) for m in await read_partition(bootstrap, topic)]


def test_second_cli_broker_on_a_directory_exits_2_naming_the_holder(broker_process, tmp_path):
    first = broker_process(data_dir=tmp_path / "data").start()
    res = _second_cli(tmp_path / "data")
    assert res.returncode == 2, res.stderr
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1, line
    assert str(tmp_path / "data") in line and f"process {first.proc.pid}" in line, line
    assert first.proc.poll() is None, "the first broker must keep running"
    assert first.stop() == 0


async def test_second_embedded_broker_raises_directory_locked(tmp_path):
    data = str(tmp_path / "data")
    async with EmbeddedBroker(data_dir=data) as first:
        second = EmbeddedBroker(data_dir=data)
        with pytest.raises(DirectoryLocked) as err:
            await second.start()
        assert err.value.holder["pid"] == os.getpid()
        assert data in str(err.value) and f"process {os.getpid()}" in str(err.value)
        await _produce(first.bootstrap_servers, [b"still served"])
    # Once the first stops, the directory is free again.
    async with EmbeddedBroker(data_dir=data) as again:
        assert [v for _, v in await _read_all(again.bootstrap_servers)] == [b"still served"]


async def test_acknowledged_records_survive_a_refused_second_broker_and_a_kill(broker_process, tmp_path):
    data = tmp_path / "data"
    first = broker_process(data_dir=data).start()
    sent = [b"before-%d" % i for i in range(300)]
    await _produce(first.bootstrap_servers, sent)
    assert _second_cli(data).returncode == 2
    with pytest.raises(DirectoryLocked):
        await EmbeddedBroker(data_dir=str(data)).start()
    more = [b"after-%d" % i for i in range(300)]
    await _produce(first.bootstrap_servers, more)
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    assert not is_locked(data), "the kernel frees the lock of a killed process"

    restarted = broker_process(data_dir=data, port=first.port).start()  # the stale .lock does not block it
    stored = await _read_all(restarted.bootstrap_servers)
    assert [v for _, v in stored] == sent + more, "every acknowledged record, once, in order"
    assert [o for o, _ in stored] == list(range(len(stored)))
    await _produce(restarted.bootstrap_servers, [b"tail"])
    assert restarted.stop() == 0
    log = restarted.proc.stderr.read()
    assert "Invalid CRC" not in log and "truncating" not in log, log

    async with EmbeddedBroker(data_dir=str(data)) as clean:  # and once more, from a clean shutdown
        assert [v for _, v in await _read_all(clean.bootstrap_servers)] == sent + more + [b"tail"]


def test_running_address_names_the_live_broker_only(broker_process, tmp_path):
    data = tmp_path / "data"
    assert EmbeddedBroker.running_address(str(data)) is None  # nothing there yet
    first = broker_process(data_dir=data).start()
    assert EmbeddedBroker.running_address(str(data)) == first.bootstrap_servers
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait()
    # The lock file still holds the dead broker's address; it is not believed.
    assert "port" in (data / ".lock").read_text()
    assert EmbeddedBroker.running_address(str(data)) is None
    with EmbeddedBroker(data_dir=str(data), port=0) as second:
        assert EmbeddedBroker.running_address(str(data)) == second.bootstrap_servers
    assert EmbeddedBroker.running_address(str(data)) is None


def test_port_none_reuses_the_last_port_when_free(tmp_path):
    data = str(tmp_path / "data")
    with EmbeddedBroker(data_dir=data, port=None) as first:
        port = first.port
        assert port > 0
    with EmbeddedBroker(data_dir=data, port=None) as second:
        assert second.port == port
    with socket.socket() as squatter:  # someone else took it meanwhile: any free port, and remember that one
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        with EmbeddedBroker(data_dir=data, port=None) as third:
            assert third.port != port
            moved = third.port
            assert EmbeddedBroker.running_address(data) == f"127.0.0.1:{moved}"
    with EmbeddedBroker(data_dir=data, port=None) as fourth:
        assert fourth.port == moved
    with EmbeddedBroker(data_dir=data, port=0) as any_port:  # 0 still means any free port
        assert any_port.port > 0


def test_port_none_after_a_broker_that_chose_its_port(tmp_path):
    data = str(tmp_path / "data")
    with EmbeddedBroker(data_dir=data, port=0) as first:
        port = first.port
    with EmbeddedBroker(data_dir=data, port=None) as second:
        assert second.port == port


def test_a_probe_never_makes_a_start_fail(tmp_path):
    """is_locked briefly holds the lock shared; a start that meets such a probe waits for it instead of failing."""
    data = tmp_path / "data"
    DirectoryLock(data).acquire().release()
    stop = threading.Event()
    probes = 0

    def probe() -> None:
        nonlocal probes
        while not stop.is_set():
            is_locked(data)
            probes += 1

    prober = threading.Thread(target=probe)
    prober.start()
    try:
        for _ in range(300):
            DirectoryLock(data, "broker data").acquire().release()
        with EmbeddedBroker(data_dir=str(data)) as broker:
            assert broker.port > 0
    finally:
        stop.set()
        prober.join()
    assert probes > 300


def test_a_data_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("not a directory")
    with pytest.raises(ValueError, match="is a file"):
        EmbeddedBroker(data_dir=str(path))

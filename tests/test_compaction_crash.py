"""A crash in the middle of cleaning loses nothing: whatever point the pass reached, the partition reopens with
every record either as it was before the pass or as the pass left it, at its original offset, and with the latest
value of every key.

The first tests stop a pass at each step of the segment swap (a real log in a temporary directory, the pass
interrupted there, the log reopened without a clean shutdown); then a broker process is killed with SIGKILL while
its cleaner (slowed down with log.cleaner.io.max.bytes.per.second so that a pass lasts seconds) is certainly
writing cleaned segments, several times over; and the cleaner's worker process is killed alone.
"""

from __future__ import annotations

import os
import random
import signal
import time

import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from broker_embedded import EmbeddedBroker
from broker_embedded.log import cleaner_pass
from broker_embedded.log.batch import split_batches
from broker_embedded.log.cleaner import adopt, plan_cleaning
from broker_embedded.log.cleaner_swap import _segment_files_in
from broker_embedded.log.config import LogConfig
from broker_embedded.log.partition import PartitionLog
from broker_embedded.log.records import build_batch, iter_records


class Crash(Exception):
    """Stands for the process dying at this point."""


def _config() -> LogConfig:
    return LogConfig(segment_bytes=4096, compact=True, delete=False, index_interval_bytes=1024)


def _fill(plog: PartitionLog, keys: int, rounds: int) -> None:
    for r in range(rounds):
        for first in range(0, keys, 50):
            records = [(b"k%d" % i, b"v%d-%d" % (i, r), None, None) for i in range(first, min(first + 50, keys))]
            data = bytearray(build_batch(records, attributes=3 if r % 2 else 0))  # lz4 every other round
            plog.append(data, split_batches(data))
    plog.flush()


def _read(plog: PartitionLog) -> dict[int, tuple[bytes, bytes]]:
    out = {}
    offset = plog.log_start_offset
    while offset < plog.high_watermark:
        data = plog.read(offset, 1 << 20)
        pos = 0
        while pos < len(data):
            header = split_batches(data[pos:])[0][1]
            for rec in iter_records(data[pos : pos + header.size], header):
                if rec.offset >= offset:
                    out[rec.offset] = (rec.key, rec.value)
            pos += header.size
            offset = max(offset, header.next_offset)
    return out


def _latest(records: dict[int, tuple[bytes, bytes]]) -> dict[bytes, bytes]:
    return {k: v for _o, (k, v) in sorted(records.items())}


def _crash_close(plog: PartitionLog) -> None:
    for seg in plog.segments:
        seg.close()  # no flush, no clean-shutdown marker


@pytest.mark.parametrize("point", ["before_commit", "after_commit", "mid_complete", "no_crash"])
def test_reopening_after_a_crash_in_the_swap_loses_nothing(tmp_path, monkeypatch, point):
    directory = str(tmp_path / "t-0")
    plog = PartitionLog(directory, _config())
    plog.open()
    _fill(plog, 600, 4)
    before = _read(plog)
    assert len(plog.segments) > 4
    calls = {"commit": 0, "complete": 0}
    real_commit, real_complete = cleaner_pass.commit_swap, cleaner_pass.complete_swap

    def commit(directory, base, end):
        calls["commit"] += 1
        if point == "before_commit" and calls["commit"] == 2:
            raise Crash()
        return real_commit(directory, base, end)

    def complete(directory, base, end):
        calls["complete"] += 1
        if calls["complete"] == 2 and point == "after_commit":
            raise Crash()
        if calls["complete"] == 2 and point == "mid_complete":
            for offset, name in _segment_files_in(directory, base, end):
                if offset != base:
                    os.unlink(os.path.join(directory, name))
            raise Crash()
        return real_complete(directory, base, end)

    monkeypatch.setattr(cleaner_pass, "commit_swap", commit)
    monkeypatch.setattr(cleaner_pass, "complete_swap", complete)
    _ratio, job = plan_cleaning(plog, 0, plog.high_watermark, int(time.time() * 1000), force=True)
    result = cleaner_pass.run_pass(job)
    if point == "no_crash":
        assert result.error is None
        adopt(plog, result)
        after_in_memory = _read(plog)
    else:
        assert isinstance(result.error, Crash)
    _crash_close(plog)

    reopened = PartitionLog(directory, _config())
    reopened.open()
    after = _read(reopened)
    assert not [n for n in os.listdir(directory) if n.endswith((".cleaned", ".swap"))]
    # Every record is one of the originals at its original offset, and no key lost its latest value.
    assert all(before[o] == kv for o, kv in after.items())
    assert _latest(after) == _latest(before)
    assert len(after) < len(before), "the groups swapped before the crash stay cleaned"
    if point == "no_crash":
        assert after == after_in_memory
        cleaned = [o for o in after if o < reopened.active.base_offset]
        assert len(cleaned) <= 600, "at most one record per key outside the active segment"
    reopened.close()


def _read_topic(bootstrap: str, topic: str) -> list[tuple[int, bytes, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "crash-reader", "enable.auto.commit": False})
    try:
        _low, high = consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=30)
        consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
        out = []
        deadline = time.monotonic() + 60
        while consumer.position([TopicPartition(topic, 0)])[0].offset < high:
            assert time.monotonic() < deadline, "could not read to the high watermark"
            for msg in consumer.consume(10000, 0.5):
                assert msg.error() is None, msg.error()
                out.append((msg.offset(), msg.key(), msg.value()))
        return out
    finally:
        consumer.close()


def _cleaned_files(directory) -> list[str]:
    try:
        return [n for n in os.listdir(directory) if n.endswith((".cleaned", ".swap"))]
    except FileNotFoundError:
        return []


def _cleaner_workers(parent_pid: int) -> list[int]:
    """Live cleaner worker processes started by `parent_pid` (its pid is their last argument)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if any(b"cleaner_worker" in a for a in argv) and str(parent_pid).encode() in argv:
            found.append(int(pid))
    return found


def _produce_round(bootstrap: str, topic: str, keys: int, round_: int, produced: dict, expected: dict) -> None:
    def delivered(err, msg):
        assert err is None, err
        produced[msg.offset()] = (msg.key(), msg.value())

    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10, "acks": "all"})
    for i in range(keys):
        key, value = b"key-%d" % i, b"value-%d-%d" % (i, round_)
        producer.produce(topic, key=key, value=value, on_delivery=delivered)
        expected[key] = value
        if i % 10000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def _check_topic(bootstrap: str, topic: str, produced: dict, expected: dict) -> list:
    """Every record read is the one written at its offset, and every key reads its latest value."""
    records = _read_topic(bootstrap, topic)
    for offset, key, value in records:
        assert produced[offset] == (key, value), f"offset {offset} reads {key}={value}, not what was written"
    assert {k: v for _o, k, v in records} == expected
    return records


def _kill_during_cleaning(broker_process, kills: int, keys: int, rate: int) -> None:
    """Produce a round of updates, wait until the cleaner (slowed to `rate` bytes/s of I/O so that a pass lasts
    seconds) is writing cleaned segments, SIGKILL the broker at a random moment of the pass, restart, check."""
    topic = "crash-compacted"
    rng = random.Random(5)
    produced: dict[int, tuple[bytes, bytes]] = {}
    expected: dict[bytes, bytes] = {}
    settings = ("--config", "log.cleaner.backoff.ms=20", "--config", f"log.cleaner.io.max.bytes.per.second={rate}")
    left_half_done = 0
    for round_ in range(kills):
        broker = broker_process(*settings).start()
        bootstrap = broker.bootstrap_servers
        directory = broker.data_dir / f"{topic}-0"
        if round_ == 0:
            admin = AdminClient({"bootstrap.servers": bootstrap})
            config = {"cleanup.policy": "compact", "internal.segment.bytes": str(128 * 1024), "min.cleanable.dirty.ratio": "0.01"}
            for fut in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
                fut.result(30)
        else:
            _check_topic(bootstrap, topic, produced, expected)
        _produce_round(bootstrap, topic, keys, round_, produced, expected)
        deadline = time.monotonic() + 30
        while not _cleaned_files(directory):
            assert time.monotonic() < deadline, "no cleaning pass started"
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.5))  # somewhere in the pass, which writes for seconds at this rate
        pid = broker.proc.pid
        broker.kill()
        left_half_done += bool(_cleaned_files(directory))
        time.sleep(0.1)
        assert not _cleaner_workers(pid), "a cleaner worker outlived its broker"
    assert left_half_done >= kills // 2, f"only {left_half_done} of {kills} kills landed inside a pass"
    # Unthrottled, the restarted broker finishes what the passes left: one record per key below the active segment.
    broker = broker_process("--config", "log.cleaner.backoff.ms=20").start()
    active_base = max(int(n.split(".")[0]) for n in os.listdir(broker.data_dir / f"{topic}-0") if n.endswith(".log"))
    deadline = time.monotonic() + 30
    while True:
        records = _check_topic(broker.bootstrap_servers, topic, produced, expected)
        below_active = sum(offset < active_base for offset, _k, _v in records)
        if below_active <= keys:
            break
        assert time.monotonic() < deadline, f"still {below_active} records below the active segment for {keys} keys"
        time.sleep(0.2)
    broker.stop()
    print(f"{kills} kills, {left_half_done} left a cleaning half done on disk")


def test_kill_9_while_cleaning_then_restart(broker_process):
    _kill_during_cleaning(broker_process, kills=4, keys=20_000, rate=300_000)


@pytest.mark.slow
def test_kill_9_while_cleaning_many_times(broker_process):
    _kill_during_cleaning(broker_process, kills=15, keys=30_000, rate=1_000_000)


def test_cleaner_worker_killed_alone_loses_nothing(tmp_path, only_embedded):
    """The pass runs in a child process; if that child dies (OOM killer, kill -9) the broker finishes the swap it
    committed, drops the rest, keeps serving, and a later pass cleans the partition."""
    topic = "worker-killed"
    broker = EmbeddedBroker(data_dir=str(tmp_path / "broker"), port=0, log_cleaner_backoff_ms=20,
                            log_cleaner_io_max_bytes_per_second=300_000).start_in_thread()
    try:
        bootstrap = broker.bootstrap_servers
        admin = AdminClient({"bootstrap.servers": bootstrap})
        config = {"cleanup.policy": "compact", "internal.segment.bytes": str(128 * 1024), "min.cleanable.dirty.ratio": "0.01"}
        for fut in admin.create_topics([NewTopic(topic, 1, 1, config=config)]).values():
            fut.result(30)
        produced: dict[int, tuple[bytes, bytes]] = {}
        expected: dict[bytes, bytes] = {}
        keys = 20_000
        for round_ in range(2):
            _produce_round(bootstrap, topic, keys, round_, produced, expected)
        directory = tmp_path / "broker" / f"{topic}-0"
        deadline = time.monotonic() + 30
        while not _cleaned_files(directory) or not _cleaner_workers(os.getpid()):
            assert time.monotonic() < deadline, "no cleaning pass started"
            time.sleep(0.01)
        time.sleep(0.3)
        broker.broker.config.log_cleaner_io_max_bytes_per_second = float("inf")  # for the passes that follow
        workers = _cleaner_workers(os.getpid())
        assert len(workers) == 1
        os.kill(workers[0], signal.SIGKILL)
        plog = broker.broker.partition(topic, 0)
        deadline = time.monotonic() + 30
        while True:
            records = _check_topic(bootstrap, topic, produced, expected)
            if sum(offset < plog.active.base_offset for offset, _k, _v in records) <= keys:
                break
            assert time.monotonic() < deadline, "the partition was never cleaned after the worker died"
            time.sleep(0.2)
        assert not _cleaned_files(directory)
    finally:
        broker.stop_thread()

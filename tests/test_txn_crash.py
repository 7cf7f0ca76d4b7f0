"""Exactly-once under crashes: a transactional copier (tests/crash/copier.py) is SIGKILLed at random points while
records flow, and the broker process is killed and restarted a few times; in the end a read_committed consumer of
the output sees every input record exactly once."""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import subprocess
import sys
import time
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.structs import TopicPartition

COPIER = Path(__file__).parent / "crash" / "copier.py"
PARTITIONS = 3
log = logging.getLogger(__name__)


async def _seed(bootstrap: str, records: int) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic("in", PARTITIONS, 1), NewTopic("out", PARTITIONS, 1)])
    finally:
        await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    await producer.start()
    try:
        for i in range(records):
            await producer.send("in", b"%d" % i, partition=i % PARTITIONS)
        await producer.flush()
    finally:
        await producer.stop()


async def _read_committed(bootstrap: str, topic: str) -> list[bytes]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                auto_offset_reset="earliest", enable_auto_commit=False)
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)  # last stable offsets: an open transaction would stop them short
        hw = {tp: (await consumer.end_offsets([tp]))[tp] for tp in tps}
        out: list[bytes] = []
        deadline = time.monotonic() + 60
        while any([await consumer.position(tp) < ends[tp] for tp in tps]) and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=500, max_records=5000)).values():
                out += [m.value for m in msgs]
        assert ends == hw
        return out
    finally:
        await consumer.stop()


def _copier(bootstrap: str, max_records: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(COPIER), bootstrap, "in", "out", str(PARTITIONS), str(max_records)],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)


def run_scenario(broker_process, records: int, copier_kills: int, broker_kills: int, max_records: int,
                 seed: int) -> None:
    rng = random.Random(seed)
    broker = broker_process().start()
    asyncio.run(_seed(broker.bootstrap_servers, records))
    # Broker kills early enough that they happen even if the copier finishes before all its kills are used.
    broker_kill_rounds = set(rng.sample(range(1, copier_kills // 2 + 1), broker_kills))
    kills = 0
    for round_ in range(copier_kills):
        proc = _copier(broker.bootstrap_servers, max_records)
        time.sleep(rng.uniform(0.8, 2.2))
        if proc.poll() is not None:
            break  # it finished before it could be killed
        if round_ in broker_kill_rounds:
            broker.kill()  # while the copier is in the middle of a transaction
            time.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
            proc.wait()
            broker.start()
        else:
            proc.kill()
            proc.wait()
        kills += 1
    for _attempt in range(5):
        proc = _copier(broker.bootstrap_servers, max_records)
        out, _ = proc.communicate(timeout=300)
        if proc.returncode == 0 and "done" in out:
            break
    else:
        pytest.fail("the copier never finished")
    values = asyncio.run(_read_committed(broker.bootstrap_servers, "out"))
    counts = collections.Counter(values)
    missing = [i for i in range(records) if b"%d" % i not in counts]
    duplicated = {v: n for v, n in counts.items() if n > 1}
    assert not missing and not duplicated, f"missing {missing[:20]}, duplicated {list(duplicated.items())[:20]}"
    assert len(values) == records
    print(f"copier killed {kills} times (broker killed in {len(broker_kill_rounds & set(range(kills)))} of them)")
    assert kills > max(broker_kill_rounds), "the copier finished before it was killed: the test did not test much"


def test_copier_killed_and_broker_restarted_exactly_once(broker_process):
    """Default-suite variant: 10,000 records, a handful of copier kills, two broker kills."""
    run_scenario(broker_process, records=10_000, copier_kills=8, broker_kills=2, max_records=5, seed=7)


@pytest.mark.slow
def test_copier_killed_many_times_with_100k_records(broker_process):
    run_scenario(broker_process, records=100_000, copier_kills=40, broker_kills=4, max_records=4, seed=11)

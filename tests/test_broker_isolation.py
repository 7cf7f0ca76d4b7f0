"""One partition's trouble stays with that partition: deleting topics that clients still write to never fails, nor
duplicates, acks=all produces to other topics (their fsyncs share rounds with the deleted partitions')."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from broker_embedded.log.batch import split_batches
from broker_embedded.log.config import LogConfig
from broker_embedded.log.flush import GroupCommitFlusher
from broker_embedded.log.partition import LogDeleted, PartitionLog
from broker_embedded.log.records import build_batch
from readback import read_partition

STEADY = ["steady-a", "steady-b"]
DOOMED = ["doomed-a", "doomed-b", "doomed-c"]
SECONDS = 4.0


async def _steady_producer(bootstrap: str, topic: str, until: float) -> list[bytes]:
    """Send batches of acks=all records, non-idempotent (a failed-but-appended batch that the client retries
    would be stored twice); any error fails the test."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=1)
    await producer.start()
    sent: list[bytes] = []
    try:
        n = 0
        while time.monotonic() < until:
            values = [b"%s-%d" % (topic.encode(), n + i) for i in range(50)]
            n += 50
            futures = [await producer.send(topic, v) for v in values]
            await asyncio.gather(*futures)  # raises on the first error
            sent += values
    finally:
        await producer.stop()
    return sent


async def _doomed_producer(bootstrap: str, until: float) -> int:
    """Keep appending to the topics being deleted, so that their fsyncs are queued when they go away."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=False, linger_ms=1,
                                request_timeout_ms=5000)
    await producer.start()
    acked = 0
    try:
        while time.monotonic() < until:
            futures = []
            for topic in DOOMED:
                for i in range(20):
                    try:
                        futures.append(await asyncio.wait_for(producer.send(topic, b"x" * 200), 1))
                    except Exception:  # the topic is gone right now: that is the point
                        pass
            for outcome in await asyncio.gather(*futures, return_exceptions=True):
                acked += not isinstance(outcome, BaseException)
    finally:
        await producer.stop()
    return acked


async def _delete_and_recreate(bootstrap: str, until: float) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    rounds = 0
    try:
        while time.monotonic() < until:
            await asyncio.sleep(0.05)
            await admin.delete_topics(DOOMED)
            await asyncio.sleep(0.02)
            await admin.create_topics([NewTopic(t, 1, 1) for t in DOOMED])
            rounds += 1
    finally:
        await admin.close()
    return rounds


async def _read_all(bootstrap: str, topic: str) -> list[bytes]:
    return [m.value for m in await read_partition(bootstrap, topic)]


async def test_deleting_topics_under_load_never_fails_or_duplicates_other_topics(embedded_broker):
    bootstrap = embedded_broker.bootstrap_servers
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, 1, 1) for t in STEADY + DOOMED])
    await admin.close()

    until = time.monotonic() + SECONDS
    *sent, doomed_acked, rounds = await asyncio.gather(
        *[_steady_producer(bootstrap, t, until) for t in STEADY], _doomed_producer(bootstrap, until),
        _delete_and_recreate(bootstrap, until))
    assert rounds >= 10, "the topics must have been deleted and recreated many times"
    assert doomed_acked > 0, "the deleted topics must have been written to"
    for topic, values in zip(STEADY, sent):
        assert len(values) > 500
        stored = Counter(await _read_all(bootstrap, topic))
        duplicated = [v for v, n in stored.items() if n > 1]
        assert not duplicated, f"{len(duplicated)} records of {topic} stored twice, e.g. {duplicated[:3]}"
        assert set(stored) == set(values), f"{topic}: records lost or foreign records stored"


def _batch(value: bytes) -> bytearray:
    return bytearray(build_batch([(None, value, (), None)]))


def test_a_failed_round_keeps_what_it_owed(tmp_path):
    """A segment rolled before a round whose fsync failed is still synced by a later round, and so is the
    directory entry of the new segment file."""
    plog = PartitionLog(str(tmp_path / "p-0"), LogConfig(segment_bytes=200))
    plog.open()
    plog.flush()
    for i in range(3):  # 200-byte segments: every append after the first rolls
        data = _batch(b"v%d" % i + b"." * 100)
        plog.append(data, split_batches(data))
    rolled = plog.segments[:-1]
    assert len(rolled) == 2
    segments, sync_dir = plog.flush_targets()
    assert sync_dir and set(map(id, rolled)) <= set(map(id, segments))
    assert not plog.flush_targets()[0][:-1], "taken: the next round would owe nothing but the active segment"
    plog.flush_failed(segments, sync_dir)  # what the flusher does when the round's fsync failed
    again, sync_dir_again = plog.flush_targets()
    assert [id(s) for s in again] == [id(s) for s in rolled] + [id(plog.active)]
    assert sync_dir_again
    assert all(s.dirty for s in again)
    plog.sync(again, sync_dir_again)
    plog.close()


async def test_a_deleted_partition_leaves_the_flush_queue(tmp_path):
    """Its waiters hear LogDeleted; the waiters of another partition in the same round are not affected."""
    flusher = GroupCommitFlusher()
    keep = PartitionLog(str(tmp_path / "keep-0"), LogConfig())
    gone = PartitionLog(str(tmp_path / "gone-0"), LogConfig())
    for plog in (keep, gone):
        plog.open()
        data = _batch(b"x")
        plog.append(data, split_batches(data))
    kept, lost = flusher.flush(keep), flusher.flush(gone)
    flusher.forget(gone)
    gone.delete()
    await kept
    with pytest.raises(LogDeleted):
        await lost
    await flusher.drain()
    keep.close()

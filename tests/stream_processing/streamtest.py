"""Helpers for the streams tests: create topics, produce, consume, read committed offsets, poll a condition, see how
a group split its partitions."""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic


async def create_topic(bootstrap: str, name: str, partitions: int = 1) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, partitions, 1)])
    finally:
        await admin.close()


async def produce(bootstrap: str, topic: str, records: list[tuple], **kw) -> None:
    """Send (key bytes, value bytes[, partition]) records and wait for all of them."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **kw)
    await producer.start()
    try:
        futs = [await producer.send(topic, r[1], key=r[0], partition=r[2] if len(r) > 2 else None) for r in records]
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def consume(bootstrap: str, topic: str, count: int, timeout: float = 20.0) -> list:
    """Read `count` records of `topic` from the beginning (fails after `timeout` seconds with what it has)."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    out: list = []
    try:
        deadline = time.monotonic() + timeout
        while len(out) < count and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await consumer.stop()
    assert len(out) >= count, f"expected {count} records on {topic}, got {len(out)}"
    return out


async def read_all(bootstrap: str, topic: str, idle: float = 0.5, isolation_level: str = "read_uncommitted"
                   ) -> list:
    """Every record of `topic` so far (read until nothing arrives for `idle` seconds), partition by partition."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, isolation_level=isolation_level)
    await consumer.start()
    out: list = []
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=int(idle * 1000), max_records=50_000)
            if not batch:
                return out
            for msgs in batch.values():
                out.extend(msgs)
    finally:
        await consumer.stop()


async def committed(bootstrap: str, group: str, topic: str, partitions: int = 1) -> dict[int, int | None]:
    """The group's committed offsets of `topic`."""
    from aiokafka import TopicPartition
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        return {p: await consumer.committed(TopicPartition(topic, p)) for p in range(partitions)}
    finally:
        await consumer.stop()


async def eventually(check, timeout: float = 20.0, interval: float = 0.05):
    """Poll `check()` (sync or async) until it returns a truthy value; return it, or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


async def group_assignment(bootstrap: str, group: str) -> dict[str, list[tuple[str, int]]]:
    """{member id: its assigned topic-partitions} of a stable group, as the broker tells (DescribeGroups); {} while
    the group is rebalancing. The members' own view, without reading their logs."""
    from aiokafka.admin import AIOKafkaAdminClient
    from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        out = {}
        for resp in await admin.describe_consumer_groups([group]):
            for g in resp.groups:
                if g[1] != group or g[2] != "Stable":
                    continue
                for member in g[5]:
                    member_id, assignment = member[0], member[-1]
                    decoded = ConsumerProtocolMemberAssignment.decode(assignment) if assignment else None
                    out[member_id] = sorted((t, p) for t, ps in (decoded.assignment if decoded else []) for p in ps)
        return out
    finally:
        await admin.close()


def wait_for_split(bootstrap: str, group: str, members: int, partitions: int, timeout: float = 30) -> dict:
    """Wait until `members` members each hold their share of `partitions` partitions."""
    deadline = time.monotonic() + timeout
    while True:
        owned = asyncio.run(group_assignment(bootstrap, group))
        if len(owned) == members and all(len(v) == partitions // members for v in owned.values()):
            return owned
        if time.monotonic() > deadline:
            raise AssertionError(f"group {group} never split {partitions} partitions over {members}: {owned}")
        time.sleep(0.1)

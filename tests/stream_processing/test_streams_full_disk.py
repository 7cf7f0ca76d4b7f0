"""A worker whose broker's disk fills up waits (its output is refused with KAFKA_STORAGE_ERROR, its commits with
NOT_COORDINATOR) and resumes by itself once space returns: no crash, nothing lost."""

from __future__ import annotations

import asyncio
import json
import time

from aiokafka import AIOKafkaConsumer, TopicPartition

from broker_embedded import EmbeddedBroker

import streams
from streamtest import consume, create_topic, produce
from test_broker_full_disk import _fill, small_disk  # noqa: F401  (the fixture)

TOTAL = 2000


async def end_offset(bootstrap: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        return (await consumer.end_offsets([tp]))[tp]
    finally:
        await consumer.stop()


async def test_worker_waits_for_space_and_resumes(small_disk, running):  # noqa: F811
    broker = EmbeddedBroker(data_dir=str(small_disk / "broker"), port=0, group_initial_rebalance_delay_ms=0,
                            group_min_session_timeout_ms=1000).start_in_thread()
    try:
        bootstrap = broker.bootstrap_servers
        await create_topic(bootstrap, "in", 1)
        await create_topic(bootstrap, "out", 1)
        app = streams.App("full-disk-app", broker=bootstrap, workdir=small_disk.parent / "work", commit_interval=0.2,
                          session_timeout=6.0)
        app.stream(app.topic("in")).map_values(lambda v: v).to("out")
        async with running(app) as w:
            # Leave 2 MiB free: the input (about 1.2 MB) fits, the output (as much again) does not.
            reserve, filler = small_disk / "reserve", small_disk / "filler"
            reserve.write_bytes(b"\0" * (2 << 20))
            _fill(filler, 64 * 1024)
            _fill(small_disk / "filler-tail", 512)
            reserve.unlink()
            await produce(bootstrap, "in", [(None, json.dumps({"i": i, "pad": "." * 500}).encode())
                                            for i in range(TOTAL)])
            await asyncio.sleep(3)
            assert not w.task.done(), "the worker must wait for space, not stop"
            assert await end_offset(bootstrap, "out") < TOTAL, "the disk did not fill up: the test proves nothing"
            filler.unlink()
            records = await consume(bootstrap, "out", TOTAL, timeout=60)
            assert sorted(json.loads(r.value)["i"] for r in records) == list(range(TOTAL))
            assert not w.task.done()
    finally:
        broker.stop_thread()

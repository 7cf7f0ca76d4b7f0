"""Reading a partition back, from its start to its end offset as of now, with a real client (CRCs checked)."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, TopicPartition


async def read_partition(bootstrap: str, topic: str, partition: int = 0,
                         isolation: str = "read_uncommitted") -> list:
    """Every record of `topic`[`partition`] up to the end offset it has when this is called."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest",
                                isolation_level=isolation, check_crcs=True)
    await consumer.start()
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        end = (await consumer.end_offsets([tp]))[tp]
        got: list = []
        while (await consumer.position(tp)) < end:
            got += (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
        return got
    finally:
        await consumer.stop()

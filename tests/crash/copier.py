"""A read-process-write copier for the crash test: consume `src`, produce to `dst`, commit the input offsets in the
same transaction. It is SIGKILLed at random points; every new instance fences the previous one through the fixed
transactional.id and resumes from the committed offsets. Prints "done" and exits 0 once `src` is fully copied.

    python tests/crash/copier.py BOOTSTRAP SRC DST PARTITIONS MAX_RECORDS
"""

from __future__ import annotations

import asyncio
import sys

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

GROUP = "crash-copier"
TRANSACTIONAL_ID = "crash-copier-0"


async def copy(bootstrap: str, src: str, dst: str, partitions: int, max_records: int) -> None:
    # The producer first: its InitProducerId aborts whatever a killed predecessor left open, so the committed
    # offsets read next are stable.
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=TRANSACTIONAL_ID,
                                request_timeout_ms=10000)
    await producer.start()
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=GROUP, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest")
    await consumer.start()
    try:
        tps = [TopicPartition(src, p) for p in range(partitions)]
        consumer.assign(tps)
        for tp in tps:
            committed = await consumer.committed(tp)
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        ends = await consumer.end_offsets(tps)
        while True:
            if all([await consumer.position(tp) >= ends[tp] for tp in tps]):
                break
            batch = await consumer.getmany(timeout_ms=500, max_records=max_records)
            if not batch:
                continue
            async with producer.transaction():
                for tp, msgs in batch.items():
                    for m in msgs:
                        await producer.send(dst, m.value, key=m.key, partition=tp.partition)
                await producer.send_offsets_to_transaction(
                    {tp: msgs[-1].offset + 1 for tp, msgs in batch.items()}, GROUP)
        print("done", flush=True)
    finally:
        await consumer.stop()
        await producer.stop()


if __name__ == "__main__":
    bootstrap, src, dst, partitions, max_records = sys.argv[1:6]
    asyncio.run(copy(bootstrap, src, dst, int(partitions), int(max_records)))

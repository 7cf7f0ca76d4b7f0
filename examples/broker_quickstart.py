"""Start an embedded broker in-process, produce a few records with aiokafka and read them back.

    python examples/broker_quickstart.py [DATA_DIR]
"""

from __future__ import annotations

import asyncio
import sys
import tempfile

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from broker_embedded import EmbeddedBroker


async def main(data_dir: str) -> list[tuple[str, str]]:
    async with EmbeddedBroker(data_dir=data_dir, port=0) as broker:
        print(f"broker at {broker.bootstrap_servers}")
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap_servers, acks="all")
        await producer.start()
        try:
            for city, temp in [("oslo", "-3"), ("lima", "19"), ("oslo", "-5")]:
                await producer.send_and_wait("weather", temp.encode(), key=city.encode())
        finally:
            await producer.stop()
        consumer = AIOKafkaConsumer(bootstrap_servers=broker.bootstrap_servers, auto_offset_reset="earliest")
        await consumer.start()
        try:
            consumer.assign([TopicPartition("weather", 0)])
            got = []
            while len(got) < 3:
                for records in (await consumer.getmany(timeout_ms=1000)).values():
                    got += [(r.key.decode(), r.value.decode()) for r in records]
        finally:
            await consumer.stop()
        for city, temp in got:
            print(f"{city}: {temp}")
        return got


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="broker-")))

"""Output records, buffered per partition and handed to the producer as whole batches.

Processors append synchronously (no await per record); the worker calls `send()` after each input batch, which
builds aiokafka batches with `create_batch()` and submits them with `send_batch()` (DESIGN decision 7), and `flush()`
before a commit, which waits until every submitted batch is acknowledged.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from aiokafka.partitioner import murmur2

__all__ = ["RecordCollector", "key_hash"]


def key_hash(key: bytes) -> int:
    """Kafka's default partitioner hash: the positive murmur2 of the key bytes (partition = hash % partitions)."""
    return murmur2(key) & 0x7FFFFFFF


class RecordCollector:
    """Buffers (key, value, timestamp, headers) per (topic, partition) for one producer."""

    def __init__(self, producer, partition_counts: dict[str, int]) -> None:
        self.producer = producer
        self.partition_counts = partition_counts
        self._buffers: dict[tuple[str, int], list] = {}
        self._futures: list[asyncio.Future] = []
        self._round_robin = itertools.count()
        self._hash_cache: dict[bytes, int] = {}
        self.sent = 0
        self.acked: dict[tuple[str, int], int] = {}   # (topic, partition) -> next offset after our acked records

    def partition_for(self, topic: str, key: bytes | None) -> int:
        """Kafka's default partitioner: murmur2 of the key bytes; records without a key go round-robin."""
        n = self.partition_counts.get(topic)
        if n is None:
            raise KeyError(f"topic {topic!r} is not known to the worker")
        if key is None:
            return next(self._round_robin) % n
        h = self._hash_cache.get(key)
        if h is None:
            if len(self._hash_cache) > 100_000:
                self._hash_cache.clear()
            h = self._hash_cache[key] = key_hash(key)
        return h % n

    def append(self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int | None = None,
               headers: Any = None, partition: int | None = None) -> None:
        """Queue one serialized record; it leaves with the next `send()`."""
        if partition is None:
            partition = self.partition_for(topic, key)
        buf = self._buffers.get((topic, partition))
        if buf is None:
            buf = self._buffers[(topic, partition)] = []
        buf.append((key, value, timestamp_ms, headers))

    @property
    def pending(self) -> int:
        return sum(len(b) for b in self._buffers.values())

    @property
    def unflushed(self) -> int:
        """Batches handed to the producer and not yet known to be acknowledged."""
        return sum(1 for f in self._futures if not f.done())

    async def send(self) -> None:
        """Submit everything buffered as aiokafka batches (returns once they are queued, not acknowledged)."""
        if not self._buffers:
            return
        buffers, self._buffers = self._buffers, {}
        producer = self.producer
        for (topic, partition), records in buffers.items():
            batch = producer.create_batch()
            append = batch.append
            for key, value, ts, headers in records:
                if append(timestamp=ts, key=key, value=value, headers=headers) is None:
                    self._submit(await producer.send_batch(batch, topic, partition=partition), topic, partition,
                                 batch.record_count())
                    batch = producer.create_batch()
                    append = batch.append
                    if append(timestamp=ts, key=key, value=value, headers=headers) is None:
                        raise ValueError(f"a record for {topic!r} is larger than the producer's max_batch_size")
            if batch.record_count():
                self._submit(await producer.send_batch(batch, topic, partition=partition), topic, partition,
                             batch.record_count())
            self.sent += len(records)
        # Acknowledged futures are dropped as we go so the list stays short between flushes.
        if len(self._futures) > 256:
            self._futures = [f for f in self._futures if not f.done() or f.exception() is not None]

    def _submit(self, fut: asyncio.Future, topic: str, partition: int, count: int) -> None:
        acked = self.acked
        key = (topic, partition)

        def done(f: asyncio.Future) -> None:
            if not f.cancelled() and f.exception() is None:
                end = f.result().offset + count
                if end > acked.get(key, -1):
                    acked[key] = end
        fut.add_done_callback(done)
        self._futures.append(fut)

    def abandon(self) -> None:
        """Forget what is buffered and in flight (its producer is gone: fenced or failed); the failures of the
        batches in flight are expected, so they are consumed here rather than reported as never retrieved."""
        self._buffers.clear()
        for fut in self._futures:
            fut.add_done_callback(lambda f: f.cancelled() or f.exception())
        self._futures = []

    async def flush(self) -> None:
        """Send what is buffered and wait until the broker acknowledged every batch; raises a send error."""
        await self.send()
        futures, self._futures = self._futures, []
        if futures:
            # Wait for all of them (so none is left with an unretrieved error), then raise the first failure.
            for result in await asyncio.gather(*futures, return_exceptions=True):
                if isinstance(result, BaseException):
                    raise result

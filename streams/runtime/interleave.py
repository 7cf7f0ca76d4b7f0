"""Timestamp order across the partitions of one task (Kafka Streams' partition group).

A task that reads several co-partitioned topics (a join, a merge) must see their records in timestamp order, or one
side runs ahead: a stream-stream join's other side then finds its partners already expired, a stream-table join
sees a table row that is too new or too old. One fetch holds records of a few partitions only (a consumer fills it
partition after partition), so ordering within each fetch is not enough. Here such a task's records are held per
partition and released lowest timestamp first, and only while every partition of the task that still has data on
the broker has some here: a partition that is behind is waited for (as Kafka Streams does with its default
`max.task.idle.ms` of 0), for at most `max_wait` seconds, so a stuck partition cannot stall the others for ever.
A partition holding many records is paused meanwhile (`full`), so that fetches go to the one behind.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Callable, Iterator

__all__ = ["Interleaver"]


class Interleaver:
    """Holds the records of multi-partition tasks; `add()` takes a fetch, `runs()` yields what may be processed."""

    def __init__(self, task_of: Callable[[str, int], Any], partitions_of: Callable[[Any], list],
                 may_have_data: Callable[[Any], bool], max_wait: float = 30.0) -> None:
        self._task_of = task_of              # (topic, partition) -> task id, for the topics of multi-partition tasks
        self._partitions_of = partitions_of  # task id -> its assigned partitions
        self._may_have_data = may_have_data  # tp -> whether the broker has records for it not fetched yet
        self.max_wait = max_wait
        self._held: dict[Any, dict[Any, deque]] = {}
        self._waiting: dict[Any, float] = {}

    def add(self, batch: dict) -> dict:
        """Hold the records of multi-partition tasks; return the rest of `batch` (processed as fetched)."""
        rest = {}
        for tp, msgs in batch.items():
            task = self._task_of(tp.topic, tp.partition)
            if task is None:
                rest[tp] = msgs
            else:
                self._held.setdefault(task, {}).setdefault(tp, deque()).extend(msgs)
        return rest

    def runs(self) -> Iterator[tuple[list, list]]:
        """(records, [(tp, end offset)]) of one partition each, in timestamp order within each task."""
        now = time.monotonic()
        for task in list(self._held):
            bufs = self._held[task]
            tps = self._partitions_of(task)
            while True:
                ready = [tp for tp in tps if bufs.get(tp)]
                if not ready:
                    self._waiting.pop(task, None)
                    break
                behind = [tp for tp in tps if not bufs.get(tp) and self._may_have_data(tp)]
                if behind:
                    since = self._waiting.setdefault(task, now)
                    if now - since < self.max_wait:
                        break
                else:
                    self._waiting.pop(task, None)
                ready.sort(key=lambda tp: bufs[tp][0].timestamp)
                first, queue = ready[0], bufs[ready[0]]
                bound = bufs[ready[1]][0].timestamp if len(ready) > 1 else None
                run = []
                while queue and (bound is None or queue[0].timestamp <= bound):
                    run.append(queue.popleft())
                yield run, [(first, run[-1].offset + 1)]
            if not any(bufs.values()):
                del self._held[task]

    def discard(self, tps) -> None:
        """Forget what is held for `tps` (revoked, rewound or dropped: their records will be fetched again)."""
        tps = set(tps)
        for task in list(self._held):
            bufs = self._held[task]
            for tp in tps & set(bufs):
                del bufs[tp]
            if not bufs:
                del self._held[task]
                self._waiting.pop(task, None)

    def held(self) -> int:
        return sum(len(q) for bufs in self._held.values() for q in bufs.values())

    def full(self, limit: int) -> set:
        """Partitions holding more than `limit` records: paused, so that fetches go to the ones behind."""
        return {tp for bufs in self._held.values() for tp, q in bufs.items() if len(q) > limit}

"""Restoring a task's stores from their changelogs before the task processes a record.

A store restores from its checkpoint (the changelog offset its local database reflects) to the changelog's end,
reading `read_committed` so an aborted transaction's writes never reach a store, in batches through the store's
`restore()` (RocksDB write batches). A store without a checkpoint, or whose checkpoint is past the changelog's end
(the topic was deleted and created again), is wiped and restored from the beginning. Progress is reported every few
seconds (store, task, records restored / total, rate, ETA) and once at the end.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Callable

from aiokafka import AIOKafkaConsumer, TopicPartition

from .tasks import TaskState, restore_topic

log = logging.getLogger(__name__)
progress = logging.getLogger("streams.progress")

__all__ = ["RestoreResult", "changelog_partitions", "restore_tasks", "start_offset"]

REPORT_EVERY = 2.0


@dataclass
class RestoreResult:
    """What one store's restore did."""

    store: str
    task: str
    start: int
    end: int
    restored: int
    seconds: float


def changelog_partitions(tasks) -> dict[TopicPartition, tuple[TaskState, str]]:
    """{changelog partition: (task, store)} of every store of `tasks` that is restored from a topic."""
    jobs: dict[TopicPartition, tuple[TaskState, str]] = {}
    for task in tasks:
        for name, spec in task.specs.items():
            topic = restore_topic(spec)
            if topic is not None:
                jobs[TopicPartition(topic.name, task.partition)] = (task, name)
    return jobs


def start_offset(task: TaskState, name: str, begin: int, end: int, wipe: Callable[[TaskState, str], None]) -> int:
    """Where a store's restore (or standby) starts: its checkpoint when that lies within the changelog
    [begin, end]; else the store is wiped and read from the beginning (no checkpoint, or the topic was deleted
    and created again)."""
    cp = task.checkpoints.get(name)
    offset = cp.read() if cp is not None else None
    if offset is not None and begin <= offset <= end:
        return offset
    if offset is not None:
        log.warning("store %s of task %s: checkpoint %d is outside the changelog [%d, %d]: restoring it from the "
                    "beginning", name, task.name, offset, begin, end)
    wipe(task, name)
    return begin


async def restore_tasks(bootstrap: str, tasks: list[TaskState], *, wipe: Callable[[TaskState, str], None],
                        consumer_config: dict | None = None, max_records: int = 50_000) -> list[RestoreResult]:
    """Restore every logged store of `tasks`; `wipe(task, store)` empties a store whose checkpoint cannot be used."""
    jobs = changelog_partitions(tasks)
    if not jobs:
        return []
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                isolation_level="read_committed", auto_offset_reset="earliest",
                                client_id="streams-restore", **(consumer_config or {}))
    await consumer.start()
    try:
        tps = list(jobs)
        consumer.assign(tps)
        ends = await consumer.end_offsets(tps)
        begins = await consumer.beginning_offsets(tps)
        starts: dict[TopicPartition, int] = {}
        for tp, (task, name) in jobs.items():
            starts[tp] = task.restored[name] = start_offset(task, name, begins[tp], ends[tp], wipe)
        pending = {tp for tp in tps if starts[tp] < ends[tp]}
        progress.info("restoring %d store partition(s) of task(s) %s: %d records", len(pending),
                      ", ".join(sorted({jobs[tp][0].name for tp in pending})) or "-",
                      sum(ends[tp] - starts[tp] for tp in pending)) if pending else None
        for tp in tps:
            if tp in pending:
                consumer.seek(tp, starts[tp])
        consumer.pause(*[tp for tp in tps if tp not in pending])
        results = []
        for tp in tps:
            if tp not in pending:
                task, name = jobs[tp]
                results.append(RestoreResult(name, task.name, starts[tp], ends[tp], 0, 0.0))
                progress.info("restored store %s (task %s): 0 records (up to date at offset %d)", name, task.name,
                              ends[tp])
        results += await _read(consumer, jobs, starts, ends, pending, max_records)
        for tp, (task, name) in jobs.items():
            # The restored records must be durable before a checkpoint claims them.
            task.stores[name].flush()
            cp = task.checkpoints.get(name)
            if cp is not None and cp.read() != ends[tp]:
                cp.write(ends[tp])
            task.restored[name] = ends[tp]
        return results
    finally:
        await consumer.stop()


async def _read(consumer: AIOKafkaConsumer, jobs: dict, starts: dict, ends: dict, pending: set,
                max_records: int) -> list[RestoreResult]:
    begun = time.monotonic()
    counts = {tp: 0 for tp in jobs}
    total = sum(ends[tp] - starts[tp] for tp in pending)
    last_report = begun
    done_count = 0
    results = []
    while pending:
        batch = await consumer.getmany(*pending, timeout_ms=200, max_records=max_records)
        for tp, records in batch.items():
            task, name = jobs[tp]
            spec = task.specs[name]
            task.stores[name].restore([spec.restore_pair(r.key, r.value, r.timestamp) for r in records])
            counts[tp] += len(records)
            done_count += len(records)
        for tp in list(pending):
            if await consumer.position(tp) >= ends[tp]:
                pending.discard(tp)
                consumer.pause(tp)
                task, name = jobs[tp]
                seconds = time.monotonic() - begun
                results.append(RestoreResult(name, task.name, starts[tp], ends[tp], counts[tp], seconds))
                progress.info("restored store %s (task %s): %d records in %.2fs", name, task.name, counts[tp],
                              seconds)
        now = time.monotonic()
        if pending and now - last_report >= REPORT_EVERY:
            last_report = now
            rate = done_count / max(now - begun, 1e-6)
            eta = (total - done_count) / rate if rate > 0 else float("inf")
            stores = ", ".join(sorted({f"{jobs[tp][1]}[{jobs[tp][0].name}]" for tp in pending}))
            progress.info("restoring %s: %d/%d records, %.0f records/s, ETA %.1fs", stores, done_count, total,
                          rate, eta)
        await asyncio.sleep(0)
    return results

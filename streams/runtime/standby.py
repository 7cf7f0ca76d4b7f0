"""Standby replicas: warm copies of other workers' tasks, kept current by tailing their changelogs.

With `App(num_standby_replicas=n)` the assignor gives each stateful task n standbys on other workers. A standby
opens the task's stores in this worker's state directory and applies the changelog as it grows (`read_committed`,
in batches), writing its checkpoint every second. When the task's owner fails, the assignor hands the task to a
worker holding its state; that worker closes the standby (flushed, checkpointed) and restores only the tail.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from .processors import RecordContext
from .restore import changelog_partitions, start_offset
from .tasks import TaskStates

log = logging.getLogger(__name__)

__all__ = ["StandbyTasks"]

CHECKPOINT_EVERY = 1.0


class StandbyTasks:
    """The standby tasks of one worker and the loop that keeps them current."""

    def __init__(self, bootstrap: str, state_dir: Any, consumer_config: dict | None = None) -> None:
        self.bootstrap = bootstrap
        self.states = TaskStates(RecordContext(), state_dir)
        self.consumer_config = dict(consumer_config or {})
        self.applied: dict[tuple[int, int], int] = {}    # task -> changelog records applied since it was opened
        self._loop_task: asyncio.Task | None = None

    def load(self, topology: Any) -> None:
        self.states.load(topology)

    @property
    def tasks(self) -> set[tuple[int, int]]:
        return set(self.states.tasks)

    async def update(self, standby: set[tuple[int, int]], stateful: set[int]) -> None:
        """Hold exactly the standbys in `standby` (tasks of stateful sub-topologies): close the others (a task
        that becomes active here is flushed and checkpointed first, so its restore starts from there)."""
        await self._stop_loop()
        for task_id in list(self.states.tasks):
            if task_id not in standby:
                self.states.close(task_id)
                self.applied.pop(task_id, None)
        for task_id in sorted(standby):
            if task_id[0] in stateful and task_id not in self.states.tasks:
                self.states.open(task_id)
                self.applied[task_id] = 0
        if self.states.tasks:
            self._loop_task = asyncio.create_task(self._follow(), name="standby-tasks")

    async def stop(self) -> None:
        await self._stop_loop()
        self.states.close_all()

    async def _stop_loop(self) -> None:
        task, self._loop_task = self._loop_task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                log.warning("standby tasks stopped: %s", exc)

    async def _follow(self) -> None:
        jobs = {tp: job for tp, job in changelog_partitions(self.states.tasks.values()).items()
                if job[1] in job[0].checkpoints}
        if not jobs:
            return
        consumer = AIOKafkaConsumer(bootstrap_servers=self.bootstrap, group_id=None, enable_auto_commit=False,
                                    isolation_level="read_committed", auto_offset_reset="earliest",
                                    client_id="streams-standby", **self.consumer_config)
        await consumer.start()
        try:
            consumer.assign(list(jobs))
            begins = await consumer.beginning_offsets(list(jobs))
            ends = await consumer.end_offsets(list(jobs))
            for tp, (task, name) in jobs.items():
                consumer.seek(tp, start_offset(task, name, begins[tp], ends[tp], self.states.wipe))
            last_checkpoint = time.monotonic()
            dirty: set[TopicPartition] = set()
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
                for tp, records in batch.items():
                    task, name = jobs[tp]
                    spec = task.specs[name]
                    task.stores[name].restore([spec.restore_pair(r.key, r.value, r.timestamp) for r in records])
                    self.applied[task.id] = self.applied.get(task.id, 0) + len(records)
                    dirty.add(tp)
                if dirty and time.monotonic() - last_checkpoint >= CHECKPOINT_EVERY:
                    await self._checkpoint(consumer, jobs, dirty)
                    dirty.clear()
                    last_checkpoint = time.monotonic()
        except asyncio.CancelledError:
            await self._checkpoint(consumer, jobs, set(jobs))
            raise
        finally:
            await consumer.stop()

    @staticmethod
    async def _checkpoint(consumer: AIOKafkaConsumer, jobs: dict, tps: set) -> None:
        for tp in tps:
            task, name = jobs[tp]
            store = task.stores[name]
            if store.closed:
                continue
            store.flush()   # durable before the checkpoint claims it
            task.checkpoints[name].write(await consumer.position(tp))

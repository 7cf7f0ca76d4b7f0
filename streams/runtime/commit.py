"""Committing what a worker processed: for each processing guarantee, the order that makes it safe, in one place.

At-least-once (`AtLeastOnce.commit`): one idempotent producer for the worker;
  snapshot the offsets of fully processed records -> changelog records to the producer -> flush (outputs and
  changelogs acknowledged) -> apply the stores' write batches -> checkpoints -> commit the input offsets.
  A crash anywhere reprocesses records whose effects may already be out (duplicates, never losses).

Exactly-once (`ExactlyOnce.commit`): one transactional producer per task, `transactional.id = <app id>-<task>`
  (DESIGN decision 6; starting it fences any older producer of the task and aborts its open transaction);
  wait until agents hold no record (a transaction's outputs must be exactly those of the records whose offsets it
  commits) -> per task: changelog records and outputs in the task's transaction -> `send_offsets_to_transaction`
  -> commit the transaction -> apply the stores' write batches -> checkpoints. A crash before the commit aborts
  the transaction (nothing visible; the restart restores the committed changelog); a crash after it leaves the
  stores behind their changelog, and the restart restores the tail (`read_committed`). A failed transaction is
  aborted and the task rolled back to its last commit (buffers dropped, stream time and input positions
  rewound); a fenced one (another worker owns the task now: this one is a zombie) is dropped, never retried.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (CommitFailedError, IllegalOperation, IllegalStateError, KafkaError, ProducerFenced,
                             RebalanceInProgressError)
from aiokafka.structs import OffsetAndMetadata

from .collector import RecordCollector
from .tasks import task_name

if TYPE_CHECKING:
    from .worker import Worker

log = logging.getLogger(__name__)

__all__ = ["AtLeastOnce", "ExactlyOnce", "GUARANTEES", "committer_for"]

GUARANTEES = {"at_least_once": "at_least_once", "exactly_once": "exactly_once",
              "exactly_once_v2": "exactly_once"}

# Errors that mean another producer with this task's transactional.id took over: this worker is a zombie.
try:
    from aiokafka.errors import InvalidProducerEpoch
    FENCED: tuple = (ProducerFenced, InvalidProducerEpoch)
except ImportError:  # pragma: no cover - older aiokafka
    FENCED = (ProducerFenced,)


# What a task's transaction can fail with besides fencing; the task is rolled back and goes on.
TXN_FAILURES = (KafkaError, IllegalOperation)


def _producer_settings(worker: "Worker", **overrides: Any) -> dict:
    """The worker's producer settings: acks=all, the app's batching, its producer_config, then `overrides`."""
    app = worker.app
    return {"bootstrap_servers": worker.bootstrap, "acks": "all", "linger_ms": app.linger_ms,
            "max_batch_size": app.max_batch_size, **app.producer_config, **overrides}


class AtLeastOnce:
    """One idempotent producer shared by the worker's tasks; input offsets committed by the consumer."""

    isolation_level = "read_uncommitted"

    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.producer: AIOKafkaProducer | None = None
        self.collector: RecordCollector | None = None

    async def start(self) -> None:
        app, w = self.worker.app, self.worker
        # Idempotent: a retried batch is never written twice, and retriable errors (a full disk answers
        # KAFKA_STORAGE_ERROR) are retried until they succeed, so the worker waits instead of failing.
        producer = AIOKafkaProducer(**{"enable_idempotence": True, "client_id": f"{app.id}-producer",
                                       **_producer_settings(w)})
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self.producer = producer
        self.collector = RecordCollector(self.producer, w.partition_counts)

    def append_for_processor(self):
        return self.collector.append

    def collector_for_send(self, task: Any) -> RecordCollector:
        return self.collector

    async def open_tasks(self, task_ids: list) -> None:
        return None

    async def close_tasks(self, task_ids: list) -> None:
        return None

    async def send(self) -> None:
        """Hand what processing queued to the producer (not waiting for acknowledgements)."""
        await self.collector.send()

    def collectors_in_use(self) -> list[RecordCollector]:
        return [self.collector]

    async def stop(self) -> None:
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    async def commit(self) -> None:
        w = self.worker
        offsets = w.tracker.committable()
        tasks = w.processor.tasks
        append = self.collector.append
        for topic, partition, key, value, ts in tasks.changelog_records():
            append(topic, key, value, ts, None, partition)
        await self.collector.flush()
        tasks.flush()
        offsets = {tp: off for tp, off in offsets.items() if tp in w.assigned}
        acked = dict(self.collector.acked)
        acked.update({(tp.topic, tp.partition): off for tp, off in offsets.items()})
        tasks.checkpoint(acked)
        if not offsets:
            return
        try:
            await w.consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
        except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
            log.warning("commit of %d partitions failed during a rebalance (they will be read again): %s",
                        len(offsets), exc)
        except KafkaError as exc:
            if not getattr(exc, "retriable", False):
                raise
            # The coordinator cannot store offsets right now (e.g. its disk is full): keep the offsets for the
            # next commit, which covers them; nothing is lost, at worst records are read again.
            w.tracker.restore(offsets)
            log.warning("commit of %d partitions failed, retrying at the next commit: %s", len(offsets), exc)


class ExactlyOnce:
    """A transactional producer per task; offsets, outputs and changelogs of a task commit as one transaction."""

    isolation_level = "read_committed"
    BARRIER_TIMEOUT = 30.0
    REOPEN_TIMEOUT = 120.0

    def __init__(self, worker: "Worker") -> None:
        self.worker = worker
        self.side: AtLeastOnce = AtLeastOnce(worker)   # for what no task owns (timers, app.send outside agents)
        self.producers: dict[tuple, AIOKafkaProducer] = {}
        self.collectors: dict[tuple, RecordCollector] = {}
        self.fenced: list[str] = []                    # tasks dropped as zombies (for tests and logs)

    async def start(self) -> None:
        await self.side.start()
        _quiet_fenced_futures(asyncio.get_running_loop())

    def collectors_in_use(self) -> list[RecordCollector]:
        return [self.side.collector, *self.collectors.values()]

    async def send(self) -> None:
        """Hand what processing queued to the producers; a task whose producer was fenced is dropped, one whose
        producer failed is rolled back (its records are processed again from its last commit)."""
        await self.side.collector.send()
        for task_id, collector in list(self.collectors.items()):
            try:
                await collector.send()
            except FENCED as exc:
                await self._drop_zombie(task_id, exc)
            except TXN_FAILURES as exc:
                log.warning("task %s cannot send (%s): rolling it back to its last commit", task_name(task_id), exc)
                await self._roll_back(task_id)

    def append_for_processor(self):
        ctx = self.worker.processor_ctx
        collectors, side = self.collectors, self.side

        def append(topic, key, value, timestamp_ms=None, headers=None, partition=None):
            task = ctx.task
            if task is None:
                side.collector.append(topic, key, value, timestamp_ms, headers, partition)
                return
            collector = collectors.get(task.id)
            if collector is None:
                raise RuntimeError(f"task {task.name} processed a record without its transactional producer")
            collector.append(topic, key, value, timestamp_ms, headers, partition)
        return append

    def collector_for_send(self, task: Any) -> RecordCollector | None:
        """Where a record of `task` goes: its transaction; the side producer for no task; None while the task
        has no transaction (rolled back or closed: its records are processed again, so the record is not owed).
        Never the side producer for a task: that record would be visible whatever its transaction became."""
        if task is None:
            return self.side.collector
        return self.collectors.get(task.id)

    async def open_tasks(self, task_ids: list) -> None:
        """Start a transactional producer per task; starting it fences the task's previous owner (its open
        transaction is aborted), so this runs before the task's stores are restored. A start refused for a while
        (the transaction coordinator loading or busy during a rebalance) is retried for up to `REOPEN_TIMEOUT`:
        a task must never process without its producer."""
        for task_id in task_ids:
            if task_id not in self.producers:
                await self._retrying(task_id, "start its transactional producer", lambda: self._open(task_id))

    async def _retrying(self, task_id: tuple, what: str, attempt: Callable[[], Awaitable[None]]) -> None:
        """Await `attempt()` until it succeeds, retrying Kafka errors (the broker away, the transaction coordinator
        loading or busy during a rebalance) for up to `REOPEN_TIMEOUT`; fencing is never retried."""
        deadline = time.monotonic() + self.REOPEN_TIMEOUT
        delay = 0.2
        while True:
            try:
                return await attempt()
            except FENCED:
                raise
            except KafkaError as exc:
                if time.monotonic() > deadline:
                    raise
                log.warning("task %s: cannot %s yet (%s); retrying", task_name(task_id), what, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _open(self, task_id: tuple) -> None:
        app, w = self.worker.app, self.worker
        producer = AIOKafkaProducer(**_producer_settings(
            w, enable_idempotence=True, transactional_id=f"{app.id}-{task_name(task_id)}",
            client_id=f"{app.id}-{task_name(task_id)}"))
        try:
            await producer.start()
            await producer.begin_transaction()
        except BaseException:
            # (the broker is away, or this task was fenced meanwhile): close it, the caller retries or gives up
            try:
                await asyncio.wait_for(producer.stop(), 10)
            except Exception as exc:
                log.debug("stopping a producer that failed to start for task %s: %s", task_name(task_id), exc)
            raise
        self.producers[task_id] = producer
        self.collectors[task_id] = RecordCollector(producer, w.partition_counts)

    async def close_tasks(self, task_ids: list) -> None:
        for task_id in task_ids:
            producer = self.producers.get(task_id)
            if producer is None:
                continue
            try:
                if producer._txn_manager.is_in_transaction():
                    await producer.abort_transaction()
            except Exception as exc:  # fenced or gone: nothing of this transaction becomes visible anyway
                log.debug("abort on close of task %s: %s", task_name(task_id), exc)
            await self._discard_producer(task_id)

    async def _discard_producer(self, task_id: tuple) -> None:
        """Stop a task's producer whatever state it is in (a fenced or failed one re-raises its error on stop)."""
        producer = self.producers.pop(task_id, None)
        collector = self.collectors.pop(task_id, None)
        if collector is not None:
            collector.abandon()
        if producer is None:
            return
        try:
            await asyncio.wait_for(producer.stop(), 10)
        except Exception as exc:
            log.debug("stopping the producer of task %s: %s", task_name(task_id), exc)

    async def stop(self) -> None:
        await self.close_tasks(list(self.producers))
        await self.side.stop()

    async def commit(self) -> None:
        w = self.worker
        # Barrier: agents finish the records they hold, so the offsets below cover every output sent so far
        # (not when stopping: the shutdown already gave them `shutdown_timeout`).
        deadline = time.monotonic() + (0 if w.stopping else self.BARRIER_TIMEOUT)
        while w.tracker.outstanding() and time.monotonic() < deadline:
            await asyncio.sleep(0.005)
        # A task whose records agents still hold cannot commit: some of its outputs may belong to records whose
        # offsets it would not commit. It is rolled back instead (everything since its last commit runs again).
        held = {w.processor.task_of(tp.topic, tp.partition) for tp in w.assigned if w.tracker.outstanding([tp])}
        for task_id in sorted(held - {None}):
            log.warning("task %s: agents still hold some of its records; rolling it back instead of committing",
                        task_name(task_id))
            if w.stopping:
                task = w.processor.tasks.tasks.get(task_id)
                if task is not None:
                    task.roll_back()
                await self._discard_producer(task_id)
            else:
                await self._roll_back(task_id)
        offsets = {tp: off for tp, off in w.tracker.committable().items() if tp in w.assigned}
        by_task: dict[tuple, dict] = {}
        for tp, off in offsets.items():
            task_id = w.processor.task_of(tp.topic, tp.partition)
            if task_id is not None:
                by_task.setdefault(task_id, {})[tp] = OffsetAndMetadata(off, "")
        tasks = w.processor.tasks
        for topic, partition, key, value, ts, task_id in tasks.changelog_records(with_task=True):
            collector = self.collectors.get(task_id)
            if collector is None:
                raise RuntimeError(f"task {task_name(task_id)} has changelog records but no transactional producer")
            collector.append(topic, key, value, ts, None, partition)
        busy = (set(by_task) | {t for t, c in self.collectors.items() if c.pending or c.unflushed}) - held
        results = await asyncio.gather(*(self._commit_task(t, by_task.get(t, {})) for t in sorted(busy)
                                         if t in self.producers), return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, TXN_FAILURES):
                raise result
        await self.side.collector.flush()

    async def _commit_task(self, task_id: tuple, offsets: dict) -> None:
        w = self.worker
        producer, collector = self.producers[task_id], self.collectors[task_id]
        task = w.processor.tasks.tasks.get(task_id)
        try:
            await collector.flush()
            if offsets:
                await producer.send_offsets_to_transaction(offsets, w.app.id)
            await producer.commit_transaction()
        except FENCED as exc:
            await self._drop_zombie(task_id, exc)
            return
        except TXN_FAILURES as exc:
            log.warning("the transaction of task %s failed (%s): aborting it and rolling the task back to its last "
                        "commit", task_name(task_id), exc)
            await self._roll_back(task_id)
            raise
        await producer.begin_transaction()
        if task is not None:
            task.flush()
            acked = dict(collector.acked)
            task.checkpoint(acked)
            task.mark_committed()

    async def _roll_back(self, task_id: tuple) -> None:
        """Abort by replacing the task's producer (a new one with the same transactional.id aborts whatever the
        old one left open, whatever state the client is in), drop the task's uncommitted state and move its input
        back to the last committed offsets. Retried while the broker is away, for up to `REOPEN_TIMEOUT`."""
        w = self.worker
        # The task's generation moves on before anything awaits: an agent still holding its records must find
        # them stale at once (its table writes refused, its outputs dropped), never see the task without its
        # producer and its state still holding the aborted transaction's writes.
        task = w.processor.tasks.tasks.get(task_id)
        if task is not None:
            task.roll_back()
        await self._discard_producer(task_id)
        try:
            await self.open_tasks([task_id])
            await self._retrying(task_id, "rewind its input", lambda: w.rewind(task_id))
        except FENCED as exc:
            await self._drop_zombie(task_id, exc)

    async def _drop_zombie(self, task_id: tuple, exc: BaseException) -> None:
        """Another worker owns the task now: drop it (nothing it did since its last commit is visible) and let
        the group give this worker its new tasks."""
        w = self.worker
        name = task_name(task_id)
        self.fenced.append(name)
        log.warning("task %s was taken over by another worker (%s: %s): dropping its uncommitted work and "
                    "rejoining the group", name, type(exc).__name__, exc)
        w.drop_task(task_id)
        await self._discard_producer(task_id)
        w.request_rejoin()


def _quiet_fenced_futures(loop: asyncio.AbstractEventLoop) -> None:
    """A fenced producer's client leaves futures failed with ProducerFenced that nobody awaits (its sender task
    dies); the fencing is handled (the task is dropped), so asyncio's "exception was never retrieved" report of
    them is noise, not an error. Everything else goes to the previous handler."""
    previous = loop.get_exception_handler()

    def handler(loop: asyncio.AbstractEventLoop, context: dict) -> None:
        if isinstance(context.get("exception"), FENCED):
            log.debug("ignored after fencing: %s", context.get("message"))
            return
        if previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)
    loop.set_exception_handler(handler)


def committer_for(guarantee: str, worker: "Worker") -> AtLeastOnce | ExactlyOnce:
    """The commit strategy of `guarantee` ("at_least_once", "exactly_once" or "exactly_once_v2")."""
    return ExactlyOnce(worker) if GUARANTEES[guarantee] == "exactly_once" else AtLeastOnce(worker)

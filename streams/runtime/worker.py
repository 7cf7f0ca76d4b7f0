"""The worker: one consumer in group `<app id>`, the tasks it was assigned, the processing loop and commits.

Loop: `getmany()` -> per task, records in offset order per partition (by timestamp across a task's partitions) ->
the DSL closures run synchronously and queue output in the collector, agent records are handed over in chunks ->
`collector.send()` -> every `commit_interval`: snapshot the committable offsets, flush the producer, commit.
At-least-once: an offset is committed only after the output of every record before it was acknowledged.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from typing import TYPE_CHECKING, Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, RebalanceInProgressError
from aiokafka.structs import OffsetAndMetadata

from ..agents import Event
from ..errors import ProcessingError
from ..topology.compiler import Topology
from ..topology.graph import Node
from .assignor import TaskAssignor
from .collector import RecordCollector
from .offsets import OffsetTracker
from .processors import RecordContext, build_processors
from .topics import ensure_topics

if TYPE_CHECKING:
    from ..app import App

log = logging.getLogger(__name__)

__all__ = ["Worker"]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        self.worker._on_assigned(set(assigned))


class Worker:
    """Runs an app's topology and agents against `bootstrap` until `stop()` (or a failure under policy `fail`)."""

    def __init__(self, app: "App", bootstrap: str) -> None:
        self.app = app
        self.bootstrap = bootstrap
        self.ctx = RecordContext()
        self.tracker = OffsetTracker()
        self.topology: Topology | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.collector: RecordCollector | None = None
        self.partition_counts: dict[str, int] = {}
        self.assigned: set[TopicPartition] = set()
        self.processed = 0
        self._routes: dict[str, tuple] = {}            # topic -> (key deserializer, value deserializer, process)
        self._topic_task: dict[str, int] = {}          # topic -> sub-topology id
        self._agent_pending: dict[tuple, list] = {}    # (agent, route) -> events of the records being processed
        self._paused: set[TopicPartition] = set()
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        self._commit_lock = asyncio.Lock()
        self._background: list[asyncio.Task] = []
        self._topology_dirty = False
        self.started = asyncio.Event()

    # ---- lifecycle ----

    async def start(self) -> None:
        """Create what the app needs, start the clients and agents, join the group."""
        app = self.app
        self.producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap, acks="all", linger_ms=app.linger_ms,
                                         max_batch_size=app.max_batch_size, client_id=f"{app.id}-producer",
                                         **app.producer_config)
        await self.producer.start()
        self.collector = RecordCollector(self.producer, self.partition_counts)
        for agent in app.agents.values():
            await agent.start(self)
        # Let the actors reach their first await: an agent that calls stream.group_by() declares its topic there.
        for _ in range(3):
            await asyncio.sleep(0)
        await self._prepare_topology()
        self.assignor = TaskAssignor(self._task_sources)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=app.id, client_id=f"{app.id}-consumer",
            enable_auto_commit=False, auto_offset_reset="earliest", partition_assignment_strategy=[self.assignor],
            session_timeout_ms=int(app.session_timeout * 1000), heartbeat_interval_ms=app.heartbeat_interval_ms,
            max_poll_interval_ms=app.max_poll_interval_ms, max_partition_fetch_bytes=app.max_partition_fetch_bytes,
            **app.consumer_config)
        await self.consumer.start()
        self._subscribe()
        for fn, interval in app.timers:
            self._background.append(asyncio.create_task(self._run_timer(fn, interval), name=f"timer-{fn.__name__}"))
        for fn in app.tasks:
            self._background.append(asyncio.create_task(self._run_task(fn), name=f"task-{fn.__name__}"))
        self.started.set()

    async def _prepare_topology(self) -> None:
        app = self.app
        extra = [app.dead_letter()] if app.on_error == "dead_letter" else []
        self.topology = await ensure_topics(self.bootstrap, app, extra, self.partition_counts)
        self._routes.clear()
        self._topic_task.clear()
        for sub in self.topology.subtopologies:
            procs = build_processors(sub, self.ctx, self.collector.append, self._agent_hook)
            for topic in sub.source_topics:
                self._routes[topic.name] = (topic.key_serde.deserialize, topic.value_serde.deserialize,
                                            procs[topic.name])
                self._topic_task[topic.name] = sub.id
        self._topology_dirty = False

    def _task_sources(self) -> dict[int, list[str]]:
        return {s.id: [t.name for t in s.source_topics] for s in self.topology.subtopologies}

    def _subscribe(self) -> None:
        self.consumer.subscribe(sorted(self._routes), listener=_Listener(self))

    def topology_changed(self) -> None:
        """An agent declared a repartition topic while running: create it and rejoin with the new subscription."""
        self._topology_dirty = True

    def stop(self) -> None:
        """Ask the loop to finish: it commits what was processed and leaves the group."""
        self._stopping.set()

    def fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc
        self._stopping.set()

    async def run(self) -> None:
        """Start, process until stopped, shut down; raises the failure that stopped the worker, if any."""
        try:
            await self.start()
            await self._loop()
        finally:
            await self.shutdown()
        if self._failure is not None:
            raise self._failure

    async def shutdown(self) -> None:
        """Graceful stop: let agents finish what they hold, flush, commit, leave the group, close the clients."""
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._background.clear()
        if self.consumer is not None and self._failure is None:
            deadline = time.monotonic() + self.app.shutdown_timeout
            while self.tracker.outstanding() and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
        for agent in self.app.agents.values():
            await agent.stop()
        if self.consumer is not None:
            try:
                await self.commit()
            except Exception as exc:  # the group may be gone (broker down): nothing more to save
                log.warning("final commit failed: %s", exc)
            await self.consumer.stop()
            self.consumer = None
        if self.producer is not None:
            await self.producer.stop()
            self.producer = None

    # ---- the processing loop ----

    async def _loop(self) -> None:
        app = self.app
        consumer = self.consumer
        collector = self.collector
        interval = app.commit_interval
        timeout_ms = int(min(interval, 0.2) * 1000)
        last_commit = time.monotonic()
        while not self._stopping.is_set():
            if self._topology_dirty:
                await self._prepare_topology()
                self._subscribe()
            self._apply_backpressure()
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=app.max_poll_records)
            if batch:
                try:
                    self._process(batch)
                except ProcessingError as exc:
                    self.fail(exc)
                    break
                await collector.send()
            if time.monotonic() - last_commit >= interval:
                await self.commit()
                last_commit = time.monotonic()

    def _process(self, batch: dict) -> None:
        topic_task = self._topic_task
        if len(batch) > 1:
            # Partitions of one task are interleaved by timestamp (stream time); tasks are independent.
            by_task: dict[tuple, list] = {}
            for tp, msgs in batch.items():
                by_task.setdefault((topic_task.get(tp.topic), tp.partition), []).append((tp, msgs))
            groups = list(by_task.values())
        else:
            groups = [list(batch.items())]
        for group in groups:
            if len(group) == 1:
                tp, msgs = group[0]
                self._process_records(msgs, [(tp, msgs[-1].offset + 1)])
            else:
                merged = heapq.merge(*(msgs for _, msgs in group), key=lambda m: m.timestamp)
                self._process_records(list(merged), [(tp, msgs[-1].offset + 1) for tp, msgs in group])

    def _process_records(self, msgs: list, ends: list) -> None:
        routes = self._routes
        ctx = self.ctx
        topic = None
        for m in msgs:
            if m.topic != topic:
                topic = m.topic
                kd, vd, process = routes[topic]
            ctx.record = m
            try:
                process(kd(m.key), vd(m.value))
            except Exception as exc:
                self._record_failed(exc, m, ends)
        self.processed += len(msgs)
        pending = self._agent_pending
        if not any(pending.values()):
            for tp, end in ends:
                self.tracker.add(tp, end)
            return
        feeds = [(agent, route, events) for (agent, route), events in pending.items() if events]
        for key in pending:
            pending[key] = []
        chunks = sum(agent.chunks_for(len(events)) for agent, _, events in feeds)
        units = tuple(self.tracker.add(tp, end, chunks) for tp, end in ends)
        for agent, route, events in feeds:
            agent.feed(events, units, route)

    def _agent_hook(self, node: Node):
        agent, route = node.attrs["agent"], node.attrs.get("route")
        events = self._agent_pending.setdefault((agent, route), [])
        ctx = self.ctx
        pending = self._agent_pending

        def deliver(key: Any, value: Any) -> None:
            r = ctx.record
            pending[(agent, route)].append(Event(key, value, r.headers, r.timestamp, r.topic, r.partition, r.offset))
        del events
        return deliver

    # ---- errors ----

    def _record_failed(self, exc: Exception, m, ends: list) -> None:
        policy = self.app.on_error
        where = f"{m.topic}[{m.partition}]@{m.offset}"
        if policy == "fail":
            # Commit the records of this partition before the failed one; the rest will be read again.
            for i, (tp, _) in enumerate(ends):
                if tp.topic == m.topic and tp.partition == m.partition and m.offset > 0:
                    self.tracker.add(tp, m.offset)
            err = ProcessingError(f"processing failed at {where} (topic {m.topic!r}, partition {m.partition}, "
                                  f"offset {m.offset}): {type(exc).__name__}: {exc}", m.topic, m.partition, m.offset)
            raise err from exc
        log.warning("skipping record %s: %s: %s", where, type(exc).__name__, exc)
        if policy == "dead_letter":
            self._dead_letter(exc, m.topic, m.partition, m.offset, m.key, m.value, m.headers, m.timestamp)

    def _dead_letter(self, exc: BaseException, topic: str, partition: int, offset: int, key: bytes | None,
                     value: bytes | None, headers: Any, timestamp: int | None) -> None:
        meta = [("streams.error", f"{type(exc).__name__}: {exc}".encode()), ("streams.topic", topic.encode()),
                ("streams.partition", str(partition).encode()), ("streams.offset", str(offset).encode())]
        self.collector.append(self.app.dead_letter().name, key, value, timestamp, list(headers or ()) + meta)

    def agent_failed(self, agent, exc: BaseException, ev: Event | None) -> bool:
        """Apply the error policy to an agent's failure; True means run the agent function again."""
        err = agent.failure(exc, ev)
        if self.app.on_error == "fail":
            log.error("%s", err)
            self.fail(err)
            return False
        log.warning("skipping: %s", err)
        if self.app.on_error == "dead_letter" and ev is not None and ev.offset >= 0:
            src = agent.source
            try:
                key = src.key_serde.serialize(ev.key)
                value = src.value_serde.serialize(ev.value)
            except Exception:
                key, value = None, repr(ev.value).encode()
            self._dead_letter(exc, ev.topic, ev.partition, ev.offset, key, value, ev.headers, ev.timestamp)
        return True

    # ---- commits and rebalances ----

    async def commit(self) -> None:
        """Flush the producer, then commit the offsets of fully processed records."""
        async with self._commit_lock:
            offsets = self.tracker.committable()
            await self.collector.flush()
            offsets = {tp: off for tp, off in offsets.items() if tp in self.assigned}
            if not offsets:
                return
            try:
                await self.consumer.commit({tp: OffsetAndMetadata(off, "") for tp, off in offsets.items()})
            except (CommitFailedError, IllegalStateError, RebalanceInProgressError) as exc:
                log.warning("commit of %d partitions failed during a rebalance (they will be read again): %s",
                            len(offsets), exc)

    async def _on_revoked(self, revoked: set) -> None:
        deadline = time.monotonic() + min(self.app.shutdown_timeout, 5.0)
        while self.tracker.outstanding(revoked) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        try:
            await self.commit()
        except KafkaError as exc:
            log.warning("commit before rebalance failed: %s", exc)
        self.tracker.forget(revoked)
        self.assigned -= revoked
        self._paused -= revoked

    def _on_assigned(self, assigned: set) -> None:
        self.assigned = set(assigned)
        log.info("%s: assigned %d partitions, tasks %s", self.app.id, len(assigned), sorted(self.assignor.owned))

    def _apply_backpressure(self) -> None:
        """Pause the partitions of agents that have more than `max_agent_backlog` chunks waiting."""
        if not self.app.agents:
            return
        limit = self.app.max_agent_backlog
        slow = {a.name for a in self.app.agents.values() if a.backlog() > limit}
        want = {tp for tp in self.assigned if self._agent_of_topic(tp.topic) in slow}
        resume = self._paused - want
        pause = want - self._paused
        if resume:
            self.consumer.resume(*resume)
        if pause:
            self.consumer.pause(*pause)
        self._paused = want

    def _agent_of_topic(self, topic: str) -> str | None:
        for agent in self.app.agents.values():
            if getattr(agent.source, "name", None) == topic or any(r.topic.name == topic
                                                                     for r in agent.routes.values()):
                return agent.name
        return None

    # ---- timers and tasks ----

    async def _run_timer(self, fn, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            try:
                await fn()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("timer %s failed", fn.__name__)

    async def _run_task(self, fn) -> None:
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("task %s failed", fn.__name__)
            if self.app.on_error == "fail":
                self.fail(exc)

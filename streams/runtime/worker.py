"""The worker: one consumer in group `<app id>`, the tasks it was assigned, the processing loop and commits.

Loop: `getmany()` -> per task, records in offset order per partition (by timestamp across a task's partitions) ->
the `TopologyProcessor` runs the DSL closures synchronously and queues output in the collector, agent records are
handed over in chunks -> `collector.send()` -> every `commit_interval`: snapshot the committable offsets, flush the
producer, commit. At-least-once: an offset is committed only after the output of every record before it was
acknowledged. Everything here is I/O and bookkeeping; what a record does is the processor's business.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError

from ..records import AppLike, Event
from ..tables import current_event, origin_stale
from ..errors import ProcessingError
from ..topology.compiler import Topology
from .assignor import TaskAssignor
from .commit import AtLeastOnce, ExactlyOnce, committer_for
from .global_tables import GlobalStores
from .interleave import Interleaver
from .offsets import OffsetTracker
from .processing import TopologyProcessor
from .restore import restore_tasks
from .standby import StandbyTasks
from .tasks import task_name
from .topics import ensure_topics
from ..state import StateDirectory

log = logging.getLogger(__name__)
progress = logging.getLogger("streams.progress")

LAG_REPORT_EVERY = 5.0   # seconds between "catching up" lines

__all__ = ["Worker"]


class _Listener(ConsumerRebalanceListener):
    def __init__(self, worker: "Worker") -> None:
        self.worker = worker

    async def on_partitions_revoked(self, revoked) -> None:
        await self.worker.on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned) -> None:
        await self.worker.on_assigned(set(assigned))


class Worker:
    """Runs an app's topology and agents against `bootstrap` until `stop()` (or a failure under policy `fail`)."""

    def __init__(self, app: "AppLike", bootstrap: str) -> None:
        self.app = app
        self.bootstrap = bootstrap
        self.tracker = OffsetTracker()
        self.processor: TopologyProcessor | None = None
        self.topology: Topology | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.committer: AtLeastOnce | ExactlyOnce | None = None
        self.partition_counts: dict[str, int] = {}
        self.assigned: set[TopicPartition] = set()
        self._paused: set[TopicPartition] = set()
        self._stopping = asyncio.Event()
        self._failure: BaseException | None = None
        self._commit_lock = asyncio.Lock()
        self._background: list[asyncio.Task] = []
        self._topology_dirty = False
        self.state_dir: StateDirectory | None = None
        self.restores: list = []        # RestoreResults of this worker's restores, newest last
        self.global_stores: GlobalStores | None = None
        self._lag_reported = time.monotonic()
        self._lag_processed = 0
        self._positions: dict = {}      # partition -> the offset after the last record processed
        self._interleaver: Interleaver | None = None   # timestamp order for tasks reading several topics
        self._held_paused: set = set()   # partitions paused because the interleaver holds many of their records
        self._behind = False
        self.started = asyncio.Event()

    # ---- lifecycle ----

    async def start(self) -> None:
        """Create what the app needs, start the clients and agents, join the group."""
        app = self.app
        self.state_dir = StateDirectory(app.workdir / "state").acquire()
        self.committer = committer_for(app.processing_guarantee, self)
        await self.committer.start()
        self.processor = TopologyProcessor(app, None, self.fail, state_dir=self.state_dir)
        self.processor.append = self.committer.append_for_processor()
        for agent in app.agents.values():
            await agent.start(self)
        # Let the actors reach their first await: an agent that calls stream.group_by() declares its topic there.
        for _ in range(3):
            await asyncio.sleep(0)
        await self._prepare_topology()
        # Global tables are whole (restored to the end offsets as of now) before any task processes a record.
        self.global_stores = GlobalStores(getattr(app, "global_tables", {}).values(), self.state_dir, self.fail,
                                          app.on_error)
        self.global_stores.check(self.processor.source_topics)
        await self.global_stores.start(self.bootstrap, self.partition_counts,
                                       isolation_level=self.committer.isolation_level,
                                       consumer_config=app.consumer_config)
        self.standbys = StandbyTasks(self.bootstrap, self.state_dir, app.consumer_config)
        self.standbys.load(self.topology)
        self.assignor = TaskAssignor(self._task_sources, app.id, on_conflict=self.fail,  # another app, same id
                                     stateful=self._stateful_subtopologies, standby_replicas=app.num_standby_replicas,
                                     local_state=self._local_state)
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=app.id, client_id=f"{app.id}-consumer",
            enable_auto_commit=False, auto_offset_reset="earliest", partition_assignment_strategy=[self.assignor],
            isolation_level=self.committer.isolation_level,
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
        self.processor.load(self.topology)
        self._interleaver = self._make_interleaver()
        if getattr(self, "standbys", None) is not None:
            self.standbys.load(self.topology)
        self._topology_dirty = False

    def _make_interleaver(self) -> Interleaver | None:
        """Timestamp order across the partitions of tasks that read several topics (joins, merges), if any."""
        multi = {t.name: sub.id for sub in self.topology.subtopologies if len(sub.source_topics) > 1
                 for t in sub.source_topics}
        if not multi:
            return None
        topics_of = {sub.id: [t.name for t in sub.source_topics] for sub in self.topology.subtopologies}

        def task_of(topic: str, partition: int):
            sub = multi.get(topic)
            return None if sub is None else (sub, partition)

        def partitions_of(task) -> list:
            return [tp for tp in (TopicPartition(t, task[1]) for t in topics_of[task[0]]) if tp in self.assigned]

        return Interleaver(task_of, partitions_of, self._may_have_data)

    def _may_have_data(self, tp) -> bool:
        """Whether the broker holds records of `tp` this worker has not fetched yet (paused partitions: no)."""
        consumer = self.consumer
        if consumer is None or tp in self._paused:
            return False
        try:
            state = consumer._subscription.subscription.assignment.state_value(tp)
        except AttributeError:
            return False
        if state is None or state.paused:
            return False
        if not state.has_valid_position:
            return True
        end = consumer.last_stable_offset(tp) if self.committer.isolation_level == "read_committed" \
            else consumer.highwater(tp)
        return end is None or state.position < end

    def _stateful_subtopologies(self) -> set[int]:
        return {s.id for s in self.topology.subtopologies if s.stores}

    def _local_state(self) -> list[tuple[int, int]]:
        """Tasks whose stores this worker has on disk (the assignor prefers them for a task that lost its owner)."""
        out = []
        for name in self.state_dir.tasks() if self.state_dir is not None else ():
            sub, _, part = name.partition("_")
            if sub.isdigit() and part.isdigit():
                out.append((int(sub), int(part)))
        return out

    def _task_sources(self) -> dict[int, list[str]]:
        return {s.id: [t.name for t in s.source_topics] for s in self.topology.subtopologies}

    def _subscribe(self) -> None:
        self.consumer.subscribe(self.processor.source_topics, listener=_Listener(self))

    def topology_changed(self) -> None:
        """An agent declared a repartition topic while running: create it and rejoin with the new subscription."""
        self._topology_dirty = True

    def stop(self) -> None:
        """Ask the loop to finish: it commits what was processed and leaves the group (calling it again is fine)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        """True once `stop()` was called or a failure stopped the worker."""
        return self._stopping.is_set()

    @property
    def processed(self) -> int:
        """How many input records this worker processed."""
        return self.processor.processed if self.processor is not None else 0

    async def send_serialized(self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int | None,
                              headers: Any, partition: int | None) -> bool:
        """Queue a serialized record with this worker's output; False when the worker does not know the topic."""
        if self.committer is None or self.processor is None or topic not in self.partition_counts:
            return False
        # Inside an agent: the record goes with the task of the event being processed (its transaction).
        ev = current_event.get()
        task = None
        if ev is not None and origin_stale():
            # Its task was rolled back or moved away since the record was handed to the agent: the record is
            # processed again (here from the last commit, or by the task's next owner), so this output is not owed.
            log.debug("dropped an output of %s[%s]@%s: its task was rolled back or closed", ev.topic, ev.partition,
                      ev.offset)
            return True
        if ev is not None and ev.partition >= 0:
            task_id = self.processor.task_of(ev.topic, ev.partition)
            task = self.processor.tasks.tasks.get(task_id) if task_id is not None else None
            if task is None and isinstance(self.committer, ExactlyOnce):
                # The record's task was closed (revoked, fenced or rolled back): its work since the last commit
                # is redone by whoever owns the task, so this output belongs to nothing that will commit.
                log.debug("dropped an output of %s[%s]@%s: its task is no longer open here", ev.topic,
                          ev.partition, ev.offset)
                return True
        collector = self.committer.collector_for_send(task)
        if collector is None:
            log.debug("dropped an output of %s[%s]@%s: its task has no open transaction", ev.topic, ev.partition,
                      ev.offset)
            return True
        collector.append(topic, key, value, timestamp_ms, headers, partition)
        if collector.pending > 10_000:
            await self.send()
        return True

    def fail(self, exc: BaseException) -> None:
        """Stop the worker because of `exc`, which `run()` raises once it has shut down."""
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
        if self.committer is not None:
            await self.committer.stop()
        if getattr(self, "standbys", None) is not None:
            await self.standbys.stop()
        if self.global_stores is not None:
            await self.global_stores.stop()
        if self.processor is not None:
            self.processor.tasks.close_all()
        if self.state_dir is not None:
            self.state_dir.release()
            self.state_dir = None

    # ---- the processing loop ----

    async def _loop(self) -> None:
        app = self.app
        consumer = self.consumer
        send = self.send
        interval = app.commit_interval
        timeout_ms = int(min(interval, 0.2) * 1000)
        last_commit = last_punctuate = time.monotonic()
        while not self._stopping.is_set():
            if self._topology_dirty:
                await self._prepare_topology()
                self._subscribe()
            self._apply_backpressure()
            batch = await consumer.getmany(timeout_ms=timeout_ms, max_records=app.max_poll_records)
            if batch or (self._interleaver is not None and self._interleaver.held()):
                # Under the commit lock: a commit that a rebalance runs (on_revoked, in the consumer's own task)
                # must not see records processed, nor agents fed, while it commits. Otherwise stores would apply
                # after that transaction writes it did not contain (its outputs and offsets still pending).
                try:
                    async with self._commit_lock:
                        if batch:
                            self._process(batch)
                        else:
                            self._process_held()
                except ProcessingError as exc:
                    self.fail(exc)
                    break
                await send()
            now = time.monotonic()
            if now - last_punctuate >= 0.1:
                last_punctuate = now
                try:
                    async with self._commit_lock:
                        self.processor.punctuate(self.processor.ctx.clock())
                except ProcessingError as exc:
                    self.fail(exc)
                    break
                await send()
            if now - last_commit >= interval:
                await self.commit()
                last_commit = time.monotonic()
            if now - self._lag_reported >= LAG_REPORT_EVERY:
                self._report_lag(now)

    def _process(self, batch: dict) -> None:
        early = [tp for tp in batch if tp not in self.assigned]
        if early:
            # Fetched before on_assigned finished restoring its task's stores (it adds the partition to `assigned`
            # last): hand the records back, to be fetched again once the stores are whole.
            batch = dict(batch)
            for tp in early:
                first = batch.pop(tp)[0].offset
                try:
                    self.consumer.seek(tp, first)
                except IllegalStateError:
                    pass   # no longer assigned: its next owner reads it from the committed offset
        if self._interleaver is not None:
            batch = self._interleaver.add(batch)
        for msgs, ends in self.processor.task_runs(batch):
            self._process_records(msgs, ends)
        if self._interleaver is not None:
            self._process_held()

    def _process_held(self) -> None:
        """Process what the interleaver can release (records of multi-partition tasks, in timestamp order); pause
        the partitions that are far ahead, so that fetches go to those behind."""
        for msgs, ends in self._interleaver.runs():
            self._process_records(msgs, ends)
        full = self._interleaver.full(self.app.max_poll_records) & self.assigned
        pause, resume = full - self._held_paused, self._held_paused - full
        if pause:
            self.consumer.pause(*pause)
        if resume:
            self.consumer.resume(*(resume - self._paused))
        self._held_paused = full

    def _process_records(self, msgs: list, ends: list) -> None:
        positions = self._positions
        for tp, end in ends:
            positions[tp] = end
        try:
            self.processor.process(msgs)
        except ProcessingError as err:
            # Commit the records of the failed partition before the failed one; the rest will be read again.
            for tp, _ in ends:
                if tp.topic == err.topic and tp.partition == err.partition and err.offset > 0:
                    self.tracker.add(tp, err.offset)
            raise
        feeds = self.processor.take_agent_events()
        if not feeds:
            for tp, end in ends:
                self.tracker.add(tp, end)
            return
        chunks = sum(agent.chunks_for(len(events)) for agent, _, events in feeds)
        units = tuple(self.tracker.add(tp, end, chunks) for tp, end in ends)
        task = self.processor.ctx.task
        origin = (task, task.generation) if task is not None else None
        for agent, route, events in feeds:
            agent.feed(events, units, route, origin)

    def agent_failed(self, agent, exc: BaseException, ev: Event | None) -> bool:
        """Apply the error policy to an agent's failure; True means run the agent function again."""
        return self.processor.agent_failed(agent, exc, ev)

    # ---- commits and rebalances ----

    async def send(self) -> None:
        """Hand what processing queued to the producer(s) (not waiting for acknowledgements)."""
        async with self._commit_lock:
            await self.committer.send()

    async def flush(self) -> None:
        """Wait until everything queued for output so far is acknowledged by the broker (not a commit: under
        exactly-once it stays invisible to read_committed readers until its transaction commits). Safe to call
        from an agent."""
        for collector in self.committer.collectors_in_use():
            await collector.flush()

    async def commit(self) -> None:
        """Commit what was processed, in the order of the processing guarantee (see `runtime.commit`)."""
        async with self._commit_lock:
            await self.committer.commit()

    @property
    def processor_ctx(self):
        return self.processor.ctx

    async def rewind(self, task_id: tuple) -> None:
        """Move a rolled-back task's input partitions back to their last committed offsets."""
        for tp in [tp for tp in self.assigned if self.processor.task_of(tp.topic, tp.partition) == task_id]:
            committed = await self.consumer.committed(tp)
            if committed is None:
                await self.consumer.seek_to_beginning(tp)
            else:
                self.consumer.seek(tp, committed)
            self.tracker.forget([tp])
            self._positions.pop(tp, None)
            if self._interleaver is not None:
                self._interleaver.discard([tp])

    def drop_task(self, task_id: tuple) -> None:
        """Forget a task this worker no longer owns (fenced): its uncommitted state and records are dropped and
        its partitions paused until the group assigns again."""
        tps = [tp for tp in self.assigned if self.processor.task_of(tp.topic, tp.partition) == task_id]
        task = self.processor.tasks.tasks.get(task_id)
        if task is not None:
            task.roll_back()
            self.processor.tasks.close(task_id)
        if tps:
            self.consumer.pause(*tps)
        self.tracker.forget(tps)
        if self._interleaver is not None:
            self._interleaver.discard(tps)
        self.assigned -= set(tps)

    def request_rejoin(self) -> None:
        """Ask the group for a new assignment (after this worker found it lost tasks)."""
        coordinator = getattr(self.consumer, "_coordinator", None)
        if coordinator is not None:
            coordinator.request_rejoin()

    async def on_revoked(self, revoked: set) -> None:
        """Before partitions move away: wait (briefly) for agents holding their records, commit, forget them."""
        deadline = time.monotonic() + min(self.app.shutdown_timeout, 5.0)
        while self.tracker.outstanding(revoked) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        try:
            await self.commit()
        except KafkaError as exc:
            log.warning("commit before rebalance failed: %s", exc)
        self.tracker.forget(revoked)
        if self._interleaver is not None:
            self._interleaver.discard(revoked)
        self.assigned -= revoked
        self._paused -= revoked
        if isinstance(self.committer, ExactlyOnce):
            # Exactly-once: a revoked task is closed even if it comes straight back. This worker may have been a
            # zombie (stopped past its session timeout) whose task another worker owned meanwhile; reopened, the
            # task gets a new producer (fencing any other) and stores restored from what was committed.
            revoked_tasks = {self.processor.task_of(tp.topic, tp.partition) for tp in revoked} - {None}
            async with self._commit_lock:
                # The tasks first (their generation moves on, so an agent still holding their records drops
                # them), then their producers, whose abort awaits the broker.
                for task_id in revoked_tasks:
                    self.processor.tasks.close(task_id)
                await self.committer.close_tasks(sorted(revoked_tasks))

    async def on_assigned(self, assigned: set) -> None:
        """The group gave this worker `assigned` (every partition it owns now): close the stores of tasks that
        moved away, open and restore those of the new ones before any of their records is processed."""
        # Under the commit lock: the loop's sends and commits never interleave with producers being replaced.
        async with self._commit_lock:
            await self._take_assignment(assigned)

    async def _take_assignment(self, assigned: set) -> None:
        owned = set(self.assignor.owned)
        tasks = self.processor.tasks
        for task_id in [t for t in tasks.tasks if t not in owned]:
            tasks.close(task_id)
        committer = self.committer
        if isinstance(committer, ExactlyOnce):
            await committer.close_tasks([t for t in committer.producers if t not in owned])
        stateful = self._stateful_subtopologies()
        # The loop goes on fetching while this restores: paused, the partitions return nothing (what was fetched
        # for them is dropped and fetched again on resume), and `_process` hands back anything fetched before.
        self.consumer.pause(*assigned)
        try:
            # Standbys first: one that becomes active here is checkpointed and closed before its restore opens it.
            await self.standbys.update(set(self.assignor.standby), stateful)
            # Exactly-once: the task's producer starts first, fencing its previous owner (whose open transaction
            # is aborted), so the restore below reads everything that was committed.
            await committer.open_tasks(sorted(owned))
            new = [tasks.open(t) for t in sorted(owned) if t[0] in stateful and t not in tasks.tasks]
            progress.info("%s: assigned %d partitions, tasks %s%s", self.app.id, len(assigned),
                          ", ".join(task_name(t) for t in sorted(owned)) or "none",
                          f", standby {', '.join(task_name(t) for t in sorted(self.standbys.tasks))}"
                          if self.standbys.tasks else "")
            if new:
                self.restores.extend(await restore_tasks(self.bootstrap, new, wipe=tasks.wipe,
                                                         consumer_config=self.app.consumer_config))
            # Only now: a task's records are processed (and its stores readable) once its stores are restored.
            self.assigned = set(assigned)
        finally:
            self.consumer.resume(*(set(assigned) - self._paused))

    def _report_lag(self, now: float) -> None:
        """Every few seconds while this worker is behind: how many records, how fast it catches up, and when it
        will have caught up; one line once it has."""
        elapsed = max(now - self._lag_reported, 1e-3)
        self._lag_reported = now
        behind = 0
        for tp in self.assigned:
            high = self.consumer.highwater(tp)
            position = self._positions.get(tp)
            if high is not None and position is not None:
                behind += max(0, high - position)
        processed = self.processed
        rate = (processed - self._lag_processed) / elapsed
        self._lag_processed = processed
        if behind > self.app.max_poll_records:
            eta = f"{behind / rate:.0f}s" if rate > 0 else "unknown"
            progress.info("%s: catching up: %d records behind on %d partitions, %.0f records/s, ETA %s",
                          self.app.id, behind, len(self.assigned), rate, eta)
            self._behind = True
        elif self._behind and behind == 0:
            progress.info("%s: caught up", self.app.id)
            self._behind = False

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

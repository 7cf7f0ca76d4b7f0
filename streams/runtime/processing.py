"""Per-record processing of a compiled topology, with no I/O: the one place where the DSL's semantics run.

The worker (`runtime.worker`) and the test driver (`streams.testing`) both hand records to a `TopologyProcessor`. It
deserializes with the source topic's serdes, runs the sub-topology's closures (`runtime.processors`), keeps stream
time, applies the app's error policy, hands output to `append(topic, key_bytes, value_bytes, timestamp, headers,
partition=None)` and collects the records bound for agents until the caller takes them. Fetching, producing and
committing (or an in-memory log in tests) stay with the caller, so the driver cannot drift from the runtime.
"""

from __future__ import annotations

import heapq
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..records import AppLike, Event
from ..errors import ProcessingError
from ..topology.compiler import Topology
from ..topology.graph import Node
from .processors import RecordContext, build_processors
from .tasks import TaskStates

if TYPE_CHECKING:
    from ..agents import Agent

log = logging.getLogger(__name__)

__all__ = ["InputRecord", "TopologyProcessor"]


@dataclass(slots=True, eq=False, repr=False)
class InputRecord:
    """A record read from a topic partition: what `process()` needs (aiokafka's ConsumerRecord has the same fields)."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: bytes | None
    value: bytes | None
    headers: Any = ()

    def __repr__(self) -> str:
        return f"InputRecord({self.topic}[{self.partition}]@{self.offset}, key={self.key!r}, value={self.value!r:.60})"


# What `ctx.record` is while a wall-clock punctuation runs (no input record is being processed).
_PUNCTUATION = InputRecord("(punctuation)", -1, -1, -1, None, None, ())


class TopologyProcessor:
    """Runs input records through an app's compiled topology.

    `append` receives every output record (sinks, repartition topics, dead letters); `fail(error)` is called when an
    agent fails under the `fail` policy (a DSL failure under `fail` raises `ProcessingError` from `process()`).
    """

    def __init__(self, app: "AppLike", append: Callable, fail: Callable[[ProcessingError], None],
                 state_dir: Any = None) -> None:
        self.app = app
        self.append = append
        self.fail = fail
        self.ctx = RecordContext()
        self.tasks = TaskStates(self.ctx, state_dir)
        self.topology: Topology | None = None
        self.processed = 0
        self.stream_time: dict[tuple[int, int], int] = {}   # task (sub-topology id, partition) -> max timestamp
        self._routes: dict[str, tuple] = {}                 # topic -> (key deserializer, value deserializer, process)
        self._topic_task: dict[str, int] = {}               # topic -> sub-topology id
        self._agent_pending: dict[tuple, list] = {}         # (agent, route) -> events of the records being processed
        self._reported: set[tuple] = set()                  # where user-code errors came from (traceback once)

    def load(self, topology: Topology) -> None:
        """Build the closures of every sub-topology (again, when the topology changed)."""
        self.topology = topology
        self.tasks.load(topology)
        self._routes.clear()
        self._topic_task.clear()
        for sub in topology.subtopologies:
            procs = build_processors(sub, self.ctx, self.append, self._agent_hook)
            for topic in sub.source_topics:
                self._routes[topic.name] = (topic.key_serde.deserialize, topic.value_serde.deserialize,
                                            procs[topic.name], topic.timestamp_extractor)
                self._topic_task[topic.name] = sub.id

    @property
    def source_topics(self) -> list[str]:
        """Every topic the topology reads (what a consumer subscribes to)."""
        return sorted(self._routes)

    def task_of(self, topic: str, partition: int) -> tuple[int, int] | None:
        """The task (sub-topology id, partition) that processes a partition of `topic`, None if no task reads it."""
        sub = self._topic_task.get(topic)
        return None if sub is None else (sub, partition)

    def task_runs(self, batch: dict) -> list[tuple[list, list]]:
        """Cut a fetched batch `{tp: [records]}` into per-task runs `(records, [(tp, end offset), ...])`.

        A task reading several partitions (co-partitioned topics) gets their records interleaved by timestamp, the
        lowest first (stream time); the partitions of different tasks are independent.
        """
        if len(batch) > 1:
            topic_task = self._topic_task
            by_task: dict[tuple, list] = {}
            for tp, msgs in batch.items():
                by_task.setdefault((topic_task.get(tp.topic), tp.partition), []).append((tp, msgs))
            groups = list(by_task.values())
        else:
            groups = [list(batch.items())]
        runs = []
        for group in groups:
            ends = [(tp, msgs[-1].offset + 1) for tp, msgs in group]
            if len(group) == 1:
                runs.append((group[0][1], ends))
            else:
                runs.append((list(heapq.merge(*(msgs for _, msgs in group), key=lambda m: m.timestamp)), ends))
        return runs

    def process(self, msgs: list) -> None:
        """Process one task's records in order; raises `ProcessingError` for a failed record under policy `fail`."""
        routes = self._routes
        ctx = self.ctx
        topic = None
        high = -1
        if msgs:
            ctx.task = self.tasks.get((self._topic_task.get(msgs[0].topic), msgs[0].partition))
        for m in msgs:
            if m.topic != topic:
                topic = m.topic
                kd, vd, process, extract = routes[topic]
            ctx.record = m
            try:
                key, value = kd(m.key), vd(m.value)
                ts = ctx.timestamp = m.timestamp if extract is None else extract(key, value)
                if ts > high:
                    high = ts
                process(key, value)
            except Exception as exc:
                self.record_failed(exc, m)
        self.processed += len(msgs)
        if msgs and high >= 0:
            # Stream time only moves forward (DESIGN decision 8).
            task = (self._topic_task.get(msgs[0].topic), msgs[0].partition)
            if high > self.stream_time.get(task, -1):
                self.stream_time[task] = high

    def punctuate(self, now_ms: int) -> None:
        """Run the wall-clock punctuations of every task (Processor API schedules, idle windows closing)."""
        ctx = self.ctx
        for task in list(self.tasks.tasks.values()):
            if not task.punctuators:
                continue
            ctx.task = task
            ctx.record = _PUNCTUATION
            ctx.timestamp = now_ms
            for fn in list(task.punctuators):
                try:
                    fn(now_ms)
                except Exception as exc:
                    self.record_failed(exc, _PUNCTUATION)

    def metrics(self) -> dict[str, Any]:
        """What this process counted: records processed, and records dropped as late per windowed node."""
        late: dict[str, int] = {}
        for sub in self.topology.subtopologies if self.topology is not None else ():
            for node in sub.nodes:
                counter = node.attrs.get("late")
                if counter is not None:
                    late[node.name] = counter.count
        return {"records-processed": self.processed, "dropped-late-records": late,
                "dropped-late-records-total": sum(late.values())}

    def take_agent_events(self) -> list[tuple["Agent", str | None, list[Event]]]:
        """The records the last `process()` calls routed to agents: `[(agent, route, events)]`, then forgotten."""
        pending = self._agent_pending
        feeds = [(agent, route, events) for (agent, route), events in pending.items() if events]
        for agent, route, _ in feeds:
            pending[(agent, route)] = []
        return feeds

    def _agent_hook(self, node: Node) -> Callable[[Any, Any], None]:
        agent, route = node.attrs["agent"], node.attrs.get("route")
        pending = self._agent_pending
        pending.setdefault((agent, route), [])
        ctx = self.ctx

        def deliver(key: Any, value: Any) -> None:
            r = ctx.record
            pending[(agent, route)].append(Event(key, value, r.headers, ctx.timestamp, r.topic, r.partition,
                                                 r.offset))
        return deliver

    # ---- the error policy ----

    def record_failed(self, exc: Exception, m: Any) -> None:
        """Apply the policy to a record whose deserialization or user function raised `exc`."""
        policy = self.app.on_error
        where = f"{m.topic}[{m.partition}]@{m.offset}"
        if policy == "fail":
            self.report(exc, f"processing failed at {where}; the worker stops (on_error='fail')")
            raise ProcessingError(f"processing failed at {where} (topic {m.topic!r}, partition {m.partition}, "
                                  f"offset {m.offset}): {type(exc).__name__}: {exc}", m.topic, m.partition,
                                  m.offset) from exc
        if policy == "dead_letter":
            self.report(exc, f"record {where} failed; sent to {self.app.dead_letter_topic}")
            self.dead_letter(exc, m.topic, m.partition, m.offset, m.key, m.value, m.headers, m.timestamp)
        else:
            self.report(exc, f"record {where} failed; skipped (on_error='skip')")

    def agent_failed(self, agent: "Agent", exc: BaseException, ev: Event | None) -> bool:
        """Apply the policy to an agent's failure; True means run the agent function again."""
        err = agent.failure(exc, ev)
        where = f"{ev.topic}[{ev.partition}]@{ev.offset}" if ev is not None else "no record"
        if self.app.on_error == "fail":
            self.report(exc, f"agent {agent.name!r} failed at {where}; the worker stops (on_error='fail')")
            self.fail(err)
            return False
        if self.app.on_error == "dead_letter" and ev is not None and ev.offset >= 0:
            self.report(exc, f"agent {agent.name!r} failed at {where}; sent to {self.app.dead_letter_topic}")
            src = agent.source
            try:
                key = src.key_serde.serialize(ev.key)
                value = src.value_serde.serialize(ev.value)
            except Exception:
                key, value = None, repr(ev.value).encode()
            self.dead_letter(exc, ev.topic, ev.partition, ev.offset, key, value, ev.headers, ev.timestamp)
        else:
            self.report(exc, f"agent {agent.name!r} failed at {where}; skipped")
        return True

    def report(self, exc: BaseException, what: str) -> None:
        """Log a user-code failure: with its traceback the first time this error comes from this line of code,
        in one line after that (a poison stream must not flood the log with the same traceback)."""
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        origin = (type(exc), tb.tb_frame.f_code.co_filename, tb.tb_lineno) if tb is not None else (type(exc),)
        if origin in self._reported:
            log.error("%s: %s: %s (traceback logged before)", what, type(exc).__name__, exc)
            return
        if len(self._reported) < 1000:
            self._reported.add(origin)
        log.error("%s: %s: %s", what, type(exc).__name__, exc, exc_info=(type(exc), exc, exc.__traceback__))

    def dead_letter(self, exc: BaseException, topic: str, partition: int, offset: int, key: bytes | None,
                    value: bytes | None, headers: Any, timestamp: int | None) -> None:
        """Send the raw record to the dead-letter topic with headers naming the error and where the record was."""
        meta = [("streams.error", f"{type(exc).__name__}: {exc}".encode()), ("streams.topic", topic.encode()),
                ("streams.partition", str(partition).encode()), ("streams.offset", str(offset).encode())]
        self.append(self.app.dead_letter().name, key, value, timestamp, list(headers or ()) + meta)

"""TestDriver: run an app's topology in-process, synchronously, with no broker (Kafka Streams' TopologyTestDriver).

    from streams.testing import TestDriver

    with TestDriver(app) as driver:
        driver.pipe("orders", "ada", Order("1", "ada", 150.0), timestamp=1_000)
        assert driver.read("big-orders") == [("ada", Order("1", "ADA", 150.0))]

The driver plans the app's topics as a worker would (declared partitions, else `app.default_partitions`;
repartition topics as the compiler resolves them) and keeps them as in-memory logs. A piped record is serialized
with its topic's serdes, partitioned by Kafka's default partitioner and handed to the same `TopologyProcessor` the
runtime's worker uses, so serdes, the error policy, stream time and every DSL operation behave exactly as they do
on a broker. Records written to a topic the topology reads (repartition topics, `through()`, agent sinks) are
processed in turn before `pipe()` returns; a record written to a global table's topic updates the table at once
(`app.global_table`), so lookups and joins see it from the next record on. Agents run for real on the driver's own
event loop, in a thread: `pipe()` returns once they have processed what they were given (or fails after
`agent_timeout` seconds).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
from collections import deque, namedtuple
from dataclasses import dataclass
from typing import Any, Iterable

from .agents import Event
from .app import App
from .errors import ProcessingError
from .serde import BytesSerde, Serde
from .topics import Topic
from .runtime.collector import key_hash
from .runtime.global_tables import GlobalStores
from .runtime.offsets import Unit
from .runtime.processing import InputRecord, TopologyProcessor
from .runtime.topics import plan_topics, wanted_topics

log = logging.getLogger(__name__)

__all__ = ["OutputRecord", "TestDriver"]

_TP = namedtuple("_TP", "topic partition")


@dataclass(slots=True, repr=False)
class OutputRecord:
    """A record read back from a topic: deserialized key and value, and where and when it was written."""

    topic: str
    partition: int
    offset: int
    timestamp: int
    key: Any
    value: Any
    headers: tuple

    def __repr__(self) -> str:
        return (f"OutputRecord({self.topic}[{self.partition}]@{self.offset}, ts={self.timestamp}, key={self.key!r}, "
                f"value={self.value!r:.60})")


class TestDriver:
    """Runs `app`'s compiled topology (and its agents) synchronously on in-memory topics.

    `partitions` overrides the partition count of topics by name; `start_time_ms` is the driver's wall clock at
    start (the timestamp of records piped without one; `advance_wall_clock()` moves it and fires timers);
    `agent_timeout` is how many seconds `pipe()` waits for agents to finish the records they were handed.
    Use it as a context manager, or call `close()`: while it is open, it is the app's `worker`.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, app: App, *, partitions: dict[str, int] | None = None, start_time_ms: int = 0,
                 agent_timeout: float = 10.0) -> None:
        if not isinstance(app, App):
            raise TypeError(f"TestDriver needs a streams.App, got {app!r}")
        if app.worker is not None:
            raise RuntimeError(f"app {app.id!r} is already running in this process (a worker or another driver)")
        self.app = app
        self.wall_clock_ms = start_time_ms
        self.agent_timeout = agent_timeout
        self.partition_counts: dict[str, int] = dict(partitions or {})
        self.processor = TopologyProcessor(app, self._append, self._fail)
        self.processor.ctx.clock = lambda: self.wall_clock_ms
        # Global tables in memory; a record written to a global table's topic updates it at once.
        self.globals = GlobalStores(app.global_tables.values(), policy=app.on_error)
        self._logs: dict[str, list[InputRecord]] = {}           # topic -> records in the order they were written
        self._read: dict[str, int] = {}                         # topic -> how many of its records were read
        self._next_offset: dict[tuple[str, int], int] = {}
        self._queue: deque[InputRecord] = deque()               # written to a topic the topology reads, unprocessed
        self._round_robin = itertools.count()
        self._lock = threading.Lock()
        self._failure: BaseException | None = None
        self._closed = False
        self._stop_requested = False
        self._topology_dirty = False
        self._timers = [[fn, interval * 1000, start_time_ms + interval * 1000] for fn, interval in app.timers]
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        app.worker = self
        try:
            self.globals.open()
            if app.agents or app.timers:
                self._start_loop()
                self._call(self._start_agents())
            self._load()
        except BaseException:
            self.close()
            raise

    # ---- the app's side (what the agents and App.send call, as on a worker) ----

    async def send_serialized(self, topic: str, key: bytes | None, value: bytes | None, timestamp_ms: int | None,
                              headers: Any, partition: int | None) -> bool:
        """Write a serialized record (from `app.send` or an agent's sink); processed with the current `pipe()`."""
        self._append(topic, key, value, timestamp_ms, headers, partition)
        return True

    def agent_failed(self, agent, exc: BaseException, ev: Event | None) -> bool:
        """Apply the app's error policy to an agent's failure, as the worker does."""
        return self.processor.agent_failed(agent, exc, ev)

    def topology_changed(self) -> None:
        """An agent declared a `group_by` route while running: compile again before the next record."""
        self._topology_dirty = True

    def stop(self) -> None:
        """What `app.stop_worker()` calls: the driver only notes it (`stopping`); `close()` ends it."""
        self._stop_requested = True

    @property
    def stopping(self) -> bool:
        """True once `stop()` or `close()` was called, or an error under policy `fail` stopped the driver."""
        return self._stop_requested or self._closed or self._failure is not None

    # ---- piping input ----

    def pipe(self, topic: Topic | str, key: Any = None, value: Any = None, *, timestamp: int | None = None,
             headers: Iterable[tuple[str, bytes]] | None = None, partition: int | None = None) -> None:
        """Write one record to `topic` (with its serdes) and process it and everything it leads to.

        Raises `ProcessingError` when processing fails under the `fail` policy; the driver is stopped after that.
        """
        self.pipe_many(topic, [(key, value)], timestamp=timestamp, headers=headers, partition=partition)

    def pipe_many(self, topic: Topic | str, records: Iterable[tuple], *, timestamp: int | None = None,
                  headers: Iterable[tuple[str, bytes]] | None = None, partition: int | None = None) -> None:
        """Write `(key, value)` or `(key, value, timestamp)` records, then process them as one fetched batch.

        As in a worker's batch, records of different tasks are processed task by task, and agents receive the
        batch's records in one chunk (what `stream.take(n)` collects at once).
        """
        t = self._input_topic(topic)
        ks, vs = t.key_serde.serialize, t.value_serde.serialize
        for rec in records:
            ts = rec[2] if len(rec) > 2 else timestamp
            self._write_input(t.name, ks(rec[0]), vs(rec[1]), ts, headers, partition)
        self._drain()

    def pipe_bytes(self, topic: Topic | str, key: bytes | None, value: bytes | None, *, timestamp: int | None = None,
                   headers: Iterable[tuple[str, bytes]] | None = None, partition: int | None = None) -> None:
        """Write one already serialized record (e.g. bytes its serde cannot read) and process it."""
        t = self._input_topic(topic)
        self._write_input(t.name, key, value, timestamp, headers, partition)
        self._drain()

    def advance_wall_clock(self, seconds: float) -> None:
        """Move the driver's wall clock forward, running each `@app.timer` as often as its interval passed."""
        if seconds < 0:
            raise ValueError(f"the wall clock only moves forward, got {seconds!r} seconds")
        self._check_open()
        end = self.wall_clock_ms + seconds * 1000
        while self._timers:
            timer = min(self._timers, key=lambda t: t[2])
            fn, interval, due = timer
            if due > end:
                break
            self.wall_clock_ms = int(due)
            timer[2] = due + interval
            self._call(self._run_timer(fn))
            self._drain()
        self.wall_clock_ms = int(end)
        self.processor.punctuate(self.wall_clock_ms)
        self._drain()
        self._commit()

    # ---- reading output ----

    def read_records(self, topic: Topic | str, *, key_serde: Serde | None = None,
                     value_serde: Serde | None = None) -> list[OutputRecord]:
        """The records written to `topic` since the last read, in the order they were written, deserialized with
        the topic's serdes (or the ones given)."""
        name = topic.name if isinstance(topic, Topic) else topic
        t = self._topic(name)
        kd = (key_serde or (t.key_serde if t else BytesSerde())).deserialize
        vd = (value_serde or (t.value_serde if t else BytesSerde())).deserialize
        with self._lock:
            log_ = self._logs.get(name, [])
            new = log_[self._read.get(name, 0):]
            self._read[name] = len(log_)
        return [OutputRecord(name, r.partition, r.offset, r.timestamp, kd(r.key), vd(r.value), r.headers)
                for r in new]

    def read(self, topic: Topic | str, **serdes: Serde) -> list[tuple[Any, Any]]:
        """The `(key, value)` pairs written to `topic` since the last read, in order."""
        return [(r.key, r.value) for r in self.read_records(topic, **serdes)]

    def read_values(self, topic: Topic | str, **serdes: Serde) -> list[Any]:
        """The values written to `topic` since the last read, in order."""
        return [r.value for r in self.read_records(topic, **serdes)]

    def read_table(self, topic: Topic | str, **serdes: Serde) -> dict[Any, Any]:
        """The latest value per key among the records written since the last read (a None value deletes)."""
        table: dict[Any, Any] = {}
        for key, value in self.read(topic, **serdes):
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value
        return table

    def stream_time(self, topic: Topic | str, partition: int | None = None) -> int | None:
        """The stream time (highest record timestamp processed) of the task reading `topic`'s partition, or the
        highest over its partitions; None before any record."""
        name = topic.name if isinstance(topic, Topic) else topic
        n = self.partition_counts.get(name, 0)
        parts = range(n) if partition is None else [partition]
        times = [self.processor.stream_time.get(self.processor.task_of(name, p)) for p in parts]
        times = [t for t in times if t is not None]
        return max(times) if times else None

    # ---- closing ----

    def close(self) -> None:
        """Stop the agents and the driver's event loop, and detach from the app (calling it again is harmless)."""
        if self._closed:
            return
        self._closed = True
        if self._loop is not None:
            try:
                self._call(self._stop_agents())
            finally:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._thread.join(10)
                self._loop.close()
                self._loop = None
        self.globals.close()
        if self.app.worker is self:
            self.app.worker = None

    def __enter__(self) -> "TestDriver":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # ---- inside ----

    def _load(self) -> None:
        topology, missing = plan_topics(self.app, wanted_topics(self.app, self._extra()), self.partition_counts)
        self.partition_counts.update({name: n for name, (_, n) in missing.items()})
        self.globals.check(topology.subtopology_of_topic())
        self.processor.load(topology)
        self._topology_dirty = False

    def _extra(self) -> list[Topic]:
        return [self.app.dead_letter()] if self.app.on_error == "dead_letter" else []

    def _topic(self, name: str) -> Topic | None:
        if name in self.app.topics:
            return self.app.topics[name]
        topology = self.processor.topology
        return topology.topics().get(name) if topology is not None else None

    def _input_topic(self, topic: Topic | str) -> Topic:
        self._check_open()
        name = topic.name if isinstance(topic, Topic) else topic
        if name not in self.processor.source_topics and name not in self.globals.topics:
            raise ValueError(f"the topology of app {self.app.id!r} does not read topic {name!r}; it reads "
                             f"{', '.join(self.processor.source_topics) or 'nothing'}")
        return topic if isinstance(topic, Topic) else self._topic(name)

    def _check_open(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the driver stopped after a processing failure") from self._failure
        if self._closed:
            raise RuntimeError("the driver is closed")

    def _write_input(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int | None,
                     headers: Any, partition: int | None) -> None:
        if timestamp is not None and (not isinstance(timestamp, int) or timestamp < 0):
            raise ValueError(f"timestamp must be a non-negative int of milliseconds, got {timestamp!r}")
        self._append(topic, key, value, timestamp, headers, partition)

    def _append(self, topic: str, key: bytes | None, value: bytes | None, timestamp: int | None = None,
                headers: Any = None, partition: int | None = None) -> None:
        with self._lock:
            n = self.partition_counts.get(topic)
            if n is None:
                # Written outside the topology (an agent's send): the topic appears as a broker would create it.
                declared = self.app.topics.get(topic)
                n = self.partition_counts[topic] = (declared.partitions if declared else None) or \
                    self.app.default_partitions
            if partition is None:
                partition = key_hash(key) % n if key is not None else next(self._round_robin) % n
            elif not 0 <= partition < n:
                raise ValueError(f"topic {topic!r} has partitions 0..{n - 1}, not {partition!r}")
            offset = self._next_offset.get((topic, partition), 0)
            self._next_offset[(topic, partition)] = offset + 1
            record = InputRecord(topic, partition, offset, self.wall_clock_ms if timestamp is None else timestamp,
                                 key, value, tuple(headers or ()))
            self._logs.setdefault(topic, []).append(record)
            self._queue.append(record)
            if topic in self.globals.topics:
                try:
                    self.globals.apply(record)
                except ProcessingError as exc:   # a record the global table's serdes cannot read, policy `fail`
                    self._fail(exc)
                    raise

    def _drain(self) -> None:
        """Process queued records in rounds (like fetched batches) until nothing is left to process."""
        processor = self.processor
        while True:
            if self._topology_dirty:
                self._load()
            sources = set(processor.source_topics)
            with self._lock:
                queued = [r for r in self._queue if r.topic in sources]
                self._queue.clear()
            if not queued:
                return
            batch: dict[_TP, list[InputRecord]] = {}
            for r in queued:
                batch.setdefault(_TP(r.topic, r.partition), []).append(r)
            feeds = []
            for msgs, _ in processor.task_runs(batch):
                try:
                    processor.process(msgs)
                except ProcessingError as exc:
                    self._fail(exc)
                    raise
                # As on a worker: each task run is a chunk of its own, and the agents get them all at once.
                feeds.extend(processor.take_agent_events())
            if feeds:
                self._call(self._feed_agents(feeds))
            if self._failure is not None:
                raise self._failure
            self._commit()

    def _commit(self) -> None:
        """What a worker's commit does to state: changelog records written, buffered store writes applied."""
        tasks = self.processor.tasks
        for topic, partition, key, value, ts in list(tasks.changelog_records()):
            self._append(topic, key, value, ts, None, partition)
        tasks.flush()

    def _fail(self, exc: BaseException) -> None:
        if self._failure is None:
            self._failure = exc

    # ---- agents and timers, on the driver's event loop ----

    def _start_loop(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"testdriver-{self.app.id}",
                                        daemon=True)
        self._thread.start()

    def _call(self, coro) -> Any:
        if self._loop is None:
            coro.close()
            return None
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    async def _start_agents(self) -> None:
        for agent in self.app.agents.values():
            await agent.start(self)
        # Let the actors reach their first await: an agent that calls stream.group_by() declares its topic there.
        for _ in range(3):
            await asyncio.sleep(0)

    async def _stop_agents(self) -> None:
        for agent in self.app.agents.values():
            await agent.stop()

    async def _feed_agents(self, feeds: list) -> None:
        chunks = sum(agent.chunks_for(len(events)) for agent, _, events in feeds)
        unit = Unit(None, 0, chunks)
        for agent, route, events in feeds:
            agent.feed(events, (unit,), route)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.agent_timeout
        spins = 0
        while unit.pending > 0 and self._failure is None:
            if loop.time() > deadline:
                names = ", ".join(sorted({agent.name for agent, _, _ in feeds}))
                raise TimeoutError(f"agent(s) {names} did not finish their records within {self.agent_timeout}s")
            # Most agents finish within a few passes of the loop; then poll gently (take(within=) waits for real).
            await asyncio.sleep(0 if spins < 100 else 0.001)
            spins += 1

    async def _run_timer(self, fn) -> None:
        try:
            await fn()
        except Exception:
            log.exception("timer %s failed", fn.__name__)

"""App: the one object a user builds on: topics, streams, agents, timers, tasks; and running a worker.

    app = streams.App("shop")                                   # embedded broker under ./.streams/shop
    app = streams.App("shop", broker="kafka://k1:9092,k2:9092")  # the same app on a Kafka cluster
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import signal
from pathlib import Path
from typing import Any, Callable

from .agents import Agent
from .dsl.stream import Builder, KStream
from .dsl.table import KTable
from .tables import Table
from .errors import TopologyError
from .topics import Channel, Topic
from .topology.compiler import Topology, compile_graph
from .topology.graph import Graph

log = logging.getLogger(__name__)

__all__ = ["App"]

ERROR_POLICIES = ("fail", "skip", "dead_letter")


def parse_broker(url: str) -> str:
    """'kafka://h1:9092,h2:9092' (or plain 'h1:9092,h2:9092') -> 'h1:9092,h2:9092'."""
    if not isinstance(url, str) or not url.strip():
        raise ValueError(f"bad broker URL {url!r}: expected kafka://host:port[,host:port...]")
    rest = url.strip()
    if "://" in rest:
        scheme, rest = rest.split("://", 1)
        if scheme != "kafka":
            raise ValueError(f"bad broker URL {url!r}: the scheme must be kafka://")
    hosts = [h.strip() for h in rest.split(",") if h.strip()]
    for h in hosts:
        host, _, port = h.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"bad broker URL {url!r}: {h!r} is not host:port")
    if not hosts:
        raise ValueError(f"bad broker URL {url!r}: no host:port")
    return ",".join(hosts)


class App:
    """A stream-processing application; `id` names its consumer group and its internal topics.

    Settings: `broker` (None: an embedded broker under `workdir`), `workdir` (default ./.streams/<id>),
    `commit_interval` seconds, `on_error` ("fail", "skip" or "dead_letter" to `<id>-dead-letter`),
    `default_partitions` for topics the app creates, `session_timeout` seconds (how fast a dead worker's tasks move),
    `broker_port` for the embedded broker (None: the port it had last time, when free; 0: any free port),
    `num_standby_replicas` warm copies of each stateful task on other workers (for fast failover),
    `processing_guarantee` "exactly_once" (the default; also "exactly_once_v2") or "at_least_once" (see
    `runtime.commit`; bench/eos.py: exactly-once kept 0.98-1.01 of at-least-once throughput here, so it is the
    default; at-least-once has lower latency, about 20 ms against one commit interval).
    `commit_interval` defaults to 0.1 s under exactly-once (outputs are visible once committed) and 0.5 s otherwise. Faust's
    `topic_partitions`, `store` and `version` are accepted too (see `__init__`).
    `worker` is what runs the app in this process, else None: the runtime's worker during `run_worker()`, or a
    `streams.testing.TestDriver`.
    """

    def __init__(self, id: str, *, broker: str | None = None, workdir: str | os.PathLike | None = None,
                 commit_interval: float | None = None, on_error: str = "fail", dead_letter_topic: str | None = None,
                 default_partitions: int = 4, session_timeout: float = 10.0, broker_port: int | None = None,
                 shutdown_timeout: float = 10.0, linger_ms: int = 5, max_batch_size: int = 512 * 1024,
                 max_poll_records: int = 10_000, max_partition_fetch_bytes: int = 4 * 1024 * 1024,
                 max_agent_backlog: int = 64, producer_config: dict | None = None,
                 consumer_config: dict | None = None, num_standby_replicas: int = 0,
                 processing_guarantee: str = "exactly_once",
                 topic_partitions: int | None = None, store: str = "rocksdb://", version: int = 1) -> None:
        # Faust's names, so that a Faust app's App(...) runs unchanged: `topic_partitions` is `default_partitions`;
        # `version` > 1 makes a new app as in Faust (id `<id>-v<version>`: its own group and internal topics);
        # `store` is accepted, but tables always live in RocksDB (restored from their changelogs either way).
        if topic_partitions is not None:
            default_partitions = topic_partitions
        if store not in ("rocksdb://", "memory://"):
            raise ValueError(f"bad store {store!r}: tables live in RocksDB ('rocksdb://'; 'memory://' is accepted)")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise ValueError(f"version must be an int >= 1, got {version!r}")
        if version > 1 and isinstance(id, str):
            id = f"{id}-v{version}"
        if not isinstance(id, str) or not id or any(not (c.isalnum() or c in "._-") for c in id):
            raise ValueError(f"bad app id {id!r}: use letters, digits, '.', '_' and '-'")
        if on_error not in ERROR_POLICIES:
            raise ValueError(f"bad on_error {on_error!r}: choose one of {', '.join(ERROR_POLICIES)}")
        from .runtime.commit import GUARANTEES
        if processing_guarantee not in GUARANTEES:
            raise ValueError(f"bad processing_guarantee {processing_guarantee!r}: one of {', '.join(GUARANTEES)}")
        if not isinstance(num_standby_replicas, int) or num_standby_replicas < 0:
            raise ValueError(f"num_standby_replicas must be an int >= 0, got {num_standby_replicas!r}")
        if commit_interval is None:
            # Kafka Streams' defaults: outputs become visible at the commit under exactly-once, so commit often.
            commit_interval = 0.1 if GUARANTEES[processing_guarantee] == "exactly_once" else 0.5
        if not commit_interval > 0:
            raise ValueError(f"commit_interval must be > 0 seconds, got {commit_interval!r}")
        self.id = id
        self.broker = parse_broker(broker) if broker is not None else None
        self.workdir = Path(workdir) if workdir is not None else Path(".streams") / id
        self.commit_interval = commit_interval
        self.on_error = on_error
        self.dead_letter_topic = dead_letter_topic or f"{id}-dead-letter"
        self.default_partitions = default_partitions
        self.session_timeout = session_timeout
        self.heartbeat_interval_ms = max(100, int(session_timeout * 1000 / 5))
        self.max_poll_interval_ms = 300_000
        self.broker_port = broker_port
        self.shutdown_timeout = shutdown_timeout
        self.linger_ms = linger_ms
        self.max_batch_size = max_batch_size
        self.max_poll_records = max_poll_records
        self.max_partition_fetch_bytes = max_partition_fetch_bytes
        self.max_agent_backlog = max_agent_backlog
        self.producer_config = dict(producer_config or {})
        self.consumer_config = dict(consumer_config or {})
        self.num_standby_replicas = num_standby_replicas
        self.processing_guarantee = GUARANTEES[processing_guarantee]
        self.graph = Graph(id)
        self.builder = Builder(self.graph, self.topic)
        self.builder.app = self
        self.topics: dict[str, Topic] = {}
        self.agents: dict[str, Agent] = {}
        self.timers: list[tuple[Callable, float]] = []
        self.tasks: list[Callable] = []
        self.worker = None
        self.embedded = None
        self._send_producer = None
        self._tables: dict[str, Any] = {}
        self.global_tables: dict[str, Any] = {}   # store name -> GlobalKTable

    # ---- describing ----

    def topic(self, name: str, key_type: Any = None, value_type: Any = None, *, partitions: int | None = None,
              serde: Any = None, key_serde: Any = None, value_serde: Any = None, config: dict | None = None,
              timestamp_extractor: Any = None) -> Topic:
        """Declare a topic; `serde` is the value serde (JSON by default, dataclasses decode into their type)."""
        existing = self.topics.get(name)
        if existing is not None:
            if partitions is not None and existing.partitions not in (None, partitions):
                raise TopologyError(f"topic {name!r} is declared twice with {existing.partitions} and {partitions} "
                                    "partitions")
            if key_type is None and value_type is None and serde is None and key_serde is None \
                    and value_serde is None and timestamp_extractor is None:
                return existing
        topic = Topic(name, key_type=key_type, value_type=value_type, key_serde=key_serde,
                      value_serde=value_serde if value_serde is not None else serde, partitions=partitions,
                      config=config, app=self, timestamp_extractor=timestamp_extractor)
        self.topics[name] = topic
        return topic

    def table(self, topic: Topic | str, name: str | None = None, *, versioned: bool = False, history: Any = None
              ) -> KTable:
        """A DSL table over `topic` (latest value per key, None deletes); the topic is the table's changelog.

        `versioned=True` keeps each key's earlier values for `history` (seconds or a timedelta) of event time, so
        a stream-table join finds the row as of the stream record's timestamp."""
        return self.builder.table(topic, name=name, versioned=versioned, history=history)

    def global_table(self, topic: Topic | str, name: str | None = None) -> Any:
        """A `GlobalKTable` over every partition of `topic`, held whole by every worker in the store
        `name` (default `<topic>-global-store`): `get(key)` from anywhere, and stream joins without
        co-partitioning (see `streams.dsl.global_table`)."""
        from .dsl.global_table import GlobalKTable
        t = self.builder.topic(topic)
        store = name if name is not None else f"{t.name}-global-store"
        if store in self.global_tables:
            raise TopologyError(f"a global table with the store {store!r} already exists")
        if any(g.topic.name == t.name for g in self.global_tables.values()):
            raise TopologyError(f"topic {t.name!r} is already read by a global table")
        if any(n.kind == "source" and t in n.topics for n in self.graph.nodes):
            raise TopologyError(f"topic {t.name!r} is already read by a stream or table; a topic is either a global "
                                "table's or a task's source")
        table = GlobalKTable(self.builder, t, store)
        self.global_tables[store] = table
        return table

    def Table(self, name: str, *, default: Callable[[], Any] | None = None, **options: Any) -> Table:
        """A Faust-style table for agents: `table[key] += 1` (see `streams.tables`)."""
        if name in self._tables:
            raise TopologyError(f"a table named {name!r} already exists")
        table = Table(self, name, default=default, **options)
        self._tables[name] = table
        return table

    def table_agents(self, name: str) -> list[str]:
        """The agents whose functions use the Faust-style table `name`."""
        table = self._tables.get(name)
        return [a.name for a in self.agents.values() if table is not None and table in a.tables_used(self._tables)]

    def store(self, name: str) -> Any:
        """A read-only view of the store `name` in this worker: `get`, `range`, `all`; for window stores
        `fetch(key, time_from, time_to)`. It answers for the partitions this worker holds and raises
        `StoreNotHere` for a key that lives elsewhere."""
        from .runtime.collector import key_hash
        from .runtime.views import StoreNotHere, view_for
        worker = self.worker
        if worker is None or worker.processor is None or worker.processor.topology is None:
            raise RuntimeError(f"app {self.id!r} is not running in this process: start a worker (or a TestDriver)")
        stores = worker.processor.topology.stores()
        if name in self.global_tables:
            table = self.global_tables[name]

            def whole(key_bytes: bytes | None = None):
                if table._store is None:
                    raise RuntimeError(f"global table {name!r} is not open in this process")
                return table._store
            return view_for(table.spec, whole, lambda: [whole()])
        if name not in stores:
            names = sorted([*stores, *self.global_tables])
            raise KeyError(f"app {self.id!r} has no store {name!r}; its stores: {', '.join(names) or 'none'}")
        spec, sub = stores[name]
        tasks = worker.processor.tasks.tasks

        def locate(key_bytes: bytes):
            partition = key_hash(key_bytes) % (sub.partitions or 1)
            task = tasks.get((sub.id, partition))
            if task is None or name not in task.stores:
                held = sorted(p for (sid, p), t in tasks.items() if sid == sub.id and name in t.stores)
                raise StoreNotHere(f"the key lives in partition {partition} of store {name!r} (task "
                                   f"{sub.id}_{partition}), which this worker does not hold; it holds partitions "
                                   f"{held}")
            return task.stores[name]

        def held():
            return [t.stores[name] for t in tasks.values() if name in t.stores]
        if name in self._tables:
            # A Faust-style table's key lives in the partition of the record that wrote it (as in Faust), which
            # need not be its hash's: every partition held here is asked.
            from .tables import _AnyPartition
            return view_for(spec, lambda key_bytes: _AnyPartition(held()), held, window_size_ms=spec.window_size_ms)
        return view_for(spec, locate, held, window_size_ms=spec.window_size_ms)

    def metrics(self) -> dict[str, Any]:
        """Counters of the worker (or test driver) running the app in this process: records processed, late
        records dropped per windowed aggregation."""
        worker = self.worker
        if worker is None or worker.processor is None:
            raise RuntimeError(f"app {self.id!r} is not running in this process: start a worker (or a TestDriver)")
        return worker.processor.metrics()

    def channel(self, name: str | None = None, maxsize: int = 10_000) -> Channel:
        """An in-memory channel an agent can read (not durable, nothing committed)."""
        return Channel(name or f"channel-{len(self.agents)}", maxsize)

    def stream(self, topics: Topic | str | list, name: str | None = None) -> KStream:
        """A DSL stream over one or more topics."""
        return self.builder.stream(topics, name=name)

    def agent(self, source: Topic | Channel | str | None = None, *, name: str | None = None, concurrency: int = 1,
              sink: list | None = None, key_type: Any = None, value_type: Any = None) -> Callable[[Callable], Agent]:
        """Decorate `async def fn(stream)` as an agent over `source` (a topic, a topic name or a channel; None: the
        topic `<app id>-<agent name>`). `key_type`/`value_type` type the topic declared here (a name or None),
        as in Faust's `@app.agent(value_type=str)`."""
        def decorate(fn: Callable) -> Agent:
            agent_name = name or fn.__name__
            if agent_name in self.agents:
                raise TopologyError(f"an agent named {agent_name!r} already exists")
            src = source
            if src is None:
                src = self.topic(f"{self.id}-{agent_name}", key_type=key_type, value_type=value_type)
            elif isinstance(src, str):
                src = self.topic(src, key_type=key_type, value_type=value_type)
            agent = Agent(self, fn, src, name=agent_name, concurrency=concurrency, sink=sink)
            if isinstance(src, Topic):
                node = self.graph.source_for([src])
                self.graph.add("agent", op="agent", parents=[node], name=agent_name, agent=agent,
                               concurrency=concurrency, sinks=agent.sinks, sink_topics=agent.topic_sinks)
            self.agents[agent_name] = agent
            return agent
        return decorate

    def timer(self, interval: float) -> Callable[[Callable], Callable]:
        """Decorate `async def fn()` to run every `interval` seconds on every worker."""
        if not interval > 0:
            raise ValueError(f"timer interval must be > 0 seconds, got {interval!r}")

        def decorate(fn: Callable) -> Callable:
            if not inspect.iscoroutinefunction(fn):
                raise TypeError(f"timer {fn!r} must be an async function")
            self.timers.append((fn, float(interval)))
            return fn
        return decorate

    def task(self, fn: Callable | None = None) -> Any:
        """Decorate `async def fn()` to run once when a worker starts (`@app.task` or `@app.task()`)."""
        def decorate(f: Callable) -> Callable:
            if not inspect.iscoroutinefunction(f):
                raise TypeError(f"task {f!r} must be an async function")
            self.tasks.append(f)
            return f
        return decorate(fn) if fn is not None else decorate

    def topology(self, partition_counts: dict[str, int] | None = None) -> Topology:
        """The compiled topology (partition counts from declarations, or as given)."""
        self._bind_tables()
        topology = compile_graph(self.graph, partition_counts)
        topology.global_stores = [g.spec for g in self.global_tables.values()]
        return topology

    def _bind_tables(self) -> None:
        """Give each agent's node the stores of the Faust-style tables its function uses."""
        if not self._tables:
            return
        for node in self.graph.nodes:
            if node.kind == "agent":
                node.attrs["stores"] = [t.spec for t in node.attrs["agent"].tables_used(self._tables)]

    def dead_letter(self) -> Topic:
        """The dead-letter topic (raw key and value of failed records, with error headers)."""
        name = self.dead_letter_topic
        return self.topics.get(name) or self.topic(name, key_serde=bytes, value_serde=bytes)

    def extra_topics(self) -> list[Topic]:
        """Topics the app uses outside the topology (agent sinks of channel agents, global tables' topics)."""
        return ([t for a in self.agents.values() for t in a.topic_sinks]
                + [g.topic for g in self.global_tables.values()])

    def add_agent_route(self, agent: Agent, name: str, topic: Topic) -> None:
        """Record that `agent` reads `topic` back as its `stream.group_by(name=)` route (declared while it runs)."""
        node = self.graph.source_for([topic])
        self.graph.add("agent", op="agent", parents=[node], name=f"{agent.name}-{name}", agent=agent, route=name,
                       concurrency=agent.concurrency, sinks=[], sink_topics=[])
        if self.worker is not None:
            self.worker.topology_changed()

    # ---- sending ----

    @property
    def bootstrap_servers(self) -> str:
        """Where clients connect: the broker URL's hosts, or the running embedded broker."""
        if self.broker is not None:
            return self.broker
        if self.embedded is not None and self.embedded.address is not None:
            return self.embedded.address
        raise RuntimeError(f"app {self.id!r} has no broker: give broker= or start a worker (which starts one)")

    async def send(self, topic: Topic | str, key: Any = None, value: Any = None, *, headers: list | None = None,
                   partition: int | None = None, timestamp_ms: int | None = None) -> None:
        """Send one record; inside a worker it leaves with the worker's next batch, else it is sent and awaited."""
        if isinstance(topic, str):
            topic = self.topic(topic)
        kb, vb = topic.key_serde.serialize(key), topic.value_serde.serialize(value)
        runner = self.worker
        if runner is not None and await runner.send_serialized(topic.name, kb, vb, timestamp_ms, headers, partition):
            return
        producer = await self._producer()
        await producer.send_and_wait(topic.name, vb, key=kb, partition=partition, timestamp_ms=timestamp_ms,
                                     headers=headers)

    async def _producer(self):
        if self._send_producer is None:
            from aiokafka import AIOKafkaProducer
            producer = AIOKafkaProducer(bootstrap_servers=self.bootstrap_servers, acks="all")
            await producer.start()
            self._send_producer = producer
        return self._send_producer

    async def close(self) -> None:
        """Close the producer `send()` opened outside a worker."""
        if self._send_producer is not None:
            await self._send_producer.stop()
            self._send_producer = None

    # ---- running ----

    async def run_worker(self, *, ready: Callable[[str], None] | None = None) -> None:
        """Run a worker until `stop_worker()` or a failure; starts an embedded broker when none is configured."""
        from .runtime.worker import Worker
        if self.worker is not None:
            raise RuntimeError(f"app {self.id!r} is already running in this process (a worker or a test driver)")
        shared = None
        if self.broker is None and self.embedded is None:
            from .embedded import SharedBroker
            # One machine: no point waiting 3 s for more members before the first rebalance.
            shared = SharedBroker(self.workdir / "broker", port=self.broker_port,
                                  group_initial_rebalance_delay_ms=0)
            address = await shared.acquire()
            self.embedded = shared
            if shared.owner:
                print(f"bootstrap {address}", flush=True)
            else:
                print(f"bootstrap {address} (the app's broker, started by another worker in {self.workdir})",
                      flush=True)
        watch = None
        try:
            self.worker = Worker(self, self.bootstrap_servers)
            if shared is not None and not shared.owner:
                watch = asyncio.create_task(shared.watch(self.worker.fail))
            task = asyncio.create_task(self.worker.run())
            started = asyncio.create_task(self.worker.started.wait())
            await asyncio.wait([task, started], return_when=asyncio.FIRST_COMPLETED)
            if self.worker.started.is_set() and ready is not None:
                ready(self.bootstrap_servers)
            started.cancel()
            await task
        finally:
            self.worker = None
            if watch is not None:
                watch.cancel()
            await self.close()
            if shared is not None:
                await shared.release()
                self.embedded = None

    def stop_worker(self) -> None:
        """Ask the running worker to shut down gracefully (commit, leave the group); calling it again is harmless."""
        if self.worker is not None:
            self.worker.stop()

    @property
    def is_stopping(self) -> bool:
        """True while a worker runs in this process but was asked to stop (or stopped on a failure)."""
        return self.worker is not None and self.worker.stopping

    def run(self) -> None:
        """Run a worker in this process until SIGINT or SIGTERM."""
        async def main() -> None:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, self.stop_worker)
            await self.run_worker()
        asyncio.run(main())

    def main(self, argv: list[str] | None = None) -> None:
        """The command line for this app: `python myapp.py worker|send|topics|topology ...`."""
        from .cli import main
        main(argv, app=self)

"""Global tables in a worker: one store per table holding every partition of its topic, restored before any task
processes a record, then kept current by a reader of its own; and the closure of a stream-global-table join.

Layout: `<state dir>/worker-<n>/global/<store>/` (RocksDB) and one checkpoint per topic partition beside it,
`global/<store>-p<partition>.checkpoint`: the offset up to which the database durably reflects that partition. A
restart reads each partition from its checkpoint to the end offset as of the start; a checkpoint outside the
partition's [beginning, end] (the topic was deleted and created again, or retention removed records the store never
saw) wipes the store and restores every partition from the beginning. Replaying records the store already holds is
harmless (the latest value per key wins), so a crash between a flush and a checkpoint only costs a longer restore.

The topic is the changelog: its records go into the store as they are (bytes, decoded by the topic's serdes on
lookup), a None value deletes the key, a None key is skipped. A record the topic's serdes cannot read never reaches
the store: under the error policy `fail` it stops the worker (or fails the test driver's `pipe`) naming the record;
otherwise it is logged and skipped (the table keeps the key's previous row). Unlike Kafka Streams, whose restore
copies a global table's records unread, the restore checks them too (about 2.7 us per small JSON value here, against
1.4 us for the RocksDB write): a restarted worker must not hold rows a running one refused. Both readers use `read_committed` under exactly-once
(the worker's isolation level), so an aborted transaction never reaches a global table.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from aiokafka import AIOKafkaConsumer, TopicPartition

from ..errors import ProcessingError, TopologyError
from ..state import Checkpoint, KeyValueStore, MemoryBackend, RocksBackend
from ..topology.graph import Node

log = logging.getLogger(__name__)
progress = logging.getLogger("streams.progress")

__all__ = ["GlobalRestore", "GlobalStores", "build_global_join"]

GLOBAL_DIR = "global"          # the state-directory folder of the global stores (never a task id: no "_")
CHECKPOINT_EVERY = 1.0         # seconds between checkpoints while the reader follows the topics
REPORT_EVERY = 2.0             # seconds between restore progress lines


@dataclass
class GlobalRestore:
    """What the restore of one global store did at start."""

    store: str
    topic: str
    partitions: int
    restored: int              # records read (markers of transactions included in the offsets, not here)
    behind: int                # records between the starting offsets and the end offsets
    from_checkpoint: bool      # False: the store was (re)built from the beginning of the topic
    seconds: float


class GlobalStores:
    """The global tables of one app in this process: their stores, restore, and the reader that follows them.

    `state_dir` None keeps the stores in memory (the test driver, which applies records itself with `apply`).
    `on_error(exc)` is called if the reader stops on an error (a table that silently stops following its topic
    would serve stale lookups forever).
    """

    def __init__(self, tables: Iterable[Any], state_dir: Any = None,
                 on_error: Callable[[BaseException], None] | None = None, policy: str = "fail") -> None:
        self.tables = list(tables)
        self.policy = policy
        self.by_topic = {t.topic.name: t for t in self.tables}
        self.state_dir = state_dir
        self.on_error = on_error
        self.stores: dict[str, KeyValueStore] = {}
        self.restores: list[GlobalRestore] = []
        self._reader: asyncio.Task | None = None
        self._consumer: Any = None
        self._checkpoints: dict[tuple[str, int], Checkpoint] = {}
        self._rebuilt: set[str] = set()   # stores restored from the beginning of their topic at this start

    @property
    def topics(self) -> set[str]:
        return set(self.by_topic)

    # ---- opening and closing ----

    def open(self) -> None:
        """Open every table's store and bind it to the table (not restored: see `start`)."""
        for table in self.tables:
            name = table.store_name
            if name in self.stores:
                continue
            if self.state_dir is None:
                backend = MemoryBackend(f"{name}/{GLOBAL_DIR}")
            else:
                backend = RocksBackend(self.state_dir.store_path(GLOBAL_DIR, name))
            self.stores[name] = KeyValueStore(backend, name)
            table._store = self.stores[name]

    def check(self, source_topics: Iterable[str]) -> None:
        """A global table's topic cannot also be read by the topology's tasks (as in Kafka Streams)."""
        both = sorted(self.topics & set(source_topics))
        if both:
            raise TopologyError(f"topic(s) {both} are read both by a global table and by a stream or table; a topic "
                                "is either a global table's or a task's source")

    def close(self) -> None:
        """Unbind and close the stores (the checkpoints were written by `stop`, or there are none)."""
        for table in self.tables:
            if table._store is self.stores.get(table.store_name):
                table._store = None
        for name, store in self.stores.items():
            try:
                store.close()
            except Exception as exc:  # closing must go on for the other stores
                log.warning("closing global store %s failed: %s", name, exc)
        self.stores.clear()

    # ---- the test driver's path ----

    def apply(self, record: Any) -> None:
        """Apply one record of a global table's topic at once (the test driver: deterministic lookups)."""
        table = self.by_topic.get(record.topic)
        if table is not None:
            self.stores[table.store_name].restore(self._live(table, [record]))

    def _live(self, table: Any, records: Iterable) -> list[tuple[bytes, bytes | None]]:
        """(key, value) of the records that change the table: a None key is skipped, and so is a record the topic's
        serdes cannot read (or it raises ProcessingError under the policy `fail`)."""
        kd, vd = table.key_serde.deserialize, table.value_serde.deserialize
        out = []
        for r in records:
            key, value = r.key, r.value
            if key is None:
                continue
            try:
                kd(key)
                if value is not None:
                    vd(value)
            except Exception as exc:
                where = f"{r.topic}[{r.partition}]@{r.offset}"
                what = (f"global table {table.store_name!r}: record {where} cannot be read with the topic's serdes: "
                        f"{type(exc).__name__}: {exc}")
                if self.policy == "fail":
                    raise ProcessingError(what + " (on_error='fail')", r.topic, r.partition, r.offset) from exc
                log.error("%s; skipped, the table keeps the key's previous row (on_error=%r)", what, self.policy)
                continue
            out.append((key, value))
        return out

    # ---- a worker's path ----

    async def start(self, bootstrap: str, partition_counts: dict[str, int], *, isolation_level: str,
                    consumer_config: dict | None = None) -> list[GlobalRestore]:
        """Open, restore every store to the end offsets as of now, then start the reader; returns what the
        restores did. Returns once the tables are whole: call it before any task processes a record."""
        if not self.tables:
            return []
        self.open()
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False,
                                    isolation_level=isolation_level, auto_offset_reset="earliest",
                                    client_id="streams-global", **(consumer_config or {}))
        await consumer.start()
        self._consumer = consumer
        try:
            parts: dict[str, list] = {}
            for table in self.tables:
                n = partition_counts.get(table.topic.name)
                if not n:
                    raise TopologyError(f"global table {table.store_name!r}: topic {table.topic.name!r} does not "
                                        "exist")
                parts[table.store_name] = [TopicPartition(table.topic.name, p) for p in range(n)]
                for tp in parts[table.store_name]:
                    self._checkpoints[(tp.topic, tp.partition)] = Checkpoint(self.state_dir.checkpoint_path(
                        GLOBAL_DIR, f"{table.store_name}-p{tp.partition}"))
            tps = [tp for group in parts.values() for tp in group]
            consumer.assign(tps)
            begins = await consumer.beginning_offsets(tps)
            ends = await consumer.end_offsets(tps)
            starts: dict = {}
            for table in self.tables:
                starts.update(self._start_offsets(table, parts[table.store_name], begins, ends))
            for tp in tps:
                consumer.seek(tp, starts[tp])
            self.restores = await self._restore(consumer, parts, starts, ends)
        except BaseException:
            await self._stop_consumer()
            self.close()
            raise
        self._reader = asyncio.create_task(self._follow(consumer, tps), name="global-tables")
        return self.restores

    def _start_offsets(self, table: Any, tps: list, begins: dict, ends: dict) -> dict:
        """Per partition, where the restore starts: its checkpoint; the beginning for a partition without one
        (none of its records reached the store durably, or it is new); everything from the beginning, on a wiped
        store, when a checkpoint lies outside its partition or no partition has one."""
        name = table.store_name
        offsets = {tp: self._checkpoints[(tp.topic, tp.partition)].read() for tp in tps}
        bad = [tp for tp, off in offsets.items() if off is not None and not begins[tp] <= off <= ends[tp]]
        if bad or all(off is None for off in offsets.values()):
            self._rebuilt.add(name)
            if bad:
                log.warning("global store %s: checkpoint(s) outside their partition of %s (%s): restoring it from "
                            "the beginning", name, table.topic.name,
                            ", ".join(f"partition {tp.partition} at {offsets[tp]}, log [{begins[tp]}, {ends[tp]}]"
                                      for tp in bad))
            self._wipe(table, tps)
            return {tp: begins[tp] for tp in tps}
        return {tp: begins[tp] if off is None else off for tp, off in offsets.items()}

    def _wipe(self, table: Any, tps: list) -> None:
        name = table.store_name
        for tp in tps:
            self._checkpoints[(tp.topic, tp.partition)].delete()
        store = self.stores[name]
        if next(iter(store.all()), None) is None:
            return
        store.destroy()
        self.stores[name] = KeyValueStore(RocksBackend(self.state_dir.store_path(GLOBAL_DIR, name)), name)
        table._store = self.stores[name]

    async def _restore(self, consumer: Any, parts: dict, starts: dict, ends: dict) -> list[GlobalRestore]:
        began = time.monotonic()
        store_of = {tp: name for name, group in parts.items() for tp in group}
        behind = {name: sum(max(0, ends[tp] - starts[tp]) for tp in group) for name, group in parts.items()}
        counts = {name: 0 for name in parts}
        pending = {tp for tp in store_of if starts[tp] < ends[tp]}
        total = sum(behind.values())
        if pending:
            progress.info("restoring global store(s) %s: %d records",
                          ", ".join(sorted({store_of[tp] for tp in pending})), total)
        consumer.pause(*[tp for tp in store_of if tp not in pending])
        last_report = began
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=200, max_records=50_000)
            for tp, records in batch.items():
                name = store_of[tp]
                self.stores[name].restore(self._live(self.by_topic[tp.topic], records))
                counts[name] += len(records)
            for tp in list(pending):
                if await consumer.position(tp) >= ends[tp]:
                    pending.discard(tp)
                    consumer.pause(tp)
            now = time.monotonic()
            if pending and now - last_report >= REPORT_EVERY:
                last_report = now
                done = sum(counts.values())
                rate = done / max(now - began, 1e-6)
                eta = (total - done) / rate if rate > 0 else float("inf")
                progress.info("restoring global store(s) %s: %d/%d records, %.0f records/s, ETA %.1fs",
                              ", ".join(sorted({store_of[tp] for tp in pending})), done, total, rate, eta)
            await asyncio.sleep(0)
        seconds = time.monotonic() - began
        results = []
        for name, group in parts.items():
            # The restored records must be durable before a checkpoint claims them.
            self.stores[name].flush()
            for tp in group:
                self._checkpoints[(tp.topic, tp.partition)].write(ends[tp])
            table = next(t for t in self.tables if t.store_name == name)
            results.append(GlobalRestore(name, table.topic.name, len(group), counts[name], behind[name],
                                         name not in self._rebuilt, seconds))
            progress.info("restored global store %s (topic %s, %d partitions): %d records in %.2fs%s", name,
                          table.topic.name, len(group), counts[name], seconds,
                          "" if counts[name] else " (up to date)")
        consumer.resume(*store_of)
        return results

    async def _follow(self, consumer: Any, tps: list) -> None:
        """Apply what arrives on the tables' topics while the worker runs; checkpoint every second."""
        store_of = {tp: self.by_topic[tp.topic].store_name for tp in tps}
        dirty: set = set()
        last_checkpoint = time.monotonic()
        try:
            while True:
                batch = await consumer.getmany(timeout_ms=500, max_records=50_000)
                for tp, records in batch.items():
                    self.stores[store_of[tp]].restore(self._live(self.by_topic[tp.topic], records))
                    dirty.add(tp)
                if dirty and time.monotonic() - last_checkpoint >= CHECKPOINT_EVERY:
                    await self._checkpoint(consumer, store_of, dirty)
                    dirty = set()
                    last_checkpoint = time.monotonic()
        except asyncio.CancelledError:
            if dirty:
                await self._checkpoint(consumer, store_of, dirty)
            raise
        except Exception as exc:
            log.error("the reader of the global tables stopped: %s: %s", type(exc).__name__, exc)
            if self.on_error is not None:
                self.on_error(exc)
            raise

    async def _checkpoint(self, consumer: Any, store_of: dict, tps: set) -> None:
        for name in {store_of[tp] for tp in tps}:
            self.stores[name].flush()   # durable before the checkpoints claim it
        for tp in tps:
            self._checkpoints[(tp.topic, tp.partition)].write(await consumer.position(tp))

    async def stop(self) -> None:
        """Stop the reader (checkpointing what it applied), close its consumer and the stores."""
        reader, self._reader = self._reader, None
        if reader is not None:
            reader.cancel()
            try:
                await reader
            except asyncio.CancelledError:
                pass
            except Exception as exc:
                log.warning("global tables reader: %s", exc)
        await self._stop_consumer()
        self.close()

    async def _stop_consumer(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            await consumer.stop()


def build_global_join(node: Node, ctx: Any, down: Callable[[Any, Any], None]) -> Callable[[Any, Any], None]:
    """`process(key, value)` of a stream-global-table join, with Kafka Streams' (4.1) null rules: a record with a
    None value is dropped; `key(k, v)` None or no row: no output for an inner join, `joiner(value, None)` for a
    left join; the output keeps the stream's key (which may be None)."""
    table = node.attrs["global_table"]
    key_fn, joiner, left = node.attrs["key"], node.fn, node.attrs["how"] == "left"
    ks, vd = table.key_serde.serialize, table.value_serde.deserialize
    name = table.store_name

    def process(k, v):
        if v is None:
            return
        gk = key_fn(k, v)
        if gk is None:
            if left:
                down(k, joiner(v, None))
            return
        store = table._store
        if store is None:
            raise RuntimeError(f"global table {name!r} is not open in this process")
        data = store.get(ks(gk))
        if data is not None:
            down(k, joiner(v, vd(data)))
        elif left:
            down(k, joiner(v, None))
    return process

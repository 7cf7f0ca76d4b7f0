"""A task's state in this process: its stores, its nodes' stream times, and the changelog records it owes.

`TaskStates` opens a task's stores when the task is assigned (RocksDB under the worker's state directory, or in
memory for the test driver), hands the processor the `TaskState` of the task it is processing, collects the
changelog records of every store write (one record per key per commit: the latest value wins, as the changelogs are
compacted) and, at commit, applies the buffered writes and writes the checkpoints. The commit order itself lives in
the worker (`Worker.commit`); this module only does each step.
"""

from __future__ import annotations

import logging
import struct
from typing import Any, Iterator

from ..state import (Checkpoint, KeyValueStore, MemoryBackend, RocksBackend, SessionStore, StateDirectory,
                     WindowStore)
from ..topology.compiler import SubTopology, Topology
from ..topology.stores import StoreSpec

log = logging.getLogger(__name__)
_TS = struct.Struct(">q")

__all__ = ["TaskState", "TaskStates", "restore_topic", "task_name"]

_STORE_CLASSES = {"kv": KeyValueStore, "window": WindowStore, "session": SessionStore}


def restore_topic(spec: StoreSpec):
    """The topic a store is restored from: its changelog, or the topic a source table mirrors (None: unlogged)."""
    return spec.source_topic if spec.source_topic is not None else spec.changelog


def task_name(task_id: tuple[int, int]) -> str:
    """Kafka Streams' task name: `<sub-topology>_<partition>`."""
    return f"{task_id[0]}_{task_id[1]}"


class TaskState:
    """What a processor needs while it processes one task's records."""

    __slots__ = ("id", "name", "partition", "sub", "stores", "specs", "times", "dropped", "changes",
                 "checkpoints", "restored", "punctuators", "committed_times", "generation")

    def __init__(self, task_id: tuple[int, int], sub: SubTopology | None = None) -> None:
        self.id = task_id
        self.name = task_name(task_id)
        self.partition = task_id[1]
        self.sub = sub
        self.stores: dict[str, Any] = {}
        self.specs: dict[str, StoreSpec] = {}
        self.times: dict[str, int] = {}          # node name -> its stream time in this task
        self.dropped = 0                         # records dropped as late
        self.changes: dict[str, dict[bytes, tuple[bytes | None, int | None]]] = {}
        self.checkpoints: dict[str, Checkpoint] = {}
        self.restored: dict[str, int] = {}       # store -> changelog offset the local store reflects
        self.punctuators: list = []              # fn(wall_clock_ms) of the task's nodes, called by punctuate()
        self.committed_times: dict[str, int] = {}   # `times` as of the last commit (what a rollback returns to)
        # Bumped when the task is rolled back or closed: records handed to agents before that belong to work that
        # is redone (here from the last commit, or by the task's next owner), so agents drop them (`live`).
        self.generation = 0

    @property
    def stateful(self) -> bool:
        return bool(self.specs)

    def flush(self) -> None:
        """Drop expired windows, then apply every store's buffered writes (one write batch per store)."""
        if not self.stores:
            return
        for node in self.sub.nodes if self.sub is not None else ():
            if node.op == "stream_stream_join":
                # A join side's records expire behind the newest record of that side (its store's own time).
                store = self.stores[node.attrs["this_store"].name]
                store.expire(store.observed_time)
                continue
            if not node.op.endswith("_aggregate"):
                continue
            st = self.times.get(node.name)
            if st is not None:
                self.stores[node.attrs["stores"][0].name].expire(st)
        for store in self.stores.values():
            store.flush()

    def checkpoint(self, acked: dict[tuple[str, int], int]) -> None:
        """Record, per logged store, the changelog offset its database now reflects (`acked`: the next offset of
        each changelog partition written through this process, after its records were acknowledged)."""
        for name, cp in self.checkpoints.items():
            topic = restore_topic(self.specs[name])
            offset = acked.get((topic.name, self.partition)) if topic is not None else None
            if offset is not None and offset != self.restored.get(name):
                cp.write(offset)
                self.restored[name] = offset

    def mark_committed(self) -> None:
        self.committed_times = dict(self.times)

    def live(self, generation: int) -> bool:
        """Whether work handed out at `generation` still counts (the task was neither rolled back nor closed)."""
        return generation == self.generation

    def roll_back(self) -> None:
        """Forget everything since the last commit: buffered writes, owed changelog records, stream time."""
        self.generation += 1
        for store in self.stores.values():
            store.discard()
        for changes in self.changes.values():
            changes.clear()
        self.times = dict(self.committed_times)


class TaskStates:
    """The tasks this process holds; `state_dir` None keeps stores in memory (the test driver)."""

    def __init__(self, ctx: Any, state_dir: StateDirectory | None = None) -> None:
        self.ctx = ctx
        self.state_dir = state_dir
        self.topology: Topology | None = None
        self.tasks: dict[tuple[int, int], TaskState] = {}

    def load(self, topology: Topology) -> None:
        self.topology = topology

    def _sub(self, sub_id: int) -> SubTopology | None:
        for sub in self.topology.subtopologies if self.topology else ():
            if sub.id == sub_id:
                return sub
        return None

    def get(self, task_id: tuple[int, int]) -> TaskState:
        """The task's state, opened now when it has none yet (stateless tasks, and every task of the driver).

        A worker's stateful task is opened and restored on assignment: opening it here would process records
        against a store that was never restored, so that is refused."""
        task = self.tasks.get(task_id)
        if task is None:
            if self.state_dir is not None:
                sub = self._sub(task_id[0])
                if sub is not None and sub.stores:
                    raise RuntimeError(f"task {task_name(task_id)} has stores but was not opened and restored "
                                       "before its records were processed")
            task = self.open(task_id)
        return task

    def open(self, task_id: tuple[int, int]) -> TaskState:
        """Open the task's stores (not restored: the caller restores them before processing)."""
        task = self.tasks.get(task_id)
        if task is not None:
            return task
        sub = self._sub(task_id[0])
        task = TaskState(task_id, sub)
        try:
            for spec in (sub.stores if sub is not None else ()):
                self._open_store(task, spec)
        except BaseException:
            self._close_stores(task)
            raise
        self.tasks[task_id] = task
        return task

    def _open_store(self, task: TaskState, spec: StoreSpec) -> None:
        changes = task.changes.setdefault(spec.name, {})
        ctx = self.ctx
        logged = spec.source_topic is None and spec.changelog is not None

        if spec.timestamped:
            # A table row is stored after its timestamp; its changelog record holds the plain value, with the
            # row's timestamp as the record's (as Kafka Streams logs timestamped stores).
            def on_change(key: bytes, value: bytes | None) -> None:
                changes[key] = (None, ctx.timestamp) if value is None else (value[8:], _TS.unpack_from(value)[0])
        else:
            def on_change(key: bytes, value: bytes | None) -> None:
                changes[key] = (value, ctx.timestamp)

        if self.state_dir is None:
            backend = MemoryBackend(f"{spec.name}/{task.name}")
        else:
            backend = RocksBackend(self.state_dir.store_path(task.name, spec.name))
            task.checkpoints[spec.name] = Checkpoint(self.state_dir.checkpoint_path(task.name, spec.name))
        cls = _STORE_CLASSES[spec.kind]
        task.stores[spec.name] = cls(backend, spec.name, on_change if logged else None, **spec.settings)
        task.specs[spec.name] = spec

    def wipe(self, task: TaskState, name: str) -> None:
        """Empty one store of `task` (its local copy cannot be trusted): it is restored from the beginning."""
        store = task.stores.get(name)
        if store is None:
            return
        store.destroy()
        cp = task.checkpoints.get(name)
        if cp is not None:
            cp.delete()
        self._open_store(task, task.specs[name])

    def close(self, task_id: tuple[int, int]) -> None:
        """Close a task's stores (its partitions moved away): buffered writes were flushed at the last commit."""
        task = self.tasks.pop(task_id, None)
        if task is not None:
            task.generation += 1
            self._close_stores(task)

    def close_all(self) -> None:
        for task_id in list(self.tasks):
            self.close(task_id)

    @staticmethod
    def _close_stores(task: TaskState) -> None:
        for name, store in task.stores.items():
            try:
                store.close()
            except Exception as exc:  # closing must go on for the other stores
                log.warning("closing store %s of task %s failed: %s", name, task.name, exc)

    # ---- the commit steps ----

    def changelog_records(self, with_task: bool = False) -> Iterator[tuple]:
        """(topic, partition, key, value, timestamp[, task id]) of every store write since the last call, then
        forgotten."""
        for task in self.tasks.values():
            for name, changes in task.changes.items():
                if not changes:
                    continue
                topic = task.specs[name].changelog.name
                for key, (value, ts) in changes.items():
                    yield (topic, task.partition, key, value, ts, task.id) if with_task else \
                        (topic, task.partition, key, value, ts)
                changes.clear()

    def flush(self) -> None:
        """Apply every task's buffered writes (see `TaskState.flush`)."""
        for task in self.tasks.values():
            task.flush()

    def checkpoint(self, acked: dict[tuple[str, int], int]) -> None:
        """Write the checkpoints of every task (see `TaskState.checkpoint`)."""
        for task in self.tasks.values():
            task.checkpoint(acked)

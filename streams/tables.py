"""Faust-style tables for agents: `table = app.Table("counts", default=int)`, then `table[key] += 1` in an agent.

A table is a key-value store per partition, like the DSL's, with the changelog `<app id>-<name>-changelog`. The key
lives in the partition of the record being processed (as in Faust: re-key with `stream.group_by` first when the key
is not the record's key). Which agent's tasks hold a table is found from the agent functions that mention it (the
global or closure names they use); reads outside an agent (a timer, `app.store(name)`) ask every partition held.

Windowed tables (`.tumbling(size, expires=)`, `.hopping(size, step, expires=)`) keep one value per window, driven
by the record's event time, not the wall clock (Faust expires windows on wall-clock time, which breaks replays):
`table[k] += 1` adds to every window that holds the current record; `table[k].current()` reads the window of the
current record, `.delta(seconds)` the one that many seconds earlier, `.now()` the window of the wall clock now,
and `.value()` the current record's window.
"""

from __future__ import annotations

import contextvars
import struct
import time
from typing import TYPE_CHECKING, Any, Callable

from .errors import StaleRecord, StreamsError
from .serde import serde_for
from .topology.stores import StoreSpec
from .windows import HoppingWindows, TumblingWindows, to_millis

if TYPE_CHECKING:
    from .records import AppLike

__all__ = ["Table", "WindowSet", "WindowedTable", "current_event", "current_origin", "origin_stale"]

# The event an agent's actor is processing (each actor runs in its own asyncio task, so its own context).
current_event: contextvars.ContextVar = contextvars.ContextVar("streams_current_event", default=None)
# The task (and its generation) that handed that event to the agent: None for events of no task (a channel).
current_origin: contextvars.ContextVar = contextvars.ContextVar("streams_current_origin", default=None)


def origin_stale() -> bool:
    """True when the event being processed belongs to work that was rolled back or moved away since it was handed
    to the agent: its effects (table writes, outputs) must not count, the records are processed again."""
    origin = current_origin.get()
    return origin is not None and not origin[0].live(origin[1])
_TS = struct.Struct(">q")


def table_store(app: "AppLike", name: str, *, write: bool = False) -> Any:
    """The store of table `name` to use now: the task of the record being processed (an agent), else, for reads,
    every partition this worker holds (a key lives in the partition of the record that wrote it, as in Faust)."""
    ev = current_event.get()
    worker = app.worker
    if worker is None:
        raise StreamsError(f"table {name!r} is only available while a worker (or a TestDriver) runs the app")
    if ev is not None and ev.partition >= 0:
        if write and origin_stale():
            raise StaleRecord(f"{ev.topic}[{ev.partition}]@{ev.offset} was handed back (its task was rolled back "
                              "or moved away); it is processed again from the last commit")
        task_id = worker.processor.task_of(ev.topic, ev.partition)
        task = worker.processor.tasks.tasks.get(task_id) if task_id is not None else None
        if task is not None and name in task.stores:
            return task.stores[name]
        if write:
            raise StreamsError(f"table {name!r} is not held by the tasks of topic {ev.topic!r}: use it from the agent "
                               "that reads its partitions (agents found using it: "
                               f"{', '.join(app.table_agents(name)) or 'none'})")
    if write:
        raise StreamsError(f"table {name!r} can be written only while an agent processes a record")
    return _AnyPartition(app.store(name)._stores())


class Table:
    """A dict-like table held per partition by the agent that uses it; `default` makes missing keys read as
    `default()` (like `collections.defaultdict`, without inserting them)."""

    def __init__(self, app: "AppLike", name: str, *, default: Callable[[], Any] | None = None, key_type: Any = None,
                 value_type: Any = None, key_serde: Any = None, value_serde: Any = None, partitions: int | None = None,
                 help: str | None = None, **_ignored: Any) -> None:
        if default is not None and not callable(default):
            raise TypeError(f"table {name!r}: default must be callable (e.g. int), got {default!r}")
        self.app = app
        self.name = name
        self.default = default
        self.partitions = partitions
        self.help = help
        self.spec = StoreSpec(name, "kv", serde_for(key_serde if key_serde is not None else key_type),
                              serde_for(value_serde if value_serde is not None else value_type))

    # ---- where the key lives ----

    def _store(self, *, write: bool = False) -> Any:
        return table_store(self.app, self.name, write=write)

    def _get(self, key: Any) -> bytes | None:
        kb = self.spec.key_serde.serialize(key)
        return self._store().get(kb)


    # ---- the dict interface ----

    def __getitem__(self, key: Any) -> Any:
        data = self._get(key)
        if data is None:
            if self.default is None:
                raise KeyError(key)
            return self.default()
        return self.spec.value_serde.deserialize(data)

    def get(self, key: Any, default: Any = None) -> Any:
        data = self._get(key)
        return default if data is None else self.spec.value_serde.deserialize(data)

    def __setitem__(self, key: Any, value: Any) -> None:
        kb = self.spec.key_serde.serialize(key)
        self._store(write=True).put(kb, None if value is None else self.spec.value_serde.serialize(value))

    def __delitem__(self, key: Any) -> None:
        kb = self.spec.key_serde.serialize(key)
        self._store(write=True).delete(kb)

    def pop(self, key: Any, default: Any = None) -> Any:
        value = self.get(key, default)
        kb = self.spec.key_serde.serialize(key)
        self._store(write=True).delete(kb)
        return value

    def __contains__(self, key: Any) -> bool:
        return self._get(key) is not None

    def items(self):
        """Every (key, value) of the partitions this worker holds."""
        return self.app.store(self.name).items()

    def keys(self):
        return self.app.store(self.name).keys()

    def values(self):
        return self.app.store(self.name).values()

    def as_dict(self) -> dict:
        return dict(self.items())

    # ---- windows ----

    def tumbling(self, size: Any, expires: Any = None, key_index: bool = False) -> "WindowedTable":
        """One value per key and tumbling window of `size` seconds; windows are kept `expires` after they end."""
        return WindowedTable(self, TumblingWindows(size), expires)

    def hopping(self, size: Any, step: Any, expires: Any = None, key_index: bool = False) -> "WindowedTable":
        """One value per key and hopping window of `size` seconds starting every `step` seconds."""
        return WindowedTable(self, HoppingWindows(size, step), expires)

    def __repr__(self) -> str:
        return f"Table({self.name!r})"


class WindowedTable:
    """A table with one value per (key, window); `table[key]` is a `WindowSet` for the current record."""

    def __init__(self, table: Table, windows: Any, expires: Any) -> None:
        self.table = table
        self.app = table.app
        self.name = table.name
        self.windows = windows
        self.default = table.default
        expires_ms = to_millis(expires, "expires") if expires is not None else windows.size_ms
        table.spec = self.spec = StoreSpec(table.name, "window", table.spec.key_serde, table.spec.value_serde,
                                           retention_ms=windows.size_ms + expires_ms,
                                           window_size_ms=windows.size_ms)
        app = table.app
        app._tables[table.name] = self

    def _store(self, *, write: bool = False) -> Any:
        return table_store(self.app, self.name, write=write)

    def __getitem__(self, key: Any) -> "WindowSet":
        return WindowSet(self, key)

    def __setitem__(self, key: Any, value: Any) -> None:
        if isinstance(value, WindowSet):
            return  # `table[k] += n` already applied the change to every window of the record
        WindowSet(self, key).set(value)

    def read(self, key: Any, start: int) -> Any:
        kb = self.spec.key_serde.serialize(key)
        data = self._store().fetch(kb, start)
        if data is None:
            return self.default() if self.default is not None else None
        return self.spec.value_serde.deserialize(data[8:])

    def write(self, key: Any, start: int, value: Any, ts: int) -> None:
        kb = self.spec.key_serde.serialize(key)
        self._store(write=True).put(kb, start, _TS.pack(ts) + self.spec.value_serde.serialize(value))

    def relative_to_stream(self) -> "WindowedTable":
        """Faust's name for what this table does already: windows are those of the current record's event time."""
        return self

    def __repr__(self) -> str:
        return f"WindowedTable({self.name!r}, {self.windows!r})"


class WindowSet:
    """The windows of one key, relative to the record being processed (its event time)."""

    def __init__(self, table: WindowedTable, key: Any) -> None:
        self.table = table
        self.key = key

    def _event_time(self) -> int:
        ev = current_event.get()
        if ev is None or ev.timestamp is None:
            raise StreamsError(f"windowed table {self.table.name!r}: no record is being processed, so there is no "
                               "event time; use .now() or app.store(name).fetch(...)")
        return ev.timestamp

    def _latest_start(self, ts: int) -> int:
        return self.table.windows.windows_for(ts)[-1][0]

    def current(self) -> Any:
        """The value of the newest window holding the current record."""
        return self.table.read(self.key, self._latest_start(self._event_time()))

    value = current

    def delta(self, seconds: Any) -> Any:
        """The value of the window that held the time `seconds` before the current record."""
        ts = max(0, self._event_time() - to_millis(seconds, "delta"))
        return self.table.read(self.key, self._latest_start(ts))

    def now(self) -> Any:
        """The value of the window holding the wall-clock time now."""
        return self.table.read(self.key, self._latest_start(int(time.time() * 1000)))

    def set(self, value: Any) -> None:
        ts = self._event_time()
        for start, _ in self.table.windows.windows_for(ts):
            self.table.write(self.key, start, value, ts)

    def _apply(self, fn: Callable[[Any], Any]) -> "WindowSet":
        ts = self._event_time()
        for start, _ in self.table.windows.windows_for(ts):
            self.table.write(self.key, start, fn(self.table.read(self.key, start)), ts)
        return self

    def __iadd__(self, other: Any) -> "WindowSet":
        return self._apply(lambda v: v + other)

    def __isub__(self, other: Any) -> "WindowSet":
        return self._apply(lambda v: v - other)

    def __imul__(self, other: Any) -> "WindowSet":
        return self._apply(lambda v: v * other)

    def __repr__(self) -> str:
        return f"WindowSet({self.table.name!r}, {self.key!r})"


class _AnyPartition:
    """Reads outside an agent: as in Faust, a key lives in the partition of the record that wrote it, which need
    not be its hash's, so every partition held here is asked."""

    def __init__(self, stores: list) -> None:
        self.stores = stores

    def get(self, key: bytes) -> bytes | None:
        for store in self.stores:
            value = store.get(key)
            if value is not None:
                return value
        return None

    def fetch(self, key: bytes, start: int) -> bytes | None:
        for store in self.stores:
            value = store.fetch(key, start)
            if value is not None:
                return value
        return None

    def fetch_range(self, key: bytes, time_from: int, time_to: int) -> list:
        for store in self.stores:
            found = list(store.fetch_range(key, time_from, time_to))
            if found:
                return found
        return []

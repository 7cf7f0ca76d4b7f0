"""GroupedStream and its windowed forms: aggregations that turn a stream into a table.

Grouping is lazy: `group_by(...)` alone records nothing (no repartition topic, no empty sub-topology); the
aggregation records the repartition (when the key changed), the grouping and the stateful node with its store.
Records with a None key or value are skipped, as in Kafka Streams.

An aggregation is three functions, whatever the user called: `init()` (the empty aggregate), `add(key, value, agg)`
and, for sessions, `merge(key, agg1, agg2)`; count, reduce and aggregate only differ in them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..errors import TopologyError
from ..serde import IntSerde, JsonSerde, serde_for
from ..topology.stores import StoreSpec
from .stream import _callable
from ..windows import SessionWindows, SlidingWindows, TimeWindows, WindowedSerde

if TYPE_CHECKING:
    from .stream import KStream
    from .table import KTable

__all__ = ["Aggregation", "GroupedStream", "SessionWindowedStream", "TimeWindowedStream"]

EMITS = ("update", "final")


@dataclass(frozen=True)
class Aggregation:
    """The functions of one aggregation; `init` may return None (reduce: no aggregate before the first value)."""

    what: str
    init: Callable[[], Any]
    add: Callable[[Any, Any, Any], Any]
    merge: Callable[[Any, Any, Any], Any] | None = None


def counting() -> Aggregation:
    return Aggregation("count", lambda: 0, lambda k, v, agg: agg + 1, lambda k, a, b: a + b)


def reducing(fn: Callable[[Any, Any], Any]) -> Aggregation:
    _callable(fn, "reduce")

    def add(k, v, agg):
        return v if agg is None else fn(agg, v)

    def merge(k, a, b):
        return b if a is None else a if b is None else fn(a, b)
    return Aggregation("reduce", lambda: None, add, merge)


def aggregating(initializer: Callable[[], Any], aggregator: Callable[[Any, Any, Any], Any],
                merger: Callable[[Any, Any, Any], Any] | None = None) -> Aggregation:
    return Aggregation("aggregate", _callable(initializer, "aggregate's initializer"),
                       _callable(aggregator, "aggregate's aggregator"),
                       _callable(merger, "aggregate's merger") if merger is not None else None)


class GroupedStream:
    """A stream grouped by key: every record of one key is processed by one task."""

    def __init__(self, stream: "KStream", name: str | None, key_serde: Any, value_serde: Any) -> None:
        self.stream = stream
        self.name = name
        self.key_serde = serde_for(key_serde) if key_serde is not None else stream.key_serde
        self.value_serde = serde_for(value_serde) if value_serde is not None else stream.value_serde

    # ---- recording ----

    def _grouped(self):
        """Record the grouping now: repartition if the key changed, then the grouping node."""
        stream, name = self.stream, self.name
        if stream.key_changed:
            stream = stream.repartition(name, key_serde=self.key_serde, value_serde=self.value_serde)
            name = None
        node = stream._builder.graph.add("grouped", op="group_by", parents=[stream.node],
                                         name=f"{name}-grouped" if name else None)
        return stream, node

    def _store_name(self, name: str | None, node_index: int) -> str:
        return name or f"KSTREAM-AGGREGATE-STATE-STORE-{node_index:010d}"

    def _aggregate(self, agg: Aggregation, name: str | None, value_serde: Any, *, windows: Any = None,
                   emit: str = "update", logged: bool = True, idle_close: Any = None) -> "KTable":
        from .table import KTable
        if emit not in EMITS:
            raise ValueError(f"bad emit {emit!r}: 'update' (every update, the default) or 'final'")
        if emit == "final" and windows is None:
            raise ValueError("emit='final' needs windows: a table without windows has no final result")
        stream, grouped = self._grouped()
        graph = stream._builder.graph
        vserde = serde_for(value_serde) if value_serde is not None else (
            IntSerde() if agg.what == "count" else self.value_serde if agg.what == "reduce" else JsonSerde())
        kind = "kv" if windows is None else ("session" if isinstance(windows, SessionWindows) else "window")
        store = StoreSpec(self._store_name(name, len(graph.nodes)), kind, self.key_serde, vserde,
                          retention_ms=windows.retention_ms if windows is not None else None, logged=logged,
                          timestamped=windows is None,
                          window_size_ms=getattr(windows, "size_ms", getattr(windows, "time_difference_ms", None)))
        op = "aggregate" if windows is None else f"{windows.kind}_aggregate"
        node = graph.add("processor", op=op, parents=[grouped], name=name, stores=[store], aggregation=agg,
                         windows=windows)
        key_serde = self.key_serde if windows is None else WindowedSerde(self.key_serde)
        table = KTable(stream._builder, node, key_serde, vserde, store=store, windows=windows)
        return table.suppress_until_window_closes(idle_close=idle_close) if emit == "final" else table

    # ---- aggregations ----

    def count(self, name: str | None = None, *, logged: bool = True) -> "KTable":
        """Count records per key; `name` names the store (and its changelog `<app id>-<name>-changelog`)."""
        return self._aggregate(counting(), name, None, logged=logged)

    def reduce(self, reducer: Callable[[Any, Any], Any], name: str | None = None, *, logged: bool = True
               ) -> "KTable":
        """Combine the values of each key: the first value as is, then `reducer(aggregate, value)`."""
        return self._aggregate(reducing(reducer), name, None, logged=logged)

    def aggregate(self, initializer: Callable[[], Any], aggregator: Callable[[Any, Any, Any], Any],
                  name: str | None = None, *, value_serde: Any = None, logged: bool = True) -> "KTable":
        """Fold the values of each key: `aggregator(key, value, aggregate)`, starting from `initializer()`."""
        return self._aggregate(aggregating(initializer, aggregator), name, value_serde, logged=logged)

    def windowed_by(self, windows: Any) -> "TimeWindowedStream | SessionWindowedStream":
        """Aggregate per window: Tumbling/Hopping/Sliding windows, or SessionWindows."""
        if isinstance(windows, SessionWindows):
            return SessionWindowedStream(self, windows)
        if isinstance(windows, (TimeWindows, SlidingWindows)):
            return TimeWindowedStream(self, windows)
        raise TypeError(f"windowed_by needs TumblingWindows, HoppingWindows, SlidingWindows or SessionWindows, "
                        f"got {windows!r}")


class TimeWindowedStream:
    """A grouped stream cut into time windows (tumbling, hopping or sliding); aggregations give a windowed table
    keyed by `Windowed(key, start, end)`. `emit="final"` emits each window once, when it closes."""

    def __init__(self, grouped: GroupedStream, windows: Any) -> None:
        self.grouped = grouped
        self.windows = windows

    def count(self, name: str | None = None, *, emit: str = "update", logged: bool = True,
              idle_close: Any = None) -> "KTable":
        """Count records per key and window (`emit="final"`: once per window, when it closes; `idle_close`: see
        `KTable.suppress_until_window_closes`)."""
        return self.grouped._aggregate(counting(), name, None, windows=self.windows, emit=emit, logged=logged,
                                       idle_close=idle_close)

    def reduce(self, reducer: Callable[[Any, Any], Any], name: str | None = None, *, emit: str = "update",
               logged: bool = True, idle_close: Any = None) -> "KTable":
        """Combine the values of each key and window with `reducer(aggregate, value)`."""
        return self.grouped._aggregate(reducing(reducer), name, None, windows=self.windows, emit=emit,
                                       logged=logged, idle_close=idle_close)

    def aggregate(self, initializer: Callable[[], Any], aggregator: Callable[[Any, Any, Any], Any],
                  name: str | None = None, *, value_serde: Any = None, emit: str = "update", logged: bool = True,
                  idle_close: Any = None) -> "KTable":
        """Fold the values of each key and window: `aggregator(key, value, aggregate)` from `initializer()`."""
        return self.grouped._aggregate(aggregating(initializer, aggregator), name, value_serde,
                                       windows=self.windows, emit=emit, logged=logged, idle_close=idle_close)


class SessionWindowedStream(TimeWindowedStream):
    """A grouped stream cut into sessions; `aggregate` needs a `merger(key, agg1, agg2)` for merging sessions."""

    def aggregate(self, initializer: Callable[[], Any], aggregator: Callable[[Any, Any, Any], Any],
                  name: str | None = None, *, merger: Callable[[Any, Any, Any], Any] | None = None,
                  value_serde: Any = None, emit: str = "update", logged: bool = True, idle_close: Any = None
                  ) -> "KTable":
        """Fold the values of each session; `merger` combines two sessions' aggregates when a record joins them."""
        if merger is None:
            raise TopologyError("a session aggregate needs merger=(key, agg1, agg2) -> agg to merge sessions")
        return self.grouped._aggregate(aggregating(initializer, aggregator, merger), name, value_serde,
                                       windows=self.windows, emit=emit, logged=logged, idle_close=idle_close)

"""KTable: a changelog stream read as a table: the latest value per key, where a None value deletes the key.

A table's records flow downstream as updates `(key, new value)`; a deletion is `(key, None)` (a tombstone), which
`filter` also produces for a key that stops matching, so downstream tables forget it. Tables come from aggregations
(`group_by(...).count()`), from a topic (`app.table(topic)`, the topic is its own changelog) or from another
table's `filter` / `map_values`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..errors import TopologyError
from ..serde import JsonSerde
from ..topology.graph import Node
from ..topology.stores import StoreSpec
from .stream import _callable
from ..windows import to_millis

if TYPE_CHECKING:
    from .stream import Builder, KStream

__all__ = ["KTable"]


class KTable:
    """A table of the latest value per key (per `Windowed` key for windowed aggregations)."""

    def __init__(self, builder: "Builder", node: Node, key_serde: Any, value_serde: Any, *,
                 store: StoreSpec | None = None, windows: Any = None) -> None:
        self._builder = builder
        self.node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.store = store
        self.windows = windows

    @property
    def store_name(self) -> str | None:
        """The store holding this table (query it with `app.store(name)`), None for a derived table."""
        return self.store.name if self.store is not None else None

    def _derive(self, op: str, fn: Callable | None, name: str | None, *, value_serde: Any = None,
                **attrs: Any) -> "KTable":
        if self.windows is None and "lookup_stores" not in attrs:
            # A derived table is looked up through the table it comes from (its value computed on the way).
            attrs["lookup_stores"] = [self.store] if self.store is not None else self.node.attrs.get("lookup_stores")
        node = self._builder.graph.add("processor", op=op, fn=fn, parents=[self.node], name=name, **attrs)
        return KTable(self._builder, node, self.key_serde, value_serde or self.value_serde, windows=self.windows)

    def get(self, key: Any, default: Any = None) -> Any:
        """The table's current row for `key` in this worker (from an agent, a timer, a DSL function), or `default`.

        Only a table with a store can be read (from a topic, or an aggregation); the key must live in a partition
        this worker holds (`StoreNotHere` otherwise): an agent reading the table's topic, or a co-partitioned
        one, always finds its records' keys here. A versioned table answers with its latest value."""
        if self.store is None:
            raise TopologyError(f"{self!r} has no store of its own to read (a derived or joined table): read the "
                                "table it comes from, or materialize it with an aggregation")
        app = self._builder.app
        if self.store.history_ms is not None:
            from ..runtime.versioned import VersionedTable
            view = app.store(self.store.name)
            kb = self.key_serde.serialize(key)
            found = VersionedTable(self.store.history_ms).latest(view._locate(kb), kb)
            return default if found is None or found[0] is None else self.value_serde.deserialize(found[0])
        return app.store(self.store.name).get(key, default)

    def to_stream(self, name: str | None = None) -> "KStream":
        """The table's updates as a stream of `(key, value)` records (a deletion is `(key, None)`)."""
        from .stream import KStream
        node = self._builder.graph.add("processor", op="to_stream", parents=[self.node], name=name)
        return KStream(self._builder, node, self.key_serde, self.value_serde)

    def filter(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> "KTable":
        """Keep the rows for which `predicate(key, value)` holds; a row that fails becomes a deletion."""
        return self._derive("table_filter", _callable(predicate, "filter"), name)

    def filter_not(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> "KTable":
        """Drop (delete downstream) the rows for which `predicate(key, value)` holds."""
        pred = _callable(predicate, "filter_not")
        return self._derive("table_filter", lambda k, v: not pred(k, v), name)

    def map_values(self, fn: Callable[[Any], Any], name: str | None = None) -> "KTable":
        """Replace each value by `fn(value)`; deletions stay deletions."""
        return self._derive("table_map_values", _callable(fn, "map_values"), name, value_serde=JsonSerde())

    def suppress_until_window_closes(self, name: str | None = None, *, idle_close: Any = None) -> "KTable":
        """Emit each window's final result once, when stream time passes the window's end plus grace (and, for
        sessions, the inactivity gap); intermediate updates and merged-away sessions are not emitted.

        `idle_close` (seconds): once a task has had no record for that long by the wall clock, its stream time
        follows the wall clock, so the last windows of an idle stream close too (off by default: stream time
        is event time only, as in Kafka Streams).
        """
        if self.windows is None:
            raise TopologyError("suppress_until_window_closes() needs a windowed table (windowed_by(...) before "
                                "the aggregation)")
        graph = self._builder.graph
        buffer = StoreSpec(f"{name}-buffer" if name else f"KTABLE-SUPPRESS-STATE-STORE-{len(graph.nodes):010d}",
                           "kv", self.key_serde, self.value_serde)
        idle_ms = to_millis(idle_close, "idle_close", allow_zero=False) if idle_close is not None else None
        return self._derive("suppress", None, name, stores=[buffer], windows=self.windows, idle_close_ms=idle_ms)

    def join(self, other: "KTable", joiner: Callable[[Any, Any], Any], *, foreign_key: Callable | None = None,
             name: str | None = None) -> "KTable":
        """Inner table-table join: a row for each key present in both tables, `joiner(left, right)`; an update on
        either side updates the joined row, a tombstone on either side deletes it. With `foreign_key=fn`,
        `fn(left_value)` names the row of `other` to join (a foreign-key join; see docs/streams.md)."""
        return self._join(other, joiner, "inner", foreign_key, name)

    def left_join(self, other: "KTable", joiner: Callable[[Any, Any], Any], *, foreign_key: Callable | None = None,
                  name: str | None = None) -> "KTable":
        """Left table-table join: every row of this table, `joiner(left, right or None)`."""
        return self._join(other, joiner, "left", foreign_key, name)

    def outer_join(self, other: "KTable", joiner: Callable[[Any, Any], Any], *, name: str | None = None) -> "KTable":
        """Outer table-table join: every key of either table, `joiner(left or None, right or None)`."""
        return self._join(other, joiner, "outer", None, name)

    def _join(self, other: Any, joiner: Callable, how: str, foreign_key: Callable | None, name: str | None
              ) -> "KTable":
        from .joins import table_table_join
        if not isinstance(other, KTable):
            raise TypeError(f"a table joins another KTable (app.table(...) or an aggregation), got {other!r}")
        if other._builder.graph is not self._builder.graph:
            raise TopologyError("cannot join tables of different apps")
        if foreign_key is not None:
            from .fk_join import foreign_key_join
            return foreign_key_join(self, other, joiner, foreign_key, how, name)
        return table_table_join(self, other, joiner, how, name)

    def __repr__(self) -> str:
        return f"KTable({self.node.name}{', store=' + self.store.name if self.store else ''})"

"""Joins, recorded as Kafka Streams wires them: stream-stream, stream-table and table-table.

- Stream-stream (`left.join(right, joiner, JoinWindows(...))`, `left_join`, `outer_join`): each side keeps its
  records in a window store (`<name>-this-store` / `<name>-other-store`); a node per side stores the record, then
  looks for partners in the other side's store; left and outer joins park unmatched records in a shared store
  (`<name>-outer-store`) until the window plus grace has passed on stream time, then emit them with None for the
  missing side. The two side nodes feed a merge node, which is the joined stream.
- Stream-table (`stream.join(table, joiner)`, `left_join`): only stream records trigger; they look the table up
  (as of the record's time when the table is versioned); table updates emit nothing.
- Table-table (`table.join(other, joiner)`, `left_join`, `outer_join`): an update on either side looks up the other
  side's current row and emits the joined row; a tombstone retracts it.

The joined sides must be co-partitioned (the compiler checks it); a stream whose key was changed is repartitioned
first, as before an aggregation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..errors import TopologyError
from ..serde import JsonSerde
from ..topology.stores import StoreSpec
from ..windows import JoinWindows

if TYPE_CHECKING:
    from .stream import KStream
    from .table import KTable

__all__ = ["stream_stream_join", "stream_table_join", "table_table_join", "table_stores", "HOWS"]

HOWS = ("inner", "left", "outer")


def _check(joiner: Any, how: str, allowed: tuple) -> Callable:
    if how not in allowed:
        raise TopologyError(f"this join has no {how!r} form (only {', '.join(allowed)})")
    if not callable(joiner):
        raise TypeError(f"a join needs joiner=(left_value, right_value) -> value, got {joiner!r}")
    return joiner


def _keyed(stream: "KStream", what: str, key_serde: Any = None) -> "KStream":
    """The stream, repartitioned by its key first when an earlier operation changed the key, with the key serde of
    the side it joins (so that one key's bytes, hence its partition, are the same on both sides)."""
    if stream.key_changed:
        return stream.repartition(f"{what}-repartition" if what else None, key_serde=key_serde)
    return stream


def stream_stream_join(left: "KStream", right: "KStream", joiner: Callable, windows: Any, how: str,
                       name: str | None) -> "KStream":
    from .stream import KStream
    _check(joiner, how, HOWS)
    if not isinstance(windows, JoinWindows):
        raise TypeError(f"a stream-stream join needs windows=JoinWindows(before, after, grace=...), got {windows!r}")
    if left._builder.graph is not right._builder.graph:
        raise TopologyError("cannot join streams of different apps")
    graph = left._builder.graph
    base = name or f"KSTREAM-{how.upper()}JOIN-{len(graph.nodes):010d}"
    left_serde = right.key_serde if left.key_changed and not right.key_changed else None
    right_serde = left.key_serde if right.key_changed and not left.key_changed else None
    left = _keyed(left, f"{base}-left" if name else "", left_serde)
    right = _keyed(right, f"{base}-right" if name else "", right_serde)
    retention = max(1, windows.retention_ms)
    this_store = StoreSpec(f"{base}-this-store", "window", left.key_serde, left.value_serde, retention_ms=retention,
                           window_size_ms=max(1, windows.size_ms))
    other_store = StoreSpec(f"{base}-other-store", "window", right.key_serde, right.value_serde,
                            retention_ms=retention, window_size_ms=max(1, windows.size_ms))
    outer_store = None
    if how != "inner":
        outer_store = StoreSpec(f"{base}-outer-store", "kv", None, None)
    stores = [this_store, other_store] + ([outer_store] if outer_store is not None else [])
    common = dict(windows=windows, joiner=joiner, this_serde=(left.key_serde, left.value_serde),
                  other_serde=right.value_serde, outer_store=outer_store, time_name=f"{base}:time",
                  stores=stores)
    this = graph.add("processor", op="stream_stream_join", parents=[left.node], name=f"{base}-this",
                     side="left", outer=how in ("left", "outer"), this_store=this_store, other_store=other_store,
                     **common)
    other = graph.add("processor", op="stream_stream_join", parents=[right.node], name=f"{base}-other",
                      side="right", outer=how == "outer", this_store=other_store, other_store=this_store,
                      **{**common, "this_serde": (right.key_serde, right.value_serde),
                         "other_serde": left.value_serde})
    merged = graph.add("processor", op="merge", parents=[this, other], name=f"{base}-merge")
    return KStream(left._builder, merged, left.key_serde, JsonSerde())


def table_stores(table: "KTable") -> list[StoreSpec]:
    """The stores a lookup of `table` reads: its own, or those of the tables it is derived from."""
    if table.store is not None:
        return [table.store]
    stores = table.node.attrs.get("lookup_stores")
    if stores is None:
        raise TopologyError(f"{table!r} cannot be looked up: a stream or another table joins tables with a store of "
                            "their own, tables derived from them (filter, map_values) and table-table join results; "
                            "not windowed or suppressed tables, nor (yet) a foreign-key join's result")
    return list(stores)


def _send_old_values(node: Any) -> None:
    """Tables feeding a table-table join pass their rows' previous values on (a filter then stays silent when
    neither the old nor the new row passes), as Kafka Streams' enableSendingOldValues does."""
    while node is not None and node.op in ("table_filter", "table_map_values", "table_merge"):
        node.attrs["send_old"] = True
        node = node.parents[0] if node.op != "table_merge" else None


def stream_table_join(stream: "KStream", table: "KTable", joiner: Callable, how: str, name: str | None
                      ) -> "KStream":
    from .stream import KStream
    _check(joiner, how, ("inner", "left"))
    if table.windows is not None:
        raise TopologyError("a stream cannot be joined with a windowed table")
    graph = stream._builder.graph
    base = name or f"KSTREAM-{how.upper()}JOIN-{len(graph.nodes):010d}"
    stream = _keyed(stream, f"{base}-left" if name else "", table.key_serde)
    node = graph.add("processor", op="stream_table_join", parents=[stream.node], name=name, table=table.node,
                     joiner=joiner, how=how, stores=table_stores(table), key_serde=stream.key_serde)
    return KStream(stream._builder, node, stream.key_serde, JsonSerde())


def table_table_join(left: "KTable", right: "KTable", joiner: Callable, how: str, name: str | None) -> "KTable":
    from .table import KTable
    _check(joiner, how, HOWS)
    if left.windows is not None or right.windows is not None:
        raise TopologyError("windowed tables cannot be joined")
    graph = left._builder.graph
    base = name or f"KTABLE-{how.upper()}JOIN-{len(graph.nodes):010d}"
    stores = table_stores(left) + [s for s in table_stores(right) if s not in table_stores(left)]
    _send_old_values(left.node)
    _send_old_values(right.node)
    this = graph.add("processor", op="table_table_join", parents=[left.node], name=f"{base}-this", side="left",
                     how=how, joiner=joiner, other=right.node, stores=stores)
    other = graph.add("processor", op="table_table_join", parents=[right.node], name=f"{base}-other",
                      side="right", how=how, joiner=joiner, other=left.node, stores=stores)
    merged = graph.add("processor", op="table_merge", parents=[this, other], name=f"{base}-merge",
                       lookup_stores=stores, join=(left.node, right.node, how, joiner))
    return KTable(left._builder, merged, left.key_serde, JsonSerde())

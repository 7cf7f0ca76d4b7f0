"""GlobalKTable: a topic read whole by every worker, for lookups and joins that need no co-partitioning.

    countries = app.global_table("countries")                      # store "countries-global-store"
    orders.left_join(countries, lambda order, country: {**order, "country": country},
                     key=lambda order_id, order: order["country_code"]).to("orders-with-country")

Unlike a KTable, whose partitions are spread over the tasks, a global table holds every partition of its topic in
every worker, in one key-value store that no task owns: a stream record on any partition can look up any key, and
the stream keeps its key (no repartition topic). The topic is the table's changelog (no extra topic): a None value
deletes the key, a record with a None key is skipped. A worker restores the store before any task processes a record,
then a reader of its own keeps it current (`streams.runtime.global_tables`); lookups see the table as that reader
has read it so far, so a join's result depends on how far the table's topic was read, as in Kafka Streams.

This module only describes; the runtime opens the store and binds it to the table (`_store`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..serde import JsonSerde
from ..topics import Topic
from ..topology.stores import StoreSpec
from .stream import _callable

if TYPE_CHECKING:
    from .stream import Builder, KStream

__all__ = ["GlobalKTable"]

JOIN_KINDS = ("inner", "left")


def _stream_key(key: Any, value: Any) -> Any:
    return key


class GlobalKTable:
    """Every partition of `topic` as one table, in every worker: `get(key)` from anywhere in the app, and
    `stream.join(table, joiner, key=fn)` / `stream.left_join(...)`."""

    def __init__(self, builder: "Builder", topic: Topic, store_name: str) -> None:
        self._builder = builder
        self.topic = topic
        self.key_serde = topic.key_serde
        self.value_serde = topic.value_serde
        self.spec = StoreSpec(store_name, "kv", topic.key_serde, topic.value_serde, source_topic=topic)
        # The bytes store the runtime (a worker or a TestDriver) opened for this table, None while none holds it.
        self._store: Any = None

    @property
    def store_name(self) -> str:
        """The name of the table's store (also readable with `app.store(name)`)."""
        return self.spec.name

    def get(self, key: Any, default: Any = None) -> Any:
        """The current value of `key`, or `default` when the table has no row for it."""
        store = self._store
        if store is None:
            raise RuntimeError(f"global table {self.store_name!r} is not open in this process: start a worker "
                               "(or a TestDriver)")
        data = store.get(self.key_serde.serialize(key))
        return default if data is None else self.value_serde.deserialize(data)

    def __getitem__(self, key: Any) -> Any:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __contains__(self, key: Any) -> bool:
        return self.get(key) is not None

    def _join_stream(self, stream: "KStream", joiner: Callable[[Any, Any], Any],
                     key: Callable[[Any, Any], Any] | None = None, how: str = "inner", name: str | None = None
                     ) -> "KStream":
        """Record a stream-global-table join: for each stream record, `joiner(value, table.get(key(k, v)))`
        with the stream's key (see `runtime.global_tables.build_global_join` for the null rules)."""
        from .stream import KStream
        if how not in JOIN_KINDS:
            raise ValueError(f"a stream can join a global table as {' or '.join(JOIN_KINDS)}, not {how!r}")
        if stream._builder.graph is not self._builder.graph:
            from ..errors import TopologyError
            raise TopologyError("cannot join a stream with a global table of another app")
        _callable(joiner, "join's joiner")
        key_fn = _callable(key, "join's key") if key is not None else _stream_key
        node = stream._builder.graph.add("processor", op="global_join", fn=joiner, parents=[stream.node],
                                         name=name, global_table=self, key=key_fn, how=how)
        return KStream(stream._builder, node, stream.key_serde, JsonSerde(), stream.key_changed)

    def __repr__(self) -> str:
        return f"GlobalKTable({self.topic.name!r}, store={self.store_name!r})"

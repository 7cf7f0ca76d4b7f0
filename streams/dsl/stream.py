"""KStream: the record-by-record DSL (filter, map, branch, merge, repartition, to, through, group_by, process).

Every method records a node in the graph and returns a new stream over it; nothing runs until a worker compiles the
graph. Functions taking a record receive `(key, value)`; `map_values` and `flat_map_values` receive the value only.
Key-changing operations (map, flat_map, select_key) mark the stream so that a later key-dependent operation
(group_by_key) repartitions it through `<app id>-<node name>-repartition`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterable

from ..errors import TopologyError
from ..serde import JsonSerde, Serde, serde_for
from ..topics import Topic
from ..topology.graph import Graph, Node

if TYPE_CHECKING:
    from .grouped import GroupedStream
    from .table import KTable

__all__ = ["Builder", "KStream", "SplitStream"]


class Builder:
    """What streams share: the graph and a way to turn a topic name into the app's Topic."""

    def __init__(self, graph: Graph, topic_factory: Callable[..., Topic]) -> None:
        self.graph = graph
        self.topic_factory = topic_factory
        self.app: Any = None       # the App whose graph this is (for reads of its stores), set by the App

    def topic(self, topic: Topic | str) -> Topic:
        if isinstance(topic, Topic):
            return topic
        if isinstance(topic, str):
            return self.topic_factory(topic)
        raise TypeError(f"expected a Topic or a topic name, got {topic!r}")

    def stream(self, topics: Topic | str | Iterable[Topic | str], name: str | None = None) -> "KStream":
        """A stream over one or more topics (records of several topics are merged in timestamp order per task)."""
        if isinstance(topics, (Topic, str)):
            topics = [topics]
        resolved = [self.topic(t) for t in topics]
        if not resolved:
            raise ValueError("a stream needs at least one topic")
        node = self.graph.source_for(resolved, name=name)
        return KStream(self, node, resolved[0].key_serde, resolved[0].value_serde)

    def table(self, topic: Topic | str, name: str | None = None, *, versioned: bool = False,
              history: Any = None) -> "KTable":
        """The topic read as a table (latest value per key; a None value deletes); the topic is its changelog.
        `versioned=True, history=...` keeps earlier values too (see `App.table`)."""
        from ..topology.stores import StoreSpec
        from ..windows import to_millis
        from .table import KTable
        t = self.topic(topic)
        history_ms = None
        if versioned:
            if history is None:
                raise TopologyError("a versioned table needs history= (how long earlier values are kept)")
            history_ms = to_millis(history, "history")
        elif history is not None:
            raise TopologyError("history= is for versioned tables (versioned=True)")
        source = self.graph.source_for([t])
        store = StoreSpec(name or f"{t.name}-STATE-STORE", "kv", t.key_serde, t.value_serde, source_topic=t,
                          timestamped=True, history_ms=history_ms)
        node = self.graph.add("processor", op="table_source", parents=[source], name=name, stores=[store])
        return KTable(self, node, t.key_serde, t.value_serde, store=store)


def _callable(fn: Any, what: str) -> Callable:
    if not callable(fn):
        raise TypeError(f"{what} needs a function, got {fn!r}")
    return fn


class KStream:
    """A stream of (key, value) records: the Kafka Streams KStream, described lazily."""

    def __init__(self, builder: Builder, node: Node, key_serde: Serde, value_serde: Serde,
                 key_changed: bool = False) -> None:
        self._builder = builder
        self.node = node
        self.key_serde = key_serde
        self.value_serde = value_serde
        self.key_changed = key_changed

    # ---- helpers ----

    def _op(self, op: str, fn: Callable | None, name: str | None, *, key_serde: Serde | None = None,
            value_serde: Serde | None = None, key_changed: bool | None = None, **attrs: Any) -> "KStream":
        node = self._builder.graph.add("processor", op=op, fn=fn, parents=[self.node], name=name, **attrs)
        return KStream(self._builder, node, key_serde or self.key_serde, value_serde or self.value_serde,
                       self.key_changed if key_changed is None else key_changed)

    # ---- stateless operations ----

    def filter(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> "KStream":
        """Keep the records for which `predicate(key, value)` is true."""
        return self._op("filter", _callable(predicate, "filter"), name)

    def filter_not(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> "KStream":
        """Drop the records for which `predicate(key, value)` is true."""
        return self._op("filter_not", _callable(predicate, "filter_not"), name)

    def map(self, fn: Callable[[Any, Any], tuple[Any, Any]], name: str | None = None) -> "KStream":
        """Replace each record by `fn(key, value) -> (new_key, new_value)`; marks the stream for repartitioning."""
        return self._op("map", _callable(fn, "map"), name, key_serde=JsonSerde(), value_serde=JsonSerde(),
                        key_changed=True)

    def map_values(self, fn: Callable[[Any], Any], name: str | None = None) -> "KStream":
        """Replace each value by `fn(value)`; the key stays, so no repartitioning is needed."""
        return self._op("map_values", _callable(fn, "map_values"), name, value_serde=JsonSerde())

    def flat_map(self, fn: Callable[[Any, Any], Iterable[tuple[Any, Any]]], name: str | None = None) -> "KStream":
        """Replace each record by zero or more `(key, value)` pairs; marks the stream for repartitioning."""
        return self._op("flat_map", _callable(fn, "flat_map"), name, key_serde=JsonSerde(), value_serde=JsonSerde(),
                        key_changed=True)

    def flat_map_values(self, fn: Callable[[Any], Iterable[Any]], name: str | None = None) -> "KStream":
        """Replace each value by zero or more values, each with the record's key."""
        return self._op("flat_map_values", _callable(fn, "flat_map_values"), name, value_serde=JsonSerde())

    def select_key(self, fn: Callable[[Any, Any], Any], name: str | None = None) -> "KStream":
        """Set the key to `fn(key, value)`; marks the stream for repartitioning."""
        return self._op("select_key", _callable(fn, "select_key"), name, key_serde=JsonSerde(), key_changed=True)

    def peek(self, fn: Callable[[Any, Any], Any], name: str | None = None) -> "KStream":
        """Call `fn(key, value)` for each record and pass the record on unchanged."""
        return self._op("peek", _callable(fn, "peek"), name)

    def foreach(self, fn: Callable[[Any, Any], Any], name: str | None = None) -> None:
        """Call `fn(key, value)` for each record; the end of this stream."""
        self._op("foreach", _callable(fn, "foreach"), name)

    def split(self, name: str | None = None) -> "SplitStream":
        """Route each record to the first branch whose predicate holds (Kafka Streams' `split().branch(...)`)."""
        node = self._builder.graph.add("split", op="split", parents=[self.node], name=name, predicates=[])
        return SplitStream(self, node)

    def merge(self, *others: "KStream", name: str | None = None) -> "KStream":
        """One stream with the records of this stream and of `others`."""
        for other in others:
            if not isinstance(other, KStream):
                raise TypeError(f"merge needs KStreams, got {other!r}")
            if other._builder.graph is not self._builder.graph:
                raise TopologyError("cannot merge streams of different apps")
        node = self._builder.graph.add("processor", op="merge", parents=[self.node, *(o.node for o in others)],
                                       name=name)
        changed = self.key_changed or any(o.key_changed for o in others)
        return KStream(self._builder, node, self.key_serde, self.value_serde, changed)

    # ---- topics ----

    def repartition(self, name: str | None = None, *, partitions: int | None = None, key_serde: Any = None,
                    value_serde: Any = None) -> "KStream":
        """Write through the internal topic `<app id>-<name>-repartition` and continue from it.

        The topic gets the writing sub-topology's partition count unless `partitions` is given; records are
        partitioned by the murmur2 hash of the serialized key, as Kafka's default partitioner does.
        """
        graph = self._builder.graph
        ks = serde_for(key_serde) if key_serde is not None else self.key_serde
        vs = serde_for(value_serde) if value_serde is not None else self.value_serde
        node = graph.add("repartition", op="repartition", parents=[self.node], name=name)
        topic = Topic(f"{graph.app_id}-{node.name}-repartition", key_serde=ks, value_serde=vs,
                      partitions=partitions, internal=True)
        node.topics = [topic]
        source = graph.add("source", topics=[topic], name=f"{node.name}-source")
        node.attrs["downstream"] = source
        return KStream(self._builder, source, ks, vs, key_changed=False)

    def to(self, topic: Topic | str, name: str | None = None) -> None:
        """Write every record to `topic` with the topic's serdes; the end of this stream."""
        target = self._builder.topic(topic)
        self._builder.graph.add("sink", op="to", parents=[self.node], topics=[target], name=name)

    def through(self, topic: Topic | str, name: str | None = None) -> "KStream":
        """Write to `topic` and continue with a new stream that reads it back (a sub-topology boundary)."""
        target = self._builder.topic(topic)
        self.to(target, name=name)
        return self._builder.stream(target)

    # ---- grouping and state ----

    def group_by(self, fn: Callable[[Any, Any], Any], name: str | None = None, *, key_serde: Any = None,
                 value_serde: Any = None) -> "GroupedStream":
        """Group by a new key `fn(key, value)`: the aggregation repartitions through
        `<app id>-<name>-repartition`."""
        keyed = self._op("select_key", _callable(fn, "group_by"), None, key_serde=JsonSerde(), key_changed=True)
        return keyed._group(name, key_serde, value_serde)

    def group_by_key(self, name: str | None = None, *, key_serde: Any = None, value_serde: Any = None
                     ) -> "GroupedStream":
        """Group by the current key; the aggregation repartitions only if an earlier operation changed the key."""
        return self._group(name, key_serde, value_serde)

    def _group(self, name: str | None, key_serde: Any, value_serde: Any) -> "GroupedStream":
        from .grouped import GroupedStream
        return GroupedStream(self, name, key_serde, value_serde)

    def process(self, processor: Callable[..., Any], *, stores: list | None = None, name: str | None = None
                ) -> "KStream":
        """The Processor API escape hatch: `processor(ctx, key, value)` per record, with `ctx.store(name)`,
        `ctx.forward(key, value)` and punctuation (`ctx.schedule(...)`); `stores` are `StoreSpec`s it uses
        (see `streams.stores`)."""
        if not callable(getattr(processor, "process", None)):
            _callable(processor, "process")
        specs = list(stores or [])
        return self._op("process", processor, name, stores=specs, value_serde=JsonSerde())

    def join(self, other: Any, joiner: Callable[[Any, Any], Any], windows: Any = None, *, key: Callable | None = None,
             name: str | None = None) -> "KStream":
        """Inner join, `joiner(this value, other value)` per match, keeping this stream's key:

        - with a KStream and `windows=JoinWindows(...)`: records of both streams within the window of each other;
        - with a KTable: each record with the table's current row for its key (table updates emit nothing);
        - with a GlobalKTable and `key=fn(key, value)`: each record with the global table's row `fn` names.
        """
        return self._join(other, joiner, windows, key, name, "inner")

    def left_join(self, other: Any, joiner: Callable[[Any, Any], Any], windows: Any = None, *,
                  key: Callable | None = None, name: str | None = None) -> "KStream":
        """Like `join`, and a record without partner is joined with None (with a KStream: once its window plus
        grace has passed on stream time, never early and never twice)."""
        return self._join(other, joiner, windows, key, name, "left")

    def outer_join(self, other: "KStream", joiner: Callable[[Any, Any], Any], windows: Any = None, *,
                   name: str | None = None) -> "KStream":
        """Stream-stream outer join: like `left_join`, and records of `other` without partner too
        (`joiner(None, other value)`)."""
        return self._join(other, joiner, windows, None, name, "outer")

    def _join(self, other: Any, joiner: Callable, windows: Any, key: Callable | None, name: str | None,
              how: str) -> "KStream":
        from .global_table import GlobalKTable
        from .joins import stream_stream_join, stream_table_join
        from .table import KTable
        if isinstance(other, GlobalKTable):
            if how == "outer":
                raise TopologyError("a stream and a global table have no outer join (as in Kafka Streams)")
            if windows is not None:
                raise TopologyError(f"a stream-global table join takes no windows, got {windows!r}; give the "
                                    "function that finds the table's key as key=")
            return other._join_stream(self, joiner, key=key, how=how, name=name)
        if key is not None:
            raise TopologyError("key= (a key extractor) is for joins with a GlobalKTable only")
        if isinstance(other, KStream):
            return stream_stream_join(self, other, joiner, windows, how, name)
        if isinstance(other, KTable):
            if windows is not None:
                raise TopologyError("a stream-table join takes no windows")
            if how == "outer":
                raise TopologyError("a stream and a table have no outer join (as in Kafka Streams); use left_join")
            return stream_table_join(self, other, joiner, how, name)
        raise TypeError(f"a stream joins a KStream, a KTable or a GlobalKTable, got {other!r}")

    def __repr__(self) -> str:
        return f"KStream({self.node.name})"


class SplitStream:
    """The branches of `KStream.split()`: add `.branch(predicate, name=)`, finish with `.default_branch()`.

    Finishing returns a dict from branch name to KStream. A record goes to the first branch whose predicate holds,
    else to the default branch (if any), else nowhere.
    """

    def __init__(self, stream: KStream, node: Node) -> None:
        self._stream = stream
        self._node = node
        self._branches: dict[str, KStream] = {}

    def _add(self, predicate: Callable | None, name: str | None) -> "SplitStream":
        key = name or str(len(self._branches) + 1)
        if key in self._branches:
            raise TopologyError(f"branch {key!r} already exists")
        node_name = f"{self._node.name}-{key}"
        s = self._stream
        branch = s._builder.graph.add("processor", op="branch", fn=predicate, parents=[self._node], name=node_name)
        self._node.attrs["predicates"].append(predicate)
        self._branches[key] = KStream(s._builder, branch, s.key_serde, s.value_serde, s.key_changed)
        return self

    def branch(self, predicate: Callable[[Any, Any], bool], name: str | None = None) -> "SplitStream":
        """Add a branch taking the records for which `predicate(key, value)` is true (and no earlier one was)."""
        return self._add(_callable(predicate, "branch"), name)

    def default_branch(self, name: str | None = "default") -> dict[str, KStream]:
        """Add a branch taking every record no other branch took, and return all branches by name."""
        self._add(None, name)
        return dict(self._branches)

    def no_default_branch(self) -> dict[str, KStream]:
        """Return the branches by name; records no branch takes are dropped."""
        return dict(self._branches)

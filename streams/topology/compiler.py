"""Graph -> sub-topologies: connected components of the graph, cut at repartition topics.

Each sub-topology runs as one task per partition of its sources. The compiler resolves partition counts (declared on
the topic, or known from the broker), gives repartition topics the partition count of the sub-topology that writes
them unless one was given, and checks co-partitioning where an operation needs records of one key on one task.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import CoPartitionError, TopologyError
from ..topics import Topic
from .graph import Graph, Node
from .stores import StoreSpec, changelog_topic

__all__ = ["SubTopology", "Topology", "compile_graph"]

# Operations that need all records of a key on one task: their sub-topology's source topics must be co-partitioned.
# Every node with a store is one too (a key's state lives in one task).
KEY_LOCAL_KINDS = {"grouped"}


def node_stores(node: Node) -> list[StoreSpec]:
    """The stores a node reads or writes."""
    return node.attrs.get("stores", [])


@dataclass(eq=False)
class SubTopology:
    """A connected piece of the graph; tasks are (id, partition) for partition in range(partitions)."""

    id: int
    nodes: list[Node]
    sources: list[Node]
    partitions: int | None = None

    @property
    def source_topics(self) -> list[Topic]:
        return [t for s in self.sources for t in s.topics]

    @property
    def sink_topics(self) -> list[Topic]:
        out = []
        for node in self.nodes:
            if node.kind in ("sink", "repartition"):
                out.append(node.topic)
            elif node.kind == "agent":
                out.extend(node.attrs.get("sink_topics", []))
        return out

    @property
    def repartition_topics(self) -> list[Topic]:
        return [n.topic for n in self.nodes if n.kind == "repartition"]

    @property
    def stores(self) -> list[StoreSpec]:
        """Every store of the sub-topology's nodes, once each, in node order."""
        out: dict[str, StoreSpec] = {}
        for node in self.nodes:
            for spec in node_stores(node):
                out.setdefault(spec.name, spec)
        return list(out.values())

    @property
    def changelog_topics(self) -> list[Topic]:
        """The changelog topics of its logged stores (a source table's topic is not one: it is a source)."""
        return [s.changelog for s in self.stores if s.changelog is not None and s.source_topic is None]


@dataclass
class Topology:
    """The compiled topology: sub-topologies in order, and every topic the application touches."""

    app_id: str
    subtopologies: list[SubTopology] = field(default_factory=list)
    # The partition count each repartition topic must have (the writer's, or the topic it is partitioned like).
    repartition_counts: dict[str, int | None] = field(default_factory=dict)
    # The stores of global tables: every worker holds each whole (its `source_topic`), no task does.
    global_stores: list[StoreSpec] = field(default_factory=list)

    def topics(self) -> dict[str, Topic]:
        """Every topic read or written, by name (sources, sinks and internal topics)."""
        out: dict[str, Topic] = {}
        for sub in self.subtopologies:
            for t in sub.source_topics + sub.sink_topics + sub.changelog_topics:
                out.setdefault(t.name, t)
        return out

    @property
    def source_topics(self) -> list[str]:
        return sorted({t.name for s in self.subtopologies for t in s.source_topics if not t.internal})

    @property
    def sink_topics(self) -> list[str]:
        return sorted({t.name for s in self.subtopologies for t in s.sink_topics if not t.internal})

    @property
    def repartition_topics(self) -> list[str]:
        return sorted({t.name for s in self.subtopologies for t in s.repartition_topics})

    @property
    def changelog_topics(self) -> list[str]:
        return sorted({t.name for s in self.subtopologies for t in s.changelog_topics})

    def stores(self) -> dict[str, tuple[StoreSpec, "SubTopology"]]:
        """Every store by name, with the sub-topology whose tasks hold it."""
        return {spec.name: (spec, sub) for sub in self.subtopologies for spec in sub.stores}

    def subtopology_of_topic(self) -> dict[str, int]:
        """Which sub-topology reads each source topic (a topic is read by exactly one)."""
        return {t.name: s.id for s in self.subtopologies for t in s.source_topics}

    def describe(self) -> str:
        from .render import describe
        return describe(self)

    def to_mermaid(self) -> str:
        from .render import to_mermaid
        return to_mermaid(self)

    def to_dot(self) -> str:
        from .render import to_dot
        return to_dot(self)

    def __str__(self) -> str:
        return self.describe()


def _components(graph: Graph) -> list[list[Node]]:
    parent = {n: n for n in graph.nodes}

    def find(n: Node) -> Node:
        while parent[n] is not n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for node in graph.nodes:
        for p in node.parents:
            parent[find(node)] = find(p)
    # Nodes sharing a store run in one task (Kafka Streams joins their sub-topologies the same way).
    holder: dict[str, Node] = {}
    for node in graph.nodes:
        for spec in node_stores(node):
            if spec.name in holder:
                parent[find(node)] = find(holder[spec.name])
            else:
                holder[spec.name] = node
    groups: dict[Node, list[Node]] = {}
    for node in graph.nodes:
        groups.setdefault(find(node), []).append(node)
    return sorted(groups.values(), key=lambda g: g[0].index)


def _source_ancestors(node: Node) -> list[Node]:
    seen, stack, out = set(), [node], []
    while stack:
        n = stack.pop()
        if id(n) in seen:
            continue
        seen.add(id(n))
        if n.kind == "source":
            out.append(n)
        stack.extend(n.parents)
    return out


def compile_graph(graph: Graph, partition_counts: dict[str, int] | None = None) -> Topology:
    """Compile the graph; `partition_counts` gives the broker's counts for topics that declare none.

    Without counts (describing an app offline) partitions stay None where unknown and co-partitioning is checked
    only between topics whose counts are known.
    """
    counts = dict(partition_counts or {})
    topo = Topology(graph.app_id)
    for i, nodes in enumerate(_components(graph)):
        sources = [n for n in nodes if n.kind == "source"]
        if not sources:
            raise TopologyError(f"nodes {[n.name for n in nodes]} have no source")
        topo.subtopologies.append(SubTopology(i, nodes, sources))
        for node in nodes:
            for spec in node_stores(node):
                changelog_topic(graph.app_id, spec)

    # Resolve partition counts in dependency order: a repartition topic takes its writer's task count.
    writer_of = {n.topic.name: sub for sub in topo.subtopologies for n in sub.nodes if n.kind == "repartition"}
    # Internal topics partitioned like another topic (a foreign-key join's subscription and response topics).
    like = {n.topic.name: n.attrs["partitions_like"] for sub in topo.subtopologies for n in sub.nodes
            if n.kind == "repartition" and n.attrs.get("partitions_like") is not None}
    resolving: set[int] = set()

    def count_of(topic: Topic) -> int | None:
        if topic.partitions is not None:
            return topic.partitions
        if topic.name in like:
            return count_of(like[topic.name])
        if topic.name in counts:
            return counts[topic.name]
        if topic.internal and topic.name in writer_of:
            return tasks_of(writer_of[topic.name])
        return None

    def tasks_of(sub: SubTopology) -> int | None:
        if sub.partitions is not None:
            return sub.partitions
        if sub.id in resolving:
            raise TopologyError(f"sub-topology {sub.id} depends on itself through repartition topics")
        resolving.add(sub.id)
        known = [c for c in (count_of(t) for t in sub.source_topics) if c is not None]
        sub.partitions = max(known) if known else None
        resolving.discard(sub.id)
        return sub.partitions

    for sub in topo.subtopologies:
        tasks_of(sub)
    for sub in topo.subtopologies:
        for node in sub.nodes:
            if node.kind == "repartition" and node.topic.partitions is None and node.topic.name not in like:
                counts[node.topic.name] = sub.partitions if sub.partitions is not None else counts.get(node.topic.name)
    for sub in topo.subtopologies:
        _check_copartitioning(sub, count_of)
    topo.repartition_counts = {n.topic.name: count_of(n.topic) for sub in topo.subtopologies for n in sub.nodes
                               if n.kind == "repartition"}
    return topo


def _check_copartitioning(sub: SubTopology, count_of) -> None:
    # Nodes sharing a store (the two sides of a join, a table and the stream looking it up) need the records of
    # one key on one task, whichever of their inputs they come from.
    users: dict[str, list[Node]] = {}
    for node in sub.nodes:
        for spec in node_stores(node):
            users.setdefault(spec.name, []).append(node)
    for node in sub.nodes:
        if node.kind not in KEY_LOCAL_KINDS and not node_stores(node):
            continue
        group = {node, *(n for spec in node_stores(node) for n in users[spec.name])}
        topics = {t.name: t for n in group for s in _source_ancestors(n) for t in s.topics}
        known = {name: count_of(t) for name, t in topics.items() if count_of(t) is not None}
        if len(set(known.values())) > 1:
            detail = ", ".join(f"'{name}' has {n}" for name, n in sorted(known.items()))
            what = "joins" if any("join" in n.op for n in group) else "needs"
            raise CoPartitionError(
                f"{node.name} ({node.op or node.kind}) {what} input topics that must be co-partitioned (the same "
                f"number of partitions) so that one key is always on one task, but {detail} partitions. Give them "
                f"the same partition count, or call .repartition(partitions=...) on the stream first")

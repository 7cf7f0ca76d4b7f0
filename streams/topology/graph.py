"""The logical graph the DSL and the agents record: nodes with parents, and nothing that runs.

A node's `kind` says what it does:

- ``source``: reads `topics`; a source has no parents.
- ``processor``: applies `op` (filter, filter_not, map, map_values, flat_map, flat_map_values, select_key, peek,
  foreach, merge, branch) with the user's `fn`.
- ``split``: routes each record to the first of its ``branch`` children whose predicate holds.
- ``sink``: writes to `topic` (``to``/``through``).
- ``repartition``: writes to an internal topic; a separate ``source`` node (its `downstream`) reads it back, which is
  where the compiler cuts the graph into sub-topologies.
- ``grouped``: a grouping recorded for the aggregation part; it needs its input partitioned by key.
- ``agent``: an ``@app.agent`` reading its source.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from typing import Any, Callable

from ..errors import TopologyError
from ..topics import Topic

__all__ = ["Graph", "Node"]

_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass(eq=False)
class Node:
    """One vertex of the logical graph."""

    name: str
    kind: str
    op: str = ""
    fn: Callable | None = None
    parents: list["Node"] = field(default_factory=list)
    topics: list[Topic] = field(default_factory=list)      # source: what it reads; sink/repartition: [target]
    index: int = 0                                         # creation order, for stable output
    attrs: dict[str, Any] = field(default_factory=dict)    # op-specific: branch predicates, agent object, ...

    @property
    def topic(self) -> Topic:
        return self.topics[0]

    def __repr__(self) -> str:
        return f"Node({self.name!r}, {self.kind}{'/' + self.op if self.op else ''})"


class Graph:
    """Nodes in creation order, with unique names; `app_id` names the internal topics."""

    def __init__(self, app_id: str) -> None:
        self.app_id = app_id
        self.nodes: list[Node] = []
        self._names: set[str] = set()
        self._counter = itertools.count()

    def add(self, kind: str, *, op: str = "", fn: Callable | None = None, parents: list[Node] | None = None,
            topics: list[Topic] | None = None, name: str | None = None, **attrs: Any) -> Node:
        """Record a node; `name` defaults to Kafka Streams' style, e.g. KSTREAM-FILTER-0000000003."""
        index = next(self._counter)
        if name is None:
            label = (op or kind).upper().replace("_", "")
            name = f"KSTREAM-{label}-{index:010d}"
        elif not isinstance(name, str) or not _NAME_RE.match(name):
            raise TopologyError(f"bad node name {name!r}: use letters, digits, '.', '_' and '-'")
        if name in self._names:
            raise TopologyError(f"a node named {name!r} already exists; names must be unique")
        self._names.add(name)
        node = Node(name=name, kind=kind, op=op, fn=fn, parents=list(parents or []), topics=list(topics or []),
                    index=index, attrs=attrs)
        self.nodes.append(node)
        return node

    def source_for(self, topics: list[Topic], name: str | None = None) -> Node:
        """The source node reading exactly these topics, shared when a stream over them exists already."""
        names = sorted(t.name for t in topics)
        for node in self.nodes:
            if node.kind == "source" and sorted(t.name for t in node.topics) == names and name is None:
                return node
        taken = {t.name for n in self.nodes if n.kind == "source" for t in n.topics}
        overlap = sorted(taken & set(names))
        if overlap:
            raise TopologyError(f"topic(s) {overlap} are already read by another stream; a topic can be the "
                                "source of one stream only (use .merge() or read it once and branch)")
        return self.add("source", topics=topics, name=name)

    def children(self) -> dict[Node, list[Node]]:
        out: dict[Node, list[Node]] = {n: [] for n in self.nodes}
        for node in self.nodes:
            for parent in node.parents:
                out[parent].append(node)
        return out

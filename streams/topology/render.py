"""Text, Mermaid and Graphviz renderings of a compiled topology (one box per processor, topics between)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .graph import Node

if TYPE_CHECKING:
    from .compiler import Topology

__all__ = ["describe", "to_mermaid", "to_dot"]


def _children(topo: "Topology") -> dict[Node, list[Node]]:
    out: dict[Node, list[Node]] = {}
    for sub in topo.subtopologies:
        for n in sub.nodes:
            out.setdefault(n, [])
            for p in n.parents:
                out.setdefault(p, []).append(n)
    return out


def _label(node: Node) -> str:
    if node.kind == "source":
        return "Source"
    if node.kind in ("sink", "repartition"):
        return "Sink"
    if node.kind == "agent":
        return "Agent"
    return "Processor"


def describe(topo: "Topology") -> str:
    """Kafka Streams' `Topology.describe()` layout: sub-topologies, their nodes, and arrows between them."""
    children = _children(topo)
    lines = ["Topologies:"]
    for sub in topo.subtopologies:
        parts = f" (tasks: {sub.partitions})" if sub.partitions is not None else ""
        lines.append(f"   Sub-topology: {sub.id}{parts}")
        for node in sub.nodes:
            if node.kind == "source":
                lines.append(f"    Source: {node.name} (topics: [{', '.join(t.name for t in node.topics)}])")
            elif node.kind in ("sink", "repartition"):
                lines.append(f"    Sink: {node.name} (topic: {node.topic.name})")
            elif node.kind == "agent":
                sinks = [getattr(s, "name", repr(s)) for s in node.attrs.get("sinks", [])]
                lines.append(f"    Agent: {node.name} (concurrency: {node.attrs.get('concurrency', 1)}, "
                             f"sinks: [{', '.join(sinks)}])")
            else:
                stores = ", ".join(spec.name for spec in node.attrs.get("stores", []))
                lines.append(f"    Processor: {node.name} (stores: [{stores}])")
            if children.get(node):
                lines.append(f"      --> {', '.join(c.name for c in children[node])}")
            if node.parents:
                lines.append(f"      <-- {', '.join(p.name for p in node.parents)}")
        lines.append("")
    for spec in topo.global_stores:
        lines.append(f"   Global store: {spec.name} (topic: {spec.source_topic.name}; every worker holds all of it, "
                     "no tasks)")
        lines.append("")
    lines.append(f"Source topics: {', '.join(topo.source_topics) or '-'}")
    lines.append(f"Sink topics: {', '.join(topo.sink_topics) or '-'}")
    lines.append(f"Repartition topics: {', '.join(topo.repartition_topics) or '-'}")
    lines.append(f"Changelog topics: {', '.join(topo.changelog_topics) or '-'}")
    return "\n".join(lines) + "\n"


def _id(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)


def _topic_id(name: str) -> str:
    return "t_" + "".join(c if c.isalnum() else "_" for c in name)


def _edges(topo: "Topology"):
    """(from id, to id) pairs: processor edges, topic -> source and sink -> topic."""
    edges, topics = [], {}
    for sub in topo.subtopologies:
        for node in sub.nodes:
            for p in node.parents:
                edges.append((_id(p.name), _id(node.name)))
            if node.kind == "source":
                for t in node.topics:
                    topics[t.name] = t
                    edges.append((_topic_id(t.name), _id(node.name)))
            elif node.kind in ("sink", "repartition"):
                topics[node.topic.name] = node.topic
                edges.append((_id(node.name), _topic_id(node.topic.name)))
            elif node.kind == "agent":
                for t in node.attrs.get("sink_topics", []):
                    topics[t.name] = t
                    edges.append((_id(node.name), _topic_id(t.name)))
            if node.op == "global_join":
                edges.append((_global_id(node.attrs["global_table"].store_name), _id(node.name)))
    for spec in topo.global_stores:
        topics[spec.source_topic.name] = spec.source_topic
        edges.append((_topic_id(spec.source_topic.name), _global_id(spec.name)))
    return edges, topics


def _global_id(name: str) -> str:
    return "g_" + "".join(c if c.isalnum() else "_" for c in name)


def to_mermaid(topo: "Topology") -> str:
    """A Mermaid flowchart: one subgraph per sub-topology, topics as rounded boxes between them."""
    edges, topics = _edges(topo)
    lines = ["flowchart TD"]
    for name in sorted(topics):
        lines.append(f'    {_topic_id(name)}(["{name}"])')
    for sub in topo.subtopologies:
        lines.append(f'    subgraph sub{sub.id}["Sub-topology {sub.id}"]')
        for node in sub.nodes:
            lines.append(f'        {_id(node.name)}["{_label(node)}: {node.name}"]')
        lines.append("    end")
    for spec in topo.global_stores:
        lines.append(f'    {_global_id(spec.name)}[("Global store: {spec.name}")]')
    for a, b in edges:
        lines.append(f"    {a} --> {b}")
    return "\n".join(lines) + "\n"


def to_dot(topo: "Topology") -> str:
    """A Graphviz digraph: one cluster per sub-topology, topics as ellipses between them."""
    edges, topics = _edges(topo)
    lines = ["digraph topology {", "    rankdir=TB;", "    node [shape=box, fontname=Helvetica];"]
    for name in sorted(topics):
        lines.append(f'    {_topic_id(name)} [label="{name}", shape=ellipse, style=filled, fillcolor="#eeeeee"];')
    for sub in topo.subtopologies:
        lines.append(f"    subgraph cluster_{sub.id} {{")
        lines.append(f'        label="Sub-topology {sub.id}";')
        for node in sub.nodes:
            lines.append(f'        {_id(node.name)} [label="{_label(node)}\\n{node.name}"];')
        lines.append("    }")
    for spec in topo.global_stores:
        lines.append(f'    {_global_id(spec.name)} [label="Global store\\n{spec.name}", shape=cylinder];')
    for a, b in edges:
        lines.append(f"    {a} -> {b};")
    lines.append("}")
    return "\n".join(lines) + "\n"

"""Turn a sub-topology's nodes into plain Python closures: `process(key, value)` per source topic.

A record flows through nested function calls, with no per-record allocation besides the user's own and no await,
so a record costs about the user's functions plus one call per node. The record being processed (for its timestamp,
headers, topic, partition and offset) is published in a `RecordContext` the worker updates per record.
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ..topology.compiler import SubTopology
from ..topology.graph import Node
from .stateful import STATEFUL_OPS, build_stateful

__all__ = ["RecordContext", "build_processors"]

Process = Callable[[Any, Any], None]


class RecordContext:
    """What the closures share while a record is processed: the input record (an aiokafka ConsumerRecord), the
    timestamp of what is being forwarded (the record's, or a window result's) and the task's state."""

    __slots__ = ("record", "timestamp", "task", "clock", "old", "latest")

    def __init__(self) -> None:
        self.record: Any = None
        self.timestamp: int | None = None
        self.task: Any = None
        self.old: Any = None        # a table update's previous row (what table joins retract), set by table nodes
        self.latest = True          # False for an out-of-order update of a versioned table
        self.clock: Callable[[], int] = _wall_clock_ms   # the test driver substitutes its own clock


def _wall_clock_ms() -> int:
    return int(time.time() * 1000)


def _noop(key: Any, value: Any) -> None:
    return None


def _fanout(downs: list[Process]) -> Process:
    if not downs:
        return _noop
    if len(downs) == 1:
        return downs[0]
    downs = tuple(downs)

    def fanout(key, value):
        for d in downs:
            d(key, value)
    return fanout


def _processor(op: str, fn: Callable, down: Process) -> Process:
    # One closure per operation; the branches are kept apart so each closure does no dispatch per record.
    if op == "filter":
        def process(k, v):
            if fn(k, v):
                down(k, v)
    elif op == "filter_not":
        def process(k, v):
            if not fn(k, v):
                down(k, v)
    elif op == "map":
        def process(k, v):
            k2, v2 = fn(k, v)
            down(k2, v2)
    elif op == "map_values":
        def process(k, v):
            down(k, fn(v))
    elif op == "flat_map":
        def process(k, v):
            for k2, v2 in fn(k, v):
                down(k2, v2)
    elif op == "flat_map_values":
        def process(k, v):
            for v2 in fn(v):
                down(k, v2)
    elif op == "select_key":
        def process(k, v):
            down(fn(k, v), v)
    elif op == "peek":
        def process(k, v):
            fn(k, v)
            down(k, v)
    elif op == "foreach":
        def process(k, v):
            fn(k, v)
    elif op in ("merge", "branch"):
        return down
    else:
        raise ValueError(f"unknown operation {op!r}")
    return process


def build_processors(sub: SubTopology, ctx: RecordContext, append: Callable,
                     agent_hook: Callable[[Node], Process]) -> dict[str, Process]:
    """{source topic name: process(key, value)} for one task of `sub`.

    `append(topic, key_bytes, value_bytes, timestamp, headers)` queues output; `agent_hook(node)` returns the
    function that hands a record to an agent.
    """
    children: dict[Node, list[Node]] = {n: [] for n in sub.nodes}
    for n in sub.nodes:
        for p in n.parents:
            children[p].append(n)
    built: dict[Node, Process] = {}

    def build(node: Node) -> Process:
        if node in built:
            return built[node]
        kids = sorted(children[node], key=lambda n: n.index)
        if node.kind == "split":
            pairs = tuple(zip(node.attrs["predicates"], [build(c) for c in kids]))

            def process(k, v):
                for pred, d in pairs:
                    if pred is None or pred(k, v):
                        d(k, v)
                        return
        elif node.kind in ("sink", "repartition"):
            topic = node.topic
            name, ks, vs = topic.name, topic.key_serde.serialize, topic.value_serde.serialize

            def process(k, v):
                append(name, ks(k), vs(v), ctx.timestamp, ctx.record.headers or None)
        elif node.kind == "agent":
            process = agent_hook(node)
        elif node.kind in ("source", "grouped"):
            process = _fanout([build(c) for c in kids])
        elif node.op in STATEFUL_OPS:
            process = build_stateful(node, ctx, _fanout([build(c) for c in kids]))
        elif node.op == "global_join":
            from .global_tables import build_global_join
            process = build_global_join(node, ctx, _fanout([build(c) for c in kids]))
        elif node.op == "process":
            from .processor_api import build_process
            process = build_process(node, ctx, _fanout([build(c) for c in kids]))
        else:
            process = _processor(node.op, node.fn, _fanout([build(c) for c in kids]))
        built[node] = process
        return process

    out = {}
    for source in sub.sources:
        process = build(source)
        for t in source.topics:
            out[t.name] = process
    return out

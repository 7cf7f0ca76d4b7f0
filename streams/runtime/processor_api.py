"""The Processor API escape hatch: `stream.process(fn_or_processor, stores=[...])`.

A processor is a function `fn(ctx, key, value)`, or an object with `process(ctx, key, value)` and optionally
`init(ctx)`, called once per task before its first record (where `ctx.schedule(...)` sets up punctuation).
`ctx` is a `ProcessorContext`: the record's topic, partition, offset, timestamp and headers; `ctx.store(name)` (the
task's store, readable and writable, through its serdes); `ctx.forward(key, value)`; `ctx.stream_time`; and
`ctx.schedule(interval, fn, on="stream_time" | "wall_clock")`, which calls `fn(ctx, time_ms)` every `interval`
seconds of stream time (as records arrive) or of wall-clock time (from the worker's loop, also for idle tasks).
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from ..topology.graph import Node
from ..windows import to_millis
from .views import view_for

__all__ = ["ProcessorContext", "build_process", "Punctuation"]

_TS = struct.Struct(">q")
PUNCTUATION_TYPES = ("stream_time", "wall_clock")


class Punctuation:
    """A scheduled call of `fn(ctx, time_ms)` every `interval_ms` of stream or wall-clock time, per task."""

    __slots__ = ("interval_ms", "fn", "on", "due")

    def __init__(self, interval_ms: int, fn: Callable, on: str) -> None:
        self.interval_ms = interval_ms
        self.fn = fn
        self.on = on
        self.due: int | None = None

    def run(self, pctx: "ProcessorContext", now: int) -> None:
        if self.due is None:
            self.due = now + self.interval_ms
            return
        if now >= self.due:
            # Kafka Streams calls once per crossing and aligns the next call to the schedule.
            self.due += ((now - self.due) // self.interval_ms + 1) * self.interval_ms
            self.fn(pctx, now)


class ProcessorContext:
    """What a processor sees; one per (node, task)."""

    def __init__(self, node: Node, ctx: Any, down: Callable, task: Any) -> None:
        self._node = node
        self._ctx = ctx
        self._down = down
        self.task = task
        self._views: dict[str, Any] = {}
        self.punctuations: list[Punctuation] = []

    # ---- the record ----

    @property
    def topic(self) -> str:
        return self._ctx.record.topic

    @property
    def partition(self) -> int:
        return self._ctx.record.partition

    @property
    def offset(self) -> int:
        return self._ctx.record.offset

    @property
    def timestamp(self) -> int:
        return self._ctx.timestamp

    @property
    def headers(self) -> Any:
        return self._ctx.record.headers

    @property
    def stream_time(self) -> int:
        """The highest record timestamp this processor has seen in this task."""
        return self.task.times.get(self._node.name, -1)

    @property
    def task_id(self) -> str:
        return self.task.name

    # ---- state and output ----

    def store(self, name: str) -> Any:
        """The task's store `name` (declared in `stores=`), through its serdes."""
        view = self._views.get(name)
        if view is None:
            if name not in self.task.stores:
                declared = [s.name for s in self._node.attrs.get("stores", [])]
                raise KeyError(f"processor {self._node.name!r} has no store {name!r}; declare it in "
                               f"stores= (it has {declared})")
            store = self.task.stores[name]
            view = view_for(self.task.specs[name], lambda kb: store, lambda: [store], writable=True,
                            window_size_ms=self.task.specs[name].window_size_ms, timestamp=lambda: self.timestamp)
            self._views[name] = view
        return view

    def forward(self, key: Any, value: Any, timestamp: int | None = None) -> None:
        """Send a record to the next nodes (with the current timestamp unless one is given)."""
        ctx = self._ctx
        if timestamp is None:
            self._down(key, value)
            return
        saved, ctx.timestamp = ctx.timestamp, timestamp
        try:
            self._down(key, value)
        finally:
            ctx.timestamp = saved

    def schedule(self, interval: Any, fn: Callable[["ProcessorContext", int], None], on: str = "stream_time"
                 ) -> Punctuation:
        """Call `fn(ctx, time_ms)` every `interval` seconds of stream time or of wall-clock time."""
        if on not in PUNCTUATION_TYPES:
            raise ValueError(f"bad punctuation type {on!r}: 'stream_time' or 'wall_clock'")
        if not callable(fn):
            raise TypeError(f"schedule needs a function, got {fn!r}")
        p = Punctuation(to_millis(interval, "punctuation interval", allow_zero=False), fn, on)
        self.punctuations.append(p)
        return p


def build_process(node: Node, ctx: Any, down: Callable) -> Callable[[Any, Any], None]:
    """The closure of a `process()` node: a ProcessorContext per task, `init` on a task's first record."""
    target = node.fn
    process_fn = getattr(target, "process", None) or target
    init = getattr(target, "init", None)
    name = node.name
    contexts: dict[Any, ProcessorContext] = {}

    def context() -> ProcessorContext:
        task = ctx.task
        pctx = contexts.get(task.id)
        if pctx is None or pctx.task is not task:
            pctx = contexts[task.id] = ProcessorContext(node, ctx, down, task)
            task.punctuators.append(lambda now, pctx=pctx: wall_clock(pctx, now))
            if init is not None:
                init(pctx)
        return pctx

    def wall_clock(pctx: ProcessorContext, now: int) -> None:
        for p in pctx.punctuations:
            if p.on == "wall_clock":
                p.run(pctx, now)

    def process(k, v):
        pctx = context()
        ts = ctx.timestamp
        times = ctx.task.times
        if ts is not None and ts > times.get(name, -1):
            times[name] = ts
        process_fn(pctx, k, v)
        for p in pctx.punctuations:
            if p.on == "stream_time":
                p.run(pctx, times.get(name, -1))
    return process

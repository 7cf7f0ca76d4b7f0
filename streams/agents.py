"""Faust-style agents: `@app.agent(topic)` async functions that iterate a stream, on the same tasks as the DSL.

The worker hands an agent its records in chunks (slices of one `getmany()`); with `concurrency=N` the chunk is cut in
N pieces for N actors. A chunk counts as processed when its actor comes back for the record after its last one (or,
for `take()`, after the buffer holding it was handed over), and an input offset is committed only when every chunk
holding an earlier record is processed (see `runtime.offsets`), so no concurrency setting can commit past a record
that is still being worked on.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import uuid
from typing import Any, AsyncIterator, Callable

from .errors import ProcessingError, StaleRecord
from .records import AppLike, Event
from .tables import current_event, current_origin
from .topics import Channel, Topic

log = logging.getLogger(__name__)

__all__ = ["Agent", "AgentStream", "Event"]

ASK_HEADER = "streams-ask-id"


class Chunk:
    """Events handed to one actor at once, the offset units they hold back until processed, and their origin: the
    task that processed them and its generation (None for a channel's events)."""

    __slots__ = ("events", "units", "origin")

    def __init__(self, events: list[Event], units: tuple = (), origin: tuple | None = None) -> None:
        self.events = events
        self.units = units
        self.origin = origin

    def live(self) -> bool:
        """False once the task was rolled back or closed: the events are processed again (from its last commit,
        or by its next owner), so this copy is skipped."""
        origin = self.origin
        return origin is None or origin[0].live(origin[1])

    def finish(self) -> None:
        for unit in self.units:
            unit.done()


class _Cursor:
    """Where an actor is in its current chunk; survives a restart of the agent function after an error."""

    __slots__ = ("chunk", "pos", "exhausted")

    def __init__(self) -> None:
        self.chunk: Chunk | None = None
        self.pos = 0
        self.exhausted: list[Chunk] = []


class _Answering:
    """The event an actor's `yield` answers: the one its function read last, from whichever stream it reads."""

    __slots__ = ("event",)

    def __init__(self) -> None:
        self.event: Event | None = None


class AgentStream:
    """What an agent function receives: `async for value in stream`, or `.items()`, `.events()`, `.take()`."""

    def __init__(self, agent: "Agent", queue: asyncio.Queue, answering: _Answering | None = None) -> None:
        self.agent = agent
        self._queue = queue
        self._cursor = _Cursor()
        self._answering = answering if answering is not None else _Answering()

    @property
    def current_event(self) -> Event | None:
        """The event most recently handed to the agent function (what a `yield` answers): after `group_by`, the
        re-keyed record it read last, not the record being forwarded."""
        return self._answering.event

    def _ack(self) -> None:
        c = self._cursor
        if c.exhausted:
            for chunk in c.exhausted:
                chunk.finish()
            c.exhausted.clear()

    async def _next(self, timeout: float | None = None, ack: bool = False) -> Event | None:
        """The next event, or None after `timeout` seconds without one.

        With `ack`, every event returned before is processed: finished chunks are acknowledged before waiting.
        """
        c = self._cursor
        while True:
            chunk = c.chunk
            if chunk is not None:
                if c.pos < len(chunk.events) and chunk.live():
                    ev = chunk.events[c.pos]
                    c.pos += 1
                    self._answering.event = ev
                    current_event.set(ev)
                    current_origin.set(chunk.origin)
                    return ev
                c.exhausted.append(chunk)
                c.chunk = None
            if ack:
                self._ack()
            if timeout is None:
                c.chunk = await self._queue.get()
            else:
                try:
                    c.chunk = await asyncio.wait_for(self._queue.get(), timeout)
                except asyncio.TimeoutError:
                    return None
            c.pos = 0

    async def events(self) -> AsyncIterator[Event]:
        """Every record as an `Event` (key, value, headers, timestamp, topic, partition, offset)."""
        while True:
            yield await self._next(ack=True)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._values()

    async def _values(self) -> AsyncIterator[Any]:
        while True:
            yield (await self._next(ack=True)).value

    async def items(self) -> AsyncIterator[tuple[Any, Any]]:
        """Every record as a (key, value) pair."""
        while True:
            ev = await self._next(ack=True)
            yield ev.key, ev.value

    async def take(self, n: int, within: float | None = None) -> AsyncIterator[list[Any]]:
        """Values in lists of `n`, or fewer once `within` seconds passed since the list's first value."""
        if n < 1:
            raise ValueError(f"take needs n >= 1, got {n}")
        buf: list[Any] = []
        deadline: float | None = None
        while True:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            ev = await self._next(timeout)
            if ev is not None:
                buf.append(ev.value)
                if deadline is None and within is not None:
                    deadline = time.monotonic() + within
            if buf and (len(buf) >= n or ev is None):
                out, buf, deadline = buf, [], None
                yield out
                # The caller came back: everything in `out` is processed.
                c = self._cursor
                if c.chunk is not None and c.pos >= len(c.chunk.events):
                    c.exhausted.append(c.chunk)
                    c.chunk = None
                self._ack()

    def group_by(self, key: Callable[[Any], Any], name: str, *, partitions: int | None = None) -> "AgentStream":
        """Re-key by `key(value)` through the topic `<app id>-<agent>-<name>-repartition` and read it back.

        Returns a stream of the records (of every actor) after repartitioning; this actor's input is forwarded to
        the topic as it arrives, and acknowledged once forwarded.
        """
        if not name:
            raise ValueError("group_by needs a name= (it names the repartition topic)")
        route = self.agent._route(name, partitions)
        asyncio.get_running_loop()
        # From here the function reads the re-keyed stream: its yields answer those records, while this stream's
        # records, read by the forwarder, answer nothing.
        grouped = AgentStream(self.agent, route.queue, self._answering)
        self._answering = _Answering()
        self.agent._forward(self, key, route)
        return grouped


def _cell_filled(cell: Any) -> bool:
    try:
        cell.cell_contents
    except ValueError:
        return False
    return True


class _Route:
    """A repartition topic an agent reads back, with the queue its records arrive on."""

    def __init__(self, topic: Topic) -> None:
        self.topic = topic
        self.queue: asyncio.Queue = asyncio.Queue()


class Agent:
    """An `@app.agent` function with its source, concurrency and sinks."""

    def __init__(self, app: AppLike, fn: Callable, source: Topic | Channel, *, name: str, concurrency: int = 1,
                 sink: list | None = None) -> None:
        if not (inspect.isasyncgenfunction(fn) or inspect.iscoroutinefunction(fn)):
            raise TypeError(f"agent {name!r} must be an `async def` function (optionally with `yield`)")
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be a positive int, got {concurrency!r}")
        self.app = app
        self.fn = fn
        self.source = source
        self.name = name
        self.concurrency = concurrency
        self.sinks = list(sink or [])
        for s in self.sinks:
            if not (isinstance(s, (Topic, Agent)) or callable(s)):
                raise TypeError(f"agent {name!r}: a sink must be a Topic, an Agent or a callable, got {s!r}")
        self.queue: asyncio.Queue = asyncio.Queue()
        self.routes: dict[str, _Route] = {}
        self.worker = None
        self._actors: list[asyncio.Task] = []
        self._forwarders: list[asyncio.Task] = []
        self._waiters: dict[str, asyncio.Future] = {}

    def tables_used(self, tables: dict[str, Any]) -> list[Any]:
        """The tables (of `tables`) that the agent function names: its globals, closure cells and nested code."""
        wanted = {id(t): t for t in tables.values()}
        found: dict[int, Any] = {}
        fn = self.fn
        names: set[str] = set()
        codes = [fn.__code__]
        while codes:
            code = codes.pop()
            names.update(code.co_names)
            codes.extend(c for c in code.co_consts if hasattr(c, "co_names"))
        candidates = [fn.__globals__.get(n) for n in names]
        candidates += [c.cell_contents for c in (fn.__closure__ or ()) if _cell_filled(c)]
        for obj in candidates:
            if id(obj) in wanted:
                found[id(obj)] = obj
        return list(found.values())

    @property
    def topic_sinks(self) -> list[Topic]:
        return [s for s in self.sinks if isinstance(s, Topic)] + [
            s.source for s in self.sinks if isinstance(s, Agent) and isinstance(s.source, Topic)]

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"Agent({self.name!r}, source={self.source!r})"

    # ---- sending to the agent ----

    async def send(self, key: Any = None, value: Any = None, *, headers: list | None = None,
                   partition: int | None = None) -> None:
        """Send a record to the agent's source topic (or channel)."""
        if isinstance(self.source, Channel):
            await self.source.send(key, value)
        else:
            await self.app.send(self.source, key=key, value=value, headers=headers, partition=partition)

    async def ask(self, value: Any = None, key: Any = None, timeout: float = 30.0) -> Any:
        """Send a record and wait for the value the agent yields for it.

        The reply travels inside this process: the worker that processes the record must be this one (a single
        worker, or a channel agent).
        """
        ask_id = uuid.uuid4().hex
        fut = asyncio.get_running_loop().create_future()
        self._waiters[ask_id] = fut
        try:
            if isinstance(self.source, Channel):
                await self.source.queue.put((key, value, ask_id))
            else:
                await self.app.send(self.source, key=key, value=value, headers=[(ASK_HEADER, ask_id.encode())])
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._waiters.pop(ask_id, None)

    # ---- running (called by the worker) ----

    def chunks_for(self, count: int) -> int:
        """How many chunks `feed` cuts `count` records into (what their units must wait for)."""
        n = min(self.concurrency, count)
        if n <= 1:
            return 1
        size = -(-count // n)
        return -(-count // size)

    def feed(self, events: list[Event], units: tuple, route: str | None = None, origin: tuple | None = None) -> None:
        """Hand records to the actors: `chunks_for(len(events))` chunks, each holding `units` until processed;
        `origin` is (task, generation) of the task that processed them."""
        queue = self.queue if route is None else self.routes[route].queue
        n = min(self.concurrency, len(events))
        if n <= 1:
            queue.put_nowait(Chunk(events, units, origin))
            return
        size = -(-len(events) // n)
        for i in range(0, len(events), size):
            queue.put_nowait(Chunk(events[i:i + size], units, origin))

    def backlog(self) -> int:
        return self.queue.qsize() + sum(r.queue.qsize() for r in self.routes.values())

    def _route(self, name: str, partitions: int | None) -> _Route:
        route = self.routes.get(name)
        if route is None:
            src = self.source if isinstance(self.source, Topic) else None
            topic = Topic(f"{self.app.id}-{self.name}-{name}-repartition", key_serde=None,
                          value_serde=src.value_serde if src else None, partitions=partitions, internal=True)
            route = self.routes[name] = _Route(topic)
            self.app.add_agent_route(self, name, topic)
        return route

    def _forward(self, stream: AgentStream, key: Callable, route: _Route) -> None:
        async def forward() -> None:
            async for ev in stream.events():
                await self.app.send(route.topic, key(ev.value), ev.value, timestamp_ms=ev.timestamp)
        self._forwarders.append(asyncio.get_running_loop().create_task(forward(), name=f"{self.name}-group-by"))

    async def start(self, worker) -> None:
        """Start the actors (and, for a channel source, the pump that feeds them)."""
        self.worker = worker
        # Fresh queues: an asyncio queue belongs to the loop that first waited on it, and an app may run again on
        # another loop (a test driver, then a worker); records still queued from an earlier run are not owed to it.
        self.queue = asyncio.Queue()
        for route in self.routes.values():
            route.queue = asyncio.Queue()
        for i in range(self.concurrency):
            self._actors.append(asyncio.create_task(self._run_actor(i), name=f"agent-{self.name}-{i}"))
        if isinstance(self.source, Channel):
            self._actors.append(asyncio.create_task(self._pump_channel(), name=f"agent-{self.name}-channel"))

    async def _pump_channel(self) -> None:
        while True:
            item = await self.source.queue.get()
            key, value = item[0], item[1]
            headers = [(ASK_HEADER, item[2].encode())] if len(item) > 2 else ()
            self.queue.put_nowait(Chunk([Event(key, value, headers, int(time.time() * 1000), self.source.name)]))

    async def stop(self) -> None:
        for task in self._actors + self._forwarders:
            task.cancel()
        await asyncio.gather(*self._actors, *self._forwarders, return_exceptions=True)
        self._actors.clear()
        self._forwarders.clear()

    async def _run_actor(self, index: int) -> None:
        answering = _Answering()   # shared with the streams the function derives (group_by)
        stream = AgentStream(self, self.queue, answering)
        while True:
            try:
                result = self.fn(stream)
                if inspect.isasyncgen(result):
                    async for value in result:
                        await self._emit(value, answering.event)
                else:
                    await result
                return
            except asyncio.CancelledError:
                raise
            except StaleRecord as exc:
                log.debug("agent %s: %s", self.name, exc)   # run again: the stream skips the stale records
            except Exception as exc:
                ev = answering.event
                if not self.worker.agent_failed(self, exc, ev):
                    return
                # skip / dead-letter: run the function again; the stream resumes after the failed record.

    async def _emit(self, value: Any, ev: Event | None) -> None:
        key = ev.key if ev is not None else None
        timestamp = ev.timestamp if ev is not None else None
        if ev is not None and self._waiters:
            ask_id = ev.header(ASK_HEADER)
            if ask_id is not None:
                fut = self._waiters.get(ask_id.decode())
                if fut is not None and not fut.done():
                    fut.set_result(value)
        for sink in self.sinks:
            if isinstance(sink, Topic):
                await self.app.send(sink, key, value, timestamp_ms=timestamp)
            elif isinstance(sink, Agent):
                if isinstance(sink.source, Channel):
                    await sink.source.send(key, value)
                else:
                    await self.app.send(sink.source, key, value, timestamp_ms=timestamp)
            else:
                out = sink(value)
                if inspect.isawaitable(out):
                    await out

    def failure(self, exc: BaseException, ev: Event | None) -> ProcessingError:
        where = f"{ev.topic}[{ev.partition}]@{ev.offset}" if ev is not None else "no record"
        err = ProcessingError(f"agent {self.name!r} failed on {where}: {type(exc).__name__}: {exc}",
                              ev.topic if ev else "", ev.partition if ev else -1, ev.offset if ev else -1)
        err.__cause__ = exc
        return err

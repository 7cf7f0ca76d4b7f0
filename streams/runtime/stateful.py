"""Closures for the stateful operations: aggregations (plain, time-windowed, sliding, session), table operations and
suppression, following Kafka Streams' semantics record by record.

Each builder returns `process(key, value)` like the stateless ones in `processors`. A closure finds its task's store
through `ctx.task.stores[name]` (the task being processed is published in the `RecordContext`), keeps its stream time
per task in `ctx.task.times[node name]` (the highest record timestamp it has seen; it only moves forward) and
forwards with `ctx.timestamp` set to the result's timestamp. Window values are stored as the big-endian timestamp
of the newest record in the window followed by the aggregate's bytes (sliding windows need it; the others forward
it as the result's timestamp, as Kafka Streams does).
"""

from __future__ import annotations

import logging
import struct
import time
from typing import Any, Callable

from ..topology.graph import Node
from ..windows import Windowed
from .joins import JOIN_OPS, _forward, build_join, put_row

log = logging.getLogger(__name__)

__all__ = ["build_stateful", "STATEFUL_OPS"]

Process = Callable[[Any, Any], None]
_TS = struct.Struct(">q")
_pack_ts = _TS.pack
_unpack_ts = _TS.unpack_from


class LateRecords:
    """Counts records dropped for arriving after their window closed, and logs them at most every 10 s."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.count = 0
        self._unlogged = 0
        self._last_log = 0.0

    def drop(self, ctx: Any, key: Any, ts: int, stream_time: int, why: str) -> None:
        self.count += 1
        ctx.task.dropped += 1
        self._unlogged += 1
        now = time.monotonic()
        if now - self._last_log >= 10.0:
            r = ctx.record
            log.warning("%s: dropped %d late record(s); latest %s[%s]@%s key=%r timestamp=%d: %s (stream time %d)",
                        self.node, self._unlogged, r.topic, r.partition, r.offset, key, ts, why, stream_time)
            self._unlogged = 0
            self._last_log = now


def _advance(ctx: Any, name: str, ts: int) -> int:
    """The node's stream time in this task after seeing `ts`."""
    times = ctx.task.times
    st = times.get(name, -1)
    if ts > st:
        times[name] = st = ts
    return st


def build_aggregate(node: Node, ctx: Any, down: Process) -> Process:
    """Per key: `agg = add(key, value, stored or init())`, stored and forwarded."""
    spec = node.attrs["stores"][0]
    name, agg = spec.name, node.attrs["aggregation"]
    ks, vs, vd = spec.key_serde.serialize, spec.value_serde.serialize, spec.value_serde.deserialize
    init, add = agg.init, agg.add

    def process(k, v):
        if k is None or v is None:
            return
        store = ctx.task.stores[name]
        kb = ks(k)
        stored = store.get(kb)
        old = None if stored is None else vd(stored[8:])
        new = add(k, v, init() if old is None else old)
        store.put(kb, _pack_ts(ctx.timestamp) + vs(new))
        ctx.old = old
        down(k, new)
    return process


def build_time_aggregate(node: Node, ctx: Any, down: Process, late: LateRecords) -> Process:
    """Tumbling and hopping windows: update every window containing the record that is still open."""
    spec, windows = node.attrs["stores"][0], node.attrs["windows"]
    name, agg, nname = spec.name, node.attrs["aggregation"], node.name
    ks, vs, vd = spec.key_serde.serialize, spec.value_serde.serialize, spec.value_serde.deserialize
    init, add, grace = agg.init, agg.add, windows.grace_ms
    windows_for = windows.windows_for

    def process(k, v):
        if k is None:   # Kafka Streams counts a None value in time windows; only a None key is skipped
            return
        ts = ctx.timestamp
        st = _advance(ctx, nname, ts)
        close = st - grace
        store = ctx.task.stores[name]
        kb = None
        for start, end in windows_for(ts):
            if end <= close:
                late.drop(ctx, k, ts, st, f"window [{start},{end}) closed at {end + grace}")
                continue
            if kb is None:
                kb = ks(k)
            old = store.fetch(kb, start)
            if old is None:
                new, new_ts = add(k, v, init()), ts
            else:
                new, new_ts = add(k, v, vd(old[8:])), max(ts, _unpack_ts(old)[0])
            store.put(kb, start, _pack_ts(new_ts) + vs(new))
            _forward(ctx, down, Windowed(k, start, end), new, new_ts)
    return process


def build_sliding_aggregate(node: Node, ctx: Any, down: Process, late: LateRecords) -> Process:
    """Sliding windows, as Kafka Streams places them: each record ends a window [ts - d, ts] and may open its
    right window [ts + 1, ts + 1 + d]; every existing window that the record falls into is updated."""
    spec, windows = node.attrs["stores"][0], node.attrs["windows"]
    name, agg, nname = spec.name, node.attrs["aggregation"], node.name
    ks, vs, vd = spec.key_serde.serialize, spec.value_serde.serialize, spec.value_serde.deserialize
    init, add = agg.init, agg.add
    d, grace = windows.time_difference_ms, windows.grace_ms

    def process(k, v):
        if k is None or v is None:
            return
        ts = ctx.timestamp
        st = _advance(ctx, nname, ts)
        close = st - grace
        if ts + 1 + d <= close:
            late.drop(ctx, k, ts, st, "every window of the record has closed")
            return
        store = ctx.task.stores[name]
        kb = ks(k)

        def update(start: int, stored: bytes | None, base: Any = None, base_ts: int | None = None) -> None:
            end = start + d
            if end < close:
                late.drop(ctx, k, ts, st, f"window [{start},{end}] closed")
                return
            if stored is not None:
                old, old_ts = vd(stored[8:]), _unpack_ts(stored)[0]
            else:
                old, old_ts = base, base_ts
            new = add(k, v, init() if old is None else old)
            new_ts = ts if old_ts is None else max(ts, old_ts)
            store.put(kb, start, _pack_ts(new_ts) + vs(new))
            _forward(ctx, down, Windowed(k, start, end), new, new_ts)

        def put_right_window(start: int, stored: bytes) -> None:
            # The current record's right window holds the later records of an existing window, not this one.
            agg_ts = _unpack_ts(stored)[0]
            store.put(kb, start, stored)
            _forward(ctx, down, Windowed(k, start, start + d), vd(stored[8:]), agg_ts)

        starts: set[int] = set()
        if ts < d:
            _process_early(ts, store, kb, d, starts, update, put_right_window)
            return
        left_agg = right_agg = None
        left_done = right_done = False
        previous_ts = None
        for start, stored in store.fetch_range(kb, max(0, ts - 2 * d), ts + 1):
            starts.add(start)
            end = start + d
            max_ts = _unpack_ts(stored)[0]
            if end < ts:
                left_agg, previous_ts = stored, max_ts
            elif end == ts:
                left_done = True
                if max_ts < ts:
                    previous_ts = max_ts
                update(start, stored)
            elif start <= ts:
                right_agg = stored
                update(start, stored)
            elif start == ts + 1:
                right_done = True
        if previous_ts is not None:
            prev_right = previous_ts + 1
            if prev_right not in starts and prev_right + d >= ts:
                update(prev_right, None)
        if not left_done:
            if previous_ts is not None and ts - d <= previous_ts:
                update(ts - d, None, vd(left_agg[8:]), ts)
            else:
                update(ts - d, None)
        if not right_done and right_agg is not None and _unpack_ts(right_agg)[0] > ts:
            put_right_window(ts + 1, right_agg)
    return process


def _process_early(ts: int, store: Any, kb: bytes, d: int, starts: set, update: Callable,
                   put_right_window: Callable) -> None:
    """Records before time d would open windows starting below 0: they share the window [0, d] instead."""
    combined = right_agg = None
    right_done = False
    previous_ts = None
    for start, stored in store.fetch_range(kb, 0, ts + 1):
        starts.add(start)
        max_ts = _unpack_ts(stored)[0]
        if start == 0:
            combined = stored
            if max_ts < ts:
                previous_ts = max_ts
        elif start <= ts:
            right_agg = stored
            update(start, stored)
        elif start == ts + 1:
            right_done = True
    if right_agg is None and combined is not None and _unpack_ts(combined)[0] > ts:
        right_agg = combined
    if not right_done and right_agg is not None and _unpack_ts(right_agg)[0] > ts:
        put_right_window(ts + 1, right_agg)
    if previous_ts is not None and previous_ts + 1 not in starts:
        update(previous_ts + 1, None)
    update(0, combined)


def build_session_aggregate(node: Node, ctx: Any, down: Process, late: LateRecords) -> Process:
    """Sessions: the record joins (and merges) every session of its key within the gap; merged-away sessions are
    removed and forwarded as deletions."""
    spec, windows = node.attrs["stores"][0], node.attrs["windows"]
    name, agg, nname = spec.name, node.attrs["aggregation"], node.name
    ks, vs, vd = spec.key_serde.serialize, spec.value_serde.serialize, spec.value_serde.deserialize
    init, add, merge = agg.init, agg.add, agg.merge
    gap, grace = windows.gap_ms, windows.grace_ms

    def process(k, v):
        if k is None:   # as for time windows, a None value is aggregated
            return
        ts = ctx.timestamp
        before = ctx.task.times.get(nname, -1)
        st = _advance(ctx, nname, ts)
        close = st - grace - gap
        store = ctx.task.stores[name]
        kb = ks(k)
        # A closed session (stream time >= its end + gap + grace) is final: it is neither found nor merged into.
        # Kafka Streams' store judges that by the stream time before this record (it has not seen it yet).
        found = [f for f in store.find_sessions(kb, ts - gap, ts + gap) if f[1] > before - grace - gap]
        start = end = ts
        acc = init()
        for s, e, stored in found:
            acc = merge(k, acc, vd(stored))
            start, end = min(start, s), max(end, e)
        if end < close:
            late.drop(ctx, k, ts, st, f"session [{start},{end}] closed")
            return
        if start != ts or end != ts:
            for s, e, stored in found:
                store.remove(kb, s, e)
                down(Windowed(k, s, e), None)
        new = add(k, v, acc)
        store.put(kb, start, end, vs(new))
        down(Windowed(k, start, end), new)
    return process


def build_suppress(node: Node, ctx: Any, down: Process) -> Process:
    """Hold each window's latest result in a buffer store until stream time reaches its close time, then emit it
    once. The buffer key is the close time (big-endian) then the windowed key, so closed windows are a prefix scan
    in close-time order; deletions (merged-away sessions) just leave the buffer."""
    spec, windows, nname = node.attrs["stores"][0], node.attrs["windows"], node.name
    name = spec.name
    ks, kd = spec.key_serde.serialize, spec.key_serde.deserialize
    vs, vd = spec.value_serde.serialize, spec.value_serde.deserialize
    close_time = windows.close_time
    next_due = f"{nname}:due"
    idle_ms = node.attrs.get("idle_close_ms")
    upstream = [p.name for p in node.parents]
    idle_since: dict[Any, tuple[float, int]] = {}   # task id -> (wall clock of its last record, stream time)

    def close_idle(now_ms: int) -> None:
        # An idle task's stream time follows the wall clock once it has been idle for `idle_ms`, so its last
        # windows close; the upstream aggregation moves with it, so it drops what would reopen them.
        task = ctx.task
        seen = idle_since.get(task.id)
        if seen is None or now_ms - seen[0] < idle_ms:
            return
        st = seen[1] + (now_ms - seen[0])
        for name_ in upstream + [nname]:
            if st > task.times.get(name_, -1):
                task.times[name_] = st
        emit_closed(task, task.stores[name], st)

    def process(k, v):
        task = ctx.task
        ts = ctx.timestamp
        st = _advance(ctx, nname, ts)
        if idle_ms is not None:
            if task.id not in idle_since:
                task.punctuators.append(close_idle)
            idle_since[task.id] = (ctx.clock(), st)
        store = task.stores[name]
        buffer_key = _pack_ts(close_time(k.end)) + ks(k)
        if v is None:
            store.delete(buffer_key)
        else:
            store.put(buffer_key, _pack_ts(ts) + vs(v))
            # The earliest close time in the buffer is known after a scan; until then (a restored buffer), scan.
            due = close_time(k.end)
            if next_due in task.times and due < task.times[next_due]:
                task.times[next_due] = due
        if st >= task.times.get(next_due, -1 << 62):
            emit_closed(task, store, st)

    def emit_closed(task: Any, store: Any, st: int) -> None:
        emitted = []
        due = None
        for bk, stored in store.range(None, _pack_ts(st + 1)):
            emitted.append(bk)
            _forward(ctx, down, kd(bk[8:]), vd(stored[8:]), _unpack_ts(stored)[0])
        for bk in emitted:
            store.delete(bk)
        for bk, _ in store.range(None, None):
            due = _unpack_ts(bk)[0]
            break
        task.times[next_due] = due if due is not None else 1 << 62

    return process


def build_table_op(node: Node, ctx: Any, down: Process) -> Process:
    """to_stream, table filter and map_values, and a topic read as a table (stored as it arrives)."""
    op, fn = node.op, node.fn
    send_old = node.attrs.get("send_old", False)
    if op == "to_stream":
        return down
    if op == "table_filter":
        def process(k, v):
            new = v if v is not None and fn(k, v) else None
            old = ctx.old
            if old is not None and not fn(k, old):
                old = None
            if send_old and new is None and old is None:
                return      # neither row passes: nothing to tell a join (Kafka Streams' KTableFilter)
            ctx.old = old
            down(k, new)
        return process
    if op == "table_map_values":
        def process(k, v):
            old = ctx.old
            ctx.old = None if old is None else fn(old)
            down(k, None if v is None else fn(v))
        return process
    if op == "table_source":
        spec = node.attrs["stores"][0]
        name, ks, vs, vd = spec.name, spec.key_serde.serialize, spec.value_serde.serialize, \
            spec.value_serde.deserialize
        if spec.history_ms is not None:
            from .versioned import VersionedTable
            versions, observed_name = VersionedTable(spec.history_ms), f"{name}:observed"

            def process(k, v):
                if k is None:
                    return
                task = ctx.task
                store, kb, ts = task.stores[name], ks(k), ctx.timestamp
                observed = task.times.get(observed_name, -1 << 62)
                if ts > observed:
                    task.times[observed_name] = ts
                before = versions.latest(store, kb)
                put = versions.put(store, kb, None if v is None else vs(v), ts, observed)
                if put == "latest":   # an older version (history) changes no current row: not forwarded
                    ctx.old = None if before is None or before[0] is None else vd(before[0])
                    down(k, v)
            return process

        def process(k, v):
            if k is not None:
                put_row(ctx, down, ctx.task.stores[name], k, ks(k), v, vs, vd)
        return process
    raise ValueError(f"unknown table operation {op!r}")


STATEFUL_OPS = {"aggregate", "time_aggregate", "sliding_aggregate", "session_aggregate", "suppress", "to_stream",
                "table_filter", "table_map_values", "table_source", *JOIN_OPS}


def build_stateful(node: Node, ctx: Any, down: Process) -> Process:
    """The closure for a stateful or table node."""
    op = node.op
    if op in JOIN_OPS:
        return build_join(node, ctx, down)
    if op == "aggregate":
        return build_aggregate(node, ctx, down)
    if op == "suppress":
        return build_suppress(node, ctx, down)
    if op in ("time_aggregate", "sliding_aggregate", "session_aggregate"):
        late = LateRecords(node.name)
        node.attrs["late"] = late
        builder = {"time_aggregate": build_time_aggregate, "sliding_aggregate": build_sliding_aggregate,
                   "session_aggregate": build_session_aggregate}[op]
        return builder(node, ctx, down, late)
    return build_table_op(node, ctx, down)

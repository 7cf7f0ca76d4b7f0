"""Closures for joins, following Kafka Streams 4.1 record by record (see `dsl.joins` for how they are wired).

Tables are looked up through value getters: `getter(key) -> (value, timestamp)` or None, reading the task's store of
a table (rows are stored after the timestamp of their last update) or computing a derived table's row from the
table it comes from. A table node forwards `(key, new value)` and leaves the row's previous value in `ctx.old`,
which table-table joins need (Kafka Streams' "old values").
"""

from __future__ import annotations

import struct
from typing import Any, Callable

from ..state.segments import decode_time, encode_time, key_prefix
from ..topology.graph import Node
from .versioned import VersionedTable

__all__ = ["JOIN_OPS", "build_join", "value_getter"]

Process = Callable[[Any, Any], None]
_TS = struct.Struct(">q")
_LEN = struct.Struct(">I")
_pack_ts = _TS.pack
_unpack_ts = _TS.unpack_from
_NO_TIME = -1
_MAX = (1 << 63) - 1


def _long(n: int) -> int:
    """`n` wrapped to a signed 64-bit integer: Kafka Streams' "nothing parked" marker is Long.MAX_VALUE, and its
    emission check overflows on it (so that check lets the scan run); the same arithmetic gives the same output."""
    return ((n + (1 << 63)) & ((1 << 64) - 1)) - (1 << 63)


def _forward(ctx: Any, down: Process, key: Any, value: Any, ts: int, old: Any = None) -> None:
    """Forward a result with its own timestamp (and, for a table row, its previous value), then put the record's
    back (the stateful closures in `stateful` use it too)."""
    saved, saved_old = ctx.timestamp, ctx.old
    ctx.timestamp, ctx.old = ts, old
    down(key, value)
    ctx.timestamp, ctx.old = saved, saved_old


# ---- lists of values under one key (a window store keeps every record of a key and timestamp) ----

def _append(existing: bytes | None, item: bytes) -> bytes:
    return (existing or b"") + _LEN.pack(len(item)) + item


def put_row(ctx: Any, down: Process, store: Any, key: Any, kb: bytes, value: Any, serialize: Callable,
            deserialize: Callable) -> None:
    """Store a table's row (after the record's timestamp) or delete it, and forward it with its previous value."""
    stored = store.get(kb)
    if value is None:
        store.delete(kb)
    else:
        store.put(kb, _pack_ts(ctx.timestamp) + serialize(value))
    ctx.old = None if stored is None else deserialize(stored[8:])
    down(key, value)


def _items(data: bytes) -> list[bytes]:
    out, i, n = [], 0, len(data)
    while i < n:
        size = _LEN.unpack_from(data, i)[0]
        out.append(data[i + 4:i + 4 + size])
        i += 4 + size
    return out


# ---- value getters ----

def value_getter(node: Node, ctx: Any) -> Callable[[Any], tuple[Any, int] | None]:
    """`getter(key) -> (value, timestamp)` of the table `node` produces, None when it has no row for the key."""
    op = node.op
    if op in ("table_source", "aggregate", "fk_response"):
        spec = node.attrs["result"] if op == "fk_response" else node.attrs["stores"][0]
        name, ks, vd = spec.name, spec.key_serde.serialize, spec.value_serde.deserialize
        if spec.history_ms is not None:
            versions = VersionedTable(spec.history_ms)

            def get(k):
                found = versions.latest(ctx.task.stores[name], ks(k))
                return None if found is None or found[0] is None else (vd(found[0]), found[1])
            return get

        def get(k):
            data = ctx.task.stores[name].get(ks(k))
            return None if data is None else (vd(data[8:]), _unpack_ts(data)[0])
        return get
    if op == "table_filter":
        parent, fn = value_getter(node.parents[0], ctx), node.fn

        def get(k):
            row = parent(k)
            return row if row is not None and fn(k, row[0]) else None
        return get
    if op == "table_map_values":
        parent, fn = value_getter(node.parents[0], ctx), node.fn

        def get(k):
            row = parent(k)
            return None if row is None else (fn(row[0]), row[1])
        return get
    if op == "table_merge":
        left_node, right_node, how, joiner = node.attrs["join"]
        left, right = value_getter(left_node, ctx), value_getter(right_node, ctx)

        def get(k):
            lrow = left(k)
            if lrow is None and how != "outer":
                return None
            rrow = right(k)
            if rrow is None and (how == "inner" or lrow is None):
                return None
            lv, lt = lrow if lrow is not None else (None, _NO_TIME)
            rv, rt = rrow if rrow is not None else (None, _NO_TIME)
            return joiner(lv, rv), max(lt, rt)
        return get
    raise ValueError(f"{node.name} ({op}) is not a table that can be looked up")


# ---- stream-stream ----

def build_stream_stream_join(node: Node, ctx: Any, down: Process) -> Process:
    """One side of a windowed stream-stream join (Kafka Streams' KStreamJoinWindow + KStreamKStreamJoin)."""
    a = node.attrs
    windows, joiner, left_side = a["windows"], a["joiner"], a["side"] == "left"
    before, after = (windows.before_ms, windows.after_ms) if left_side else (windows.after_ms, windows.before_ms)
    grace, retention = windows.grace_ms, windows.retention_ms
    this_name, other_name = a["this_store"].name, a["other_store"].name
    outer_name = a["outer_store"].name if a["outer_store"] is not None else None
    outer, tname = a["outer"], a["time_name"]
    min_name = tname + ":min"
    ks, this_vs = a["this_serde"][0].serialize, a["this_serde"][1].serialize
    kd = a["this_serde"][0].deserialize
    other_vd = a["other_serde"].deserialize
    # What is parked in the outer store: left records (side byte 1) and right records (side byte 0), both
    # sides' value serdes known to both nodes through the stores' specs.
    left_vd = (a["this_store"] if left_side else a["other_store"]).value_serde.deserialize
    right_vd = (a["other_store"] if left_side else a["this_store"]).value_serde.deserialize
    this_side = b"\x01" if left_side else b"\x00"
    other_side = b"\x00" if left_side else b"\x01"

    def join(this: Any, other: Any) -> Any:
        return joiner(this, other) if left_side else joiner(other, this)

    def emit_non_joined(task: Any, st: int) -> None:
        times = task.times
        if _long(times.get(min_name, _MAX) + after + grace) >= st:
            return
        store = task.stores[outer_name]
        times[min_name] = _MAX
        left_open = right_open = False
        done = []
        # Kafka Streams iterates the parked records one value at a time (a key holds a list), noting each one's
        # time before it checks whether both sides' windows are still open: the time left behind gates the next
        # scan, so it is reproduced exactly.
        for skey, data in store.range(None, None):
            t = decode_time(skey, 0)
            is_left = skey[8:9] == b"\x01"
            is_open = t + (windows.after_ms if is_left else windows.before_ms) + grace >= st
            stop = False
            for item in _items(data):
                times[min_name] = t
                if left_open and right_open:
                    stop = True
                    break
                if is_open:
                    if is_left:
                        left_open = True
                    else:
                        right_open = True
                    continue
                value = joiner(left_vd(item), None) if is_left else joiner(None, right_vd(item))
                _forward(ctx, down, kd(skey[9:]), value, t)
            if stop:
                break
            if not is_open:
                done.append(skey)
        for skey in done:
            store.delete(skey)

    def process(k, v):
        task = ctx.task
        ts = ctx.timestamp
        times = task.times
        st = times.get(tname, -1)
        if ts > st:
            times[tname] = st = ts
        kb = None
        if k is not None and v is not None:
            kb = ks(k)
            store = task.stores[this_name]
            store.put(kb, ts, _append(store.fetch(kb, ts), this_vs(v)))
        if outer and k is None and v is not None:
            down(k, join(v, None))
            return
        if kb is None:
            return
        if outer_name is not None and ts == st:
            emit_non_joined(task, st)
        other = task.stores[other_name]
        lo, hi = max(0, ts - before), max(0, ts + after)
        visible = other.observed_time - retention
        matched = False
        for t, data in other.fetch_range(kb, lo, hi):
            if t <= visible:
                continue
            for item in _items(data):
                matched = True
                if outer_name is not None:
                    # The partner found its match: it is no longer owed as an unmatched record.
                    parked = encode_time(t) + other_side + kb
                    if task.stores[outer_name].get(parked) is not None:
                        task.stores[outer_name].delete(parked)
                _forward(ctx, down, k, join(v, other_vd(item)), max(ts, t))
        if matched or not outer:
            return
        if outer_name is None or hi < st:
            down(k, join(v, None))
        else:
            if ts < times.get(min_name, _MAX):
                times[min_name] = ts
            store = task.stores[outer_name]
            skey = encode_time(ts) + this_side + kb
            store.put(skey, _append(store.get(skey), this_vs(v)))
    return process


# ---- stream-table ----

def build_stream_table_join(node: Node, ctx: Any, down: Process) -> Process:
    """KStreamKTableJoinProcessor: each stream record looks up the table (as of its timestamp when versioned)."""
    a = node.attrs
    table, joiner, left = a["table"], a["joiner"], a["how"] == "left"
    spec = table.attrs["stores"][0] if table.op == "table_source" else None
    if spec is not None and spec.history_ms is not None:
        versions, name, ks = VersionedTable(spec.history_ms), spec.name, spec.key_serde.serialize
        vd, observed_name = spec.value_serde.deserialize, f"{spec.name}:observed"

        def lookup(k):
            found = versions.as_of(ctx.task.stores[name], ks(k), ctx.timestamp,
                                   ctx.task.times.get(observed_name, -1 << 62))
            return None if found is None else vd(found[0])
    else:
        getter = value_getter(table, ctx)

        def lookup(k):
            row = getter(k)
            return None if row is None else row[0]

    def process(k, v):
        if v is None:
            return
        if k is None:
            if left:
                down(k, joiner(v, None))
            return
        row = lookup(k)
        if left or row is not None:
            down(k, joiner(v, row))
    return process


# ---- table-table ----

def build_table_table_join(node: Node, ctx: Any, down: Process) -> Process:
    """One side of a table-table join: KTableKTableInnerJoin / LeftJoin / RightJoin / OuterJoin."""
    a = node.attrs
    how, joiner, left_side = a["how"], a["joiner"], a["side"] == "left"
    other = value_getter(a["other"], ctx)
    if left_side:
        kind = how                                  # inner, left or outer, this side being the left one
        join = joiner
    else:
        kind = {"inner": "inner", "left": "right", "outer": "outer"}[how]
        join = (lambda this, that: joiner(that, this))

    def process(k, v):
        if k is None:
            return
        if not ctx.latest:
            return                                  # an out-of-order update of a versioned table
        old = ctx.old
        row = other(k)
        if kind == "inner":
            if row is None:
                return
            ts = max(ctx.timestamp, row[1])
            new = join(v, row[0]) if v is not None else None
            old_out = join(old, row[0]) if old is not None else None
        elif kind == "left":
            if row is None and v is None and old is None:
                return
            ts = max(ctx.timestamp, row[1] if row is not None else _NO_TIME)
            value2 = row[0] if row is not None else None
            new = join(v, value2) if v is not None else None
            old_out = join(old, value2) if old is not None else None
        elif kind == "right":
            if row is None:
                return
            ts = max(ctx.timestamp, row[1])
            new = join(v, row[0])
            old_out = join(old, row[0])
        else:  # outer
            if row is None and v is None and old is None:
                return
            ts = ctx.timestamp if row is None else max(ctx.timestamp, row[1])
            value2 = row[0] if row is not None else None
            new = join(v, value2) if (row is not None or v is not None) else None
            old_out = join(old, value2) if (row is not None or old is not None) else None
        _forward(ctx, down, k, new, ts, old_out)
    return process


def build_table_merge(node: Node, ctx: Any, down: Process) -> Process:
    return down


# ---- foreign-key table-table (see dsl.fk_join) ----
#
# subscription = instruction (1) | hash of the left value (16, or one 0x00 byte for none) | left key bytes
# response     = hash (as above) | 0x00 (no right row) or 0x01 + right value bytes

DELETE_KEY_AND_PROPAGATE, DELETE_KEY_NO_PROPAGATE = b"D", b"d"
PROPAGATE_NULL_IF_NO_FK_VAL, PROPAGATE_ONLY_IF_FK_VAL = b"N", b"O"


def _hash(data: bytes | None) -> bytes:
    import hashlib
    return b"\x00" if data is None else b"\x01" + hashlib.blake2b(data, digest_size=16).digest()


def _split_hash(data: bytes) -> tuple[bytes, bytes]:
    n = 1 if data[:1] == b"\x00" else 17
    return data[:n], data[n:]


def _response(hash_: bytes, right: bytes | None) -> bytes:
    return hash_ + (b"\x00" if right is None else b"\x01" + right)


def _prefix_end(prefix: bytes) -> bytes:
    return prefix + b"\xff" * 9   # past every "prefix | left key" (keys in the store are length-prefixed)


def build_fk_send(node: Node, ctx: Any, down: Process) -> Process:
    """SubscriptionSendProcessor: a left update sends subscription instructions to the foreign keys' partitions."""
    a = node.attrs
    fk, left_join = a["foreign_key"], a["how"] == "left"
    vs, fks, ks = a["left_value_serde"].serialize, a["fk_serde"].serialize, a["left_key_serde"].serialize

    def process(k, v):
        if k is None or not ctx.latest:
            return
        old = ctx.old
        h = _hash(vs(v) if v is not None else None)
        kb = ks(k)

        def send(foreign, instruction):
            down(foreign, instruction + h + kb)
        if left_join:
            if old is not None:
                old_fk = fk(old)
                new_fk = fk(v) if v is not None else None
                if old_fk is not None and fks(new_fk) != fks(old_fk):
                    send(old_fk, DELETE_KEY_NO_PROPAGATE)
                send(new_fk, PROPAGATE_NULL_IF_NO_FK_VAL)
            elif v is not None:
                send(fk(v), PROPAGATE_NULL_IF_NO_FK_VAL)
            return
        if old is not None:
            old_fk = fk(old)
            new_fk = fk(v) if v is not None else None
            if old_fk is None and new_fk is None:
                return
            if old_fk is None:
                send(new_fk, PROPAGATE_ONLY_IF_FK_VAL)
            elif new_fk is None:
                send(old_fk, DELETE_KEY_AND_PROPAGATE)
            elif fks(new_fk) != fks(old_fk):
                send(old_fk, DELETE_KEY_NO_PROPAGATE)
                send(new_fk, PROPAGATE_NULL_IF_NO_FK_VAL)
            else:
                send(new_fk, PROPAGATE_ONLY_IF_FK_VAL)
        elif v is not None:
            new_fk = fk(v)
            if new_fk is not None:
                send(new_fk, PROPAGATE_ONLY_IF_FK_VAL)
    return process


def build_fk_subscribe(node: Node, ctx: Any, down: Process) -> Process:
    """SubscriptionReceiveProcessor + SubscriptionJoinProcessor: record the subscription (or forget it), then
    answer with the right row as the instruction says."""
    a = node.attrs
    store_name = a["stores"][0].name
    fks = a["fk_serde"].serialize
    right = value_getter(a["right"], ctx)
    rvs, kd = a["right_value_serde"].serialize, a["left_key_serde"].deserialize

    def process(fk_key, wrapper):
        if wrapper is None:
            return
        instruction = wrapper[:1]
        h, kb = _split_hash(wrapper[1:])
        ts = ctx.timestamp
        if fk_key is None:
            if instruction != PROPAGATE_NULL_IF_NO_FK_VAL:
                return
            row = None
        else:
            store = ctx.task.stores[store_name]
            skey = key_prefix(fks(fk_key)) + kb
            if instruction in (DELETE_KEY_AND_PROPAGATE, DELETE_KEY_NO_PROPAGATE):
                store.delete(skey)
            else:
                store.put(skey, _pack_ts(ts) + h)
            row = right(fk_key)
        result_ts = ts if row is None else max(ts, row[1])
        if instruction == DELETE_KEY_AND_PROPAGATE:
            _forward(ctx, down, kd(kb), _response(h, None), result_ts)
        elif instruction == PROPAGATE_NULL_IF_NO_FK_VAL:
            _forward(ctx, down, kd(kb), _response(h, None if row is None else rvs(row[0])), result_ts)
        elif instruction == PROPAGATE_ONLY_IF_FK_VAL and row is not None:
            _forward(ctx, down, kd(kb), _response(h, rvs(row[0])), result_ts)
    return process


def build_fk_right(node: Node, ctx: Any, down: Process) -> Process:
    """ForeignTableJoinProcessor: a right update is sent to every left row subscribed to its key."""
    a = node.attrs
    store_name, fks, rvs = a["stores"][0].name, a["fk_serde"].serialize, a["right_value_serde"].serialize
    kd = a["left_key_serde"].deserialize

    def process(k, v):
        if k is None or not ctx.latest:
            return
        prefix = key_prefix(fks(k))
        right = None if v is None else rvs(v)
        for skey, stored in list(ctx.task.stores[store_name].range(prefix, _prefix_end(prefix))):
            if skey.startswith(prefix):
                down(kd(skey[len(prefix):]), _response(stored[8:], right))
    return process


def build_fk_response(node: Node, ctx: Any, down: Process) -> Process:
    """ResponseJoinProcessor: join the response with the left row, unless the row changed since (stale hash)."""
    a = node.attrs
    left, left_join, joiner = value_getter(a["left"], ctx), a["how"] == "left", a["joiner"]
    lvs, rvd = a["left_value_serde"].serialize, a["right_value_serde"].deserialize
    result = a["result"]
    rname, rks, rserde = result.name, result.key_serde.serialize, result.value_serde

    def emit(k, value):
        put_row(ctx, down, ctx.task.stores[rname], k, rks(k), value, rserde.serialize, rserde.deserialize)

    def process(k, data):
        if data is None:
            return
        h, rest = _split_hash(data)
        row = left(k)
        if _hash(None if row is None else lvs(row[0])) != h:
            return                      # the left row changed since: a newer response is on its way
        right = None if rest[:1] == b"\x00" else rvd(rest[1:])
        if right is None and (not left_join or row is None):
            emit(k, None)
        else:
            emit(k, joiner(None if row is None else row[0], right))
    return process


JOIN_OPS = {"stream_stream_join": build_stream_stream_join, "stream_table_join": build_stream_table_join,
            "table_table_join": build_table_table_join, "table_merge": build_table_merge, "fk_send": build_fk_send,
            "fk_subscribe": build_fk_subscribe, "fk_right": build_fk_right, "fk_response": build_fk_response}


def build_join(node: Node, ctx: Any, down: Process) -> Process:
    return JOIN_OPS[node.op](node, ctx, down)

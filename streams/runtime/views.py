"""Typed views of a store: keys and values through the store's serdes, for users (`app.store(name)`, the
Processor API's `ctx.store(name)`, Faust-style tables) rather than for the DSL's closures, which use bytes.

A view finds the store that holds a key through `locate(key_bytes)` (the store of the task whose partition the key
hashes to, or of the task being processed) and lists every store it may read through `stores()`. Window values carry
the timestamp of their newest record in their first 8 bytes (see `runtime.stateful`); views strip it.
"""

from __future__ import annotations

import heapq
import struct
import time
from typing import Any, Callable, Iterator

from ..errors import StreamsError
from ..topology.stores import StoreSpec
from ..windows import Windowed

__all__ = ["KeyValueView", "SessionView", "StoreNotHere", "WindowView", "view_for"]

_TS = struct.Struct(">q")


class StoreNotHere(StreamsError, KeyError):
    """The key belongs to a task that another worker holds (or that no worker holds right now)."""

    def __str__(self) -> str:  # KeyError would print the repr of the message
        return str(self.args[0]) if self.args else ""


class _View:
    def __init__(self, spec: StoreSpec, locate: Callable[[bytes], Any], stores: Callable[[], list],
                 writable: bool = False, window_size_ms: int | None = None,
                 timestamp: Callable[[], int | None] = lambda: None) -> None:
        self.spec = spec
        self.name = spec.name
        self._locate = locate
        self._stores = stores
        self._ks, self._kd = spec.key_serde.serialize, spec.key_serde.deserialize
        self._vs, self._vd = spec.value_serde.serialize, spec.value_serde.deserialize
        if spec.timestamped and spec.history_ms is None:
            # A table's row is stored after the timestamp of its last update.
            vs, vd = self._vs, self._vd
            self._vs = lambda v: _TS.pack(int(time.time() * 1000)) + vs(v)
            self._vd = lambda b: vd(b[8:])
        self.writable = writable
        self.window_size_ms = window_size_ms
        self._timestamp = timestamp

    def _check_writable(self) -> None:
        if not self.writable:
            raise StreamsError(f"store {self.name!r} is read-only here (it is written by its processor)")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class KeyValueView(_View):
    """`get`, `range`, `all` (and `put`/`delete` where writable) on a key-value store."""

    def get(self, key: Any, default: Any = None) -> Any:
        data = self._locate(self._ks(key)).get(self._ks(key))
        return default if data is None else self._vd(data)

    def __getitem__(self, key: Any) -> Any:
        data = self._locate(self._ks(key)).get(self._ks(key))
        if data is None:
            raise KeyError(key)
        return self._vd(data)

    def __contains__(self, key: Any) -> bool:
        return self._locate(self._ks(key)).get(self._ks(key)) is not None

    def put(self, key: Any, value: Any) -> None:
        self._check_writable()
        kb = self._ks(key)
        self._locate(kb).put(kb, None if value is None else self._vs(value))

    def delete(self, key: Any) -> None:
        self._check_writable()
        kb = self._ks(key)
        self._locate(kb).delete(kb)

    def range(self, lo: Any = None, hi: Any = None) -> Iterator[tuple[Any, Any]]:
        """(key, value) pairs with lo <= key < hi in the order of the serialized keys, over every store held."""
        lob = None if lo is None else self._ks(lo)
        hib = None if hi is None else self._ks(hi)
        merged = heapq.merge(*(s.range(lob, hib) for s in self._stores()), key=lambda kv: kv[0])
        for kb, vb in merged:
            yield self._kd(kb), self._vd(vb)

    def all(self) -> Iterator[tuple[Any, Any]]:
        """Every (key, value) of the partitions held here."""
        return self.range()

    def items(self) -> Iterator[tuple[Any, Any]]:
        return self.range()

    def keys(self) -> Iterator[Any]:
        return (k for k, _ in self.range())

    def values(self) -> Iterator[Any]:
        return (v for _, v in self.range())


class WindowView(_View):
    """Windows of one key (`fetch`) or of every key (`fetch_all`) by window start time, in ms."""

    def _windowed(self, key: Any, start: int) -> Windowed:
        return Windowed(key, start, start + self.window_size_ms if self.window_size_ms is not None else start)

    def fetch(self, key: Any, time_from: int = 0, time_to: int = (1 << 62)) -> list[tuple[Windowed, Any]]:
        """(Windowed, value) of `key`'s windows starting within [time_from, time_to], oldest first."""
        kb = self._ks(key)
        return [(self._windowed(key, start), self._vd(v[8:]))
                for start, v in self._locate(kb).fetch_range(kb, time_from, time_to)]

    def get(self, key: Any, start: int, default: Any = None) -> Any:
        """The value of `key`'s window starting at `start`."""
        kb = self._ks(key)
        v = self._locate(kb).fetch(kb, start)
        return default if v is None else self._vd(v[8:])

    def fetch_all(self, time_from: int = 0, time_to: int = (1 << 62)) -> list[tuple[Windowed, Any]]:
        """(Windowed, value) of every key's windows starting within [time_from, time_to]."""
        out = []
        for store in self._stores():
            for kb, start, v in store.fetch_all(time_from, time_to):
                out.append((self._windowed(self._kd(kb), start), self._vd(v[8:])))
        out.sort(key=lambda wv: (wv[0].start, repr(wv[0].key)))
        return out

    def all(self) -> list[tuple[Windowed, Any]]:
        return self.fetch_all()

    def put(self, key: Any, start: int, value: Any) -> None:
        self._check_writable()
        kb = self._ks(key)
        ts = self._timestamp()
        self._locate(kb).put(kb, start, None if value is None else _TS.pack(ts if ts is not None else start)
                             + self._vs(value))


class SessionView(_View):
    """Sessions of one key: `fetch(key)` -> [(Windowed(key, start, end), value)]."""

    def fetch(self, key: Any) -> list[tuple[Windowed, Any]]:
        kb = self._ks(key)
        return [(Windowed(key, s, e), self._vd(v)) for s, e, v in self._locate(kb).fetch(kb)]

    def get(self, key: Any, start: int, end: int, default: Any = None) -> Any:
        kb = self._ks(key)
        v = self._locate(kb).fetch_session(kb, start, end)
        return default if v is None else self._vd(v)

    def all(self) -> list[tuple[Windowed, Any]]:
        out = []
        for store in self._stores():
            for kb, s, e, v in store.all():
                out.append((Windowed(self._kd(kb), s, e), self._vd(v)))
        return out


def view_for(spec: StoreSpec, locate: Callable[[bytes], Any], stores: Callable[[], list], *,
             writable: bool = False, window_size_ms: int | None = None,
             timestamp: Callable[[], int | None] = lambda: None) -> _View:
    """The view class that fits the store's kind."""
    cls = {"kv": KeyValueView, "window": WindowView, "session": SessionView}[spec.kind]
    return cls(spec, locate, stores, writable, window_size_ms, timestamp)

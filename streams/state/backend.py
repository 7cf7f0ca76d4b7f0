"""What a store needs from the database below it (`Backend`), and the in-memory one (`MemoryBackend`).

A backend is an ordered map of bytes to bytes: point reads, ordered range scans over [lo, hi), and atomic batches of
puts, deletes and range deletes. It knows nothing of buffering, changelogs or key layouts: those belong to the stores.

Durability contract (the checkpoint invariant rests on it): once `write(..., sync=True)` or `sync()` returns, every
write made so far through this backend survives a process crash and an OS crash. `write(..., sync=False)` survives a
process crash only (RocksDB: in the OS page cache) until the next `sync()`.
"""

from __future__ import annotations

from typing import Iterable, Iterator, Protocol

from ..errors import StateError
from .sortedkeys import SortedKeys

Put = tuple[bytes, "bytes | None"]


class Backend(Protocol):
    """An ordered bytes -> bytes map that applies batches atomically."""

    @property
    def name(self) -> str:
        """A label for error messages (the path, for RocksDB)."""

    @property
    def closed(self) -> bool:
        """True after `close()` or `destroy()`."""

    def get(self, key: bytes) -> bytes | None:
        """The value stored at `key`, or None."""

    def range(self, lo: bytes | None = None, hi: bytes | None = None,
              reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with lo <= key < hi (None: unbounded), ascending, or descending if `reverse`."""

    def write(self, puts: Iterable[Put], deleted_ranges: Iterable[tuple[bytes, bytes]] = (), *,
              sync: bool = True) -> int:
        """Apply the range deletes, then the puts (value None: delete) atomically; return how many entries."""

    def delete_range(self, lo: bytes, hi: bytes, *, sync: bool = True) -> None:
        """Delete every key in [lo, hi)."""

    def sync(self) -> None:
        """Make every write so far durable (see the module docstring)."""

    def approximate_count(self) -> int:
        """An estimate of the number of keys."""

    def close(self) -> None:
        """Release the database; safe to call twice."""

    def destroy(self) -> None:
        """Close and remove the data for good."""


class MemoryBackend:
    """A `Backend` in a dict plus a sorted index: for tests and the in-process TestDriver (nothing survives a close)."""

    def __init__(self, name: str = "memory") -> None:
        self._name = name
        self._data: dict[bytes, bytes] | None = {}
        self._keys = SortedKeys()

    @property
    def name(self) -> str:
        return self._name

    @property
    def closed(self) -> bool:
        return self._data is None

    def _live(self) -> dict[bytes, bytes]:
        if self._data is None:
            raise StateError(f"state backend {self._name!r} is closed")
        return self._data

    def get(self, key: bytes) -> bytes | None:
        return self._live().get(key)

    def range(self, lo: bytes | None = None, hi: bytes | None = None,
              reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        data = self._live()
        keys = self._keys.irange(lo, hi)
        if reverse:
            keys.reverse()
        # The key list is a copy, so writes during the iteration are allowed; keys deleted since are skipped.
        for key in keys:
            value = data.get(key)
            if value is not None:
                yield key, value

    def write(self, puts: Iterable[Put], deleted_ranges: Iterable[tuple[bytes, bytes]] = (), *,
              sync: bool = True) -> int:
        data = self._live()
        for lo, hi in deleted_ranges:
            self._delete_range(data, lo, hi)
        keys = self._keys
        n = 0
        for key, value in puts:
            n += 1
            if value is None:
                if data.pop(key, None) is not None:
                    keys.discard(key)
            else:
                if key not in data:
                    keys.add(key)
                data[key] = value
        return n

    def _delete_range(self, data: dict[bytes, bytes], lo: bytes, hi: bytes) -> None:
        for key in self._keys.irange(lo, hi):
            del data[key]
            self._keys.discard(key)

    def delete_range(self, lo: bytes, hi: bytes, *, sync: bool = True) -> None:
        self._delete_range(self._live(), lo, hi)

    def sync(self) -> None:
        self._live()

    def approximate_count(self) -> int:
        return len(self._live())

    def close(self) -> None:
        self._data = None
        self._keys.clear()

    def destroy(self) -> None:
        self.close()

"""`KeyValueStore`: bytes keys to bytes values, ordered by key.

Layout: the database key is the store key itself, and so is the changelog key; restore writes records as they are.
"""

from __future__ import annotations

import itertools
from typing import Iterable, Iterator

from .backend import Backend
from .store import RESTORE_BATCH, OnChange, Store, check_bytes


class KeyValueStore(Store):
    """A key-value store with buffered writes (see `Store` for flush/discard/restore)."""

    kind = "kv"

    def __init__(self, backend: Backend, name: str, on_change: OnChange | None = None) -> None:
        super().__init__(backend, name, on_change)

    def get(self, key: bytes) -> bytes | None:
        """The value at `key`, buffered writes included, or None."""
        return self._buffer.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        """Set `key` to `value` (None deletes it)."""
        check_bytes("key", key)
        if value is not None:
            check_bytes("value", value)
        self._buffer.put(key, value)
        if self.on_change is not None:
            self.on_change(key, value)

    def delete(self, key: bytes) -> None:
        """Delete `key` (a tombstone in the changelog even if the key was absent)."""
        self.put(key, None)

    def put_all(self, pairs: Iterable[tuple[bytes, bytes | None]]) -> None:
        """`put` each (key, value) in order."""
        for key, value in pairs:
            self.put(key, value)

    def range(self, lo: bytes | None = None, hi: bytes | None = None,
              reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """(key, value) pairs with lo <= key < hi (None: unbounded), sorted by key (descending if `reverse`)."""
        if lo is not None:
            check_bytes("lo", lo)
        if hi is not None:
            check_bytes("hi", hi)
        return self._buffer.range(lo, hi, reverse)

    def all(self) -> Iterator[tuple[bytes, bytes]]:
        """Every (key, value), sorted by key."""
        return self._buffer.range()

    def approximate_count(self) -> int:
        """About how many keys the store holds (RocksDB's estimate plus buffered new keys; exact in memory)."""
        return max(0, self.backend.approximate_count() + self._buffer.count_delta())

    def restore(self, records: Iterable[tuple[bytes, bytes | None]]) -> int:
        """Write changelog records (key, value or None) straight to the backend in batches; return how many."""
        self._check_restorable()
        records = iter(records)
        total = 0
        while n := self.backend.write(itertools.islice(records, RESTORE_BATCH), sync=False):
            total += n
        return total

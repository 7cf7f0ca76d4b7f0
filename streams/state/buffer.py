"""`WriteBuffer`: a store's uncommitted writes, layered over its backend so that reads see them.

Between two commits a store's puts, deletes and range deletes wait here; `flush()` applies them to the backend in one
atomic batch (with the WAL fsynced: see `Backend`), `discard()` forgets them (an aborted transaction). Reads merge
the buffer with the database: a buffered value or tombstone wins over the database row, and a buffered range delete
hides the database rows inside it.

An iteration over `range()` reflects the buffer as it was when the iteration started, plus whatever later writes it
happens to meet; flushing or discarding in the middle of an iteration is not supported.
"""

from __future__ import annotations

from typing import Iterator

from .backend import Backend
from .sortedkeys import SortedKeys

_MISSING = object()


class WriteBuffer:
    """Buffered writes over `backend`, read-your-writes; one batch per `flush()`."""

    __slots__ = ("backend", "_values", "_keys", "_deleted_ranges")

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self._values: dict[bytes, bytes | None] = {}
        self._keys = SortedKeys()
        self._deleted_ranges: list[tuple[bytes, bytes]] = []

    def __len__(self) -> int:
        """How many keys and range deletes wait for the next flush."""
        return len(self._values) + len(self._deleted_ranges)

    def get(self, key: bytes) -> bytes | None:
        """The buffered value (None for a tombstone), else the database's."""
        value = self._values.get(key, _MISSING)
        if value is not _MISSING:
            return value  # type: ignore[return-value]
        if self._deleted_ranges and self._in_deleted_range(key):
            return None
        return self.backend.get(key)

    def put(self, key: bytes, value: bytes | None) -> None:
        """Buffer `value` at `key` (None: a tombstone that hides the database row)."""
        values = self._values
        if key not in values:
            self._keys.add(key)
        values[key] = value

    def delete_range(self, lo: bytes, hi: bytes) -> None:
        """Buffer the deletion of every key in [lo, hi), buffered or in the database."""
        values = self._values
        for key in self._keys.pop_range(lo, hi):
            del values[key]
        self._deleted_ranges.append((lo, hi))

    def _in_deleted_range(self, key: bytes) -> bool:
        for lo, hi in self._deleted_ranges:
            if lo <= key < hi:
                return True
        return False

    def range(self, lo: bytes | None = None, hi: bytes | None = None,
              reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        """Live (key, value) pairs with lo <= key < hi, the buffer merged over the database, in key order."""
        values = self._values
        buffered = self._keys.irange(lo, hi)
        if not buffered and not self._deleted_ranges:
            yield from self.backend.range(lo, hi, reverse)  # nothing to merge: the common read between commits
            return
        if reverse:
            buffered.reverse()
        n = len(buffered)
        i = 0
        check_ranges = bool(self._deleted_ranges)
        for key, value in self.backend.range(lo, hi, reverse):
            # Buffered keys that sort before this database row come first.
            while i < n and ((buffered[i] > key) if reverse else (buffered[i] < key)):
                bkey = buffered[i]
                i += 1
                bvalue = values.get(bkey)
                if bvalue is not None:
                    yield bkey, bvalue
            if i < n and buffered[i] == key:
                i += 1
            if key in values:
                bvalue = values[key]
                if bvalue is not None:
                    yield key, bvalue
                continue
            if check_ranges and self._in_deleted_range(key):
                continue
            yield key, value
        while i < n:
            bkey = buffered[i]
            i += 1
            bvalue = values.get(bkey)
            if bvalue is not None:
                yield bkey, bvalue

    def count_delta(self) -> int:
        """Buffered puts minus buffered tombstones: a rough change in the key count, for estimates."""
        tombstones = sum(1 for value in self._values.values() if value is None)
        return len(self._values) - 2 * tombstones

    def flush(self) -> int:
        """Apply the buffer to the backend in one durable batch and empty it; return how many entries were written.

        With nothing buffered this still makes earlier unsynced backend writes (a restore) durable.
        """
        if not self._values and not self._deleted_ranges:
            self.backend.sync()
            return 0
        n = self.backend.write(self._values.items(), self._deleted_ranges, sync=True)
        self._clear()
        return n

    def discard(self) -> None:
        """Forget every buffered write."""
        self._clear()

    def _clear(self) -> None:
        self._values = {}
        self._keys.clear()
        self._deleted_ranges = []

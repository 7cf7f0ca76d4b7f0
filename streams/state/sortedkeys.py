"""An ordered set of byte keys with cheap inserts and range queries: the index of write buffers and memory backends.

A single sorted Python list makes every insert move every later pointer (O(n)); a write buffer holding a commit's
worth of keys (10^5 and more at a long commit interval) would spend its time in memmove. So the keys live in sorted
chunks of at most `2 * LOAD` entries, with each chunk's last key in `_maxes`: an insert bisects `_maxes`, then the
chunk, and moves at most a chunk's worth of pointers.

Inserts are lazy: `add` appends to an unsorted list, and the first read (or discard) after a run of adds sorts that
list and merges it in. A write buffer that is only written between two commits (a windowed count: every record a
put, no range scan) never pays for ordering keys one by one; measured, a put through the buffer went from about
2 us to 0.1 us. A buffer that is read between writes settles a few keys per read, as before.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Iterator

LOAD = 512


class SortedKeys:
    """A set of `bytes` kept in order; `irange(lo, hi)` lists the members in [lo, hi)."""

    __slots__ = ("_chunks", "_maxes", "_len", "_pending")

    def __init__(self) -> None:
        self._chunks: list[list[bytes]] = []
        self._maxes: list[bytes] = []
        self._len = 0
        self._pending: list[bytes] = []   # added, not yet in the chunks

    def __len__(self) -> int:
        return self._len + len(self._pending)

    def __iter__(self) -> Iterator[bytes]:
        self._settle()
        for chunk in self._chunks:
            yield from chunk

    def clear(self) -> None:
        self._chunks.clear()
        self._maxes.clear()
        self._len = 0
        self._pending.clear()

    def add(self, key: bytes) -> None:
        """Insert `key`; the caller guarantees it is not a member yet (it keeps the values in a dict)."""
        self._pending.append(key)

    def _settle(self) -> None:
        """Merge the pending keys into the chunks: one by one if they are few next to the members, else by rebuilding
        the chunks (linear, and then at least an eighth of the members were added since the last rebuild)."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        if len(pending) * 8 <= self._len:
            for key in pending:
                self._insert(key)
            return
        pending.sort()
        if self._len:
            # Two sorted runs: Timsort merges them in linear time.
            pending = [k for chunk in self._chunks for k in chunk] + pending
            pending.sort()
        chunks = [pending[i:i + LOAD] for i in range(0, len(pending), LOAD)]
        self._chunks = chunks
        self._maxes = [chunk[-1] for chunk in chunks]
        self._len = len(pending)

    def _insert(self, key: bytes) -> None:
        maxes = self._maxes
        if not maxes:
            self._chunks.append([key])
            maxes.append(key)
            self._len = 1
            return
        i = bisect_left(maxes, key)
        if i == len(maxes):
            # Past the end: the common case for time-ordered keys; extend the last chunk.
            i -= 1
            self._chunks[i].append(key)
            maxes[i] = key
        else:
            insort(self._chunks[i], key)
        self._len += 1
        chunk = self._chunks[i]
        if len(chunk) > 2 * LOAD:
            half = chunk[LOAD:]
            del chunk[LOAD:]
            self._chunks.insert(i + 1, half)
            maxes[i] = chunk[-1]
            maxes.insert(i + 1, half[-1])

    def discard(self, key: bytes) -> None:
        """Remove `key` if present."""
        self._settle()
        maxes = self._maxes
        i = bisect_left(maxes, key)
        if i == len(maxes):
            return
        chunk = self._chunks[i]
        j = bisect_left(chunk, key)
        if j == len(chunk) or chunk[j] != key:
            return
        del chunk[j]
        self._len -= 1
        if not chunk:
            del self._chunks[i]
            del maxes[i]
        elif j == len(chunk):
            maxes[i] = chunk[-1]

    def irange(self, lo: bytes | None = None, hi: bytes | None = None) -> list[bytes]:
        """The members k with lo <= k < hi (None: unbounded), in order, as a list (safe to mutate the set after)."""
        self._settle()
        maxes = self._maxes
        chunks = self._chunks
        i = 0 if lo is None else bisect_left(maxes, lo)
        out: list[bytes] = []
        while i < len(chunks):
            chunk = chunks[i]
            start = 0 if lo is None else bisect_left(chunk, lo)
            if hi is not None and chunk[-1] >= hi:
                out.extend(chunk[start:bisect_left(chunk, hi)])
                break
            out.extend(chunk[start:] if start else chunk)
            lo = None  # later chunks start above lo
            i += 1
        return out

    def pop_range(self, lo: bytes, hi: bytes) -> list[bytes]:
        """Remove the members k with lo <= k < hi and return them in order (whole slices, not key by key)."""
        self._settle()
        maxes = self._maxes
        chunks = self._chunks
        i = bisect_left(maxes, lo)
        out: list[bytes] = []
        while i < len(chunks):
            chunk = chunks[i]
            a = bisect_left(chunk, lo)
            b = bisect_left(chunk, hi)
            rest = len(chunk) - b   # members at or above hi in this chunk
            if a < b:
                out.extend(chunk[a:b])
                del chunk[a:b]
                if not chunk:
                    del chunks[i]
                    del maxes[i]
                    continue
                maxes[i] = chunk[-1]
            if rest:
                break
            i += 1
        self._len -= len(out)
        return out


__all__ = ["SortedKeys"]

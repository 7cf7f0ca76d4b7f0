"""A versioned key-value store on a plain one: every value of a key with the time it became valid, for lookups
"as of" a time (Kafka Streams' versioned stores, KIP-889).

    store key   = len(key) (4) | key | valid-from time (8, sortable)
    store value = 0x01 | value, or 0x00 for a deletion (a tombstone is a version too)

A put older than the store's observed stream time minus `history` is refused (Kafka Streams drops it as expired);
a lookup as of such a time finds nothing. A version stops being needed once the next one is older than that.
"""

from __future__ import annotations

from typing import Any

from ..state.segments import MAX_TIME, MIN_TIME, encode_time, key_prefix

__all__ = ["VersionedTable", "version_entry"]

_TOMBSTONE = b"\x00"
_VALUE = b"\x01"


def version_entry(key: bytes, value: bytes | None, timestamp: int) -> tuple[bytes, bytes]:
    """The (store key, store value) of `key` having `value` (None: deleted) from `timestamp` on."""
    return key_prefix(key) + encode_time(timestamp), _TOMBSTONE if value is None else _VALUE + value


def _decode(prefix_len: int, store_key: bytes) -> int:
    from ..state.segments import decode_time
    return decode_time(store_key, prefix_len)


class VersionedTable:
    """Operations on a task's key-value store holding versions; `observed` is the highest timestamp put."""

    def __init__(self, history_ms: int) -> None:
        self.history_ms = history_ms

    @staticmethod
    def _versions(store: Any, key: bytes, upto: int = MAX_TIME) -> list[tuple[int, bytes]]:
        prefix = key_prefix(key)
        lo, hi = prefix + encode_time(MIN_TIME), prefix + encode_time(upto) + b"\xff"
        return [(_decode(len(prefix), k), v) for k, v in store.range(lo, hi)]

    def put(self, store: Any, key: bytes, value: bytes | None, timestamp: int, observed: int) -> str | None:
        """Record the version; returns "latest" when it is now the key's current value, "history" when an older
        one was inserted, None when it is older than the history kept (nothing stored)."""
        cutoff = observed - self.history_ms
        if timestamp < cutoff:
            return None
        versions = self._versions(store, key)
        skey, svalue = version_entry(key, value, timestamp)
        if (value is None and versions and versions[-1][0] == timestamp and versions[-1][1] != _TOMBSTONE
                and (len(versions) == 1 or versions[-2][1] == _TOMBSTONE)):
            # A deletion at the time of the key's newest value erases that value without a trace when nothing
            # before it ends at that time (no earlier version, or a deletion): Kafka Streams drops its latest
            # value and records no tombstone, so a later put of an older value is the latest again. (After an
            # earlier value, that value's end stays recorded: the tombstone below stands for it.)
            store.delete(skey)
            return "latest"
        store.put(skey, svalue)
        latest = not versions or timestamp >= versions[-1][0]
        # Versions superseded before the cutoff can never be read again.
        times = sorted({t for t, _ in versions} | {timestamp})
        for older, newer in zip(times, times[1:]):
            if newer <= cutoff:
                store.delete(key_prefix(key) + encode_time(older))
        return "latest" if latest else "history"

    def latest(self, store: Any, key: bytes) -> tuple[bytes | None, int] | None:
        """(value or None if deleted, valid-from) of the key's newest version, None without any."""
        versions = self._versions(store, key)
        if not versions:
            return None
        t, v = versions[-1]
        return (None if v == _TOMBSTONE else v[1:]), t

    def as_of(self, store: Any, key: bytes, timestamp: int, observed: int) -> tuple[bytes, int] | None:
        """(value, valid-from) of the version valid at `timestamp`, None if deleted, absent or too old."""
        if timestamp < observed - self.history_ms:
            # Past the history kept: only the key's latest value can still answer (it never expires).
            latest = self.latest(store, key)
            if latest is not None and latest[0] is not None and latest[1] <= timestamp:
                return latest
            return None
        versions = self._versions(store, key, timestamp)
        if not versions:
            return None
        t, v = versions[-1]
        return None if v == _TOMBSTONE else (v[1:], t)

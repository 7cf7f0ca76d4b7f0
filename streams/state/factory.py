"""`open_store`: one call that builds a store of a kind on RocksDB (a path) or in memory (None)."""

from __future__ import annotations

import os
from typing import Any

from .backend import Backend, MemoryBackend
from .kv import KeyValueStore
from .rocks import RocksBackend
from .session import SessionStore
from .store import OnChange, Store
from .window import WindowStore

STORE_KINDS: dict[str, type[Store]] = {"kv": KeyValueStore, "window": WindowStore, "session": SessionStore}


def open_store(kind: str, path: str | os.PathLike | None, name: str, on_change: OnChange | None = None,
               **settings: Any) -> Store:
    """Open a `kind` store ("kv", "window" or "session") at `path`, or in memory when `path` is None.

    `settings` go to the store (`retention_ms`, `segment_interval_ms` for window and session stores).
    """
    cls = STORE_KINDS.get(kind)
    if cls is None:
        raise ValueError(f"store kind must be one of {sorted(STORE_KINDS)}, got {kind!r}")
    backend: Backend = MemoryBackend(name) if path is None else RocksBackend(path)
    try:
        return cls(backend, name, on_change, **settings)
    except BaseException:
        backend.close()
        raise

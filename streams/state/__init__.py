"""State stores: bytes in, bytes out, below the runtime (nothing here knows Kafka, tasks or the DSL).

- backends: `RocksBackend(path)` (rocksdict, raw mode) and `MemoryBackend()`, one database per (store, task);
- stores over a backend, with buffered writes, a changelog callback and restore: `KeyValueStore`, `WindowStore`,
  `SessionStore` (or `open_store(kind, path_or_None, name, on_change, **settings)`);
- `Checkpoint`: the changelog offset a database durably reflects;
- `StateDirectory`: a worker's slot of the application's state folder.

The commit protocol (see `store`): `store.flush()` (one atomic, durable batch), then `Checkpoint.write(offset)`;
`store.discard()` on abort.
"""

from .backend import Backend, MemoryBackend
from .checkpoint import Checkpoint
from .directory import StateDirectory
from .factory import STORE_KINDS, open_store
from .kv import KeyValueStore
from .rocks import RocksBackend
from .session import SessionStore
from .store import OnChange, Store
from .window import WindowStore

__all__ = ["Backend", "Checkpoint", "KeyValueStore", "MemoryBackend", "OnChange", "RocksBackend", "STORE_KINDS",
           "SessionStore", "StateDirectory", "Store", "WindowStore", "open_store"]

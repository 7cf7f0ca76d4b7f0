"""What every store shares: a name, a backend with a write buffer over it, the changelog callback, the commit verbs.

The lifecycle the runtime drives, and the guarantee it relies on:

    store.put(...)          # buffered; on_change(changelog_key, value) is called at once
    store.flush()           # at commit: one atomic batch, WAL fsynced
    checkpoint.write(off)   # only now: the database durably holds everything up to `off`
    store.discard()         # instead of flush() when the transaction aborted

`restore(records)` replays changelog records (the keys `on_change` gave) straight into the backend; its writes are
durable after the next `flush()`, so restore, flush, then write the checkpoint.
"""

from __future__ import annotations

from typing import Callable, Optional

from ..errors import StateError
from .backend import Backend
from .buffer import WriteBuffer

OnChange = Callable[[bytes, Optional[bytes]], None]

# Records per restore batch: large enough that the per-batch cost vanishes, small enough to bound memory.
RESTORE_BATCH = 10_000


def check_bytes(what: str, value: object) -> None:
    """Raise ValueError unless `value` is bytes (serdes live above the stores; anything else is a caller's bug)."""
    if type(value) is not bytes:
        raise ValueError(f"{what} must be bytes, got {type(value).__name__}: {value!r:.80}")


class Store:
    """The parts of a state store that do not depend on its layout."""

    kind = "store"

    def __init__(self, backend: Backend, name: str, on_change: OnChange | None = None) -> None:
        if not name:
            raise ValueError(f"store name must be a non-empty string, got {name!r}")
        self.name = name
        self.backend = backend
        self.on_change = on_change
        self._buffer = WriteBuffer(backend)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, {self.backend.name!r})"

    @property
    def pending(self) -> int:
        """How many writes wait for the next `flush()`."""
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        return self.backend.closed

    def flush(self) -> int:
        """Apply the buffered writes in one atomic, durable batch (a commit); return how many entries it held."""
        return self._buffer.flush()

    def discard(self) -> None:
        """Drop the buffered writes (an aborted transaction)."""
        self._buffer.discard()

    def _check_restorable(self) -> None:
        if len(self._buffer):
            raise StateError(f"store {self.name!r} has {len(self._buffer)} uncommitted writes; restore runs before "
                             "processing, on a flushed or discarded store")

    def close(self) -> None:
        """Close the backend; buffered writes that were not flushed are lost (as in a crash)."""
        self._buffer.discard()
        self.backend.close()

    def destroy(self) -> None:
        """Close the store and remove its data."""
        self._buffer.discard()
        self.backend.destroy()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

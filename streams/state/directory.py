"""`StateDirectory`: a worker's own slot under the application's state directory.

    <root>/worker-<n>/.lock                      held (flock) while the worker runs; the kernel frees it on death
    <root>/worker-<n>/<task id>/<store>/         one RocksDB database per (task, store)
    <root>/worker-<n>/<task id>/<store>.checkpoint

`acquire()` takes the lowest free slot, so two workers of one application started in the same folder never open the
same database files, and a restarted worker (whose old slot the kernel freed when it died) gets its stores back and
restores only the changelog tail.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from broker_embedded import DirectoryLock, DirectoryLocked

from ..errors import StateDirectoryLocked, StateError

SLOT_PREFIX = "worker-"
# More slots than any machine runs workers of one application: past this, something is leaking locks.
MAX_SLOTS = 1024
CHECKPOINT_SUFFIX = ".checkpoint"


def _check_name(what: str, name: object) -> str:
    """`name` if it is usable as one path component, else ValueError naming it."""
    if (not isinstance(name, str) or not name or name.startswith(".") or "/" in name or "\\" in name
            or "\x00" in name or name.endswith(CHECKPOINT_SUFFIX)):
        raise ValueError(f"{what} must be a non-empty name without '/', a leading '.' or the "
                         f"{CHECKPOINT_SUFFIX!r} suffix, got {name!r}")
    return name


class StateDirectory:
    """The state folder `root` of one application; `acquire()` claims this worker's slot in it."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)
        self._lock: DirectoryLock | None = None
        self.slot: int | None = None

    def __repr__(self) -> str:
        return f"StateDirectory({str(self.root)!r}, slot={self.slot})"

    @property
    def path(self) -> Path:
        """This worker's slot directory (after `acquire()`)."""
        if self._lock is None:
            raise StateError(f"state directory {str(self.root)!r}: no slot acquired; call acquire() first")
        return self._lock.directory

    def acquire(self) -> "StateDirectory":
        """Take the lowest-numbered free slot `root/worker-<n>`; StateDirectoryLocked if none of MAX_SLOTS is free."""
        if self._lock is not None:
            return self
        if self.root.exists() and not self.root.is_dir():
            raise StateError(f"state directory {str(self.root)!r} is a file, not a directory")
        for n in range(MAX_SLOTS):
            lock = DirectoryLock(self.root / f"{SLOT_PREFIX}{n}", what="state")
            try:
                lock.acquire()
            except DirectoryLocked:
                continue
            self._lock, self.slot = lock, n
            return self
        raise StateDirectoryLocked(f"state directory {str(self.root)!r}: all {MAX_SLOTS} worker slots are in use",
                                   str(self.root))

    def release(self) -> None:
        """Give the slot up (close the stores in it first); safe to call twice."""
        lock, self._lock, self.slot = self._lock, None, None
        if lock is not None:
            lock.release()

    def task_dir(self, task_id: str) -> Path:
        """The directory of one task's stores and checkpoints (not created)."""
        return self.path / _check_name("task id", task_id)

    def store_path(self, task_id: str, store_name: str) -> Path:
        """Where the database of `store_name` for `task_id` lives."""
        return self.task_dir(task_id) / _check_name("store name", store_name)

    def checkpoint_path(self, task_id: str, store_name: str) -> Path:
        """Where the checkpoint of `store_name` for `task_id` lives (beside the database, not inside it)."""
        return self.task_dir(task_id) / (_check_name("store name", store_name) + CHECKPOINT_SUFFIX)

    def tasks(self) -> list[str]:
        """The task ids with a directory in this slot, sorted."""
        return sorted(entry.name for entry in self.path.iterdir() if entry.is_dir() and not entry.name.startswith("."))

    def wipe_task(self, task_id: str) -> None:
        """Delete a task's stores and checkpoints (its stores must be closed): it restores from scratch next time."""
        shutil.rmtree(self.task_dir(task_id), ignore_errors=True)

    def __enter__(self) -> "StateDirectory":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

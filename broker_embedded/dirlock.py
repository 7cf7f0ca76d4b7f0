"""Exclusive ownership of a directory by one process: an OS file lock held for the owner's lifetime.

The lock is `flock` on `<dir>/.lock`. The kernel drops it when the process dies (SIGKILL included), so a lock left
by a killed process never blocks a restart, and nothing on disk has to be cleaned up. The file also records who
holds it (`pid`, and whatever the owner publishes, such as a broker's address), so that a second process can name
the holder in its error, or find a running broker and connect to it instead of starting another.

flock locks belong to an open file description: two `DirectoryLock`s on one directory conflict even inside one
process, which is what we want (two brokers in one process would corrupt the log as surely as two processes).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import time
from pathlib import Path
from typing import Any

__all__ = ["DirectoryLock", "DirectoryLocked"]

LOCK_FILE = ".lock"
# How long `acquire` keeps trying while the lock is only held shared, by an `is_locked` probe (a probe holds it
# for microseconds; the bound keeps two starters that probe each other from spinning forever).
PROBE_WAIT_S = 1.0
_BUSY = (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES)


class DirectoryLocked(RuntimeError):
    """Another live process (or another owner in this one) holds the directory."""

    def __init__(self, directory: Path, what: str, holder: dict[str, Any]) -> None:
        pid = holder.get("pid")
        who = f"process {pid}" if pid else "another process"
        super().__init__(f"{what} directory {str(directory)!r} is in use by {who}; stop it first, or use another "
                         "directory")
        self.directory = directory
        self.holder = holder


class DirectoryLock:
    """`acquire()` takes `<directory>/.lock` or raises `DirectoryLocked`; `release()` (or process exit) frees it.

    `what` names the directory's role in error messages ("broker data", "state").
    """

    def __init__(self, directory: str | os.PathLike, what: str = "data") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None
        self._info: dict[str, Any] = {}

    @property
    def path(self) -> Path:
        return self.directory / LOCK_FILE

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self) -> "DirectoryLock":
        """Take the lock, or raise `DirectoryLocked` at once if a live owner holds it (NotADirectoryError if the
        path is a file)."""
        if self._fd is not None:
            return self
        if self.directory.exists() and not self.directory.is_dir():
            raise NotADirectoryError(f"{self.what} directory {str(self.directory)!r} is a file, not a directory")
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            _lock_exclusive(fd, self.directory, self.what)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._info = {}
        try:
            self.publish()
        except OSError:  # a full disk: the lock still holds; only the holder's name is missing
            pass
        return self

    def publish(self, **info: Any) -> None:
        """Record `info` (and our pid) in the lock file, for whoever finds the directory taken."""
        if self._fd is None:
            raise RuntimeError("the lock is not held")
        self._info.update(info)
        data = json.dumps({"pid": os.getpid(), **self._info}).encode()
        # Overwrite in place, padding with blanks (valid JSON whitespace) over a longer old text, so that a
        # concurrent `read_holder` sees the old document or the new one, never an empty file.
        old_size = os.fstat(self._fd).st_size
        os.pwrite(self._fd, data.ljust(old_size), 0)

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)
        finally:
            os.close(fd)  # closing the descriptor drops the flock

    def __enter__(self) -> "DirectoryLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_exclusive(fd: int, directory: Path, what: str) -> None:
    """flock `fd` exclusively. A live owner holds its lock exclusively: fail at once. A shared holder is an
    `is_locked` probe: try again for a moment rather than refuse a start because someone looked."""
    deadline = time.monotonic() + PROBE_WAIT_S
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in _BUSY:
                raise
            raise DirectoryLocked(directory, what, _holder(directory)) from None
        fcntl.flock(fd, fcntl.LOCK_UN)
        if time.monotonic() >= deadline:
            raise DirectoryLocked(directory, what, _holder(directory))
        time.sleep(0.002)


def _holder(directory: Path) -> dict[str, Any]:
    """The holder's record; a holder that has just taken the lock writes its pid a moment later."""
    for _ in range(10):
        holder = read_holder(directory)
        if holder.get("pid"):
            break
        time.sleep(0.005)
    return holder


def read_holder(directory: str | os.PathLike) -> dict[str, Any]:
    """What the current holder published in `<directory>/.lock` ({} if nothing readable)."""
    try:
        return json.loads(Path(directory, LOCK_FILE).read_bytes() or b"{}")
    except (OSError, ValueError):
        return {}


def is_locked(directory: str | os.PathLike) -> bool:
    """True when a live owner holds `<directory>/.lock` right now."""
    path = Path(directory, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False

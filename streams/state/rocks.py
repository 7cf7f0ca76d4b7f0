"""`RocksBackend`: one RocksDB database (rocksdict, raw mode) behind the `Backend` interface.

Options, and why (measured on the project machine, 2 shared cores):

- The write-ahead log stays ON. With the WAL off, a write lives only in the memtable until RocksDB flushes it to an
  SST file, so a process crash after `store.flush()` would lose state that a checkpoint already claims. Making that
  durable without a WAL means a memtable flush per commit (about 1.8 ms per 100-key commit, and one tiny L0 file
  each), against 0.35-0.5 ms for an fsync of the WAL (a 100-key commit: 0.6 ms synced, 0.14 ms unsynced).
- Commits (`write(sync=True)`) fsync the WAL: that is what makes a checkpoint written afterwards safe across an OS
  crash, not only a process crash. Restore writes with `sync=False` (the WAL reaches the page cache, enough for a
  process crash); the store's next `flush()` fsyncs once for the whole restore, not once per batch.
- Smaller memtables than RocksDB's default (16 MiB x 3, like Kafka Streams): a worker holds one database per store
  and task, and 64 MiB each adds up. Two background jobs: the machines are small and shared.
- Few info-log files: every open starts a new LOG file, and a rebalance reopens stores.

Locks: RocksDB refuses a second open of a path (its LOCK file) from this process or another, with a message about
"lock hold by current process" or "Resource temporarily unavailable"; we turn that into `StateDirectoryLocked`
naming the path. A rocksdict iterator keeps the database open even after `close()`, which would make the next open
of the path fail exactly like Faust's rebalance errors; so `range()` reads in chunks and never leaves a native
iterator alive between chunks (a caller that abandons a range generator holds nothing).
"""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path
from typing import Iterable, Iterator

from rocksdict import Options, ReadOptions, Rdict, WriteBatch, WriteOptions

from ..errors import StateDirectoryLocked, StateError
from .backend import Put

# First chunk small (most store scans touch a handful of keys), later ones large (fewer seeks on full scans).
FIRST_CHUNK = 64
CHUNK = 4096


def _options() -> Options:
    options = Options(raw_mode=True)
    options.create_if_missing(True)
    options.set_write_buffer_size(16 << 20)
    options.set_max_write_buffer_number(3)
    options.set_max_background_jobs(2)
    options.set_keep_log_file_num(2)
    return options


def _write_options(sync: bool) -> WriteOptions:
    options = WriteOptions()
    options.sync = sync
    return options


class RocksBackend:
    """A RocksDB database at `path` (created if missing); see the module docstring for options and durability."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if self.path.exists() and not self.path.is_dir():
            raise StateError(f"state store path {str(self.path)!r} is a file, not a directory")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db: Rdict | None = Rdict(str(self.path), _options())
        except Exception as exc:  # rocksdict raises a bare Exception carrying RocksDB's status text
            message = str(exc)
            if "/LOCK:" in message:  # RocksDB's lock file; "lock" alone would also match "block" errors
                raise StateDirectoryLocked(
                    f"state store {str(self.path)!r} is already open (in this process or another); close the "
                    "other handle first", str(self.path)) from None
            raise StateError(f"cannot open state store {str(self.path)!r}: {message}") from exc
        self._sync_write = _write_options(True)
        self._async_write = _write_options(False)
        self._unsynced = False

    @property
    def name(self) -> str:
        return str(self.path)

    @property
    def closed(self) -> bool:
        return self._db is None

    def _live(self) -> Rdict:
        db = self._db
        if db is None:
            raise StateError(f"state store {str(self.path)!r} is closed")
        return db

    def get(self, key: bytes) -> bytes | None:
        return self._live().get(key)

    def range(self, lo: bytes | None = None, hi: bytes | None = None,
              reverse: bool = False) -> Iterator[tuple[bytes, bytes]]:
        return self._range_reverse(lo, hi) if reverse else self._range_forward(lo, hi)

    def _range_forward(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        size = FIRST_CHUNK
        while True:
            read = ReadOptions()
            if hi is not None:
                read.set_iterate_upper_bound(hi)
            items = self._live().items(from_key=lo, read_opt=read) if lo is not None \
                else self._live().items(read_opt=read)
            chunk = list(itertools.islice(items, size))
            del items  # drop the native iterator before handing out rows (see the module docstring)
            yield from chunk
            if len(chunk) < size:
                return
            lo = chunk[-1][0] + b"\x00"  # the smallest key after the last one seen
            size = CHUNK

    def _range_reverse(self, lo: bytes | None, hi: bytes | None) -> Iterator[tuple[bytes, bytes]]:
        # rocksdict 0.3 ignores iterate_lower_bound in this direction, so stop at lo by hand.
        size = FIRST_CHUNK
        while True:
            read = ReadOptions()
            if hi is not None:
                read.set_iterate_upper_bound(hi)
                items = self._live().items(backwards=True, from_key=hi, read_opt=read)
            else:
                items = self._live().items(backwards=True, read_opt=read)
            chunk = list(itertools.islice(items, size))
            del items
            for key, value in chunk:
                if lo is not None and key < lo:
                    return
                yield key, value
            if len(chunk) < size:
                return
            hi = chunk[-1][0]  # exclusive upper bound: everything before the last key seen
            size = CHUNK

    def write(self, puts: Iterable[Put], deleted_ranges: Iterable[tuple[bytes, bytes]] = (), *,
              sync: bool = True) -> int:
        db = self._live()
        batch = WriteBatch(raw_mode=True)
        for lo, hi in deleted_ranges:
            batch.delete_range(lo, hi)
        put, delete = batch.put, batch.delete
        n = 0
        for key, value in puts:
            n += 1
            if value is None:
                delete(key)
            else:
                put(key, value)
        if batch.len() == 0:
            if sync:
                self.sync()
            return 0
        db.write(batch, self._sync_write if sync else self._async_write)
        if not sync:
            self._unsynced = True
        elif self._unsynced:
            # Earlier unsynced writes may sit in an older WAL file than the one this write synced.
            self.sync()
        return n

    def delete_range(self, lo: bytes, hi: bytes, *, sync: bool = True) -> None:
        self.write((), [(lo, hi)], sync=sync)

    def sync(self) -> None:
        db = self._live()
        if self._unsynced:
            db.flush_wal(True)
            self._unsynced = False

    def approximate_count(self) -> int:
        return self._live().property_int_value("rocksdb.estimate-num-keys") or 0

    def close(self) -> None:
        db, self._db = self._db, None
        if db is not None:
            # WAL'd writes survive a crash anyway; syncing here makes a clean close durable against an OS crash too.
            if self._unsynced:
                db.flush_wal(True)
            db.close()

    def destroy(self) -> None:
        self.close()
        try:
            Rdict.destroy(str(self.path), _options())
        finally:
            # destroy leaves the directory (and any file RocksDB does not know) behind.
            shutil.rmtree(self.path, ignore_errors=True)

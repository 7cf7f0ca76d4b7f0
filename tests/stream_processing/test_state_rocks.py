"""RocksDB-specific behaviour: durability across close/reopen, reopening in a loop, and clear errors for held paths."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from streams.errors import StateDirectoryLocked, StateError
from streams.state import Checkpoint, KeyValueStore, RocksBackend, WindowStore, open_store


def test_flush_persists_across_close_and_reopen_and_unflushed_writes_do_not(tmp_path):
    path = tmp_path / "kv"
    with KeyValueStore(RocksBackend(path), "kv") as store:
        store.put(b"a", b"1")
        store.put(b"b", b"2")
        store.flush()
        store.put(b"c", b"never committed")
    with KeyValueStore(RocksBackend(path), "kv") as store:
        assert list(store.all()) == [(b"a", b"1"), (b"b", b"2")]


def test_window_store_keeps_the_segment_interval_it_was_built_with(tmp_path):
    path = tmp_path / "win"
    with WindowStore(RocksBackend(path), "w", retention_ms=1000, segment_interval_ms=100) as store:
        store.put(b"k", 150, b"v")
        store.flush()
    # Reopened with other settings (say a new retention): the layout on disk still reads right.
    with WindowStore(RocksBackend(path), "w", retention_ms=5000, segment_interval_ms=700) as store:
        assert store.segment_interval_ms == 100
        assert store.fetch(b"k", 150) == b"v"
        assert store.observed_time == 100  # the start of the newest segment: a lower bound of the old stream time


def test_reopen_the_same_path_100_times_in_one_process(tmp_path):
    path = tmp_path / "kv"
    for i in range(100):
        store = open_store("kv", path, "kv")
        assert store.get(b"n") == (b"%d" % (i - 1) if i else None)
        store.put(b"n", b"%d" % i)
        # An abandoned range generator must not keep the database (and its lock) alive past close().
        it = store.range()
        next(it, None)
        store.flush()
        store.close()
    assert RocksBackend(path).get(b"n") == b"99"


def test_opening_a_path_held_in_this_process_is_a_clear_state_error(tmp_path):
    path = tmp_path / "kv"
    first = RocksBackend(path)
    with pytest.raises(StateDirectoryLocked, match="already open") as info:
        RocksBackend(path)
    assert str(path) in str(info.value) and "LOCK" not in str(info.value)
    first.close()
    RocksBackend(path).close()


def test_opening_a_path_held_by_another_process_is_a_clear_state_error(tmp_path):
    path = tmp_path / "kv"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from streams.state import RocksBackend
        backend = RocksBackend({str(path)!r})
        print("open", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        with pytest.raises(StateError, match="already open") as info:
            RocksBackend(path)
        assert str(path) in str(info.value)
    finally:
        holder.kill()
        holder.wait()
    RocksBackend(path).close()  # the kernel dropped the dead holder's lock


def test_a_checkpoint_never_claims_more_than_the_database_holds_after_sigkill(tmp_path):
    """The commit order (flush, then checkpoint) across a real process crash at a random point."""
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        from streams.state import Checkpoint, KeyValueStore, RocksBackend
        store = KeyValueStore(RocksBackend({str(tmp_path / "kv")!r}), "kv")
        checkpoint = Checkpoint({str(tmp_path / "kv.checkpoint")!r})
        i = 0
        while True:
            i += 1
            store.put(b"counter", b"%d" % i)
            store.put(b"k%d" % i, b"x")
            store.flush()
            checkpoint.write(i)
            store.put(b"counter", b"never flushed")
            if i == 20:
                print("running", flush=True)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "running"
        time.sleep(0.3)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    claimed = Checkpoint(tmp_path / "kv.checkpoint").read()
    with KeyValueStore(RocksBackend(tmp_path / "kv"), "kv") as store:
        held = int(store.get(b"counter"))
        assert claimed is not None and held >= claimed >= 20
        assert all(store.get(b"k%d" % i) == b"x" for i in range(1, held + 1))


def test_a_closed_store_says_so(tmp_path):
    store = open_store("kv", tmp_path / "kv", "kv")
    store.close()
    store.close()  # twice is fine
    with pytest.raises(StateError, match="is closed"):
        store.get(b"a")


def test_destroy_removes_the_files(tmp_path):
    path = tmp_path / "win"
    store = open_store("window", path, "w", retention_ms=100)
    store.put(b"k", 1, b"v")
    store.flush()
    store.destroy()
    assert not path.exists()


def test_open_store_rejects_an_unknown_kind(tmp_path):
    with pytest.raises(ValueError, match="store kind must be one of .* got 'table'"):
        open_store("table", None, "t")


def test_restore_rate_into_rocksdb(tmp_path, capsys):
    """Prints the restore rate (run with -s to see it); speed is measured, never asserted."""
    n = 200_000
    records = [(b"key-%08d" % i, b"v" * 100) for i in range(n)]
    store = KeyValueStore(RocksBackend(tmp_path / "kv"), "kv")
    started = time.perf_counter()
    store.restore(records)
    store.flush()
    elapsed = time.perf_counter() - started
    window_records = [(b"\x00\x00\x00\x0ckey-%08d" % (i % 1000) + (i + (1 << 63)).to_bytes(8, "big"), b"v" * 100)
                      for i in range(n)]
    windows = WindowStore(RocksBackend(tmp_path / "win"), "w", retention_ms=10 * n)
    started = time.perf_counter()
    windows.restore(window_records)
    windows.flush()
    window_elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(f"\nrestore into RocksDB, 100-byte values: key-value {n / elapsed:,.0f} records/s, "
              f"window {n / window_elapsed:,.0f} records/s")
    assert store.get(b"key-%08d" % (n - 1)) == b"v" * 100
    assert len(windows.fetch_range(b"key-00000999", 0, n)) == n // 1000
    store.close()
    windows.close()

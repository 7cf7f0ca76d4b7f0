"""State stores on both backends: buffered writes, ordered reads merged with the buffer, changelog and restore."""

from __future__ import annotations

import random

import pytest

from streams.errors import StateError
from streams.state import KeyValueStore, MemoryBackend, RocksBackend, SessionStore, WindowStore


class Changelog:
    """Collects what a store's on_change reports, in order: what the runtime would produce to the changelog."""

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []

    def __call__(self, key: bytes, value: bytes | None) -> None:
        self.records.append((key, value))


@pytest.fixture(params=["memory", "rocks"])
def backend_kind(request) -> str:
    return request.param


@pytest.fixture
def open_backend(backend_kind, tmp_path):
    """open_backend(name) -> a fresh backend of the parametrized kind; all closed at the end."""
    opened = []

    def open_(name: str = "store"):
        backend = MemoryBackend(name) if backend_kind == "memory" else RocksBackend(tmp_path / name)
        opened.append(backend)
        return backend
    yield open_
    for backend in opened:
        backend.close()


def kv(open_backend, name="kv", log=None) -> KeyValueStore:
    return KeyValueStore(open_backend(name), name, log)


# --- key-value -------------------------------------------------------------------------------------------------


def test_kv_reads_see_buffered_writes_and_flush_applies_them(open_backend):
    store = kv(open_backend)
    store.put(b"a", b"1")
    store.put(b"b", b"2")
    assert store.get(b"a") == b"1" and store.pending == 2
    assert store.backend.get(b"a") is None  # nothing reached the database before the commit
    assert store.flush() == 2
    assert store.pending == 0 and store.backend.get(b"a") == b"1"
    store.delete(b"a")
    assert store.get(b"a") is None and store.backend.get(b"a") == b"1"
    store.flush()
    assert store.backend.get(b"a") is None and store.get(b"b") == b"2"


def test_kv_discard_drops_the_uncommitted_writes(open_backend):
    store = kv(open_backend)
    store.put_all([(b"a", b"1"), (b"b", b"2")])
    store.flush()
    store.put(b"a", b"changed")
    store.delete(b"b")
    store.put(b"c", b"3")
    store.discard()
    assert list(store.all()) == [(b"a", b"1"), (b"b", b"2")]
    assert store.flush() == 0


def test_kv_range_merges_the_buffer_in_key_order_with_bounds(open_backend):
    store = kv(open_backend)
    store.put_all([(k, k.upper()) for k in [b"a", b"b", b"c", b"d", b"e"]])
    store.flush()
    store.put(b"a", b"new")  # overwrite in the buffer
    store.put(b"bb", b"BB")  # new key between database rows
    store.delete(b"c")  # a buffered delete hides the database row
    store.put(b"dd", b"x")
    store.delete(b"dd")  # put then delete in one commit: gone
    store.put(b"f", b"F")  # past the last database row
    expected = [(b"a", b"new"), (b"b", b"B"), (b"bb", b"BB"), (b"d", b"D"), (b"e", b"E"), (b"f", b"F")]
    assert list(store.all()) == expected
    assert list(store.range(b"b", b"e")) == [(b"b", b"B"), (b"bb", b"BB"), (b"d", b"D")]  # hi exclusive
    assert list(store.range(b"bb")) == expected[2:]
    assert list(store.range(hi=b"bb")) == expected[:2]
    assert list(store.range(b"b", b"e", reverse=True)) == [(b"d", b"D"), (b"bb", b"BB"), (b"b", b"B")]
    assert list(store.range(b"zz")) == []
    store.flush()
    assert list(store.all()) == expected


def test_kv_deleting_and_putting_while_iterating_a_range(open_backend):
    """Draining a range (a suppression buffer emitting what is due) deletes the rows it visits."""
    store = kv(open_backend)
    store.put_all((b"%04d" % i, b"db") for i in range(0, 200, 2))
    store.flush()
    store.put_all((b"%04d" % i, b"buf") for i in range(1, 200, 2))
    seen = []
    for key, value in store.range(None, b"0150"):
        seen.append(key)
        store.delete(key)
        store.put(b"9" + key, value)  # writes outside the range do not disturb the iteration
    assert seen == [b"%04d" % i for i in range(150)]
    assert [k for k, _ in store.all()][:2] == [b"0150", b"0151"]
    store.flush()
    assert len(list(store.all())) == 200


def test_kv_range_over_many_keys_crosses_read_chunks(open_backend):
    store = kv(open_backend)
    keys = [b"%06d" % i for i in range(10_000)]
    store.put_all((k, k) for k in keys[::2])
    store.flush()
    store.put_all((k, k) for k in keys[1::2])  # the odd keys only in the buffer
    assert [k for k, _ in store.all()] == keys
    assert [k for k, _ in store.range(keys[100], keys[9000], reverse=True)] == keys[100:9000][::-1]


def test_kv_random_writes_commits_and_aborts_match_a_plain_dict(open_backend):
    """Many small buffer/database interleavings (chunk splits of the buffer index included) against a model."""
    rng = random.Random(7)
    store = kv(open_backend)
    committed: dict[bytes, bytes] = {}
    current: dict[bytes, bytes] = {}
    keys = [b"%04d" % i for i in range(3000)]
    for step in range(60):
        for _ in range(rng.randrange(1, 400)):
            key = rng.choice(keys)
            if rng.random() < 0.3:
                store.delete(key)
                current.pop(key, None)
            else:
                store.put(key, b"%d" % step)
                current[key] = b"%d" % step
        lo, hi = sorted(rng.sample(keys, 2))
        assert list(store.range(lo, hi)) == sorted((k, v) for k, v in current.items() if lo <= k < hi)
        assert list(store.range(lo, hi, reverse=True)) == sorted(
            ((k, v) for k, v in current.items() if lo <= k < hi), reverse=True)
        if rng.random() < 0.2:
            store.discard()
            current = dict(committed)
        else:
            store.flush()
            committed = dict(current)
    assert list(store.all()) == sorted(committed.items())


def test_kv_restore_from_its_changelog_rebuilds_an_equal_store(open_backend):
    log = Changelog()
    store = kv(open_backend, "original", log)
    for i in range(50):
        store.put(b"k%02d" % i, b"v%d" % i)
    store.flush()
    for i in range(0, 50, 3):
        store.delete(b"k%02d" % i)  # tombstones in the changelog
    store.put(b"k01", b"again")
    store.flush()
    copy = kv(open_backend, "copy")
    copy.put(b"k00", b"stale local row the tombstone must remove")
    copy.flush()
    assert copy.restore(log.records) == len(log.records)
    assert copy.pending == 0
    assert list(copy.all()) == list(store.all())
    assert copy.get(b"k00") is None


def test_kv_rejects_non_bytes_and_restore_over_pending_writes(open_backend):
    store = kv(open_backend)
    with pytest.raises(ValueError, match="key must be bytes, got str"):
        store.put("a", b"1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="value must be bytes, got int"):
        store.put(b"a", 1)  # type: ignore[arg-type]
    store.put(b"a", b"1")
    with pytest.raises(StateError, match="uncommitted writes"):
        store.restore([(b"b", b"2")])


def test_kv_approximate_count(open_backend, backend_kind):
    store = kv(open_backend)
    store.put_all((b"%d" % i, b"x") for i in range(100))
    store.flush()
    store.delete(b"1")
    count = store.approximate_count()
    assert count == 99 if backend_kind == "memory" else 90 <= count <= 110


# --- window -----------------------------------------------------------------------------------------------------


def window(open_backend, name="win", log=None, retention_ms=1000, segment_interval_ms=100) -> WindowStore:
    return WindowStore(open_backend(name), name, log, retention_ms=retention_ms,
                       segment_interval_ms=segment_interval_ms)


def test_window_key_a_never_sees_key_ab(open_backend):
    store = window(open_backend)
    store.put(b"a", 10, b"a10")
    store.put(b"ab", 10, b"ab10")
    store.put(b"ab", 20, b"ab20")
    store.put(b"b", 15, b"b15")
    store.flush()
    store.put(b"a", 20, b"a20")  # buffered
    assert store.fetch_range(b"a", 0, 100) == [(10, b"a10"), (20, b"a20")]
    assert store.fetch_range(b"ab", 0, 100) == [(10, b"ab10"), (20, b"ab20")]
    assert store.fetch(b"a", 20) == b"a20" and store.fetch(b"ab", 15) is None
    assert store.fetch_range(b"", 0, 100) == []


def test_window_time_ranges_across_segments(open_backend):
    store = window(open_backend, retention_ms=10_000, segment_interval_ms=100)
    for start in range(0, 1000, 50):  # 20 windows over 10 segments
        store.put(b"k", start, b"%d" % start)
        store.put(b"other", start, b"o%d" % start)
    store.flush()
    store.put(b"k", 250, b"buffered")
    store.put(b"k", 275, b"new")
    store.delete(b"k", 300)
    got = store.fetch_range(b"k", 199, 400)  # bounds inclusive, crossing segments 1..4
    assert got == [(200, b"200"), (250, b"buffered"), (275, b"new"), (350, b"350"), (400, b"400")]
    assert store.fetch_range(b"k", 400, 400) == [(400, b"400")]
    assert store.fetch_range(b"k", 401, 449) == []
    every = store.fetch_all(250, 350)
    assert sorted(every) == sorted([(b"k", 250, b"buffered"), (b"k", 275, b"new"), (b"k", 350, b"350"),
                                    (b"other", 250, b"o250"), (b"other", 300, b"o300"), (b"other", 350, b"o350")])
    assert len(list(store.all())) == 40


def test_window_expire_drops_whole_segments_and_keeps_the_rest(open_backend):
    log = Changelog()
    store = window(open_backend, log=log, retention_ms=300, segment_interval_ms=100)
    for start in range(0, 1000, 10):
        store.put(b"k", start, b"v")
    store.flush()
    store.expire(1000)  # cutoff 700: segments 0..6 wholly expired
    assert store.fetch_range(b"k", 0, 2000)[0] == (700, b"v")
    store.flush()
    raw = [key for key, _ in store.backend.range(b"\x00")]
    segments = sorted({key[:8] for key in raw})
    assert len(segments) == 3 and len(raw) == 30  # 7, 8, 9 remain, untouched
    store.expire(1050)  # cutoff 750: segment 7 holds live windows, so it stays on disk; reads hide the old half
    store.flush()
    assert len(list(store.backend.range(b"\x00"))) == 30
    assert [start for start, _ in store.fetch_range(b"k", 0, 2000)][:2] == [750, 760]
    assert store.fetch(b"k", 740) is None
    logged = len(log.records)
    assert store.put(b"k", 749, b"late") is False  # older than retention: ignored, not logged
    assert len(log.records) == logged and store.fetch(b"k", 749) is None
    assert store.put(b"k", 750, b"in time") is True


def test_window_discard_forgets_the_stream_time_of_the_aborted_writes(open_backend):
    store = window(open_backend, retention_ms=100, segment_interval_ms=50)
    store.put(b"k", 0, b"kept")
    store.flush()
    store.put(b"k", 1000, b"aborted")  # moves stream time far ahead
    store.expire(1000)
    assert store.fetch(b"k", 0) is None
    store.discard()
    assert store.fetch(b"k", 0) == b"kept"
    assert store.put(b"k", 10, b"ok") is True


def test_window_restore_rebuilds_an_equal_store_and_skips_expired_windows(open_backend):
    log = Changelog()
    store = window(open_backend, "original", log, retention_ms=200, segment_interval_ms=50)
    for start in range(0, 600, 10):
        store.put(b"a", start, b"a%d" % start)
        store.put(b"ab", start, b"ab%d" % start)
        if start % 30 == 0:
            store.delete(b"a", start)
        store.expire(start)
        store.flush()
    copy = window(open_backend, "copy", retention_ms=200, segment_interval_ms=50)
    assert copy.restore(log.records) == len(log.records)
    assert list(copy.all()) == list(store.all())
    assert copy.fetch_range(b"a", 0, 1000) == store.fetch_range(b"a", 0, 1000)
    # The windows that expired while the changelog was written are not in the rebuilt database at all.
    copy.flush()
    times = [int.from_bytes(key[-8:], "big") - (1 << 63) for key, _ in copy.backend.range(b"\x00")]
    assert min(times) >= 590 - 200 - 50 and len(times) <= 2 * (200 + 50) // 10 + 2


def test_window_rejects_bad_arguments(open_backend):
    store = window(open_backend)
    with pytest.raises(ValueError, match="window start must be an int"):
        store.put(b"k", 1.5, b"v")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="retention_ms must be an int >= 0, got -1"):
        WindowStore(MemoryBackend(), "w", retention_ms=-1)
    with pytest.raises(ValueError, match="segment_interval_ms must be an int > 0, got 0"):
        WindowStore(MemoryBackend(), "w", retention_ms=10, segment_interval_ms=0)
    assert WindowStore(MemoryBackend(), "w", retention_ms=3_600_000).segment_interval_ms == 1_800_000
    assert WindowStore(MemoryBackend(), "w", retention_ms=1000).segment_interval_ms == 60_000


# --- session ----------------------------------------------------------------------------------------------------


def session(open_backend, name="ses", log=None, retention_ms=1000, segment_interval_ms=100) -> SessionStore:
    return SessionStore(open_backend(name), name, log, retention_ms=retention_ms,
                        segment_interval_ms=segment_interval_ms)


def test_session_find_sessions_orders_by_end_then_start_and_keeps_keys_apart(open_backend):
    store = session(open_backend)
    store.put(b"a", 0, 50, b"s1")
    store.put(b"a", 120, 130, b"s2")
    store.put(b"a", 60, 250, b"long")  # ends in a later segment than it starts
    store.put(b"ab", 100, 140, b"other key")
    store.flush()
    store.put(b"a", 125, 130, b"same end, later start")  # buffered
    assert store.find_sessions(b"a", 100, 200) == [(120, 130, b"s2"), (125, 130, b"same end, later start"),
                                                  (60, 250, b"long")]
    assert store.find_sessions(b"a", 0, 10) == [(0, 50, b"s1")]
    assert store.find_sessions(b"a", 251, 1000) == []
    assert store.fetch_session(b"a", 60, 250) == b"long" and store.fetch_session(b"a", 60, 249) is None
    assert [s for s, _, _ in store.fetch(b"ab")] == [100]
    store.remove(b"a", 120, 130)
    assert [(s, e) for s, e, _ in store.fetch(b"a")] == [(0, 50), (125, 130), (60, 250)]
    assert sorted((k, s) for k, s, _, _ in store.all()) == [(b"a", 0), (b"a", 60), (b"a", 125), (b"ab", 100)]
    with pytest.raises(ValueError, match="session start 10 is after its end 5"):
        store.put(b"a", 10, 5, b"x")


def test_session_expire_by_end_and_restore(open_backend):
    log = Changelog()
    store = session(open_backend, "original", log, retention_ms=200, segment_interval_ms=100)
    for t in range(0, 1000, 40):
        store.put(b"u", t, t + 30, b"%d" % t)
        if t % 120 == 0:
            store.remove(b"u", t, t + 30)
        store.expire(t + 30)
        store.flush()
    live = store.fetch(b"u")
    assert live and all(end >= 990 - 200 for _, end, _ in live)
    assert store.put(b"u", 0, 10, b"late") is False
    copy = session(open_backend, "copy", retention_ms=200, segment_interval_ms=100)
    copy.restore(log.records)
    assert copy.fetch(b"u") == live
    assert list(copy.all()) == list(store.all())


def test_sorted_keys_index_matches_a_sorted_list():
    from streams.state.sortedkeys import SortedKeys
    rng = random.Random(3)
    index, model = SortedKeys(), set()
    for _ in range(20_000):
        key = b"%05d" % rng.randrange(5000)
        if rng.random() < 0.35:
            index.discard(key)
            model.discard(key)
        elif key not in model:
            index.add(key)
            model.add(key)
    lo, hi = b"01000", b"03000"
    assert list(index) == sorted(model) and len(index) == len(model)
    assert index.irange(lo, hi) == sorted(k for k in model if lo <= k < hi)
    assert index.irange(None, lo) == sorted(k for k in model if k < lo)
    assert index.irange(b"99999") == []

"""The Processor API (`stream.process`) and wall-clock closing of idle windows, through the TestDriver."""

from __future__ import annotations

import pytest

import streams
from streams.testing import TestDriver


def test_process_reads_and_writes_its_store_and_forwards():
    app = streams.App("papi")
    src = app.topic("in", key_type=str, value_type=int, partitions=1)
    seen = streams.StoreSpec("seen", "kv", streams.StrSerde(), streams.IntSerde())

    def dedupe(ctx, key, value):
        store = ctx.store("seen")
        if store.get(key) is None:
            store.put(key, value)
            ctx.forward(key, value)

    app.stream(src).process(dedupe, stores=[seen]).to(app.topic("out", key_type=str, value_type=int))
    assert "t-seen" not in app.topology().changelog_topics and "papi-seen-changelog" in app.topology().changelog_topics
    with TestDriver(app) as driver:
        for key, value in [("a", 1), ("b", 2), ("a", 3), ("c", 4), ("b", 5)]:
            driver.pipe("in", key, value, timestamp=1000)
        assert driver.read("out") == [("a", 1), ("b", 2), ("c", 4)]
        # the store's writes went to its changelog
        assert sorted(driver.read_table("papi-seen-changelog", key_serde=streams.StrSerde(),
                                        value_serde=streams.IntSerde()).items()) == [("a", 1), ("b", 2), ("c", 4)]


def test_stream_time_and_wall_clock_punctuation():
    app = streams.App("punct")
    src = app.topic("in", key_type=str, value_type=int, partitions=1)
    calls = []

    class Totals:
        def init(self, ctx):
            ctx.schedule(10, lambda c, t: calls.append(("stream", t)))
            ctx.schedule(60, lambda c, t: calls.append(("wall", t)), on="wall_clock")

        def process(self, ctx, key, value):
            ctx.forward(key, value * 2)

    with pytest.raises(ValueError, match="bad punctuation type"):
        from streams.runtime.processor_api import ProcessorContext
        ProcessorContext(None, None, None, None).schedule(1, print, on="sometimes")
    app.stream(src).process(Totals()).to(app.topic("out", key_type=str, value_type=int))
    with TestDriver(app, start_time_ms=0) as driver:
        for ts in (1_000, 5_000, 11_000, 12_000, 31_500):
            driver.pipe("in", "k", 1, timestamp=ts)
        # first record arms the schedule at 1000 + 10000; then once per crossing
        assert calls == [("stream", 11_000), ("stream", 31_500)]
        driver.advance_wall_clock(30)   # arms the wall-clock schedule
        driver.advance_wall_clock(61)
        assert calls[-1] == ("wall", 91_000)
        assert driver.read_values("out") == [2] * 5


def test_idle_stream_closes_its_last_window_by_wall_clock():
    app = streams.App("idle")
    src = app.topic("in", key_type=str, value_type=int, partitions=1)
    out = []
    (app.stream(src).group_by_key().windowed_by(streams.TumblingWindows(10))
     .count(emit="final", idle_close=30).to_stream().foreach(lambda wk, n: out.append((wk.key, wk.start, n))))
    with TestDriver(app, start_time_ms=1_000_000) as driver:
        driver.pipe("in", "k", 1, timestamp=1_000)
        driver.pipe("in", "k", 1, timestamp=2_000)
        driver.advance_wall_clock(20)
        assert out == []   # not idle for 30 s yet
        driver.advance_wall_clock(15)
        assert out == [("k", 0, 2)]
        # the window is closed now: a late record for it is dropped, not emitted again
        driver.pipe("in", "k", 1, timestamp=3_000)
        driver.advance_wall_clock(60)
        assert out == [("k", 0, 2)]

"""State on a real broker: tables and windows kept in RocksDB, their changelogs, restore, checkpoints, restarts."""

from __future__ import annotations

import asyncio
import shutil

import streams
from streamtest import consume, eventually


def word_app(make_app, **settings):
    app = make_app(**settings)
    # Topics named after the app: under --kafka every test shares one cluster.
    words = app.topic(f"{app.id}-words", key_type=str, value_type=str, partitions=2)
    table = app.stream(words).group_by(lambda k, v: v).count("word-counts")
    table.to_stream().to(app.topic(f"{app.id}-counts", key_type=str, value_type=int, partitions=2))
    return app, words


async def send_words(app, words, n: int, offset: int = 0) -> None:
    for i in range(offset, offset + n):
        await app.send(words, key=str(i), value="abc"[i % 3])


async def wait_counts(app, expected: dict) -> dict:
    async def done():
        got = dict(app.store("word-counts").all())
        return got if got == expected else None
    return await eventually(done, timeout=30)


async def test_count_table_survives_a_restart_and_a_clean_restart_restores_nothing(make_app, running, bootstrap):
    app, words = word_app(make_app)
    async with running(app):
        await send_words(app, words, 300)
        await wait_counts(app, {"a": 100, "b": 100, "c": 100})
    app2, words2 = word_app(make_app)
    async with running(app2) as w:
        restored = [(r.store, r.restored) for r in w.app.worker.restores]
        # the checkpoints written at the last commit cover the whole changelog: nothing to read back
        assert restored and all(n == 0 for _, n in restored), restored
        await send_words(app2, words2, 30, offset=300)
        await wait_counts(app2, {"a": 110, "b": 110, "c": 110})
    # every update went downstream: the latest value per key of the output topic is the table
    records = await consume(bootstrap, f"{app.id}-counts", 330)
    latest = {}
    for r in records:
        latest[r.key.decode()] = streams.IntSerde().deserialize(r.value)
    assert latest == {"a": 110, "b": 110, "c": 110}


async def test_lost_local_state_is_restored_from_the_changelog(make_app, running, tmp_path):
    app, words = word_app(make_app)
    async with running(app):
        await send_words(app, words, 90)
        await wait_counts(app, {"a": 30, "b": 30, "c": 30})
    shutil.rmtree(tmp_path / "work" / "state")
    app2, _ = word_app(make_app)
    async with running(app2):
        assert dict(app2.store("word-counts").all()) == {"a": 30, "b": 30, "c": 30}
        results = app2.worker.restores
        # every record of the changelog came back (under exactly-once its offsets also hold commit markers)
        assert 0 < sum(r.restored for r in results) <= sum(r.end - r.start for r in results)


async def test_faust_style_table_in_an_agent_restores_after_restart(make_app, running, tmp_path):
    def build():
        app = make_app()
        clicks = app.topic(f"{app.id}-clicks", key_type=str, value_type=str, partitions=2)
        per_user = app.Table("clicks-per-user", default=int)

        @app.agent(clicks)
        async def count(stream):
            async for event in stream.events():
                per_user[event.key] += 1
        return app, clicks, per_user

    app, clicks, table = build()
    async with running(app):
        for i in range(60):
            await app.send(clicks, key=f"user{i % 4}", value="click")
        await eventually(lambda: dict(table.items()) == {f"user{u}": 15 for u in range(4)}, timeout=30)
    shutil.rmtree(tmp_path / "work" / "state")
    app2, clicks2, table2 = build()
    async with running(app2):
        assert dict(table2.items()) == {f"user{u}": 15 for u in range(4)}
        assert table2["user0"] == 15 and table2["nobody"] == 0
        await app2.send(clicks2, key="user1", value="click")
        await eventually(lambda: table2["user1"] == 16, timeout=30)


async def test_windowed_count_emits_final_results_to_a_topic_and_restores_its_windows(make_app, running, tmp_path,
                                                                                     bootstrap):
    def build():
        app = make_app()
        temps = app.topic(f"{app.id}-temps", key_type=str, value_type=int, partitions=1)
        per_minute = (app.stream(temps).group_by_key().windowed_by(streams.TumblingWindows(60, grace=0))
                      .count("per-minute", emit="final"))
        per_minute.to_stream().map(lambda wk, n: (f"{wk.key}@{wk.start}", n)).to(
            app.topic(f"{app.id}-per-minute-out", key_type=str, value_type=int, partitions=1))
        return app, temps

    app, temps = build()
    async with running(app):
        for ts in (1_000, 2_000, 59_999, 61_000):
            await app.send(temps, key="host1", value=1, timestamp_ms=ts)
        records = await consume(bootstrap, f"{app.id}-per-minute-out", 1)
        assert [(r.key.decode(), streams.IntSerde().deserialize(r.value)) for r in records] == [("host1@0", 3)]
    shutil.rmtree(tmp_path / "work" / "state")
    app2, temps2 = build()
    async with running(app2):
        # the open window [60000, 120000) came back from the changelog with its count
        windows = app2.store("per-minute").fetch("host1", 0, 200_000)
        assert [(w.start, w.end, n) for w, n in windows] == [(0, 60_000, 3), (60_000, 120_000, 1)]
        await app2.send(temps2, key="host1", value=1, timestamp_ms=121_000)
        records = await consume(bootstrap, f"{app2.id}-per-minute-out", 2)
        got = [(r.key.decode(), streams.IntSerde().deserialize(r.value)) for r in records]
        assert got == [("host1@0", 3), ("host1@60000", 1)]


async def test_store_view_names_what_it_holds_and_refuses_writes(make_app, running):
    app, words = word_app(make_app)
    async with running(app):
        await send_words(app, words, 3)
        await wait_counts(app, {"a": 1, "b": 1, "c": 1})
        view = app.store("word-counts")
        assert view.get("a") == 1 and view.get("zzz") is None and "b" in view
        try:
            view.put("a", 5)
        except streams.StreamsError as exc:
            assert "read-only" in str(exc)
        else:
            raise AssertionError("a DSL store must not be writable through app.store()")
        try:
            app.store("nope")
        except KeyError as exc:
            assert "word-counts" in str(exc)
        else:
            raise AssertionError("an unknown store must be refused")
    await asyncio.sleep(0)


async def test_rebalances_close_and_reopen_rocksdb_stores_in_one_process(make_app, running):
    """Faust's 'lock held' bug (#91, #92, #98): tasks leave and come back within one process; their RocksDB stores
    are closed on revoke and reopened on assign, and the counts stay right."""
    app, words = word_app(make_app)
    async with running(app):
        await send_words(app, words, 30)
        await wait_counts(app, {"a": 10, "b": 10, "c": 10})
        for round_ in range(2):
            other, _ = word_app(make_app)
            async with running(other):
                # the tasks are split between the two workers now (the other one restored its share)
                await eventually(lambda: app.worker.assignor.owned and other.worker.assignor.owned, timeout=30)
                await send_words(app, words, 3, offset=30 + 3 * round_)
            # the other worker left: its tasks came back here, their stores reopened from this worker's slot
            await eventually(lambda: len(app.worker.assignor.owned) == 4, timeout=30)
            expected = {w: 11 + round_ for w in "abc"}
            await wait_counts(app, expected)

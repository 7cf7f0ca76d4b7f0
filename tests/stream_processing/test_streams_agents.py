"""Agents on the runtime: sinks, items/events/take, concurrency with safe commits, channels, timers, tasks, ask,
group_by."""

from __future__ import annotations

import asyncio
import json
import random

from streamtest import committed, consume, eventually, produce


async def test_agent_yields_to_topic_agent_and_callable_sinks(make_app, running, bootstrap, topic_name):
    app = make_app()
    src = app.topic(topic_name, key_type=str, partitions=2)
    out = app.topic(f"{topic_name}-out", key_type=str)
    called, forwarded = [], []

    @app.agent(f"{topic_name}-next")
    async def downstream(stream):
        async for value in stream:
            forwarded.append(value)

    @app.agent(src, sink=[out, downstream, called.append])
    async def double(stream):
        async for value in stream:
            yield value * 2

    async with running(app):
        await produce(bootstrap, topic_name, [(f"k{i}".encode(), str(i).encode()) for i in range(10)])
        records = await consume(bootstrap, f"{topic_name}-out", 10)
        await eventually(lambda: len(forwarded) == 10 and len(called) == 10)
    assert sorted(json.loads(r.value) for r in records) == [i * 2 for i in range(10)]
    # a yielded value keeps the key of the record it answers
    assert sorted(r.key for r in records) == sorted(f"k{i}".encode() for i in range(10))
    assert sorted(forwarded) == sorted(called) == [i * 2 for i in range(10)]


async def test_items_events_and_take(make_app, running, bootstrap, topic_name):
    app = make_app()
    a, b, c = (app.topic(f"{topic_name}-{x}", key_type=str, partitions=1) for x in "abc")
    items, events, batches = [], [], []

    @app.agent(a)
    async def by_items(stream):
        async for key, value in stream.items():
            items.append((key, value))

    @app.agent(b)
    async def by_events(stream):
        async for ev in stream.events():
            events.append(ev)

    @app.agent(c)
    async def by_take(stream):
        async for batch in stream.take(4, within=0.2):
            batches.append(batch)

    async with running(app):
        await produce(bootstrap, a.name, [(b"x", b"1"), (b"y", b"2")])
        await produce(bootstrap, b.name, [(b"k", b"3")])
        await produce(bootstrap, c.name, [(None, str(i).encode()) for i in range(10)])
        await eventually(lambda: len(items) == 2 and len(events) == 1 and sum(map(len, batches)) == 10)
        # the last, partial batch was handed over after `within` and its offsets committed
        await eventually(lambda: _committed_is(bootstrap, app.id, c.name, 10))
    assert items == [("x", 1), ("y", 2)]
    ev = events[0]
    assert (ev.key, ev.value, ev.topic, ev.partition, ev.offset) == ("k", 3, b.name, 0, 0)
    assert ev.timestamp > 0 and ev.headers == ()
    assert [len(x) for x in batches[:2]] == [4, 4] and sum(batches, []) == list(range(10))


async def _committed_is(bootstrap, group, topic, offset, partitions=1):
    return sum(o or 0 for o in (await committed(bootstrap, group, topic, partitions)).values()) == offset


async def test_concurrency_never_commits_past_an_unprocessed_record(make_app, running, bootstrap, topic_name):
    """Faust #606: with concurrency, a fast actor's ack must not commit a slow actor's record."""
    app = make_app(commit_interval=0.05)
    src = app.topic(topic_name, partitions=1)
    release = asyncio.Event()
    done = []

    @app.agent(src, concurrency=4)
    async def work(stream):
        async for value in stream:
            if value == 0:
                await release.wait()  # the first record is stuck while the others finish
            done.append(value)

    async with running(app):
        await produce(bootstrap, topic_name, [(None, str(i).encode()) for i in range(40)])
        # the other actors go on (records share an actor's chunk, so those behind record 0 wait with it)
        await eventually(lambda: len(done) >= 20)
        await asyncio.sleep(0.3)  # several commit intervals
        assert 0 not in done
        assert (await committed(bootstrap, app.id, topic_name))[0] in (None, 0)
        release.set()
        await eventually(lambda: _committed_is(bootstrap, app.id, topic_name, 40))
    assert sorted(done) == list(range(40))


async def test_concurrent_actors_share_the_work(make_app, running, bootstrap, topic_name):
    app = make_app()
    src = app.topic(topic_name, partitions=2)
    active, peak, seen = [0], [0], []

    @app.agent(src, concurrency=3)
    async def work(stream):
        async for value in stream:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
            await asyncio.sleep(random.random() / 100)
            active[0] -= 1
            seen.append(value)

    async with running(app):
        await produce(bootstrap, topic_name, [(None, str(i).encode(), i % 2) for i in range(60)])
        await eventually(lambda: len(seen) == 60)
        await eventually(lambda: _committed_is(bootstrap, app.id, topic_name, 60, partitions=2))
    assert sorted(seen) == list(range(60)) and peak[0] > 1


async def test_channel_timer_task_send_and_ask(make_app, running, bootstrap, topic_name):
    app = make_app()
    channel = app.channel()
    src = app.topic(topic_name, key_type=str, partitions=1)
    from_channel, ticks, started = [], [], []

    @app.agent(channel)
    async def on_channel(stream):
        async for key, value in stream.items():
            from_channel.append((key, value))
            yield value.upper()

    @app.agent(src)
    async def square(stream):
        async for value in stream:
            yield value * value

    @app.timer(0.05)
    async def tick():
        ticks.append(1)

    @app.task
    async def at_start():
        started.append(1)
        await on_channel.send("k", "hello")

    async with running(app):
        await eventually(lambda: from_channel == [("k", "hello")] and started == [1] and len(ticks) >= 2)
        assert await on_channel.ask("ping") == "PING"
        assert await square.ask(7, key="x", timeout=10) == 49
        await square.send("y", 3)


async def test_agent_group_by_repartitions_by_the_new_key(make_app, running, bootstrap, topic_name):
    app = make_app()
    src = app.topic(topic_name, partitions=2)
    seen = []

    @app.agent(src)
    async def by_user(stream):
        async for ev in stream.group_by(lambda v: v["user"], name="user").events():
            seen.append((ev.key, ev.value["n"], ev.topic, ev.partition))

    async with running(app):
        await produce(bootstrap, topic_name,
                      [(None, json.dumps({"user": f"u{i % 3}", "n": i}).encode(), i % 2) for i in range(12)])
        await eventually(lambda: len(seen) == 12)
    topic = f"{app.id}-by_user-user-repartition"
    assert {t for _, _, t, _ in seen} == {topic}
    # all records of one user arrive on one partition, in the order they were sent per source partition
    by_key = {}
    for key, n, _, partition in seen:
        by_key.setdefault(key, set()).add(partition)
    assert all(len(p) == 1 for p in by_key.values()) and set(by_key) == {"u0", "u1", "u2"}
    assert sorted(n for _, n, _, _ in seen) == list(range(12))


async def test_values_yielded_after_group_by_carry_the_new_key(make_app, running, bootstrap, topic_name):
    app = make_app()
    src = app.topic(topic_name, key_type=str, partitions=2)
    out = app.topic(f"{topic_name}-out", key_type=str)

    @app.agent(src, sink=[out])
    async def by_user(stream):
        async for value in stream.group_by(lambda v: v["user"], name="user"):
            yield value["n"]

    async with running(app):
        await produce(bootstrap, topic_name,
                      [(f"s{i}".encode(), json.dumps({"user": f"u{i % 3}", "n": i}).encode()) for i in range(12)])
        records = await consume(bootstrap, out.name, 12)
    assert sorted((r.key.decode(), json.loads(r.value)) for r in records) == sorted((f"u{i % 3}", i) for i in range(12))

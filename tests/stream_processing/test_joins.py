"""Joins beyond the record-by-record cases of test_joins_reference.py: on a real broker across a restart (the join
window stores come back from their changelogs), under exactly-once, co-partitioning errors, automatic
repartitioning of a re-keyed stream, and agents reading tables. Expected outputs are worked out by hand."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta

import pytest

import streams
from streams.testing import TestDriver
from streamtest import consume, eventually, read_all


def pair(left, right):
    return f"{'null' if left is None else left}|{'null' if right is None else right}"


def join_app(make_app, **settings):
    app = make_app(**settings)
    left = app.topic(f"{app.id}-left", key_type=str, value_type=int, partitions=2)
    right = app.topic(f"{app.id}-right", key_type=str, value_type=int, partitions=2)
    table = app.topic(f"{app.id}-prices", key_type=str, value_type=int, partitions=2)
    out = app.topic(f"{app.id}-pairs", key_type=str, value_type=str, partitions=2)
    enriched = app.topic(f"{app.id}-enriched", key_type=str, value_type=str, partitions=2)
    app.stream(left).left_join(app.stream(right), pair, streams.JoinWindows(timedelta(seconds=10)),
                               name="pairs").to(out)
    app.stream(right).join(app.table(table), pair, name="priced").to(enriched)
    return app, left, right, table


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
async def test_join_state_survives_a_restart(make_app, running, bootstrap, guarantee):
    """Left records sent before a restart still join right records sent after it (the window stores came back
    from their changelogs), and the table rows too; the unmatched left record comes out once stream time passes
    its window plus grace, after the restart."""
    t0 = 1_000_000
    app, left, right, table = join_app(make_app, processing_guarantee=guarantee)
    async with running(app):
        for key in ("a", "b", "c"):
            await app.send(left, key=key, value=1, timestamp_ms=t0)
            await app.send(table, key=key, value=100, timestamp_ms=t0)
        await app.send(left, key="lonely", value=7, timestamp_ms=t0)
        assert await consume(bootstrap, f"{app.id}-pairs", 0, timeout=1) == []
        await app.worker.flush()
    app2, left2, right2, table2 = join_app(make_app, processing_guarantee=guarantee)
    async with running(app2):
        for key in ("a", "b", "c"):
            await app2.send(right2, key=key, value=2, timestamp_ms=t0 + 5_000)      # within 10 s
        # one record per partition moves both tasks' stream time past t0 + 10 s (window after) + 0 (grace)
        for key in ("a", "b", "c", "lonely", "x", "y"):
            await app2.send(right2, key=f"{key}-late", value=0, timestamp_ms=t0 + 20_000)
        pairs = await consume(bootstrap, f"{app.id}-pairs", 4, timeout=30)
        enriched = await consume(bootstrap, f"{app.id}-enriched", 3, timeout=30)
    got = sorted((r.key.decode(), r.value.decode()) for r in pairs)
    assert got == [("a", "1|2"), ("b", "1|2"), ("c", "1|2"), ("lonely", "7|null")]
    assert sorted((r.key.decode(), r.value.decode()) for r in enriched) == [
        ("a", "2|100"), ("b", "2|100"), ("c", "2|100")]


def test_joins_need_co_partitioned_inputs_and_say_which_topics_differ():
    app = streams.App("copart")
    orders = app.stream(app.topic("orders", key_type=str, partitions=4))
    customers = app.table(app.topic("customers", key_type=str, partitions=2))
    orders.join(customers, pair).to("out")
    with pytest.raises(streams.CoPartitionError, match="'customers' has 2, 'orders' has 4 partitions"):
        app.topology()


def test_a_rekeyed_stream_is_repartitioned_before_the_join():
    app = streams.App("rekey")
    clicks = app.topic("clicks", key_type=str, value_type=str, partitions=2)
    users = app.topic("users", key_type=str, value_type=str, partitions=2)
    out = app.topic("out", key_type=str, value_type=str, partitions=2)
    # clicks are keyed by session; their value is the user id
    app.stream(clicks).select_key(lambda session, user: user).join(app.table(users), pair, name="by-user").to(out)
    assert app.topology().repartition_topics == ["rekey-by-user-left-repartition-repartition"]
    with TestDriver(app) as d:
        d.pipe("users", "u1", "Ada", timestamp=1)
        d.pipe("users", "u2", "Bob", timestamp=1)
        d.pipe("clicks", "s1", "u1", timestamp=2)
        d.pipe("clicks", "s2", "u2", timestamp=3)
        d.pipe("clicks", "s3", "u9", timestamp=4)       # no such user: an inner join emits nothing
        assert sorted(d.read("out")) == [("u1", "u1|Ada"), ("u2", "u2|Bob")]


def test_wrong_join_arguments_are_refused_clearly():
    app = streams.App("bad-joins")
    s = app.stream(app.topic("s", key_type=str))
    t = app.table(app.topic("t", key_type=str))
    with pytest.raises(TypeError, match="JoinWindows"):
        s.join(app.stream("s2"), pair)
    with pytest.raises(streams.TopologyError, match="no outer join"):
        s.outer_join(t, pair)
    with pytest.raises(streams.TopologyError, match="takes no windows"):
        s.join(t, pair, streams.JoinWindows(1))
    with pytest.raises(TypeError, match="joiner"):
        s.join(t, "not a function")
    with pytest.raises(streams.TopologyError, match="history="):
        app.table(app.topic("v", key_type=str), versioned=True)


def test_an_agent_reads_a_table_and_a_versioned_table_while_processing():
    app = streams.App("agent-reads")
    prices = app.table(app.topic("prices", key_type=str, value_type=int, partitions=2))
    history = app.table(app.topic("history", key_type=str, value_type=int, partitions=2), versioned=True,
                        history=60)
    seen = []

    @app.agent(app.topic("buys", key_type=str, value_type=int, partitions=2))
    async def buys(stream):
        async for ev in stream.events():
            seen.append((ev.key, ev.value * prices.get(ev.key, 0), history.get(ev.key)))

    with TestDriver(app) as d:
        d.pipe("prices", "apple", 3, timestamp=1)
        d.pipe("history", "apple", 4, timestamp=5)
        d.pipe("history", "apple", 9, timestamp=2)     # older: history only, the latest stays 4
        d.pipe("buys", "apple", 2, timestamp=6)
        d.pipe("buys", "pear", 2, timestamp=7)
        d.pipe("prices", "apple", None, timestamp=8)   # deleted
        d.pipe("buys", "apple", 1, timestamp=9)
    assert seen == [("apple", 6, 4), ("pear", 0, None), ("apple", 0, 4)]


async def test_a_foreign_key_join_on_a_real_broker_with_differently_partitioned_tables(make_app, running, bootstrap):
    """Orders (2 partitions) refer to products (3 partitions) by product id: no co-partitioning needed. The
    subscription topic takes the products' partition count and the response topic the orders'. A product update
    reaches every order referring to it; an order moving to another product stops following the old one."""
    app = make_app()
    orders = app.topic(f"{app.id}-orders", key_type=str, value_type=str, partitions=2)
    products = app.topic(f"{app.id}-products", key_type=str, value_type=str, partitions=3)
    out = app.topic(f"{app.id}-order-products", key_type=str, value_type=str, partitions=2)
    (app.table(orders).join(app.table(products), pair, foreign_key=lambda order: order.split(":")[0], name="op")
        .to_stream().to(out))
    topo = app.topology({orders.name: 2, products.name: 3})
    assert sorted(topo.repartition_topics) == [f"{app.id}-op-subscription-registration-topic",
                                               f"{app.id}-op-subscription-response-topic"]
    async with running(app):
        await app.send(products, key="p1", value="apple", timestamp_ms=1_000)
        await app.send(products, key="p2", value="pear", timestamp_ms=1_000)
        await app.worker.flush()
        for order, product in (("o1", "p1"), ("o2", "p1"), ("o3", "p2")):
            await app.send(orders, key=order, value=f"{product}:1", timestamp_ms=2_000)
        await until_latest(bootstrap, out.name, {"o1": "p1:1|apple", "o2": "p1:1|apple", "o3": "p2:1|pear"})
        await app.send(products, key="p1", value="green apple", timestamp_ms=3_000)     # o1 and o2 follow
        await app.send(orders, key="o2", value="p2:5", timestamp_ms=4_000)              # o2 moves to p2
        await app.worker.flush()
        # (o2's answer for the green apple may arrive after o2 moved: it is then stale and dropped)
        await until_latest(bootstrap, out.name, {"o1": "p1:1|green apple", "o2": "p2:5|pear", "o3": "p2:1|pear"})
        before = [(r.key.decode(), r.value.decode()) for r in await read_all(bootstrap, out.name)]
        await app.send(products, key="p1", value="red apple", timestamp_ms=5_000)       # only o1 follows now
        await until_latest(bootstrap, out.name, {"o1": "p1:1|red apple", "o2": "p2:5|pear", "o3": "p2:1|pear"})
        await asyncio.sleep(1)
        after = await read_all(bootstrap, out.name)
    # (records come back partition by partition: compare what is new as a multiset)
    new = Counter((r.key.decode(), r.value.decode()) for r in after) - Counter(before)
    assert new == Counter({("o1", "p1:1|red apple"): 1})
    assert (await app_topic_partitions(bootstrap, f"{app.id}-op-subscription-registration-topic")) == 3
    assert (await app_topic_partitions(bootstrap, f"{app.id}-op-subscription-response-topic")) == 2


async def until_latest(bootstrap: str, topic: str, expected: dict) -> None:
    """Wait until the latest value per key of `topic` is `expected`."""
    async def check():
        latest = {r.key.decode(): r.value.decode() for r in await read_all(bootstrap, topic)}
        return latest if latest == expected else None
    await eventually(check, timeout=30)


async def app_topic_partitions(bootstrap: str, topic: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient
    from streams.runtime.topics import existing_partition_counts
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return (await existing_partition_counts(admin, [topic])).get(topic, 0)
    finally:
        await admin.close()


async def test_a_join_reading_a_backlog_keeps_its_sides_in_step(make_app, running, bootstrap):
    """Both sides are written before the worker starts, and fetches are small: one fetch then holds records of
    few partitions, and without timestamp order across fetches one side would run far ahead and find its
    partners expired (grace 0). Every left record has exactly one right partner: all n pairs must come out."""
    from aiokafka import AIOKafkaProducer
    n = 6_000
    app = make_app(max_partition_fetch_bytes=16 * 1024)
    left = app.topic(f"{app.id}-l", key_type=str, value_type=str, partitions=1)
    right = app.topic(f"{app.id}-r", key_type=str, value_type=str, partitions=1)
    out = app.topic(f"{app.id}-lr", key_type=str, value_type=str, partitions=1)
    app.stream(left).join(app.stream(right), pair, streams.JoinWindows(1)).to(out)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    await producer.start()
    try:
        # Left values are 100 times larger: a fetch of 16 KiB per partition holds ~15 left records and ~1,500
        # right ones, so the right side gets seconds of event time ahead in every fetch.
        for topic, size in ((left.name, 1000), (right.name, 10)):
            for i in range(n):   # a key comes back every 5 s of event time: one partner within +-1 s
                await producer.send(topic, key=f"k{i % 500}".encode(), value=f"{i:0{size}d}".encode(),
                                    timestamp_ms=i * 10)
            await producer.flush()
    finally:
        await producer.stop()
    async with running(app):
        pairs = await consume(bootstrap, out.name, n, timeout=60)
    assert len(pairs) == n

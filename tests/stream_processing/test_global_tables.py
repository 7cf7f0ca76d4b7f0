"""Global tables: every worker holds the whole topic; lookups with `get`, `app.store`, and stream joins.

The first half runs in the TestDriver (a record piped to the global table's topic updates it at once, so outputs are
hand-computed record by record); the second half runs real workers on a broker: two workers each holding the whole
table, a restart restoring from its checkpoint before any record is processed, an agent reading the table.
"""

from __future__ import annotations

import asyncio
import logging
import shutil

import pytest

import streams
from streams.testing import TestDriver
from streamtest import consume, create_topic, eventually, produce


def shop(join: str = "join", key=None):
    """orders (key: order id, value: {"item": ..., "cc": country code}) joined with the global table of countries."""
    app = streams.App("shop-" + join)
    countries = app.global_table(app.topic("countries", key_type=str, value_type=str, partitions=3))
    orders = app.topic("orders", key_type=str, partitions=2)
    out = app.topic("out", key_type=str, partitions=1)
    key = key or (lambda order_id, order: order.get("cc"))
    getattr(app.stream(orders), join)(countries, lambda order, country: f"{order['item']}@{country}",
                                      key=key).to(out)
    return app, countries


# ---- in the test driver ----

def test_inner_join_follows_updates_and_deletions_of_the_global_table():
    app, countries = shop("join")
    with TestDriver(app) as driver:
        driver.pipe("orders", "o1", {"item": "pen", "cc": "fr"})          # no row yet: nothing
        driver.pipe("countries", "fr", "France")
        driver.pipe("orders", "o2", {"item": "ink", "cc": "fr"})
        driver.pipe("countries", "fr", "République française")           # an update
        driver.pipe("orders", "o3", {"item": "cap", "cc": "fr"})
        driver.pipe("orders", "o4", {"item": "mug", "cc": "de"})          # no row: nothing
        driver.pipe("countries", "fr", None)                              # a deletion
        driver.pipe("orders", "o5", {"item": "hat", "cc": "fr"})
        assert driver.read("out") == [("o2", "ink@France"), ("o3", "cap@République française")]
        assert countries.get("fr") is None and countries.get("de", "?") == "?"


def test_left_join_gives_none_where_the_inner_join_gives_nothing():
    app, countries = shop("left_join")
    with TestDriver(app) as driver:
        driver.pipe("orders", "o1", {"item": "pen", "cc": "fr"})
        driver.pipe("countries", "fr", "France")
        driver.pipe("orders", "o2", {"item": "ink", "cc": "fr"})
        driver.pipe("countries", "fr", None)
        driver.pipe("orders", "o3", {"item": "cap", "cc": "fr"})
        assert driver.read("out") == [("o1", "pen@None"), ("o2", "ink@France"), ("o3", "cap@None")]


@pytest.mark.parametrize("join, expected", [
    # Kafka Streams 4.1: a None value is dropped by both; a key extractor returning None drops the record of an inner
    # join and joins it with None in a left join; a None stream key is no obstacle (the extractor reads the value).
    ("join", [(None, "ink@France")]),
    ("left_join", [("o2", "cap@None"), (None, "ink@France")]),
])
def test_none_values_keys_and_extracted_keys(join, expected):
    app, _ = shop(join, key=lambda order_id, order: order.get("cc"))
    with TestDriver(app) as driver:
        driver.pipe("countries", "fr", "France")
        driver.pipe("orders", "o1", None)                           # None value: dropped (the extractor is not called)
        driver.pipe("orders", "o2", {"item": "cap"})                # the extractor returns None
        driver.pipe("orders", None, {"item": "ink", "cc": "fr"})    # None stream key
        assert driver.read("out") == expected


def test_a_record_with_a_none_key_on_the_global_topic_is_skipped():
    app, countries = shop("left_join")
    with TestDriver(app) as driver:
        driver.pipe("countries", "fr", "France")
        driver.pipe_bytes("countries", None, b'"Nowhere"')
        driver.pipe_bytes("countries", b"fr", None)                 # a tombstone through the raw path too
        assert dict(app.store("countries-global-store").all()) == {}
        driver.pipe("countries", "de", "Deutschland")
        assert dict(app.store("countries-global-store").all()) == {"de": "Deutschland"}
        assert countries.get("de") == "Deutschland" and "de" in countries and countries["de"] == "Deutschland"
        with pytest.raises(KeyError):
            countries["fr"]


def test_the_whole_table_on_any_partition_and_read_only_store_view():
    app, countries = shop("join")
    with TestDriver(app) as driver:
        for i, cc in enumerate(["fr", "de", "it", "es", "pt", "nl"]):
            driver.pipe("countries", cc, cc.upper(), partition=i % 3)
        # orders on both partitions find countries of every partition of the global topic
        for p in (0, 1):
            for cc in ("fr", "nl"):
                driver.pipe("orders", f"{cc}{p}", {"item": "x", "cc": cc}, partition=p)
        assert sorted(driver.read("out")) == [("fr0", "x@FR"), ("fr1", "x@FR"), ("nl0", "x@NL"), ("nl1", "x@NL")]
        view = app.store("countries-global-store")
        assert view.get("it") == "IT" and len(dict(view.all())) == 6
        with pytest.raises(streams.StreamsError, match="read-only"):
            view.put("fr", "nope")


def test_global_table_in_an_agent_and_a_timer_of_the_test_driver():
    app = streams.App("agent-lookups")
    prices = app.global_table(app.topic("prices", key_type=str, value_type=float), name="price-list")
    orders = app.topic("orders", key_type=str, value_type=str)
    totals = app.topic("totals", key_type=str, value_type=float)
    seen = []

    @app.agent(orders)
    async def price(stream):
        async for item, qty in stream.items():
            await app.send(totals, key=item, value=prices.get(item, 0.0) * int(qty))

    @app.timer(1.0)
    async def look():
        seen.append(prices.get("tea"))

    with TestDriver(app) as driver:
        driver.pipe("orders", "tea", "3")
        driver.pipe("prices", "tea", 2.5)
        driver.pipe("orders", "tea", "2")
        driver.advance_wall_clock(1.0)
        assert driver.read("totals") == [("tea", 0.0), ("tea", 5.0)]
        assert seen == [2.5]
        assert prices.store_name == "price-list" and app.store("price-list").get("tea") == 2.5


def test_describe_shows_the_global_store_and_creates_no_task_or_changelog_for_it():
    app, _ = shop("left_join")
    topology = app.topology()
    assert "   Global store: countries-global-store (topic: countries; every worker holds all of it, no tasks)\n" \
        in topology.describe()
    assert [s.source_topics for s in topology.subtopologies] == [[app.topics["orders"]]]
    assert topology.changelog_topics == [] and topology.source_topics == ["orders"]
    assert "t_countries --> g_countries_global_store" in topology.to_mermaid()
    assert "g_countries_global_store --> n_KSTREAM_GLOBALJOIN" in topology.to_mermaid()


def test_declaration_errors():
    app = streams.App("bad-globals")
    app.stream("clicks")
    with pytest.raises(streams.TopologyError, match="already read by a stream"):
        app.global_table("clicks")
    users = app.global_table("users")
    with pytest.raises(streams.TopologyError, match="already read by a global table"):
        app.global_table("users", name="other-store")
    with pytest.raises(streams.TopologyError, match="already exists"):
        app.global_table("accounts", name="users-global-store")
    with pytest.raises(TypeError, match="joiner"):
        app.stream("orders").join(users, "not a function", key=lambda k, v: k)
    with pytest.raises(streams.TopologyError, match="key="):
        app.stream("refunds").join(users, lambda a, b: a, lambda k, v: v["user"])   # the key function as windows
    with pytest.raises(streams.TopologyError, match="outer join"):
        app.stream("payments").outer_join(users, lambda a, b: a)
    with pytest.raises(RuntimeError, match="not open"):
        users.get("ada")
    # a stream over the topic declared after the global table is refused when the topology is loaded
    app.stream("users")
    with pytest.raises(streams.TopologyError, match="both by a global table"):
        TestDriver(app)


# ---- on a broker ----

def shop_on_broker(make_app, **settings):
    app = make_app(**settings)
    countries = app.global_table(app.topic(f"{app.id}-countries", key_type=str, value_type=str, partitions=3))
    orders = app.topic(f"{app.id}-orders", key_type=str, partitions=2)
    out = app.topic(f"{app.id}-out", key_type=str, value_type=str, partitions=1)
    app.stream(orders).left_join(countries, lambda order, country: f"{order['item']}@{country}",
                                 key=lambda order_id, order: order["cc"]).to(out)
    return app, countries


async def fill(app, topic: str, pairs) -> None:
    for key, value in pairs:
        await app.send(topic, key=key, value=value)
    await app.close()


def read_out(records) -> dict:
    return {r.key.decode(): r.value.decode() for r in records}


CODES = [f"c{i}" for i in range(12)]


async def test_two_workers_each_hold_the_whole_global_table(make_app, running, bootstrap):
    app1, countries1 = shop_on_broker(make_app)
    app2, countries2 = shop_on_broker(make_app)
    # The table exists before the workers start: each restores all of it (3 partitions) before processing.
    await create_topic(bootstrap, f"{app1.id}-countries", 3)
    await fill(app1, f"{app1.id}-countries", [(cc, cc.upper()) for cc in CODES])
    async with running(app1), running(app2):
        # one stream partition each
        await eventually(lambda: len(app1.worker.assigned) == 1 and len(app2.worker.assigned) == 1, timeout=30)
        for app in (app1, app2):
            [restore] = app.worker.global_stores.restores
            assert (restore.partitions, restore.restored, restore.from_checkpoint) == (3, len(CODES), False)
        # each worker holds every row, whichever partition it came from
        for countries in (countries1, countries2):
            assert {cc: countries.get(cc) for cc in CODES} == {cc: cc.upper() for cc in CODES}
        # orders on both stream partitions (so on both workers) find any country
        await fill(app1, f"{app1.id}-orders", [(f"o{i}-{cc}", {"item": "x", "cc": cc})
                                               for i in range(2) for cc in CODES])
        got = read_out(await consume(bootstrap, f"{app1.id}-out", 2 * len(CODES)))
        assert got == {f"o{i}-{cc}": f"x@{cc.upper()}" for i in range(2) for cc in CODES}
        assert app1.worker.processed > 0 and app2.worker.processed > 0
        # updates and deletions while the workers run reach both tables (their readers follow the topic)
        await fill(app1, f"{app1.id}-countries", [("c0", "zero"), ("c1", None), ("new", "NEW")])
        for countries in (countries1, countries2):
            await eventually(lambda: (countries.get("c0"), countries.get("c1"), countries.get("new"))
                             == ("zero", None, "NEW"), timeout=20)


async def test_a_restarted_worker_restores_the_global_table_from_its_checkpoint_before_processing(
        make_app, running, bootstrap, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="streams.progress")
    app, countries = shop_on_broker(make_app)
    async with running(app):
        await fill(app, f"{app.id}-countries", [(cc, cc.upper()) for cc in CODES])
        await eventually(lambda: countries.get(CODES[-1]) == CODES[-1].upper(), timeout=20)
    # While no worker runs: the table changes, then orders arrive that need the new rows.
    await fill(app, f"{app.id}-countries", [("c0", "zero"), ("c1", None), ("new", "NEW")])
    await fill(app, f"{app.id}-orders", [("a", {"item": "x", "cc": "c0"}), ("b", {"item": "x", "cc": "c1"}),
                                         ("c", {"item": "x", "cc": "new"})])
    app2, countries2 = shop_on_broker(make_app)
    async with running(app2):
        [restore] = app2.worker.global_stores.restores
        # only the tail written while it was down: the checkpoints covered the first 12 records
        assert restore.from_checkpoint and restore.restored == 3, restore
        assert f"restored global store {app.id}-countries-global-store (topic {app.id}-countries, 3 partitions): " \
            "3 records" in caplog.text
        got = read_out(await consume(bootstrap, f"{app.id}-out", 3))
        assert got == {"a": "x@zero", "b": "x@None", "c": "x@NEW"}
        assert countries2.get("c2") == "C2"
    # Without its local state the table is rebuilt from the beginning of the topic.
    shutil.rmtree(tmp_path / "work" / "state")
    app3, countries3 = shop_on_broker(make_app)
    async with running(app3):
        [restore] = app3.worker.global_stores.restores
        assert not restore.from_checkpoint and restore.restored == 15, restore
        assert {cc: countries3.get(cc) for cc in ["c0", "c1", "c2", "new"]} == \
            {"c0": "zero", "c1": None, "c2": "C2", "new": "NEW"}


async def test_an_agent_reads_the_global_table_while_it_processes(make_app, running, bootstrap):
    app = make_app()
    prices = app.global_table(app.topic(f"{app.id}-prices", key_type=str, value_type=float, partitions=2))
    orders = app.topic(f"{app.id}-orders", key_type=str, value_type=int, partitions=2)
    totals = app.topic(f"{app.id}-totals", key_type=str, value_type=float, partitions=1)

    @app.agent(orders, sink=[totals])
    async def price(stream):
        async for item, qty in stream.items():
            yield prices.get(item, 0.0) * qty

    await create_topic(bootstrap, f"{app.id}-prices", 2)
    await fill(app, f"{app.id}-prices", [("tea", 2.5), ("cake", 4.0)])
    async with running(app):
        for item, qty in [("tea", 2), ("cake", 1), ("soup", 3)]:
            await app.send(orders, key=item, value=qty)
        got = await consume(bootstrap, f"{app.id}-totals", 3)
        assert sorted(streams.JsonSerde().deserialize(r.value) for r in got) == [0.0, 4.0, 5.0]


async def test_under_exactly_once_aborted_records_never_reach_the_global_table(make_app, running, bootstrap):
    from aiokafka import AIOKafkaProducer
    app = make_app(processing_guarantee="exactly_once")
    topic = f"{app.id}-limits"
    limits = app.global_table(app.topic(topic, key_type=str, value_type=int, partitions=2))
    app.stream(app.topic(f"{app.id}-unused", partitions=1)).to(f"{app.id}-unused-out")
    await create_topic(bootstrap, topic, 2)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, transactional_id=f"{app.id}-writer")
    await producer.start()

    async def transaction(pairs, commit: bool) -> None:
        async with producer.transaction() if commit else _aborting(producer):
            for key, value in pairs:
                await producer.send(topic, limits.value_serde.serialize(value), key=limits.key_serde.serialize(key))

    try:
        await transaction([("a", 1)], commit=True)
        await transaction([("a", 2), ("b", 2)], commit=False)
        async with running(app):
            # restored with read_committed: the aborted transaction is not in the table
            assert (limits.get("a"), limits.get("b")) == (1, None)
            await transaction([("a", 3)], commit=False)
            await transaction([("c", 3)], commit=True)
            await eventually(lambda: limits.get("c") == 3, timeout=20)
            assert (limits.get("a"), limits.get("b")) == (1, None)
    finally:
        await producer.stop()


class _aborting:
    """A transaction that is aborted at the end of its block."""

    def __init__(self, producer) -> None:
        self.producer = producer

    async def __aenter__(self):
        await self.producer.begin_transaction()

    async def __aexit__(self, *exc) -> None:
        await self.producer.abort_transaction()


@pytest.mark.parametrize("policy", ["fail", "skip"])
def test_a_record_the_global_tables_serdes_cannot_read_never_reaches_it(policy):
    app = streams.App("bad-rows", on_error=policy)
    prices = app.global_table(app.topic("prices", key_type=str, value_type=int))
    app.stream("orders").left_join(prices, lambda qty, price: None if price is None else qty * price,
                                   key=lambda item, qty: item).to("out")
    with TestDriver(app) as driver:
        driver.pipe("prices", "tea", 3)
        if policy == "fail":
            with pytest.raises(streams.ProcessingError, match=r"record prices\[\d\]@1 cannot be read"):
                driver.pipe_bytes("prices", b"tea", b"not an int")
            with pytest.raises(RuntimeError, match="stopped after a processing failure"):
                driver.pipe("orders", "tea", 2)
        else:
            driver.pipe_bytes("prices", b"tea", b"not an int")          # logged and skipped: the old row stays
            driver.pipe("orders", "tea", 2)
            assert driver.read("out") == [("tea", 6)]
        assert prices.get("tea") == 3


async def test_a_worker_with_a_global_record_it_cannot_read(make_app, running, bootstrap):
    def build(policy):
        app = make_app(on_error=policy)
        prices = app.global_table(app.topic(f"{app.id}-prices", key_type=str, value_type=int, partitions=1))
        app.stream(app.topic(f"{app.id}-orders", partitions=1)).to(f"{app.id}-copy")
        return app, prices

    app, prices = build("fail")
    await create_topic(bootstrap, f"{app.id}-prices", 1)
    await produce(bootstrap, f"{app.id}-prices", [(b"tea", streams.IntSerde().serialize(3)), (b"tea", b"bad")])
    # on_error='fail': the restore stops the worker before it processes anything, naming the record
    with pytest.raises(streams.ProcessingError, match=rf"record {app.id}-prices\[0\]@1 cannot be read"):
        await asyncio.wait_for(app.run_worker(), 30)
    # otherwise the record is skipped, at restore and while the worker runs
    app, prices = build("skip")
    async with running(app):
        assert prices.get("tea") == 3
        await produce(bootstrap, f"{app.id}-prices", [(b"cake", b"bad"), (b"cake", streams.IntSerde().serialize(4))])
        await eventually(lambda: prices.get("cake") == 4, timeout=20)
        assert app.worker is not None and not app.worker.stopping

"""streams.testing.TestDriver: a user's unit tests of their app with no broker, and proof that the driver and the real
runtime produce the same records for the same input."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.partitioner import murmur2

import streams
from streams.testing import TestDriver
from streamtest import consume

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from examples import orders as shop  # noqa: E402  (the README's orders app, as a user would import theirs)


# ---- what a user writes to test the README's orders app ----

def test_big_orders_are_normalised_and_announced():
    announced_before = len(shop.announced)
    with TestDriver(shop.app) as driver:
        driver.pipe("orders", "ada", shop.Order("o1", "ada", 150.0), timestamp=1_000)
        driver.pipe(shop.orders, "bob", shop.Order("o2", "bob", 99.99), timestamp=2_000)
        driver.pipe(shop.orders, "eve", shop.Order("o3", "eve", 250.0), timestamp=3_000)

        assert driver.read("big-orders") == [("ada", shop.Order("o1", "ADA", 150.0)),
                                             ("eve", shop.Order("o3", "EVE", 250.0))]
        assert driver.read("big-orders") == []                       # reading consumes
        assert shop.announced[announced_before:] == ["o1", "o3"]    # the agent ran before pipe() returned
        assert driver.stream_time("orders") == 3_000


def test_output_records_keep_the_input_timestamp_and_are_partitioned_by_key():
    with TestDriver(shop.app) as driver:
        driver.pipe("orders", "ada", shop.Order("o1", "ada", 500.0), timestamp=42)
        [record] = driver.read_records("big-orders")
    assert record.timestamp == 42 and record.key == "ada"
    assert record.partition == (murmur2(b"ada") & 0x7FFFFFFF) % shop.app.default_partitions


def test_a_bad_order_fails_like_the_worker_would():
    with TestDriver(shop.app) as driver:
        with pytest.raises(streams.ProcessingError) as info:
            driver.pipe_bytes("orders", b"ada", b'{"id": "o1"}')          # missing fields: not an Order
        assert info.value.topic == "orders" and info.value.offset == 0
        assert isinstance(info.value.__cause__, streams.SerializationError)
        with pytest.raises(RuntimeError, match="stopped after a processing failure"):
            driver.pipe("orders", "ada", shop.Order("o2", "ada", 1.0))


def test_piping_into_a_topic_the_app_does_not_read_is_an_error():
    with TestDriver(shop.app) as driver:
        with pytest.raises(ValueError, match="does not read topic 'nope'; it reads big-orders, orders"):
            driver.pipe("nope", "k", "v")


def test_an_app_runs_in_one_driver_or_worker_at_a_time():
    import asyncio
    with TestDriver(shop.app):
        with pytest.raises(RuntimeError, match="already running"):
            TestDriver(shop.app)
        with pytest.raises(RuntimeError, match="already running"):
            asyncio.run(shop.app.run_worker())
    assert shop.app.worker is None


# ---- error policies and agents, as on a worker ----

def _explode_on_three(k, v):
    if v == 3:
        raise RuntimeError("three is bad")
    return True


def test_skip_and_dead_letter_policies():
    app = streams.App("policies", on_error="dead_letter")
    src = app.topic("nums", key_type=bytes, value_serde=streams.JsonSerde(), partitions=1)
    app.stream(src).filter(_explode_on_three).map_values(lambda v: v * 10).to(app.topic("out", key_type=bytes))
    with TestDriver(app) as driver:
        driver.pipe_many(src, [(b"a", 1), (b"b", 3), (b"c", 4)], timestamp=7)
        driver.pipe_bytes(src, b"d", b"{not json")
        assert driver.read("out") == [(b"a", 10), (b"c", 40)]
        dead = driver.read_records(app.dead_letter_topic)
    assert [(r.key, r.value) for r in dead] == [(b"b", b"3"), (b"d", b"{not json")]
    headers = dict(dead[0].headers)
    assert b"three is bad" in headers["streams.error"] and headers["streams.offset"] == b"1"
    assert b"SerializationError" in dict(dead[1].headers)["streams.error"]


def test_agents_group_by_sinks_and_timers():
    app = streams.App("agents")
    clicks = app.topic("clicks", key_type=str, partitions=2)
    per_user = app.topic("per-user", key_type=str)
    seen: list = []
    ticks: list = []

    @app.agent(clicks, sink=[per_user])
    async def by_user(stream):
        async for click in stream.group_by(lambda c: c["user"], name="user"):
            seen.append(click["page"])
            yield click["page"].upper()

    @app.timer(1.0)
    async def tick():
        ticks.append(1)

    with TestDriver(app) as driver:
        driver.pipe(clicks, "s1", {"user": "ada", "page": "home"})
        driver.pipe(clicks, "s2", {"user": "bob", "page": "cart"})
        assert seen == ["home", "cart"]
        assert driver.read(per_user) == [("ada", "HOME"), ("bob", "CART")]   # re-keyed by the group_by
        repartitioned = driver.read_records("agents-by_user-user-repartition")
        assert [(r.key, r.partition) for r in repartitioned] == [
            (user, (murmur2(f'"{user}"'.encode()) & 0x7FFFFFFF) % app.default_partitions) for user in ("ada", "bob")]
        driver.advance_wall_clock(3.5)
        assert len(ticks) == 3


def test_an_agent_failure_under_fail_stops_the_driver():
    app = streams.App("agent-fails")
    src = app.topic("in", partitions=1)

    @app.agent(src)
    async def crash(stream):
        async for value in stream:
            raise KeyError(value)

    with TestDriver(app) as driver:
        with pytest.raises(streams.ProcessingError, match=r"agent 'crash' failed on in\[0\]@0"):
            driver.pipe(src, None, "x")


# ---- the driver and the real runtime agree ----

def build_word_app(app: streams.App, prefix: str) -> dict[str, streams.Topic]:
    """Three sub-topologies: lines -> words re-keyed through a repartition topic -> an agent with a sink."""
    lines = app.topic(f"{prefix}-lines", key_type=str, value_type=str, partitions=3)
    words = app.topic(f"{prefix}-words", key_type=str)
    shouts = app.topic(f"{prefix}-shouts", key_type=str)
    (app.stream(lines)
        .filter(lambda host, line: not line.startswith("#"))
        .flat_map(lambda host, line: [(w, {"word": w, "host": host}) for w in line.split()])
        .repartition(name="by-word")
        .map_values(lambda v: {**v, "length": len(v["word"])})
        .to(words))

    @app.agent(words, sink=[shouts])
    async def shout(stream):
        async for value in stream:
            yield value["word"].upper()

    return {"lines": lines, "words": words, "shouts": shouts}


VOCABULARY = ["kafka", "stream", "table", "join", "window", "state"]
INPUT = [(f"host{i % 5}", ("# comment" if i % 7 == 0 else
                           " ".join(VOCABULARY[(i * j) % len(VOCABULARY)] for j in range(1, 1 + i % 4))),
          1_000 + 10 * i) for i in range(40)]


async def test_the_driver_and_the_runtime_write_the_same_records(make_app, running, bootstrap, app_id, topic_name):
    raw = {"key_serde": streams.BytesSerde(), "value_serde": streams.BytesSerde()}
    outputs = ["words", "shouts"]

    tested = streams.App(app_id)                      # same id: same internal topic names, but no broker at all
    t = build_word_app(tested, topic_name)
    with TestDriver(tested) as driver:
        for key, line, ts in INPUT:
            driver.pipe(t["lines"], key, line, timestamp=ts)
        expected = {name: driver.read_records(t[name], **raw) for name in outputs}
        expected["repartition"] = driver.read_records(f"{app_id}-by-word-repartition", **raw)
    assert len(expected["repartition"]) == len(expected["words"]) == len(expected["shouts"]) > 40

    app = make_app()
    t = build_word_app(app, topic_name)
    async with running(app):
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            for key, line, ts in INPUT:
                await producer.send(t["lines"].name, line.encode(), key=key.encode(), timestamp_ms=ts)
            await producer.flush()
        finally:
            await producer.stop()
        actual = {name: await consume(bootstrap, t[name].name, len(expected[name])) for name in outputs}
        actual["repartition"] = await consume(bootstrap, f"{app_id}-by-word-repartition",
                                              len(expected["repartition"]))

    def records(rs) -> Counter:
        return Counter((r.partition, r.key, r.value, r.timestamp) for r in rs)

    for name in expected:
        assert records(actual[name]) == records(expected[name]), name
    # Records of one word from one host keep their order through the repartition topic (what Kafka guarantees: one
    # host's lines are on one input partition, one word's records on one repartition partition).
    for rs in (actual["repartition"], expected["repartition"], actual["words"], expected["words"]):
        by_origin: dict = {}
        for r in rs:
            by_origin.setdefault((r.partition, r.key, json.loads(r.value)["host"]), []).append(r.timestamp)
        assert all(ts == sorted(ts) for ts in by_origin.values())

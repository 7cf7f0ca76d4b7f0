"""The error policies for user-function and deserialization failures: fail, skip, dead-letter."""

from __future__ import annotations

import asyncio

import pytest

import streams
from streamtest import committed, consume, eventually, produce


def _boom(k, v):
    if v == 3:
        raise RuntimeError("three is bad")
    return True


async def test_fail_stops_the_worker_naming_the_record_and_commits_before_it(make_app, bootstrap, topic_name):
    app = make_app(on_error="fail")
    src = app.topic(topic_name, key_type=str, value_type=int, value_serde=streams.JsonSerde(), partitions=1)
    app.stream(src).filter(_boom).to(f"{topic_name}-out")
    await produce(bootstrap, topic_name, [(b"k", str(i).encode()) for i in range(6)])
    with pytest.raises(streams.ProcessingError) as info:
        await asyncio.wait_for(app.run_worker(), 30)
    err = info.value
    assert (err.topic, err.partition, err.offset) == (topic_name, 0, 3)
    assert f"{topic_name}[0]@3" in str(err) and "three is bad" in str(err)
    assert isinstance(err.__cause__, RuntimeError)
    assert (await committed(bootstrap, app.id, topic_name))[0] == 3
    assert [int(r.value) for r in await consume(bootstrap, f"{topic_name}-out", 3)] == [0, 1, 2]


async def test_skip_logs_and_goes_on_for_user_and_deserialization_errors(make_app, running, bootstrap, topic_name):
    app = make_app(on_error="skip")
    src = app.topic(topic_name, value_serde=streams.JsonSerde(), partitions=1)
    app.stream(src).filter(_boom).to(f"{topic_name}-out")
    async with running(app):
        await produce(bootstrap, topic_name, [(None, b"1"), (None, b"not json"), (None, b"3"), (None, b"4")])
        out = await consume(bootstrap, f"{topic_name}-out", 2)
        await eventually(lambda: _committed(bootstrap, app.id, topic_name, 4))
    assert sorted(int(r.value) for r in out) == [1, 4]


async def _committed(bootstrap, group, topic, offset):
    return (await committed(bootstrap, group, topic))[0] == offset


async def test_dead_letter_gets_the_raw_record_and_the_error(make_app, running, bootstrap, topic_name):
    app = make_app(on_error="dead_letter")
    src = app.topic(topic_name, key_type=bytes, value_serde=streams.JsonSerde(), partitions=1)
    app.stream(src).filter(_boom).to(app.topic(f"{topic_name}-out", key_type=bytes))
    agent_src = app.topic(f"{topic_name}-agent", partitions=1)
    seen = []

    @app.agent(agent_src)
    async def picky(stream):
        async for value in stream:
            if value == "bad":
                raise ValueError("agent refuses")
            seen.append(value)

    async with running(app):
        await produce(bootstrap, topic_name, [(b"a", b"2"), (b"b", b"{oops"), (b"c", b"3"), (b"d", b"5")])
        await produce(bootstrap, agent_src.name, [(None, b'"ok1"'), (None, b'"bad"'), (None, b'"ok2"')])
        dead = await consume(bootstrap, app.dead_letter_topic, 3)
        out = await consume(bootstrap, f"{topic_name}-out", 2)
        await eventually(lambda: seen == ["ok1", "ok2"])
    assert sorted(int(r.value) for r in out) == [2, 5]
    by_key = {r.key: r for r in dead}
    assert by_key[b"b"].value == b"{oops" and by_key[b"c"].value == b"3"
    headers = dict(by_key[b"c"].headers)
    assert headers["streams.topic"] == topic_name.encode() and headers["streams.offset"] == b"2"
    assert b"three is bad" in headers["streams.error"]
    assert b"SerializationError" in dict(by_key[b"b"].headers)["streams.error"]
    agent_dead = [r for r in dead if dict(r.headers)["streams.topic"] == agent_src.name.encode()]
    assert agent_dead[0].value == b'"bad"' and b"agent refuses" in dict(agent_dead[0].headers)["streams.error"]


async def test_agent_failure_under_fail_policy_stops_the_worker(make_app, bootstrap, topic_name):
    app = make_app(on_error="fail")
    src = app.topic(topic_name, partitions=1)

    @app.agent(src)
    async def crash(stream):
        async for value in stream:
            raise KeyError(value)

    await produce(bootstrap, topic_name, [(None, b"1")])
    with pytest.raises(streams.ProcessingError, match=rf"agent 'crash' failed on {topic_name}\[0\]@0"):
        await asyncio.wait_for(app.run_worker(), 30)

"""Every DSL operation on a real broker: what reaches the output topics is what a user relies on."""

from __future__ import annotations

import json
from collections import Counter

from aiokafka.partitioner import murmur2

from streamtest import committed, consume, eventually, produce


def _j(b: bytes | None):
    return None if b is None else json.loads(b)


async def test_every_stateless_operation(make_app, running, bootstrap, topic_name):
    app = make_app()
    t = lambda suffix, **kw: app.topic(f"{topic_name}-{suffix}", **kw)  # noqa: E731
    nums = t("nums", key_type=str, value_type=int, value_serde=streams_json(), partitions=2)
    words = t("words", key_type=str, partitions=2)
    peeked, each = [], []

    s = app.stream(nums)
    s.filter(lambda k, v: v % 2 == 0).to(t("even"))
    s.filter_not(lambda k, v: v % 2 == 0).to(t("odd"))
    s.map(lambda k, v: (f"m{v}", v * 10)).to(t("mapped"))
    s.map_values(lambda v: v + 1).to(t("plus1"))
    s.flat_map(lambda k, v: [(k, v), (k, -v)]).to(t("flat"))
    s.flat_map_values(lambda v: [v, v] if v < 3 else []).to(t("flatvalues"))
    s.select_key(lambda k, v: v % 3).to(t("selected"))
    s.peek(lambda k, v: peeked.append(v)).foreach(lambda k, v: each.append((k, v)))
    branches = (s.split(name="sizes")
                .branch(lambda k, v: v >= 15, name="big")
                .branch(lambda k, v: v >= 5, name="mid")
                .default_branch(name="small"))
    for name, branch in branches.items():
        branch.to(t(name))
    s.filter(lambda k, v: v < 3).merge(app.stream(words)).to(t("merged"))
    s.through(t("thru")).map_values(lambda v: v * 2).to(t("after-thru"))
    s.select_key(lambda k, v: f"key{v % 4}").repartition(name="by-four").to(t("regrouped"))

    async with running(app):
        await produce(bootstrap, f"{topic_name}-nums", [(f"k{i}".encode(), str(i).encode()) for i in range(20)])
        await produce(bootstrap, f"{topic_name}-words", [(b"w", b'"hello"'), (b"w", b'"world"')])

        async def values(suffix, n):
            return [(_j(r.key), _j(r.value)) for r in await consume(bootstrap, f"{topic_name}-{suffix}", n)]

        assert sorted(v for _, v in await values("even", 10)) == list(range(0, 20, 2))
        assert sorted(v for _, v in await values("odd", 10)) == list(range(1, 20, 2))
        assert sorted(await values("mapped", 20)) == sorted((f"m{i}", i * 10) for i in range(20))
        assert sorted(v for _, v in await values("plus1", 20)) == list(range(1, 21))
        flat = await values("flat", 40)
        assert sorted(v for _, v in flat) == sorted(list(range(20)) + [-i for i in range(20)])
        assert Counter(v for _, v in await values("flatvalues", 6)) == {0: 2, 1: 2, 2: 2}
        assert sorted(await values("selected", 20)) == sorted((i % 3, i) for i in range(20))
        assert sorted(v for _, v in await values("big", 5)) == list(range(15, 20))
        assert sorted(v for _, v in await values("mid", 10)) == list(range(5, 15))
        assert sorted(v for _, v in await values("small", 5)) == list(range(5))
        merged = await values("merged", 5)
        assert sorted(map(str, (v for _, v in merged))) == sorted(["0", "1", "2", "hello", "world"])
        assert sorted(v for _, v in await values("thru", 20)) == list(range(20))
        assert sorted(v for _, v in await values("after-thru", 20)) == [i * 2 for i in range(20)]
        assert sorted(v for _, v in await values("regrouped", 20)) == list(range(20))
        # the repartition topic is partitioned by the new key, like Kafka's default partitioner
        internal = await consume(bootstrap, f"{app.id}-by-four-repartition", 20)
        for r in internal:
            assert r.partition == (murmur2(r.key) & 0x7FFFFFFF) % 2
        assert {_j(r.key) for r in internal} == {"key0", "key1", "key2", "key3"}
        await eventually(lambda: len(each) == 20)
        # offsets are committed once the output is flushed
        await eventually(lambda: _all_committed(bootstrap, app.id, f"{topic_name}-nums", 20))
    assert sorted(peeked) == list(range(20))
    assert sorted(v for _, v in each) == list(range(20))


async def _all_committed(bootstrap, group, topic, total):
    offsets = await committed(bootstrap, group, topic, 2)
    return sum(o or 0 for o in offsets.values()) == total


def streams_json():
    import streams
    return streams.JsonSerde()


async def test_records_of_a_task_keep_their_offset_order(make_app, running, bootstrap, topic_name):
    app = make_app()
    src = app.topic(topic_name, key_type=str, partitions=1)
    seen = []
    app.stream(src).foreach(lambda k, v: seen.append(v))
    async with running(app):
        await produce(bootstrap, topic_name, [(b"k", str(i).encode()) for i in range(500)])
        await eventually(lambda: len(seen) == 500)
    assert seen == list(range(500))

"""Tables read from a topic: the latest value per key, a None value deletes the key and is forwarded downstream as
a deletion, and filter / map_values keep deletions deletions (a row that stops matching becomes one)."""

from __future__ import annotations

import streams
from streams.testing import TestDriver


def test_tombstones_through_a_table_filter_and_map_values():
    app = streams.App("tables")
    users = app.topic("users", key_type=str, partitions=1)
    table = app.table(users, "users-store")
    (table.filter(lambda k, v: v["age"] >= 18).map_values(lambda v: v["name"].upper())
     .to_stream().to(app.topic("adults", key_type=str)))
    with TestDriver(app) as driver:
        driver.pipe("users", "a", {"name": "ann", "age": 30})
        driver.pipe("users", "b", {"name": "bob", "age": 12})    # does not match: a deletion downstream
        driver.pipe("users", "a", None)                           # a tombstone: deleted, and forwarded
        driver.pipe("users", "b", {"name": "bob", "age": 18})
        # expected by hand, record by record
        assert driver.read("adults") == [("a", "ANN"), ("b", None), ("a", None), ("b", "BOB")]
        store = app.store("users-store")
        assert store.get("a") is None and store.get("b") == {"name": "bob", "age": 18}
        assert dict(store.all()) == {"b": {"name": "bob", "age": 18}}
        # the topic is the table's changelog: no extra changelog topic
        assert app.topology().changelog_topics == []


def test_aggregation_tables_forward_every_update_and_skip_none_values():
    app = streams.App("tables-agg")
    src = app.topic("payments", key_type=str, partitions=1)
    (app.stream(src).group_by_key().aggregate(lambda: 0, lambda k, v, total: total + v, "totals")
     .to_stream().to(app.topic("totals-out", key_type=str)))
    with TestDriver(app) as driver:
        for key, value in [("x", 5), ("y", 1), ("x", None), ("x", 2)]:
            driver.pipe("payments", key, value)
        # a None value is skipped by an aggregation (Kafka Streams' KGroupedStream rule)
        assert driver.read("totals-out") == [("x", 5), ("y", 1), ("x", 7)]
        assert dict(app.store("totals").all()) == {"x": 7, "y": 1}

"""The topology compiler and serdes, without a broker: what describe() shows, how the graph is cut, what fails."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

import streams
from streams.runtime.assignor import balance_tasks


@dataclass
class Order:
    id: str
    amount: float


def test_issue_example_compiles_into_two_subtopologies():
    app = streams.App("shop")
    orders = app.topic("orders", key_type=str, value_type=Order)
    big = app.topic("big-orders", key_type=str, value_type=Order)
    app.stream(orders).filter(lambda k, o: o.amount > 100).map_values(lambda o: o).to(big)

    @app.agent(big)
    async def notify(stream):
        async for order in stream:
            yield order.id

    topo = app.topology()
    assert [[t.name for t in s.source_topics] for s in topo.subtopologies] == [["orders"], ["big-orders"]]
    assert topo.source_topics == ["big-orders", "orders"]
    assert topo.sink_topics == ["big-orders"]
    text = topo.describe()
    assert "Sub-topology: 0" in text and "Sub-topology: 1" in text
    assert "Source: KSTREAM-SOURCE-0000000000 (topics: [orders])" in text
    assert "Sink: KSTREAM-TO-0000000003 (topic: big-orders)" in text
    assert "Agent: notify" in text


def test_key_change_then_group_by_key_cuts_at_named_repartition_topic():
    app = streams.App("clicks-app")
    clicks = app.topic("clicks", partitions=3)
    grouped = app.stream(clicks).select_key(lambda k, v: v["user"]).group_by_key(name="by-user")
    # Grouping alone records nothing: no repartition topic, no empty sub-topology.
    assert app.topology().repartition_topics == []
    grouped.count("clicks-per-user")
    topo = app.topology()
    assert topo.repartition_topics == ["clicks-app-by-user-repartition"]
    assert topo.changelog_topics == ["clicks-app-clicks-per-user-changelog"]
    assert len(topo.subtopologies) == 2
    # the repartition topic takes the writer's partition count, and so does the changelog (one per task)
    assert topo.subtopologies[1].partitions == 3
    with pytest.raises(TypeError, match="JoinWindows"):
        app.stream("other").join(app.stream("more"), lambda a, b: a)


def test_group_by_key_without_key_change_does_not_repartition():
    app = streams.App("a")
    app.stream(app.topic("t")).map_values(lambda v: v).group_by_key()
    assert app.topology().repartition_topics == []


def test_group_by_always_repartitions_and_repartition_names_follow_node_names():
    app = streams.App("a")
    s = app.stream("t")
    s.group_by(lambda k, v: v, name="g").count()
    s2 = app.stream("u").repartition(partitions=5)
    topo = app.topology({"t": 2, "u": 1})
    assert "a-g-repartition" in topo.repartition_topics
    assert any(n.endswith("-repartition") and n.startswith("a-KSTREAM-REPARTITION-") for n in topo.repartition_topics)
    assert s2.node.topics[0].partitions == 5


def test_copartitioning_error_names_the_topics_and_counts():
    app = streams.App("a")
    left = app.topic("left", partitions=3)
    right = app.topic("right", partitions=4)
    app.stream(left).merge(app.stream(right)).group_by_key(name="g").count()
    with pytest.raises(streams.CoPartitionError, match=r"'left' has 3, 'right' has 4 partitions"):
        app.topology()


def test_copartitioned_merge_is_accepted_and_unknown_counts_are_checked_when_known():
    app = streams.App("a")
    app.stream("x").merge(app.stream("y")).group_by_key().reduce(lambda a, b: b)
    app.topology()  # counts unknown offline: nothing to check yet
    app.topology({"x": 2, "y": 2})
    with pytest.raises(streams.CoPartitionError):
        app.topology({"x": 2, "y": 1})


def test_a_topic_can_be_the_source_of_one_stream_only():
    app = streams.App("a")
    app.stream(["x", "y"])
    with pytest.raises(streams.TopologyError, match="already read"):
        app.stream("x").merge(app.stream("z"))
    # the same topic set shares its source node
    assert app.stream(["y", "x"]).node is app.stream(["x", "y"]).node


def test_node_names_are_validated_and_unique():
    app = streams.App("a")
    s = app.stream("t")
    s.filter(lambda k, v: True, name="f")
    with pytest.raises(streams.TopologyError, match="already exists"):
        s.filter(lambda k, v: True, name="f")
    with pytest.raises(streams.TopologyError, match="bad node name"):
        s.filter(lambda k, v: True, name="no spaces")
    with pytest.raises(TypeError):
        s.map_values("not a function")


def test_mermaid_and_dot_show_every_processor_and_the_topics_between():
    app = streams.App("a")
    app.stream("in").select_key(lambda k, v: v).repartition(name="r").map_values(str).to("out")
    mermaid = app.topology().to_mermaid()
    assert mermaid.startswith("flowchart TD")
    assert 'subgraph sub0' in mermaid and 'subgraph sub1' in mermaid
    assert 't_a_r_repartition(["a-r-repartition"])' in mermaid
    assert "n_r --> t_a_r_repartition" in mermaid and "t_a_r_repartition --> n_r_source" in mermaid
    dot = app.topology().to_dot()
    assert dot.startswith("digraph topology {") and "cluster_1" in dot and "t_out" in dot


def test_serdes_round_trip_and_reject_bad_input():
    assert streams.JsonSerde(Order).deserialize(streams.JsonSerde().serialize(Order("1", 2.5))) == Order("1", 2.5)
    assert streams.IntSerde().deserialize(streams.IntSerde().serialize(-7)) == -7
    assert streams.StrSerde().deserialize("é".encode()) == "é"
    assert streams.BytesSerde().serialize(b"x") == b"x"
    with pytest.raises(streams.SerializationError):
        streams.JsonSerde(Order).deserialize(b'{"nope": 1}')
    with pytest.raises(streams.SerializationError):
        streams.JsonSerde().deserialize(b"\xff not json")
    with pytest.raises(ValueError, match="no serde"):
        streams.App("a").topic("t", value_serde=object())
    with pytest.raises(ValueError, match="bad topic name"):
        streams.App("a").topic("bad name")


def test_app_settings_are_validated():
    with pytest.raises(ValueError, match="on_error"):
        streams.App("a", on_error="ignore")
    with pytest.raises(ValueError, match="broker URL"):
        streams.App("a", broker="http://x:1")
    assert streams.App("a", broker="kafka://h1:1,h2:2").broker == "h1:1,h2:2"


def test_task_assignment_is_balanced_and_sticky():
    tasks = [(s, p) for s in range(2) for p in range(4)]
    first = balance_tasks(tasks, ["a"], {})
    assert sorted(first["a"]) == tasks
    second = balance_tasks(tasks, ["a", "b"], first)
    assert sorted(len(v) for v in second.values()) == [4, 4]
    assert set(second["a"]) <= set(first["a"])
    third = balance_tasks(tasks, ["a", "b", "c"], second)
    assert sorted(len(v) for v in third.values()) == [2, 3, 3]
    moved = sum(1 for m in ("a", "b") for t in third[m] if t not in second[m])
    assert moved == 0  # the existing members only gave tasks away
    assert sorted(t for v in third.values() for t in v) == tasks

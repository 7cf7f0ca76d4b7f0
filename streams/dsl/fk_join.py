"""Foreign-key table-table joins (`left.join(right, joiner, foreign_key=fn)`), wired as Kafka Streams does (KIP-213).

`fn(left value)` names the row of `right` to join. The two tables need not be co-partitioned: they talk through
two internal topics.

    left table --fk_send--> <app>-<name>-subscription-registration-topic (keyed by the foreign key, partitioned like
        `right`) --fk_subscribe--> subscription store (foreign key, left key) -> response
    right table --fk_right--> every subscription of the updated key -> response
    responses --> <app>-<name>-subscription-response-topic (keyed by the left key, partitioned like `left`)
        --fk_response--> the joined row, unless the left row changed since the subscription was sent (each
        subscription carries a hash of the left value it was sent for; a stale response is dropped)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable

from ..serde import BytesSerde, JsonSerde
from ..topics import Topic
from ..topology.stores import StoreSpec
from .joins import _check, _send_old_values, table_stores

if TYPE_CHECKING:
    from .table import KTable

__all__ = ["foreign_key_join"]


def _source_topic(node: Any) -> Topic:
    while node.kind != "source":
        node = node.parents[0]
    return node.topics[0]


def foreign_key_join(left: "KTable", right: "KTable", joiner: Callable, foreign_key: Callable, how: str,
                     name: str | None) -> "KTable":
    from .table import KTable
    _check(joiner, how, ("inner", "left"))
    if not callable(foreign_key):
        raise TypeError(f"foreign_key must be a function of the left value, got {foreign_key!r}")
    graph = left._builder.graph
    base = name or f"KTABLE-FK-JOIN-{len(graph.nodes):010d}"
    left_stores, right_stores = table_stores(left), table_stores(right)
    _send_old_values(left.node)
    _send_old_values(right.node)   # a filtered right table then says nothing for a row that was never there
    raw = BytesSerde()
    registration = Topic(f"{graph.app_id}-{base}-subscription-registration-topic", key_serde=right.key_serde,
                         value_serde=raw, internal=True)
    response = Topic(f"{graph.app_id}-{base}-subscription-response-topic", key_serde=left.key_serde,
                     value_serde=raw, internal=True)
    subscriptions = StoreSpec(f"{base}-subscription-store", "kv", None, None)

    send = graph.add("processor", op="fk_send", parents=[left.node], name=f"{base}-subscription-send",
                     foreign_key=foreign_key, how=how, left_value_serde=left.value_serde,
                     fk_serde=right.key_serde, left_key_serde=left.key_serde)
    to_registration = graph.add("repartition", op="repartition", parents=[send], topics=[registration],
                                name=f"{base}-subscription-registration-sink",
                                partitions_like=_source_topic(right.node))
    registered = graph.add("source", topics=[registration], name=f"{base}-subscription-registration-source")
    to_registration.attrs["downstream"] = registered
    receive = graph.add("processor", op="fk_subscribe", parents=[registered], name=f"{base}-subscription-receive",
                        stores=[subscriptions, *right_stores], right=right.node, fk_serde=right.key_serde,
                        right_value_serde=right.value_serde, left_key_serde=left.key_serde)
    updates = graph.add("processor", op="fk_right", parents=[right.node], name=f"{base}-foreign-table-join",
                        stores=[subscriptions], fk_serde=right.key_serde, right_value_serde=right.value_serde,
                        left_key_serde=left.key_serde)
    to_response = graph.add("repartition", op="repartition", parents=[receive, updates], topics=[response],
                            name=f"{base}-subscription-response-sink", partitions_like=_source_topic(left.node))
    responded = graph.add("source", topics=[response], name=f"{base}-subscription-response-source")
    to_response.attrs["downstream"] = responded
    # The result is kept in a store of its own (as Kafka Streams materializes it), so that it can be looked up
    # (a stream or a table joining it, app.store) and passes its previous row on to what follows.
    result = StoreSpec(f"{base}-result-store", "kv", left.key_serde, JsonSerde(), timestamped=True)
    joined = graph.add("processor", op="fk_response", parents=[responded], name=f"{base}-result",
                       stores=[*left_stores, result], left=left.node, how=how, joiner=joiner,
                       left_value_serde=left.value_serde, right_value_serde=right.value_serde, result=result)
    return KTable(left._builder, joined, left.key_serde, JsonSerde(), store=result)

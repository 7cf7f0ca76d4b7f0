"""DescribeTopicPartitions (KIP-966): topics and their partitions in name order, paged by a cursor.

The rules are Kafka 4.1's: the partition limit is clamped to 1..2000 and counts partitions across topics; when it
runs out, `next_cursor` names the first partition not returned (the next topic's partition 0 when a topic ended
exactly at the limit); a cursor whose topic is not among the requested ones, or with a negative partition, makes
every requested topic INVALID_REQUEST; requested topics before the cursor's are skipped.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..metadata import TopicError, check_topic_name
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import DESCRIBE, TOPIC, allowed, authorized_operations
from .errors import error_code

MAX_PARTITION_LIMIT = 2000  # Kafka's max.request.partition.size.limit
# With no authorizer every topic operation is allowed: READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE,
# DESCRIBE_CONFIGS, ALTER_CONFIGS (bits 3-8, 10, 11).
ALL_TOPIC_OPERATIONS = sum(1 << op for op in (3, 4, 5, 6, 7, 8, 10, 11))


@handles(75, 0, 0)
def describe_topic_partitions(ctx: RequestContext, req):
    r = ctx.reply
    registry = ctx.broker.topics
    node_id = ctx.broker.config.node_id
    names = sorted({t.name for t in req.topics}) if req.topics else sorted(
        name for name in registry.topics if allowed(ctx, DESCRIBE, TOPIC, name))  # all: only what it may describe
    cursor = req.cursor
    if cursor is not None and ((req.topics and cursor.topic_name not in names) or cursor.partition_index < 0):
        return r("DescribeTopicPartitionsResponse", throttle_time=ZERO_MS, next_cursor=None,
                 topics=tuple(_topic(r, name, ErrorCode.invalid_request) for name in names))
    remaining = min(max(req.response_partition_limit, 1), MAX_PARTITION_LIMIT)
    topics, next_cursor = [], None
    for name in names:
        if cursor is not None and name < cursor.topic_name:
            continue
        start = cursor.partition_index if cursor is not None and name == cursor.topic_name else 0
        if remaining == 0:
            next_cursor = r("Cursor", topic_name=name, partition_index=start)
            break
        if not allowed(ctx, DESCRIBE, TOPIC, name):
            topics.append(_topic(r, name, ErrorCode.topic_authorization_failed))
            continue
        try:
            check_topic_name(name)
            topic = registry.get(name)
        except TopicError as exc:
            topics.append(_topic(r, name, error_code(exc)))
            continue
        if topic is None:
            topics.append(_topic(r, name, ErrorCode.unknown_topic_or_partition))
            continue
        end = min(topic.partitions, start + remaining)
        partitions = tuple(
            r("DescribeTopicPartitionsResponsePartition", error_code=ErrorCode.none, partition_index=p,
              leader_id=node_id, leader_epoch=0, replica_nodes=(node_id,), isr_nodes=(node_id,),
              # One replica, always in sync: no eligible leader outside the ISR, none last known.
              eligible_leader_replicas=(), last_known_elr=(), offline_replicas=())
            for p in range(start, end))
        remaining -= len(partitions)
        topics.append(r("DescribeTopicPartitionsResponseTopic", error_code=ErrorCode.none, name=name,
                        topic_id=topic.topic_id, is_internal=topic.internal, partitions=partitions,
                        topic_authorized_operations=authorized_operations(ctx, TOPIC, name)))
        if end < topic.partitions:
            next_cursor = r("Cursor", topic_name=name, partition_index=end)
            break
    return r("DescribeTopicPartitionsResponse", throttle_time=ZERO_MS, topics=tuple(topics), next_cursor=next_cursor)


def _topic(r, name, code):
    return r("DescribeTopicPartitionsResponseTopic", error_code=code, name=name, topic_id=None, is_internal=False,
             partitions=(), topic_authorized_operations=ALL_TOPIC_OPERATIONS)

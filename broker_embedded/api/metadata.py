"""Metadata: the one broker, and topics with their partitions (auto-creating topics when allowed)."""

from __future__ import annotations

import uuid

from kio.schema.errors import ErrorCode

from ..metadata import TopicError, check_topic_name
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .errors import error_code

NO_TOPIC_ID = uuid.UUID(int=0)


def topic_name_of(broker, entry) -> str | None:
    """The topic a request entry names: by `name` (or `topic`) in older versions, by `topic_id` in newer ones
    (Produce v13, Fetch v13+); None for an id no topic has."""
    topic_id = getattr(entry, "topic_id", None)
    if topic_id is not None and topic_id != NO_TOPIC_ID:
        topic = broker.topics.by_id.get(topic_id)
        return None if topic is None else topic.name
    return getattr(entry, "name", None) or getattr(entry, "topic", None)


def broker_endpoint(ctx: RequestContext) -> tuple[int, str, int]:
    """(node id, host, port) as the client should reach this broker: the advertised address of the listener
    the request came through."""
    cfg = ctx.broker.config
    endpoint = ctx.broker.endpoints.get(ctx.listener)
    if endpoint is not None:
        return cfg.node_id, endpoint[0], endpoint[1]
    return cfg.node_id, cfg.advertised_host or cfg.host, ctx.broker.advertised_port


@handles(3, 0, 13)
def metadata(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    node_id, host, port = broker_endpoint(ctx)
    # v4+ carries the client's permission; older versions always allowed auto-creation.
    auto = getattr(req, "allow_auto_topic_creation", True)
    if req.topics is None or (ctx.version == 0 and not req.topics):
        wanted = [(t.name, None) for t in broker.topics.topics.values()]
    else:
        wanted = [(t.name, getattr(t, "topic_id", None)) for t in req.topics]
    topics = []
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            topic = broker.topics.by_id.get(topic_id)
            if topic is None:
                topics.append(_topic_error(r, ErrorCode.unknown_topic_id, None, topic_id))
                continue
        else:
            try:
                check_topic_name(name)
                topic = broker.get_or_create_topic(name, auto)
            except (TopicError, OSError) as exc:  # OSError: auto-creation met a full disk
                topics.append(_topic_error(r, error_code(exc), name, NO_TOPIC_ID))
                continue
            if topic is None:
                topics.append(_topic_error(r, ErrorCode.unknown_topic_or_partition, name, NO_TOPIC_ID))
                continue
        partitions = tuple(
            r("MetadataResponsePartition", error_code=ErrorCode.none, partition_index=p, leader_id=node_id,
              leader_epoch=0, replica_nodes=(node_id,), isr_nodes=(node_id,), offline_replicas=())
            for p in range(topic.partitions)
        )
        topics.append(r("MetadataResponseTopic", error_code=ErrorCode.none, name=topic.name,
                        topic_id=topic.topic_id, is_internal=topic.internal, partitions=partitions,
                        topic_authorized_operations=-2147483648))
    brokers = (r("MetadataResponseBroker", node_id=node_id, host=host, port=port, rack=None),)
    return r("MetadataResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, brokers=brokers, cluster_id=broker.config.cluster_id,
             controller_id=node_id, topics=tuple(topics), cluster_authorized_operations=-2147483648)


def _topic_error(r, code, name, topic_id):
    return r("MetadataResponseTopic", error_code=code, name=name, topic_id=topic_id, is_internal=False,
             partitions=(), topic_authorized_operations=-2147483648)

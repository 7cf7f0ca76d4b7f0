"""Metadata: the one broker, and topics with their partitions (auto-creating topics when allowed)."""

from __future__ import annotations

import uuid

from kio.schema.errors import ErrorCode

from ..acl import CLUSTER_NAME, NO_AUTHORIZED_OPERATIONS
from ..metadata import TopicError, check_topic_name
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import CLUSTER, CREATE, DESCRIBE, TOPIC, allowed, authorized_operations, cluster_allowed
from .errors import error_code

NO_TOPIC_ID = uuid.UUID(int=0)


def topic_name_of(broker, entry) -> str | None:
    """The topic a request entry names: by `name` (or `topic`) in older versions, by `topic_id` in newer ones
    (Produce v13, Fetch v13+); None for an id no topic has."""
    topic_id = getattr(entry, "topic_id", None)
    if topic_id is not None and topic_id != NO_TOPIC_ID:
        topic = broker.topics.by_id.get(topic_id)
        return None if topic is None else topic.name
    name = getattr(entry, "name", None)
    return getattr(entry, "topic", None) if name is None else name  # "" is a name (of no topic), not a missing one


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
    all_topics = req.topics is None or (ctx.version == 0 and not req.topics)
    with_ops = getattr(req, "include_topic_authorized_operations", False)
    if all_topics:
        wanted = [(t.name, None) for t in broker.topics.topics.values()]
    else:
        wanted = [(t.name, getattr(t, "topic_id", None)) for t in req.topics]
        if ctx.version < 12 and any(n is None or (i is not None and i != NO_TOPIC_ID) for n, i in wanted):
            # v10-11 carry a topic_id field but may not use it (nor a null name): Kafka answers every topic
            # INVALID_REQUEST, a null name as "", and lists no brokers.
            return r("MetadataResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, brokers=(),
                     cluster_id=None, controller_id=-1, cluster_authorized_operations=NO_AUTHORIZED_OPERATIONS,
                     topics=tuple(_topic_error(r, ErrorCode.invalid_request, "" if n is None else n,
                                               NO_TOPIC_ID if i is None else i) for n, i in wanted))
    topics = []
    for name, topic_id in wanted:
        if name is None and topic_id is not None:
            topic = broker.topics.by_id.get(topic_id)
            if topic is None:
                topics.append(_topic_error(r, ErrorCode.unknown_topic_id, None, topic_id))
                continue
            if not allowed(ctx, DESCRIBE, TOPIC, topic.name):  # topic ids are not secret: say which is refused
                topics.append(_topic_error(r, ErrorCode.topic_authorization_failed, None, topic_id))
                continue
        else:
            # Topics the principal may not describe are hidden from "all topics" and refused by name, before
            # anything reveals whether they exist; creating one needs CREATE on the cluster or the topic.
            if not allowed(ctx, DESCRIBE, TOPIC, name):
                if not all_topics:
                    topics.append(_topic_error(r, ErrorCode.topic_authorization_failed, name, NO_TOPIC_ID))
                continue
            if (auto and broker.config.auto_create_topics and broker.topics.get(name) is None
                    and not cluster_allowed(ctx, CREATE) and not allowed(ctx, CREATE, TOPIC, name)):
                topics.append(_topic_error(r, ErrorCode.topic_authorization_failed, name, NO_TOPIC_ID))
                continue
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
                        topic_authorized_operations=authorized_operations(ctx, TOPIC, topic.name) if with_ops
                        else NO_AUTHORIZED_OPERATIONS))
    cluster_ops = NO_AUTHORIZED_OPERATIONS
    if getattr(req, "include_cluster_authorized_operations", False):  # v8-10
        cluster_ops = authorized_operations(ctx, CLUSTER, CLUSTER_NAME) if cluster_allowed(ctx, DESCRIBE) else 0
    brokers = (r("MetadataResponseBroker", node_id=node_id, host=host, port=port, rack=None),)
    return r("MetadataResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, brokers=brokers, cluster_id=broker.config.cluster_id,
             controller_id=node_id, topics=tuple(topics), cluster_authorized_operations=cluster_ops)


def _topic_error(r, code, name, topic_id):
    return r("MetadataResponseTopic", error_code=code, name=name, topic_id=topic_id, is_internal=False,
             partitions=(), topic_authorized_operations=NO_AUTHORIZED_OPERATIONS)

"""Topic administration: CreateTopics, DeleteTopics, CreatePartitions, DescribeCluster."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..acl import CLUSTER_NAME, NO_AUTHORIZED_OPERATIONS
from ..config import TOPIC_CONFIGS
from ..metadata import TopicError
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import (ALTER, CLUSTER, CREATE, DELETE, DESCRIBE, DESCRIBE_CONFIGS, TOPIC, allowed,
                     authorized_operations, cluster_allowed)
from .errors import KafkaError, error_code
from .metadata import NO_TOPIC_ID, broker_endpoint


@handles(19, 2, 7)
def create_topics(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    results = []
    seen: set[str] = set()
    may_create_any = cluster_allowed(ctx, CREATE)  # else CREATE on each topic
    for t in req.topics:
        code, message, topic_id, partitions, rf, configs = ErrorCode.none, None, NO_TOPIC_ID, -1, -1, ()
        config_code = ErrorCode.none
        try:
            if not may_create_any and not allowed(ctx, CREATE, TOPIC, t.name):
                raise KafkaError(ErrorCode.topic_authorization_failed, "Authorization failed.")
            if t.name in seen:
                raise KafkaError(ErrorCode.invalid_request, f"Create topics request from client contains a duplicate topic: {t.name}")
            seen.add(t.name)
            partitions = t.num_partitions
            if t.assignments:
                partitions = _manual_assignment(t, broker.config.node_id)
            elif partitions == -1:
                partitions = broker.config.default_partitions
            rf = t.replication_factor
            if rf == -1 or t.assignments:
                rf = 1
            if rf != 1:
                raise KafkaError(ErrorCode.invalid_replication_factor,
                                 f"Unable to replicate the partition {rf} time(s): The target replication factor of {rf} cannot be reached because only 1 broker(s) are registered.")
            overrides = {c.name: c.value for c in t.configs}
            if req.validate_only:
                checked = broker.topics.validate_new(t.name, partitions, overrides)
            else:
                topic = broker.topics.create(t.name, partitions, overrides)
                topic_id, checked = topic.topic_id, topic.configs
            # CreateTopics v0-4 responses carry no configs (and kio has no entity for them there); v5+ shows them
            # only to a principal that may describe the topic's configs, and tells the others why.
            if not allowed(ctx, DESCRIBE_CONFIGS, TOPIC, t.name):
                config_code = ErrorCode.topic_authorization_failed
            configs = () if not r.has("CreatableTopicResult", "configs") or config_code else tuple(
                r("CreatableTopicConfigs", name=name, value=checked.get(name, d.default), read_only=False,
                  config_source=1 if name in checked else 5, is_sensitive=False)
                for name, d in TOPIC_CONFIGS.items()
            )
        except (KafkaError, TopicError, ValueError, OSError) as exc:
            code, message = error_code(exc), str(exc)
            partitions, rf, configs = -1, -1, ()
        results.append(r("CreatableTopicResult", name=t.name, topic_id=topic_id, error_code=code,
                         error_message=message, topic_config_error_code=config_code, num_partitions=partitions,
                         replication_factor=rf, configs=configs))
    return r("CreateTopicsResponse", throttle_time=ZERO_MS, topics=tuple(results))


@handles(20, 1, 6)
def delete_topics(ctx: RequestContext, req):
    r = ctx.reply
    topics = ctx.broker.topics
    if hasattr(req, "topics"):
        wanted = [(t.name, t.topic_id) for t in req.topics]
    else:
        wanted = [(name, NO_TOPIC_ID) for name in req.topic_names]
    results = []
    for name, topic_id in wanted:
        code, message = ErrorCode.none, None
        if name is None:
            topic = topics.by_id.get(topic_id)
            if topic is None:
                code, message = ErrorCode.unknown_topic_id, f"Topic id {topic_id} does not exist."
            else:
                name = topic.name
        if code == ErrorCode.none and not allowed(ctx, DELETE, TOPIC, name):
            code, message = ErrorCode.topic_authorization_failed, "Authorization failed."
        if code == ErrorCode.none:
            try:
                if name.startswith("__"):
                    raise KafkaError(ErrorCode.invalid_topic_exception, f"Internal topic {name} cannot be deleted.")
                topic_id = ctx.broker.delete_topic(name).topic_id
            except (KafkaError, TopicError, OSError) as exc:
                code, message = error_code(exc), str(exc)
        results.append(r("DeletableTopicResult", name=name, topic_id=topic_id, error_code=code, error_message=message))
    return r("DeleteTopicsResponse", throttle_time=ZERO_MS, responses=tuple(results))


@handles(37, 0, 3)
def create_partitions(ctx: RequestContext, req):
    r = ctx.reply
    results = []
    for t in req.topics:
        code, message = ErrorCode.none, None
        try:
            if not allowed(ctx, ALTER, TOPIC, t.name):
                raise KafkaError(ErrorCode.topic_authorization_failed, "Authorization failed.")
            topic = ctx.broker.topics.get(t.name)
            if t.assignments is not None and topic is not None and t.count > topic.partitions:
                added = t.count - topic.partitions
                if len(t.assignments) != added:
                    raise KafkaError(ErrorCode.invalid_replica_assignment,
                                     f"Attempted to add {added} additional partition(s), but only "
                                     f"{len(t.assignments)} assignment(s) were specified.")
                for a in t.assignments:
                    _check_replicas(a.broker_ids, ctx.broker.config.node_id)
            ctx.broker.topics.add_partitions(t.name, t.count, validate_only=req.validate_only)
        except (KafkaError, TopicError, OSError) as exc:
            code, message = error_code(exc), str(exc)
        results.append(r("CreatePartitionsTopicResult", name=t.name, error_code=code, error_message=message))
    return r("CreatePartitionsResponse", throttle_time=ZERO_MS, results=tuple(results))


def _manual_assignment(t, node_id: int) -> int:
    """The partition count of a CreateTopics entry with explicit assignments, checked as Kafka's controller does."""
    if t.num_partitions != -1:
        raise KafkaError(ErrorCode.invalid_request,
                         "A manual partition assignment was specified, but numPartitions was not set to -1.")
    if t.replication_factor != -1:
        raise KafkaError(ErrorCode.invalid_request,
                         "A manual partition assignment was specified, but replication factor was not set to -1.")
    seen: set[int] = set()
    for a in t.assignments:
        if a.partition_index in seen:
            raise KafkaError(ErrorCode.invalid_replica_assignment,
                             f"Found multiple manual partition assignments for partition {a.partition_index}")
        seen.add(a.partition_index)
        _check_replicas(a.broker_ids, node_id)
    if seen != set(range(len(seen))):
        raise KafkaError(ErrorCode.invalid_replica_assignment,
                         "partitions should be a consecutive 0-based integer sequence")
    return len(seen)


def _check_replicas(broker_ids, node_id: int) -> None:
    """One partition's replica list may name this broker, once: there is no other."""
    if not broker_ids:
        raise KafkaError(ErrorCode.invalid_replica_assignment,
                         "The manual partition assignment includes an empty replica list.")
    previous = None
    for b in sorted(broker_ids):
        if b != node_id:
            raise KafkaError(ErrorCode.invalid_replica_assignment,
                             f"The manual partition assignment includes broker {b}, but no such broker is registered.")
        if b == previous:
            raise KafkaError(ErrorCode.invalid_replica_assignment,
                             f"The manual partition assignment includes the broker {b} more than once.")
        previous = b


BROKER_ENDPOINT = 1


@handles(60, 0, 2)
def describe_cluster(ctx: RequestContext, req):
    r = ctx.reply
    node_id, host, port = broker_endpoint(ctx)
    wanted = getattr(req, "endpoint_type", BROKER_ENDPOINT)
    if wanted != BROKER_ENDPOINT:  # v1+: a client looking for controllers; this node has broker endpoints only
        return r("DescribeClusterResponse", throttle_time=ZERO_MS, error_code=ErrorCode.mismatched_endpoint_type,
                 error_message="The request was sent to an endpoint of type BROKER, but we wanted an endpoint of type "
                               "CONTROLLER", endpoint_type=BROKER_ENDPOINT, cluster_id="", controller_id=-1,
                 brokers=(), cluster_authorized_operations=-2147483648)
    # v2: is_fenced (KIP-1073); a live single node is never fenced.
    brokers = (r("DescribeClusterBroker", broker_id=node_id, host=host, port=port, rack=None, is_fenced=False),)
    cluster_ops = NO_AUTHORIZED_OPERATIONS
    if req.include_cluster_authorized_operations:
        cluster_ops = authorized_operations(ctx, CLUSTER, CLUSTER_NAME) if cluster_allowed(ctx, DESCRIBE) else 0
    return r("DescribeClusterResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, error_message=None,
             endpoint_type=1, cluster_id=ctx.broker.config.cluster_id, controller_id=node_id, brokers=brokers,
             cluster_authorized_operations=cluster_ops)

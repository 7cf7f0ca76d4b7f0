"""The cluster as one node: DescribeQuorum, UnregisterBroker, AddRaftVoter, RemoveRaftVoter, ListConfigResources.

This node is its own controller: a static quorum of one voter (kraft.version 0), which is what a default
single-node Kafka 4.1 runs. The answers follow Kafka's for such a node.
"""

from __future__ import annotations

import time

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import ALTER, DESCRIBE, DESCRIBE_CONFIGS, cluster_allowed
from .metadata import broker_endpoint

METADATA_TOPIC = "__cluster_metadata"
# The epoch of the only controller's leadership; it never changes (no election ever happens).
QUORUM_EPOCH = 1

TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP = 2, 4, 8, 16, 32


@handles(55, 0, 2)
def describe_quorum(ctx: RequestContext, req):
    r = ctx.reply
    if not cluster_allowed(ctx, DESCRIBE):
        return r("DescribeQuorumResponse", error_code=ErrorCode.cluster_authorization_failed,
                 error_message="Cluster authorization failed.", topics=(), nodes=())
    node_id, host, port = broker_endpoint(ctx)
    now = int(time.time() * 1000)
    known = False
    topics = []
    for t in req.topics:
        parts = []
        for p in t.partitions:
            if t.topic_name == METADATA_TOPIC and p.partition_index == 0:
                known = True
                # There is no metadata log to replicate: its offsets are 0, and the voter is always caught up.
                voter = r("ReplicaState", replica_id=node_id, replica_directory_id=None, log_end_offset=0,
                          last_fetch_timestamp=now, last_caught_up_timestamp=now)
                parts.append(r("PartitionData", partition_index=0, error_code=ErrorCode.none, error_message="",
                               leader_id=node_id, leader_epoch=QUORUM_EPOCH, high_watermark=0,
                               current_voters=(voter,), observers=()))
            else:
                parts.append(r("PartitionData", partition_index=p.partition_index,
                               error_code=ErrorCode.unknown_topic_or_partition,
                               error_message="This server does not host this topic-partition.", leader_id=0,
                               leader_epoch=0, high_watermark=0, current_voters=(), observers=()))
        topics.append(r("TopicData", topic_name=t.topic_name, partitions=tuple(parts)))
    nodes = (r("Node", node_id=node_id, listeners=(r("Listener", name=ctx.listener, host=host, port=port),)),) \
        if known else ()
    return r("DescribeQuorumResponse", error_code=ErrorCode.none, error_message="", topics=tuple(topics), nodes=nodes)


@handles(64, 0, 0)
def unregister_broker(ctx: RequestContext, req):
    """Only this node is registered. Kafka would drop its registration and the live broker would register again
    at its next heartbeat; here that round trip is a no-op."""
    code, message = ErrorCode.none, None
    if not cluster_allowed(ctx, ALTER):
        code, message = ErrorCode.cluster_authorization_failed, "Cluster authorization failed."
    elif req.broker_id != ctx.broker.config.node_id:
        code, message = ErrorCode.broker_id_not_registered, f"Broker ID {req.broker_id} is not currently registered"
    return ctx.reply("UnregisterBrokerResponse", throttle_time=ZERO_MS, error_code=code, error_message=message)


@handles(80, 0, 0)
def add_raft_voter(ctx: RequestContext, req):
    if not cluster_allowed(ctx, ALTER):
        return ctx.reply("AddRaftVoterResponse", throttle_time=ZERO_MS,
                         error_code=ErrorCode.cluster_authorization_failed, error_message=None)
    return ctx.reply("AddRaftVoterResponse", throttle_time=ZERO_MS, error_code=ErrorCode.unsupported_version,
                     error_message="Cluster doesn't support adding voter because the kraft.version feature is 0")


@handles(81, 0, 0)
def remove_raft_voter(ctx: RequestContext, req):
    if not cluster_allowed(ctx, ALTER):
        return ctx.reply("RemoveRaftVoterResponse", throttle_time=ZERO_MS,
                         error_code=ErrorCode.cluster_authorization_failed, error_message=None)
    return ctx.reply("RemoveRaftVoterResponse", throttle_time=ZERO_MS, error_code=ErrorCode.unsupported_version,
                     error_message="Cluster doesn't support removing voter because the kraft.version feature is 0")


@handles(74, 0, 1)
def list_config_resources(ctx: RequestContext, req):
    """v0 (ListClientMetricsResources) lists client-metrics resources: there are none. v1 lists topics and this
    broker; groups and client metrics only appear once they have configs, which they cannot have here."""
    r = ctx.reply
    types = set(getattr(req, "resource_types", ()) or ())
    if not cluster_allowed(ctx, DESCRIBE_CONFIGS):
        return r("ListConfigResourcesResponse", throttle_time=ZERO_MS,
                 error_code=ErrorCode.cluster_authorization_failed, config_resources=())
    if ctx.version == 0:
        return r("ListConfigResourcesResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, config_resources=())
    if types - {TOPIC, BROKER, BROKER_LOGGER, CLIENT_METRICS, GROUP}:
        return r("ListConfigResourcesResponse", throttle_time=ZERO_MS, error_code=ErrorCode.unsupported_version,
                 config_resources=())
    everything = not types
    out = []
    if everything or BROKER in types:
        out.append(r("ConfigResource", resource_name=str(ctx.broker.config.node_id), resource_type=BROKER))
    if everything or TOPIC in types:
        out += [r("ConfigResource", resource_name=name, resource_type=TOPIC) for name in ctx.broker.topics.topics]
    return r("ListConfigResourcesResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none,
             config_resources=tuple(out))

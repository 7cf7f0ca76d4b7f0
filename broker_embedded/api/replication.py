"""Leadership and replica placement on one node: ElectLeaders, AlterPartitionReassignments,
ListPartitionReassignments, OffsetForLeaderEpoch.

Every partition has one replica, on this node, which leads it in epoch 0 forever. So an election is never needed,
a reassignment to this node is a no-op, one to any other broker names a broker that is not registered, and no
reassignment is ever in progress. The answers and messages are Kafka 4.1's for a one-node cluster.
"""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import ALTER, DESCRIBE, TOPIC, allowed, cluster_allowed

PREFERRED, UNCLEAN = 0, 1
LEADER_EPOCH = 0


def _partitions(ctx: RequestContext, name: str, partitions) -> list[tuple[int, ErrorCode | None, str | None]]:
    topic = ctx.broker.topics.get(name)
    out = []
    for p in partitions:
        if topic is None:
            out.append((p, ErrorCode.unknown_topic_or_partition, f"No such topic as {name}"))
        elif not 0 <= p < topic.partitions:
            out.append((p, ErrorCode.unknown_topic_or_partition, f"No such partition as {name}-{p}"))
        else:
            out.append((p, None, None))
    return out


@handles(43, 0, 2)
def elect_leaders(ctx: RequestContext, req):
    r = ctx.reply
    election = getattr(req, "election_type", PREFERRED)
    top = ErrorCode.none
    results = []
    if not cluster_allowed(ctx, ALTER):  # every partition named gets the cluster error too, as in Kafka
        results = [r("ReplicaElectionResult", topic=tp.topic, partition_result=tuple(
            r("PartitionResult", partition_id=p, error_code=ErrorCode.cluster_authorization_failed,
              error_message="Cluster authorization failed.") for p in tp.partitions))
            for tp in req.topic_partitions or ()]
        return r("ElectLeadersResponse", throttle_time=ZERO_MS, error_code=ErrorCode.cluster_authorization_failed,
                 replica_election_results=tuple(results))
    if req.topic_partitions is None:
        # Electing everywhere reports only failures; with one replica there are none.
        results = [r("ReplicaElectionResult", topic=name, partition_result=()) for name in ctx.broker.topics.topics]
    else:
        if election not in (PREFERRED, UNCLEAN):
            top = ErrorCode.invalid_request
        for tp in req.topic_partitions:
            parts = []
            for p, code, message in _partitions(ctx, tp.topic, tp.partitions):
                if election not in (PREFERRED, UNCLEAN):
                    code, message = ErrorCode.invalid_request, f"Unknown election type {election}"
                elif code is None:
                    code, message = ErrorCode.election_not_needed, "Leader election not needed for topic partition."
                parts.append(r("PartitionResult", partition_id=p, error_code=code, error_message=message))
            results.append(r("ReplicaElectionResult", topic=tp.topic, partition_result=tuple(parts)))
    return r("ElectLeadersResponse", throttle_time=ZERO_MS, error_code=top, replica_election_results=tuple(results))


def _reassignment_error(replicas, node_id: int) -> tuple[ErrorCode, str | None]:
    if replicas is None:  # cancelling: there is never a reassignment to cancel
        return ErrorCode.no_reassignment_in_progress, None
    if not replicas:
        return ErrorCode.invalid_replica_assignment, "The manual partition assignment includes an empty replica list."
    previous = None
    for broker_id in sorted(replicas):
        if broker_id != node_id:
            return (ErrorCode.invalid_replica_assignment,
                    f"The manual partition assignment includes broker {broker_id}, but no such broker is registered.")
        if broker_id == previous:
            return (ErrorCode.invalid_replica_assignment,
                    f"The manual partition assignment includes the broker {broker_id} more than once.")
        previous = broker_id
    return ErrorCode.none, None  # [this node]: where the partition already is


@handles(45, 0, 1)
def alter_partition_reassignments(ctx: RequestContext, req):
    r = ctx.reply
    node_id = ctx.broker.config.node_id
    if not cluster_allowed(ctx, ALTER):
        return r("AlterPartitionReassignmentsResponse", throttle_time=ZERO_MS,
                 allow_replication_factor_change=getattr(req, "allow_replication_factor_change", True),
                 error_code=ErrorCode.cluster_authorization_failed, error_message="Cluster authorization failed.",
                 responses=())
    responses = []
    for t in req.topics:
        topic = ctx.broker.topics.get(t.name)
        parts = []
        for p in t.partitions:
            if topic is None:
                code, message = ErrorCode.unknown_topic_or_partition, f"Unable to find a topic named {t.name}."
            elif not 0 <= p.partition_index < topic.partitions:
                code, message = ErrorCode.unknown_topic_or_partition, f"Unable to find partition {t.name}:{p.partition_index}."
            else:
                code, message = _reassignment_error(p.replicas, node_id)
            parts.append(r("ReassignablePartitionResponse", partition_index=p.partition_index, error_code=code,
                           error_message=message))
        responses.append(r("ReassignableTopicResponse", name=t.name, partitions=tuple(parts)))
    return r("AlterPartitionReassignmentsResponse", throttle_time=ZERO_MS,
             allow_replication_factor_change=getattr(req, "allow_replication_factor_change", True),
             error_code=ErrorCode.none, error_message=None, responses=tuple(responses))


@handles(46, 0, 0)
def list_partition_reassignments(ctx: RequestContext, req):
    if not cluster_allowed(ctx, DESCRIBE):
        return ctx.reply("ListPartitionReassignmentsResponse", throttle_time=ZERO_MS,
                         error_code=ErrorCode.cluster_authorization_failed,
                         error_message="Cluster authorization failed.", topics=())
    return ctx.reply("ListPartitionReassignmentsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none,
                     error_message=None, topics=())


@handles(23, 2, 4)
def offset_for_leader_epoch(ctx: RequestContext, req):
    """The end offset of a leader epoch: this node's only epoch (0) ends at the log end; other epochs are unknown
    to it (-1, -1), and a client ahead of epoch 0 gets UNKNOWN_LEADER_EPOCH, as from Kafka."""
    r = ctx.reply
    topics = []
    for t in req.topics:
        parts = []
        describable = allowed(ctx, DESCRIBE, TOPIC, t.topic)
        for p in t.partitions:
            plog = ctx.broker.partition(t.topic, p.partition) if describable else None
            code, epoch, end = ErrorCode.none, -1, -1
            if not describable:
                code = ErrorCode.topic_authorization_failed
            elif plog is None:
                code = ErrorCode.unknown_topic_or_partition
            elif p.current_leader_epoch > LEADER_EPOCH:
                code = ErrorCode.unknown_leader_epoch
            elif p.leader_epoch == LEADER_EPOCH:
                epoch, end = LEADER_EPOCH, plog.log_end_offset
            parts.append(r("EpochEndOffset", error_code=code, partition=p.partition, leader_epoch=epoch,
                           end_offset=end))
        topics.append(r("OffsetForLeaderTopicResult", topic=t.topic, partitions=tuple(parts)))
    return r("OffsetForLeaderEpochResponse", throttle_time=ZERO_MS, topics=tuple(topics))

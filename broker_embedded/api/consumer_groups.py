"""The consumer group protocol (KIP-848) on the wire: ConsumerGroupHeartbeat and ConsumerGroupDescribe.
The groups live in coordinator/consumer_coordinator.py."""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from ..coordinator.consumer_coordinator import HeartbeatRequest
from ..coordinator.consumer_group import ConsumerGroup
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import DESCRIBE, GROUP, READ, TOPIC, allowed, authorized_operations
from .errors import KafkaError
from .groups import NO_AUTHORIZED_OPERATIONS, client_host, ms, require_group

CONSUMER_MEMBER_TYPE = 1


def _owned(parts) -> dict | None:
    if parts is None:
        return None
    owned: dict = {}
    for tp in parts:
        if tp.partitions:
            owned.setdefault(tp.topic_id, set()).update(tp.partitions)
    return owned


@handles(68, 0, 1)
async def consumer_group_heartbeat(ctx: RequestContext, req):
    r = ctx.reply
    request = HeartbeatRequest(
        version=ctx.version, group_id=req.group_id, member_id=req.member_id, member_epoch=req.member_epoch,
        instance_id=req.instance_id, rack_id=req.rack_id, rebalance_timeout_ms=ms(req.rebalance_timeout),
        subscribed_topic_names=req.subscribed_topic_names,
        subscribed_topic_regex=getattr(req, "subscribed_topic_regex", None),  # v1+
        server_assignor=req.server_assignor, owned=_owned(req.topic_partitions),
        client_id=ctx.header.client_id or "", client_host=client_host(ctx))
    try:
        require_group(ctx, READ, req.group_id)
        names = req.subscribed_topic_names or ()
        if any(not allowed(ctx, DESCRIBE, TOPIC, name) for name in names):
            raise KafkaError(ErrorCode.topic_authorization_failed, "The member is not authorized to describe "
                             "every topic it subscribes to.")
        res = await ctx.broker.groups.consumer.heartbeat(request)
    except KafkaError as exc:
        return r("ConsumerGroupHeartbeatResponse", throttle_time=ZERO_MS, error_code=exc.code,
                 error_message=exc.message, member_id=None, member_epoch=0, heartbeat_interval=ZERO_MS,
                 assignment=None)
    assignment = None
    if res.assignment is not None:
        assignment = r("Assignment", topic_partitions=tuple(
            r("TopicPartitions", topic_id=topic_id, partitions=tuple(sorted(parts)))
            for topic_id, parts in sorted(res.assignment.items(), key=lambda item: str(item[0]))))
    return r("ConsumerGroupHeartbeatResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, error_message=None,
             member_id=res.member_id, member_epoch=res.epoch,
             heartbeat_interval=datetime.timedelta(milliseconds=res.heartbeat_interval_ms), assignment=assignment)


@handles(69, 0, 1)
def consumer_group_describe(ctx: RequestContext, req):
    r = ctx.reply
    coordinator = ctx.broker.groups.consumer
    described = []
    for group_id in req.group_ids:
        try:
            require_group(ctx, DESCRIBE, group_id)
            group = coordinator.describe(group_id)
            topics = {name for m in group.members.values() for name in m.subscribed_topic_names}
            topics |= {t.name for m in group.members.values() for t_id in m.assigned
                       if (t := ctx.broker.topics.by_id.get(t_id)) is not None}
            if any(not allowed(ctx, DESCRIBE, TOPIC, name) for name in topics):
                raise KafkaError(ErrorCode.topic_authorization_failed,
                                 "The group has subscribed or assigned topics the principal may not describe.")
        except KafkaError as exc:
            described.append(r("DescribedGroup", error_code=exc.code, error_message=exc.message, group_id=group_id,
                               group_state="", group_epoch=0, assignment_epoch=0, assignor_name="", members=(),
                               authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        described.append(_describe(ctx, group, coordinator, req.include_authorized_operations))
    return r("ConsumerGroupDescribeResponse", throttle_time=ZERO_MS, groups=tuple(described))


def _describe(ctx: RequestContext, group: ConsumerGroup, coordinator, with_operations: bool):
    r = ctx.reply
    by_id = ctx.broker.topics.by_id

    def assignment(parts: dict):
        entries = []
        for topic_id, partitions in sorted(parts.items(), key=lambda item: str(item[0])):
            topic = by_id.get(topic_id)
            if topic is None or not partitions:
                continue
            entries.append(r("TopicPartitions", topic_id=topic_id, topic_name=topic.name,
                             partitions=tuple(sorted(partitions))))
        return r("Assignment", topic_partitions=tuple(entries))

    members = tuple(
        r("Member", member_id=m.member_id, instance_id=m.instance_id, rack_id=m.rack_id, member_epoch=m.epoch,
          client_id=m.client_id, client_host=m.client_host, subscribed_topic_names=tuple(m.subscribed_topic_names),
          subscribed_topic_regex=m.subscribed_topic_regex, assignment=assignment(m.assigned),
          target_assignment=assignment(group.target.get(m.member_id, {})), member_type=CONSUMER_MEMBER_TYPE)
        for m in group.members.values()
    )
    return r("DescribedGroup", error_code=ErrorCode.none, error_message=None, group_id=group.group_id,
             group_state=group.state.value, group_epoch=group.epoch, assignment_epoch=group.assignment_epoch,
             assignor_name=group.assignor(coordinator.assignors[0], coordinator.assignors), members=members,
             authorized_operations=authorized_operations(ctx, GROUP, group.group_id) if with_operations
             else NO_AUTHORIZED_OPERATIONS)

"""Consumer groups on the wire: FindCoordinator, JoinGroup, SyncGroup, Heartbeat, LeaveGroup, DescribeGroups,
ListGroups, DeleteGroups. The state machine lives in coordinator/group_coordinator.py."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode

from ..coordinator.group import GroupState
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import DELETE, DESCRIBE, GROUP, READ, TRANSACTIONAL_ID, allowed, authorized_operations, cluster_allowed
from .errors import KafkaError
from .metadata import broker_endpoint

GROUP_KEY, TRANSACTION_KEY = 0, 1
NO_AUTHORIZED_OPERATIONS = -2147483648


def require_group(ctx: RequestContext, operation, group_id: str) -> None:
    """GROUP_AUTHORIZATION_FAILED unless the principal may perform `operation` on the group."""
    if not allowed(ctx, operation, GROUP, group_id):
        raise KafkaError(ErrorCode.group_authorization_failed, "Group authorization failed.")


def ms(value) -> int:
    """A kio duration (timedelta) in whole milliseconds."""
    return int(round(value.total_seconds() * 1000))


def client_host(ctx: RequestContext) -> str:
    return "/" + ctx.peer.rsplit(":", 1)[0]


@handles(10, 0, 6)
def find_coordinator(ctx: RequestContext, req):
    r = ctx.reply
    node_id, host, port = broker_endpoint(ctx)
    key_type = getattr(req, "key_type", GROUP_KEY)
    code, message = ErrorCode.none, None
    if key_type not in (GROUP_KEY, TRANSACTION_KEY):
        code, message = ErrorCode.invalid_request, f"Unknown coordinator type {key_type}."

    def key_error(key: str) -> tuple[ErrorCode, str | None]:  # DESCRIBE on the group or transactional id
        if code != ErrorCode.none:
            return code, message
        if key_type == GROUP_KEY and not allowed(ctx, DESCRIBE, GROUP, key):
            return ErrorCode.group_authorization_failed, "Group authorization failed."
        if key_type == TRANSACTION_KEY and not allowed(ctx, DESCRIBE, TRANSACTIONAL_ID, key):
            return ErrorCode.transactional_id_authorization_failed, "Transactional Id authorization failed."
        return ErrorCode.none, None

    if ctx.version >= 4:
        found = tuple(
            r("Coordinator", key=key, node_id=node_id if err == ErrorCode.none else -1,
              host=host if err == ErrorCode.none else "", port=port if err == ErrorCode.none else -1,
              error_code=err, error_message=msg)
            for key in req.coordinator_keys
            for err, msg in [key_error(key)]
        )
        return r("FindCoordinatorResponse", throttle_time=ZERO_MS, coordinators=found)
    code, message = key_error(req.key)
    if code != ErrorCode.none:
        node_id, host, port = -1, "", -1
    return r("FindCoordinatorResponse", throttle_time=ZERO_MS, error_code=code, error_message=message,
             node_id=node_id, host=host, port=port)


@handles(11, 0, 9)
async def join_group(ctx: RequestContext, req):
    r = ctx.reply
    session = ms(req.session_timeout)
    rebalance = ms(req.rebalance_timeout) if ctx.version >= 1 else session
    protocols = [(p.name, bytes(p.metadata)) for p in req.protocols]
    try:
        require_group(ctx, READ, req.group_id)
        res = await ctx.broker.groups.join(
            req.group_id, req.member_id, getattr(req, "group_instance_id", None), req.protocol_type, protocols,
            session, rebalance, ctx.header.client_id or "", client_host(ctx),
            require_known_member_id=ctx.version >= 4, supports_skip_assignment=ctx.version >= 9)
    except KafkaError as exc:
        return r("JoinGroupResponse", throttle_time=ZERO_MS, error_code=exc.code, generation_id=-1,
                 protocol_type=None, protocol_name=None if ctx.version >= 7 else "", leader="",
                 skip_assignment=False, member_id=req.member_id, members=())
    members = tuple(r("JoinGroupResponseMember", member_id=mid, group_instance_id=iid, metadata=meta)
                    for mid, iid, meta in res.members)
    # Before v7 the protocol name is not nullable.
    name = res.protocol_name if ctx.version >= 7 else (res.protocol_name or "")
    return r("JoinGroupResponse", throttle_time=ZERO_MS, error_code=res.error, generation_id=res.generation,
             protocol_type=res.protocol_type, protocol_name=name, leader=res.leader,
             skip_assignment=res.skip_assignment, member_id=res.member_id, members=members)


@handles(14, 0, 5)
async def sync_group(ctx: RequestContext, req):
    r = ctx.reply
    assignments = {a.member_id: bytes(a.assignment) for a in req.assignments}
    try:
        require_group(ctx, READ, req.group_id)
        res = await ctx.broker.groups.sync(
            req.group_id, req.generation_id, req.member_id, getattr(req, "group_instance_id", None),
            getattr(req, "protocol_type", None), getattr(req, "protocol_name", None), assignments)
        code, ptype, pname, assignment = res.error, res.protocol_type, res.protocol_name, res.assignment
    except KafkaError as exc:
        code, ptype, pname, assignment = exc.code, None, None, b""
    return r("SyncGroupResponse", throttle_time=ZERO_MS, error_code=code, protocol_type=ptype,
             protocol_name=pname, assignment=assignment)


@handles(12, 0, 4)
def heartbeat(ctx: RequestContext, req):
    try:
        require_group(ctx, READ, req.group_id)
        code = ctx.broker.groups.heartbeat(req.group_id, req.generation_id, req.member_id,
                                           getattr(req, "group_instance_id", None))
    except KafkaError as exc:
        code = exc.code
    return ctx.reply("HeartbeatResponse", throttle_time=ZERO_MS, error_code=code)


@handles(13, 0, 5)
def leave_group(ctx: RequestContext, req):
    r = ctx.reply
    if ctx.version >= 3:
        leaving = [(m.member_id, m.group_instance_id) for m in req.members]
    else:
        leaving = [(req.member_id, None)]
    try:
        require_group(ctx, READ, req.group_id)
        code, errors = ctx.broker.groups.leave(req.group_id, leaving)
    except KafkaError as exc:
        code, errors = exc.code, [exc.code] * len(leaving)
    if ctx.version < 3:
        # One member: its error is the response's error.
        code = code if code != ErrorCode.none else errors[0]
        return r("LeaveGroupResponse", throttle_time=ZERO_MS, error_code=code)
    members = tuple(r("MemberResponse", member_id=mid, group_instance_id=iid, error_code=err)
                    for (mid, iid), err in zip(leaving, errors))
    return r("LeaveGroupResponse", throttle_time=ZERO_MS, error_code=code, members=members)


@handles(15, 0, 6)
def describe_groups(ctx: RequestContext, req):
    r = ctx.reply
    coordinator = ctx.broker.groups
    described = []
    with_ops = getattr(req, "include_authorized_operations", False)
    for group_id in req.groups:
        if not allowed(ctx, DESCRIBE, GROUP, group_id):
            described.append(r("DescribedGroup", error_code=ErrorCode.group_authorization_failed,
                               error_message="Group authorization failed.", group_id=group_id, group_state="",
                               protocol_type="", protocol_data="", members=(),
                               authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        try:
            coordinator.offsets.check_loaded()
        except KafkaError as exc:
            described.append(r("DescribedGroup", error_code=exc.code, error_message=exc.message, group_id=group_id,
                               group_state="", protocol_type="", protocol_data="", members=(),
                               authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        group = coordinator.groups.get(group_id)
        if group is None or group.is_(GroupState.DEAD):
            # Kafka 4 answers GROUP_ID_NOT_FOUND from v6 on; older versions describe an unknown group as Dead.
            # A consumer group (KIP-848) is not a classic group: DescribeGroups does not show it.
            what = "is not a classic group" if group_id in coordinator.consumer.groups else "not found"
            code = ErrorCode.group_id_not_found if ctx.version >= 6 else ErrorCode.none
            message = f"Group {group_id} {what}." if ctx.version >= 6 else None
            described.append(r("DescribedGroup", error_code=code, error_message=message, group_id=group_id,
                               group_state=GroupState.DEAD.value, protocol_type="", protocol_data="", members=(),
                               authorized_operations=NO_AUTHORIZED_OPERATIONS))
            continue
        stable = group.is_(GroupState.STABLE)
        members = tuple(
            r("DescribedGroupMember", member_id=m.member_id, group_instance_id=m.instance_id, client_id=m.client_id,
              client_host=m.client_host, member_metadata=m.metadata(group.protocol) if stable else b"",
              member_assignment=m.assignment if stable else b"")
            for m in group.members.values()
        )
        described.append(r("DescribedGroup", error_code=ErrorCode.none, error_message=None, group_id=group_id,
                           group_state=group.state.value, protocol_type=group.protocol_type or "",
                           protocol_data=(group.protocol or "") if stable else "", members=members,
                           authorized_operations=authorized_operations(ctx, GROUP, group_id) if with_ops
                           else NO_AUTHORIZED_OPERATIONS))
    return r("DescribeGroupsResponse", throttle_time=ZERO_MS, groups=tuple(described))


@handles(16, 0, 5)
def list_groups(ctx: RequestContext, req):
    r = ctx.reply
    states = {s.lower() for s in getattr(req, "states_filter", ())}
    types = {t.lower() for t in getattr(req, "types_filter", ())}
    try:
        groups = ctx.broker.groups.listed()
    except KafkaError as exc:
        return r("ListGroupsResponse", throttle_time=ZERO_MS, error_code=exc.code, groups=())
    found = [(g.group_id, g.protocol_type or "", g.state.value, "classic") for g in groups]
    found += [(g.group_id, "consumer", g.state.value, "consumer") for g in ctx.broker.groups.consumer.groups.values()]
    listed = tuple(
        r("ListedGroup", group_id=group_id, protocol_type=ptype, group_state=state, group_type=gtype)
        for group_id, ptype, state, gtype in found
        if (not states or state.lower() in states) and (not types or gtype in types)
    )
    if not cluster_allowed(ctx, DESCRIBE):  # without DESCRIBE on the cluster, only the groups it may describe
        listed = tuple(g for g in listed if allowed(ctx, DESCRIBE, GROUP, g.group_id))
    return r("ListGroupsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, groups=listed)


@handles(42, 0, 2)
async def delete_groups(ctx: RequestContext, req):
    r = ctx.reply
    results = []
    writes = []
    for group_id in req.groups_names:
        code = ErrorCode.none
        try:
            require_group(ctx, DELETE, group_id)
            writes.append(ctx.broker.groups.delete_group(group_id))
        except KafkaError as exc:
            code = exc.code
        results.append(r("DeletableGroupResult", group_id=group_id, error_code=code))
    if writes:
        await asyncio.gather(*writes)
    return r("DeleteGroupsResponse", throttle_time=ZERO_MS, results=tuple(results))

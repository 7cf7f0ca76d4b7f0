"""APIs a default Kafka 4.1 node lists but refuses: share groups (KIP-932, `share.version` not finalized) and
delegation tokens (no token secret configured). They are listed here too, and refused with Kafka's errors, so that
a client sees the same answer from this node as from Kafka.
"""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import RequestContext, handles

OFF = ErrorCode.unsupported_version
# Kafka answers a refused token request with -1 timestamps; kio writes a datetime, so -1 ms is one before the epoch.
NO_TIME = datetime.datetime.fromtimestamp(-0.001, datetime.UTC)


@handles(76, 1, 1)
def share_group_heartbeat(ctx: RequestContext, req):
    return ctx.reply("ShareGroupHeartbeatResponse", throttle_time=ZERO_MS, error_code=OFF, error_message=None,
                     member_id=None, member_epoch=0, heartbeat_interval=ZERO_MS, assignment=None)


@handles(77, 1, 1)
def share_group_describe(ctx: RequestContext, req):
    r = ctx.reply
    groups = tuple(r("DescribedGroup", error_code=OFF, error_message=None, group_id=g, group_state="", group_epoch=0,
                     assignment_epoch=0, assignor_name="", members=(), authorized_operations=-2147483648)
                   for g in req.group_ids)
    return r("ShareGroupDescribeResponse", throttle_time=ZERO_MS, groups=groups)


@handles(78, 1, 1)
def share_fetch(ctx: RequestContext, req):
    return ctx.reply("ShareFetchResponse", throttle_time=ZERO_MS, error_code=OFF, error_message=None,
                     acquisition_lock_timeout=ZERO_MS, responses=(), node_endpoints=())


@handles(79, 1, 1)
def share_acknowledge(ctx: RequestContext, req):
    return ctx.reply("ShareAcknowledgeResponse", throttle_time=ZERO_MS, error_code=OFF, error_message=None,
                     responses=(), node_endpoints=())


@handles(90, 0, 0)
def describe_share_group_offsets(ctx: RequestContext, req):
    r = ctx.reply
    groups = tuple(r("DescribeShareGroupOffsetsResponseGroup", group_id=g.group_id, topics=(), error_code=OFF,
                     error_message=None) for g in req.groups)
    return r("DescribeShareGroupOffsetsResponse", throttle_time=ZERO_MS, groups=groups)


@handles(91, 0, 0)
def alter_share_group_offsets(ctx: RequestContext, req):
    return ctx.reply("AlterShareGroupOffsetsResponse", throttle_time=ZERO_MS, error_code=OFF,
                     error_message="The version of API is not supported.", responses=())


@handles(92, 0, 0)
def delete_share_group_offsets(ctx: RequestContext, req):
    return ctx.reply("DeleteShareGroupOffsetsResponse", throttle_time=ZERO_MS, error_code=OFF,
                     error_message="The version of API is not supported.", responses=())


def _token_error(ctx: RequestContext) -> ErrorCode:
    # Kafka takes token requests only over SASL; there, with no delegation.token.secret.key, tokens are disabled.
    if ctx.listener.upper().startswith("SASL"):
        return ErrorCode.delegation_token_auth_disabled
    return ErrorCode.delegation_token_request_not_allowed


@handles(38, 1, 3)
def create_delegation_token(ctx: RequestContext, req):
    return ctx.reply("CreateDelegationTokenResponse", error_code=_token_error(ctx), principal_type="",
                     principal_name="", token_requester_principal_type="", token_requester_principal_name="",
                     issue_timestamp=NO_TIME, expiry_timestamp=NO_TIME, max_timestamp=NO_TIME, token_id="", hmac=b"",
                     throttle_time=ZERO_MS)


@handles(39, 1, 2)
def renew_delegation_token(ctx: RequestContext, req):
    return ctx.reply("RenewDelegationTokenResponse", error_code=_token_error(ctx), expiry_timestamp=NO_TIME,
                     throttle_time=ZERO_MS)


@handles(40, 1, 2)
def expire_delegation_token(ctx: RequestContext, req):
    return ctx.reply("ExpireDelegationTokenResponse", error_code=_token_error(ctx), expiry_timestamp=NO_TIME,
                     throttle_time=ZERO_MS)


@handles(41, 1, 3)
def describe_delegation_token(ctx: RequestContext, req):
    return ctx.reply("DescribeDelegationTokenResponse", error_code=_token_error(ctx), tokens=(),
                     throttle_time=ZERO_MS)

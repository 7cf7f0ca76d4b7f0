"""DescribeClientQuotas and AlterClientQuotas (KIP-546): quota values per user / client-id / ip entity, durable in
the data directory (quotas.py), with Kafka's validation. Describing needs DESCRIBE_CONFIGS on the cluster,
altering ALTER_CONFIGS (else CLUSTER_AUTHORIZATION_FAILED)."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from ..quotas import InvalidQuota, check_entity, check_value, entity_key
from . import RequestContext, handles
from .access import ALTER_CONFIGS, DESCRIBE_CONFIGS, cluster_allowed
from .errors import error_code

_CLUSTER_DENIED = "Cluster authorization failed."


@handles(48, 0, 1)
def describe_client_quotas(ctx: RequestContext, req):
    r = ctx.reply

    def error(code, message):
        return r("DescribeClientQuotasResponse", throttle_time=ZERO_MS, error_code=code, error_message=message,
                 entries=None)

    if not cluster_allowed(ctx, DESCRIBE_CONFIGS):
        return error(ErrorCode.cluster_authorization_failed, _CLUSTER_DENIED)
    try:
        found = ctx.broker.quotas.describe([(c.entity_type, c.match_type, c.match) for c in req.components],
                                           req.strict)
    except InvalidQuota as exc:
        return error(ErrorCode.unsupported_version if exc.unsupported else ErrorCode.invalid_request, str(exc))
    entries = tuple(
        r("EntryData", entity=tuple(r("EntityData", entity_type=t, entity_name=n) for t, n in entity),
          values=tuple(r("ValueData", key=k, value=v) for k, v in sorted(values.items())))
        for entity, values in found
    )
    return r("DescribeClientQuotasResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, error_message=None,
             entries=entries)


@handles(49, 0, 1)
async def alter_client_quotas(ctx: RequestContext, req):
    r = ctx.reply

    def entry(e, code, message):
        return r("EntryData", error_code=code, error_message=message, entity=tuple(
            r("EntityData", entity_type=d.entity_type, entity_name=d.entity_name) for d in e.entity))

    if not cluster_allowed(ctx, ALTER_CONFIGS):
        return r("AlterClientQuotasResponse", throttle_time=ZERO_MS, entries=tuple(
            entry(e, ErrorCode.cluster_authorization_failed, _CLUSTER_DENIED) for e in req.entries))
    outcomes: list[tuple[ErrorCode, str | None]] = []
    changes = []
    seen = set()
    for e in req.entries:
        pairs = [(d.entity_type, d.entity_name) for d in e.entity]
        try:
            keys = check_entity(pairs)
            key = entity_key(pairs)
            if key in seen:
                raise InvalidQuota(f"Ignoring duplicate entity {dict(pairs)}")
            seen.add(key)
            ops: dict[str, float | None] = {}
            for op in e.ops:
                if op.key in ops:
                    raise InvalidQuota(f"Duplicate quota key {op.key} not updating quota for this entity")
                value = None if op.remove else float(op.value)
                if value is not None:
                    check_value(keys, op.key, value)
                ops[op.key] = value
            changes.append((key, ops))
            outcomes.append((ErrorCode.none, None))
        except InvalidQuota as exc:
            outcomes.append((ErrorCode.invalid_request, str(exc)))
    if changes and not req.validate_only:
        try:
            await asyncio.to_thread(ctx.broker.quotas.alter, changes)
        except OSError as exc:  # nothing changed
            outcomes = [(error_code(exc), str(exc)) if c == ErrorCode.none else (c, m) for c, m in outcomes]
    return r("AlterClientQuotasResponse", throttle_time=ZERO_MS,
             entries=tuple(entry(e, c, m) for e, (c, m) in zip(req.entries, outcomes)))

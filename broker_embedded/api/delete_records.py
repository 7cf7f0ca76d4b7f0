"""DeleteRecords: move a partition's log start offset forward (the low watermark), as Kafka's AdminClient asks."""

from __future__ import annotations

import asyncio
import logging

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import DELETE, TOPIC, allowed

log = logging.getLogger(__name__)

TO_HIGH_WATERMARK = -1


@handles(21, 0, 2)
async def delete_records(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    moved = []
    topics = []
    for t in req.topics:
        parts = []
        deletable = allowed(ctx, DELETE, TOPIC, t.name)
        for p in t.partitions:
            plog = broker.partition(t.name, p.partition_index)
            code, low = ErrorCode.none, -1
            if not deletable:
                code = ErrorCode.topic_authorization_failed
            elif plog is None:
                code = ErrorCode.unknown_topic_or_partition
            elif not plog.config.delete:
                # Kafka refuses to delete records from a compact-only topic.
                code = ErrorCode.policy_violation
            else:
                hw = plog.high_watermark
                offset = hw if p.offset == TO_HIGH_WATERMARK else p.offset
                if offset < 0 or offset > hw:
                    code = ErrorCode.offset_out_of_range
                else:
                    if plog.advance_log_start(offset):
                        moved.append(plog)
                    low = plog.log_start_offset
            parts.append(r("DeleteRecordsPartitionResult", partition_index=p.partition_index, low_watermark=low,
                           error_code=code))
        topics.append(r("DeleteRecordsTopicResult", name=t.name, partitions=tuple(parts)))
    if moved:
        await asyncio.to_thread(_persist, moved)
        retention = getattr(broker, "retention", None)
        if retention is not None:
            # Free the disk of whole segments now below the low watermark rather than at the next check.
            for plog in moved:
                await retention.enforce(plog)
    return r("DeleteRecordsResponse", throttle_time=ZERO_MS, topics=tuple(topics))


def _persist(logs) -> None:
    for plog in logs:
        try:
            plog.write_log_start_offset()
        except OSError as exc:  # the topic was deleted meanwhile
            log.debug("%s: log start offset: %s", plog.directory, exc)

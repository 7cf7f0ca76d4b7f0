"""ListOffsets: earliest, latest, max timestamp, and the first offset at or after a timestamp."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import DESCRIBE, TOPIC, allowed

LATEST, EARLIEST, MAX_TIMESTAMP, EARLIEST_LOCAL, LATEST_TIERED = -1, -2, -3, -4, -5


@handles(2, 1, 10)  # v10 adds a timeout for tiered storage reads: nothing here is tiered
def list_offsets(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    committed = getattr(req, "isolation_level", 0) == 1
    topics = []
    for t in req.topics:
        parts = []
        describable = allowed(ctx, DESCRIBE, TOPIC, t.name)
        for p in t.partitions:
            plog = broker.partition(t.name, p.partition_index) if describable else None
            code, ts, offset = ErrorCode.none, -1, -1
            if not describable:
                code = ErrorCode.topic_authorization_failed
            elif plog is None:
                code = ErrorCode.unknown_topic_or_partition
            elif p.timestamp == LATEST:
                offset = broker.last_stable_offset(plog) if committed else plog.high_watermark
            elif p.timestamp in (EARLIEST, EARLIEST_LOCAL, LATEST_TIERED):
                offset = plog.log_start_offset
            elif p.timestamp == MAX_TIMESTAMP:
                found = plog.offset_of_max_timestamp()
                if found:
                    offset, ts = found
            elif p.timestamp < 0:
                code = ErrorCode.invalid_request
            else:
                found = plog.offset_for_timestamp(p.timestamp)
                if found:
                    offset, ts = found
            parts.append(r("ListOffsetsPartitionResponse", partition_index=p.partition_index, error_code=code,
                           timestamp=ts, offset=offset, leader_epoch=0 if plog else -1))
        topics.append(r("ListOffsetsTopicResponse", name=t.name, partitions=tuple(parts)))
    return r("ListOffsetsResponse", throttle_time=ZERO_MS, topics=tuple(topics))

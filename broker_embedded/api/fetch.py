"""Fetch: stored bytes served as they are, long-polled until min_bytes arrive or max_wait passes."""

from __future__ import annotations

import asyncio
import datetime

from kio.schema.errors import ErrorCode

from ..log.partition import OffsetOutOfRange
from ..regions import Answer, sendfile_allowed
from ..quotas import user_of
from . import RequestContext, handles
from .access import READ, TOPIC, allowed
from .metadata import topic_name_of

READ_COMMITTED = 1


@handles(1, 4, 18)
async def fetch(ctx: RequestContext, req):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + req.max_wait.total_seconds()
    while True:
        responses, total, logs = _read(ctx, req)
        remaining = deadline - loop.time()
        if total >= req.min_bytes or remaining <= 0 or not logs:
            break
        waiters = [plog.wait_for_append() for plog in logs]
        await asyncio.wait(waiters, timeout=remaining, return_when=asyncio.FIRST_COMPLETED)
        for w in waiters:
            w.cancel()
    # v16+ may name the leaders of partitions that moved (KIP-951); on one node none ever moves.
    # The fetch byte-rate quota: a throttled client gets an empty answer (its bytes taken back) and a muted
    # connection for the throttle time, as in Kafka.
    quota, user, client_id = ctx.broker.fetch_quota, user_of(ctx.principal), ctx.header.client_id or ""
    throttle = quota.record(user, client_id, total)
    if throttle:
        quota.unrecord(user, client_id, total)
        responses = []
    answer = ctx.reply("FetchResponse", throttle_time=datetime.timedelta(milliseconds=throttle),
                       error_code=ErrorCode.none, session_id=0,
                       responses=tuple(responses), node_endpoints=())
    return Answer(answer) if sendfile_allowed(ctx.session) else answer


def _read(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    committed = getattr(req, "isolation_level", 0) == READ_COMMITTED
    # Kafka's rule (KIP-74): each partition gets at most min(partition_max_bytes, what is left of max_bytes);
    # until some partition returned records, one whole batch is returned even if larger, so a consumer always
    # makes progress; after that a partition whose next batch does not fit returns nothing this time.
    budget = req.max_bytes
    quota_window = ctx.broker.fetch_quota.max_bytes_in_window(user_of(ctx.principal), ctx.header.client_id or "")
    if quota_window is not None:  # no more than the client's quota allows in one window
        budget = min(budget, quota_window)
    min_one = True
    # On a plain socket the records are sent from the segment files by sendfile (regions.py).
    read = "read_region" if sendfile_allowed(ctx.session) else "read"
    total = 0
    logs = []
    responses = []
    for ft in req.topics:
        name = topic_name_of(broker, ft)  # v13+ name topics by id
        parts = []
        readable = name is None or allowed(ctx, READ, TOPIC, name)
        for fp in ft.partitions:
            if not readable:
                parts.append(_partition(r, fp.partition, ErrorCode.topic_authorization_failed, -1, -1, -1, b""))
                continue
            plog = broker.partition(name, fp.partition)
            if plog is None:
                missing = ErrorCode.unknown_topic_or_partition if name is not None else ErrorCode.unknown_topic_id
                parts.append(_partition(r, fp.partition, missing, -1, -1, -1, None))
                continue
            logs.append(plog)
            hw = plog.high_watermark
            lso = broker.last_stable_offset(plog)
            records = b""
            code = ErrorCode.none
            aborted = None
            try:
                records = getattr(plog, read)(fp.fetch_offset, max(0, min(fp.partition_max_bytes, budget)),
                                    lso if committed else None, min_one)
            except OffsetOutOfRange:
                code = ErrorCode.offset_out_of_range
            if committed:
                aborted = tuple(r("AbortedTransaction", producer_id=pid, first_offset=first)
                                for pid, first in broker.aborted_transactions(plog, fp.fetch_offset, lso))
            if records:
                min_one = False
            total += len(records)
            budget -= len(records)
            parts.append(_partition(r, fp.partition, code, hw, lso, plog.log_start_offset, records, aborted))
        responses.append(r("FetchableTopicResponse", topic=name, topic_id=getattr(ft, "topic_id", None), partitions=tuple(parts)))
    return responses, total, logs


def _partition(r, index, code, hw, lso, log_start, records, aborted=None):
    return r("PartitionData", partition_index=index, error_code=code, high_watermark=hw, last_stable_offset=lso,
             log_start_offset=log_start, aborted_transactions=aborted, preferred_read_replica=-1,
             records=records)

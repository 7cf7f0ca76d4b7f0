"""Admin views of producers and transactions: DescribeProducers, DescribeTransactions, ListTransactions."""

from __future__ import annotations

import datetime
import re
import time

from kio.schema.errors import ErrorCode

from ..coordinator.transactions import STATES
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import DESCRIBE, READ, TOPIC, TRANSACTIONAL_ID, allowed

_EPOCH = datetime.datetime.fromtimestamp(0, datetime.UTC)


@handles(61, 0, 0)
def describe_producers(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    topics = []
    for t in req.topics:
        parts = []
        readable = allowed(ctx, READ, TOPIC, t.name)
        for index in t.partition_indexes:
            plog = broker.partition(t.name, index) if readable else None
            if plog is None:
                parts.append(r("PartitionResponse", partition_index=index,
                               error_code=ErrorCode.unknown_topic_or_partition if readable
                               else ErrorCode.topic_authorization_failed, error_message=None,
                               active_producers=()))
                continue
            state = broker.producers.state(plog)
            active = tuple(
                r("ProducerState", producer_id=pid, producer_epoch=e.epoch, last_sequence=e.last_seq,
                  last_timestamp=e.last_timestamp, coordinator_epoch=e.coordinator_epoch,
                  current_txn_start_offset=e.txn_first_offset)
                for pid, e in sorted(state.producers.items()))
            parts.append(r("PartitionResponse", partition_index=index, error_code=ErrorCode.none,
                           error_message=None, active_producers=active))
        topics.append(r("TopicResponse", name=t.name, partitions=tuple(parts)))
    return r("DescribeProducersResponse", throttle_time=ZERO_MS, topics=tuple(topics))


@handles(65, 0, 0)
def describe_transactions(ctx: RequestContext, req):
    r = ctx.reply
    out = []
    for tid in req.transactional_ids:
        meta = ctx.broker.transactions.describe(tid) if allowed(ctx, DESCRIBE, TRANSACTIONAL_ID, tid) else None
        if meta is None:
            missing = (ErrorCode.transactional_id_not_found if allowed(ctx, DESCRIBE, TRANSACTIONAL_ID, tid)
                       else ErrorCode.transactional_id_authorization_failed)
            out.append(r("TransactionState", error_code=missing, transactional_id=tid,
                         transaction_state="", transaction_timeout=ZERO_MS, transaction_start_time=_EPOCH,
                         producer_id=-1, producer_epoch=-1, topics=()))
            continue
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(meta.partitions):
            by_topic.setdefault(topic, []).append(partition)
        start = (datetime.datetime.fromtimestamp(meta.start_ms / 1000, datetime.UTC) if meta.start_ms >= 0
                 else _EPOCH)
        out.append(r("TransactionState", error_code=ErrorCode.none, transactional_id=tid,
                     transaction_state=meta.state, transaction_timeout=datetime.timedelta(milliseconds=meta.timeout_ms),
                     transaction_start_time=start, producer_id=meta.producer_id,
                     producer_epoch=meta.producer_epoch,
                     topics=tuple(r("TopicData", topic=t, partitions=tuple(ps)) for t, ps in by_topic.items())))
    return r("DescribeTransactionsResponse", throttle_time=ZERO_MS, transaction_states=tuple(out))


@handles(66, 0, 2)
def list_transactions(ctx: RequestContext, req):
    r = ctx.reply
    states = set(req.state_filters)
    unknown = tuple(s for s in req.state_filters if s not in STATES)
    pids = set(req.producer_id_filters)
    duration = getattr(req, "duration_filter", -1)
    pattern = getattr(req, "transactional_id_pattern", None)
    try:
        regex = re.compile(pattern) if pattern else None
    except re.error:
        return r("ListTransactionsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.invalid_regular_expression,
                 unknown_state_filters=(), transaction_states=())
    now = int(time.time() * 1000)
    out = []
    for meta in ctx.broker.transactions.list():
        if states and meta.state not in states or pids and meta.producer_id not in pids:
            continue
        if duration >= 0 and (meta.start_ms < 0 or meta.state not in ("Ongoing", "PrepareCommit", "PrepareAbort")
                              or now - meta.start_ms < duration):
            continue
        if regex is not None and not regex.fullmatch(meta.transactional_id):
            continue
        if not allowed(ctx, DESCRIBE, TRANSACTIONAL_ID, meta.transactional_id):
            continue
        out.append(r("TransactionState", transactional_id=meta.transactional_id, producer_id=meta.producer_id,
                     transaction_state=meta.state))
    return r("ListTransactionsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none,
             unknown_state_filters=unknown, transaction_states=tuple(out))

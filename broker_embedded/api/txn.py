"""Producer ids and transactions: InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn.

The work is done by `broker.transactions` (coordinator/transactions.py); these handlers translate requests and
errors. Clients older than KIP-588 do not know PRODUCER_FENCED: they hear INVALID_PRODUCER_EPOCH instead.
"""

from __future__ import annotations

import inspect

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import (CLUSTER_ACTION, GROUP, IDEMPOTENT_WRITE, READ, TOPIC, TRANSACTIONAL_ID, WRITE, allowed,
                     allowed_any, cluster_allowed)
from .errors import KafkaError

# The transaction protocol generation served (the finalized `transaction.version` feature): 2 is KIP-890's.
TRANSACTION_VERSION = 2

# The first version of each request whose clients understand PRODUCER_FENCED (as Kafka's KafkaApis decides).
_FENCED_SINCE = {22: 4, 24: 2, 25: 2, 26: 2, 28: 3}


def _require_txn(ctx: RequestContext, transactional_id: str) -> None:
    if not allowed(ctx, WRITE, TRANSACTIONAL_ID, transactional_id):
        raise KafkaError(ErrorCode.transactional_id_authorization_failed, "Transactional Id authorization failed.")


def _require_group(ctx: RequestContext, group_id: str) -> None:
    if not allowed(ctx, READ, GROUP, group_id):
        raise KafkaError(ErrorCode.group_authorization_failed, "Group authorization failed.")


def _code(ctx: RequestContext, exc: KafkaError) -> ErrorCode:
    if exc.code == ErrorCode.producer_fenced and ctx.version < _FENCED_SINCE.get(ctx.header.api_key, 0):
        return ErrorCode.invalid_producer_epoch
    return exc.code


@handles(22, 0, 5)
async def init_producer_id(ctx: RequestContext, req):
    pid, epoch, code = -1, -1, ErrorCode.none
    try:
        if req.transactional_id is not None:
            _require_txn(ctx, req.transactional_id)
        elif not cluster_allowed(ctx, IDEMPOTENT_WRITE) and not allowed_any(ctx, WRITE, TOPIC):
            # KIP-679: an idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic.
            raise KafkaError(ErrorCode.cluster_authorization_failed, "Cluster authorization failed.")
        pid, epoch = await ctx.broker.transactions.init_producer_id(
            req.transactional_id, int(req.transaction_timeout.total_seconds() * 1000),
            getattr(req, "producer_id", -1), getattr(req, "producer_epoch", -1))
    except KafkaError as exc:
        code = _code(ctx, exc)
    return ctx.reply("InitProducerIdResponse", throttle_time=ZERO_MS, error_code=code, producer_id=pid,
                     producer_epoch=epoch)


@handles(24, 0, 5)
async def add_partitions_to_txn(ctx: RequestContext, req):
    r = ctx.reply
    if ctx.version >= 4 and not cluster_allowed(ctx, CLUSTER_ACTION):  # v4+ is the brokers' verification call
        return r("AddPartitionsToTxnResponse", throttle_time=ZERO_MS,
                 error_code=ErrorCode.cluster_authorization_failed, results_by_transaction=())
    if ctx.version >= 4:
        results = []
        for txn in req.transactions:
            codes = await _add_partitions(ctx, txn.transactional_id, txn.producer_id, txn.producer_epoch,
                                          txn.topics, txn.verify_only)
            results.append(r("AddPartitionsToTxnResult", transactional_id=txn.transactional_id,
                             topic_results=_topic_results(r, codes)))
        return r("AddPartitionsToTxnResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none,
                 results_by_transaction=tuple(results))
    codes = await _add_partitions(ctx, req.v3_and_below_transactional_id, req.v3_and_below_producer_id,
                                  req.v3_and_below_producer_epoch, req.v3_and_below_topics, False)
    return r("AddPartitionsToTxnResponse", throttle_time=ZERO_MS, results_by_topic_v3_and_below=_topic_results(r, codes))


async def _add_partitions(ctx, tid, pid, epoch, topics, verify_only):
    wanted = [(t.name, p) for t in topics for p in t.partitions]
    if not allowed(ctx, WRITE, TRANSACTIONAL_ID, tid):
        return {tp: ErrorCode.transactional_id_authorization_failed for tp in wanted}
    denied = {t.name for t in topics if not allowed(ctx, WRITE, TOPIC, t.name)}
    if denied:  # nothing is added: the refused topics say why, the others were not attempted
        return {tp: ErrorCode.topic_authorization_failed if tp[0] in denied else ErrorCode.operation_not_attempted
                for tp in wanted}
    try:
        return await ctx.broker.transactions.add_partitions(tid, pid, epoch, wanted, verify_only)
    except KafkaError as exc:
        code = _code(ctx, exc)
        return {tp: code for tp in wanted}


def _topic_results(r, codes: dict):
    by_topic: dict[str, list] = {}
    for (topic, partition), code in codes.items():
        by_topic.setdefault(topic, []).append(
            r("AddPartitionsToTxnPartitionResult", partition_index=partition, partition_error_code=code))
    return tuple(r("AddPartitionsToTxnTopicResult", name=t, results_by_partition=tuple(ps)) for t, ps in by_topic.items())


@handles(25, 0, 4)
async def add_offsets_to_txn(ctx: RequestContext, req):
    code = ErrorCode.none
    try:
        _require_txn(ctx, req.transactional_id)
        _require_group(ctx, req.group_id)
        await ctx.broker.transactions.add_offsets(req.transactional_id, req.producer_id, req.producer_epoch,
                                                  req.group_id)
    except KafkaError as exc:
        code = _code(ctx, exc)
    return ctx.reply("AddOffsetsToTxnResponse", throttle_time=ZERO_MS, error_code=code)


@handles(28, 0, 5)
async def txn_offset_commit(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    code = ErrorCode.none
    unknown: set[tuple[str, int]] = set()
    denied: set[str] = set()
    try:
        _require_txn(ctx, req.transactional_id)
        _require_group(ctx, req.group_id)
        denied = {t.name for t in req.topics if not allowed(ctx, READ, TOPIC, t.name)}
        # Kafka answers UNKNOWN_TOPIC_OR_PARTITION for partitions that do not exist and commits the others.
        unknown = {(t.name, p.partition_index) for t in req.topics if t.name not in denied for p in t.partitions
                   if broker.partition(t.name, p.partition_index) is None}
        if ctx.version >= 5 and TRANSACTION_VERSION >= 2:
            # KIP-890: a v5 commit brings its group into the transaction itself (no AddOffsetsToTxn before it).
            await broker.transactions.add_offsets(req.transactional_id, req.producer_id, req.producer_epoch,
                                                  req.group_id, implicit=True)
        broker.transactions.check_offset_commit(req.transactional_id, req.producer_id, req.producer_epoch,
                                                req.group_id)
        member_id = getattr(req, "member_id", "") or ""
        generation = getattr(req, "generation_id", -1)
        groups = getattr(broker, "groups", None)
        if groups is not None and (member_id or generation >= 0):
            # KIP-447: a member of an older generation is a zombie even if its producer is not.
            checked = groups.check_member(req.group_id, member_id, generation, getattr(req, "group_instance_id", None))
            if inspect.isawaitable(checked):
                await checked
        offsets = getattr(broker, "offsets", None)
        if offsets is None:
            raise KafkaError(ErrorCode.coordinator_not_available, "the offset store is not available")
        staged = {(t.name, p.partition_index): (p.committed_offset, getattr(p, "committed_leader_epoch", -1),
                                                p.committed_metadata)
                  for t in req.topics for p in t.partitions
                  if t.name not in denied and (t.name, p.partition_index) not in unknown}
        done = offsets.stage_txn_offsets(req.producer_id, req.group_id, staged, producer_epoch=req.producer_epoch)
        if inspect.isawaitable(done):
            await done
    except KafkaError as exc:
        code = _code(ctx, exc)
    topics = tuple(
        r("TxnOffsetCommitResponseTopic", name=t.name, partitions=tuple(
            r("TxnOffsetCommitResponsePartition", partition_index=p.partition_index,
              error_code=ErrorCode.unknown_topic_or_partition if (t.name, p.partition_index) in unknown
              else ErrorCode.topic_authorization_failed if t.name in denied and code == ErrorCode.none
              else code)
            for p in t.partitions))
        for t in req.topics)
    return r("TxnOffsetCommitResponse", throttle_time=ZERO_MS, topics=topics)


@handles(26, 0, 5)
async def end_txn(ctx: RequestContext, req):
    code = ErrorCode.none
    pid, epoch = req.producer_id, req.producer_epoch
    try:
        _require_txn(ctx, req.transactional_id)
        # v5 is the second generation: the epoch is bumped at every end and the response carries it.
        meta = await ctx.broker.transactions.end_txn(req.transactional_id, pid, epoch, req.committed,
                                                     bump=ctx.version >= 5 and TRANSACTION_VERSION >= 2)
        pid, epoch = meta.producer_id, meta.producer_epoch
    except KafkaError as exc:
        code = _code(ctx, exc)
        pid, epoch = -1, -1  # as Kafka answers a failed EndTxn
    return ctx.reply("EndTxnResponse", throttle_time=ZERO_MS, error_code=code, producer_id=pid, producer_epoch=epoch)

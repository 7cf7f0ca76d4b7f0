"""Produce: validate batches, append them, answer once they are as durable as `acks` asks."""

from __future__ import annotations

import asyncio
import datetime

from cramjam import DecompressionError
from kio.schema.errors import ErrorCode

from ..log.batch import InvalidBatch, split_batches
from ..log.partition import LogDeleted
from ..log.records import keyless_records
from ..log.validate import check_client_batch
from ..connections import Unanswered
from ..quotas import user_of
from . import RequestContext, handles
from .access import TOPIC, TRANSACTIONAL_ID, WRITE, allowed
from .errors import KafkaError, error_code
from .metadata import topic_name_of

# v12 tells the broker that the producer adds partitions to its transaction implicitly (KIP-890): served
# only with that protocol; v13 names topics by id.
PRODUCE_MAX_VERSION = 13


@handles(0, 0, PRODUCE_MAX_VERSION)
async def produce(ctx: RequestContext, req):
    broker = ctx.broker
    acks = req.acks
    durable = acks == -1 and broker.config.flush_on_ack
    results: list[tuple[str | None, object, list[dict]]] = []
    waits: list[tuple[asyncio.Future, dict]] = []
    txn_denied = req.transactional_id is not None and not allowed(ctx, WRITE, TRANSACTIONAL_ID, req.transactional_id)
    for td in req.topic_data:
        name = topic_name_of(broker, td)  # v13+: by topic id; None if unknown
        parts = []
        for pd in td.partition_data:
            result = {"index": pd.index, "error_code": ErrorCode.none, "error_message": None, "base_offset": -1,
                      "log_start_offset": -1, "log_append_time": None}  # kio writes a None time as -1
            parts.append(result)
            plog = broker.partition(name, pd.index)
            try:
                if acks not in (0, 1, -1):
                    raise KafkaError(ErrorCode.invalid_required_acks, f"acks must be 0, 1 or -1, got {acks}")
                if txn_denied:
                    raise KafkaError(ErrorCode.transactional_id_authorization_failed,
                                     "Transactional Id authorization failed.")
                if name is not None and not allowed(ctx, WRITE, TOPIC, name):
                    raise KafkaError(ErrorCode.topic_authorization_failed, "Topic authorization failed.")
                if plog is None and name is None:
                    raise KafkaError(ErrorCode.unknown_topic_id, f"Unknown topic id {td.topic_id}")
                if plog is None:
                    raise KafkaError(ErrorCode.unknown_topic_or_partition,
                                     f"This server does not host this topic-partition: {name}-{pd.index}")
                data = pd.records or b""
                batches = split_batches(data)
                if len(batches) != 1:  # Kafka: v3+ carries exactly one batch per partition
                    raise KafkaError(ErrorCode.invalid_record,
                                     f"a produce request must carry exactly one record batch per partition, "
                                     f"got {len(batches)}")
                limit = plog.config.max_message_bytes
                for _pos, header in batches:
                    if header.size > limit:
                        raise KafkaError(ErrorCode.message_too_large,
                                         f"batch of {header.size} bytes exceeds max.message.bytes {limit}")
                # Records, counts, offsets and producer fields as Kafka's LogValidator checks them.
                data = check_client_batch(data, batches[0][1], log_append_time=plog.config.log_append_time)
                if plog.config.compact:
                    _check_keys(data, batches, f"{name}-{pd.index}")
                if ctx.version >= 12 and req.transactional_id is not None:
                    await _join_transaction(broker, req.transactional_id, batches, name, pd.index)
                # Idempotence and transaction checks; a retried duplicate gets its original offset.
                result["base_offset"] = broker.producers.append(plog, name, pd.index, data, batches)
            except RecordErrors as exc:
                result.update(error_code=exc.code, error_message=str(exc), record_errors=exc.errors,
                              log_start_offset=plog.log_start_offset)
                continue
            except (InvalidBatch, KafkaError) as exc:
                result["error_code"], result["error_message"] = error_code(exc), str(exc)
                continue
            except OSError as exc:
                # A full disk (or failing one): nothing of the payload stays in the log (the segment cuts a failed
                # append back), so a retry cannot duplicate it. Kafka would take the log dir offline; this node
                # stays up and answers per request until space returns.
                result["error_code"], result["error_message"] = ErrorCode.kafka_storage_error, _storage(exc)
                continue
            if plog.config.log_append_time:
                result["log_append_time"] = datetime.datetime.fromtimestamp(
                    batches[0][1].max_timestamp / 1000, datetime.UTC)
            result["log_start_offset"] = plog.log_start_offset
            if durable:
                waits.append((broker.flusher.flush(plog), result))
            elif plog.unflushed_messages >= plog.config.flush_messages:
                broker.flusher.request(plog)
        results.append((name, td, parts))
    for fut, result in waits:
        try:
            await fut
        except LogDeleted as exc:  # the topic was deleted while the batch waited for its fsync
            result.update(error_code=ErrorCode.unknown_topic_or_partition, error_message=str(exc), base_offset=-1)
        except Exception as exc:  # not on disk: the client must not take it as acknowledged
            result.update(error_code=ErrorCode.kafka_storage_error, error_message=f"fsync failed: {exc}",
                          base_offset=-1)
    # The produce byte-rate quota (quotas.py): a client over it hears how long to wait, and its connection is muted.
    size = sum(len(pd.records or b"") for td in req.topic_data for pd in td.partition_data)
    throttle = broker.produce_quota.record(user_of(ctx.principal), ctx.header.client_id or "", size)
    if acks == 0:
        return Unanswered(throttle) if throttle else None
    r = ctx.reply
    topics = tuple(
        r("TopicProduceResponse", name=name, topic_id=getattr(td, "topic_id", None), partition_responses=tuple(
            r("PartitionProduceResponse", **{**result, "record_errors": tuple(
                r("BatchIndexAndErrorMessage", batch_index=i, batch_index_error_message=m)
                for i, m in result.get("record_errors", ()))}) for result in parts))
        for name, td, parts in results
    )
    return r("ProduceResponse", responses=topics, throttle_time=datetime.timedelta(milliseconds=throttle))


async def _join_transaction(broker, transactional_id: str, batches, topic: str, partition: int) -> None:
    """KIP-890: a transactional batch in Produce v12+ adds its partition to the producer's transaction, which the
    client no longer does with AddPartitionsToTxn. Errors are the ones Kafka's produce path answers: a fenced or
    stale epoch is INVALID_PRODUCER_EPOCH; a transaction still being completed is retriable."""
    header = batches[0][1]
    if not header.is_transactional:
        return
    tp = (topic, partition)
    try:
        code = (await broker.transactions.add_partitions(transactional_id, header.producer_id, header.producer_epoch,
                                                         [tp], implicit=True))[tp]
        message = f"{topic}-{partition} could not join the transaction of {transactional_id!r}"
    except KafkaError as exc:
        code, message = exc.code, str(exc)
    if code == ErrorCode.producer_fenced:
        code = ErrorCode.invalid_producer_epoch
    elif code == ErrorCode.concurrent_transactions:
        code = ErrorCode.not_enough_replicas
    if code != ErrorCode.none:
        raise KafkaError(code, message)


def _storage(exc: OSError) -> str:
    return f"cannot write to the log: {exc.strerror or exc}"


class RecordErrors(KafkaError):
    """Records Kafka refuses one by one (KIP-467): the whole batch is refused and each bad record is named."""

    def __init__(self, errors: list[tuple[int, str]]) -> None:
        shown = ", ".join(f"RecordError(batchIndex={i}, message='{m}')" for i, m in errors[:3])
        super().__init__(ErrorCode.invalid_record,
                         f"One or more records have been rejected due to {len(errors)} record errors in total, "
                         f"and only showing the first three errors at most: [{shown}]")
        self.errors = errors


def _check_keys(data: bytes, batches, partition: str) -> None:
    """A compacted topic keeps the latest record per key, so Kafka refuses records without one."""
    errors: list[tuple[int, str]] = []
    index = 0
    for pos, header in batches:
        if header.is_control:
            continue
        try:
            missing = keyless_records(memoryview(data)[pos:pos + header.size], header)
        except (IndexError, ValueError, DecompressionError) as exc:  # a records section that cannot be read
            raise InvalidBatch(f"record batch at {pos} cannot be read: {exc}") from exc
        errors += [(index + i, f"Compacted topic cannot accept message without key in topic partition {partition}")
                   for i in missing]
        index += header.record_count
    if errors:
        raise RecordErrors(errors)

"""Produce: validate batches, append them, answer once they are as durable as `acks` asks."""

from __future__ import annotations

import asyncio
import datetime

from kio.schema.errors import ErrorCode

from ..log.batch import InvalidBatch, split_batches
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .errors import KafkaError, error_code


@handles(0, 0, 11)
async def produce(ctx: RequestContext, req):
    broker = ctx.broker
    r = ctx.reply
    acks = req.acks
    durable = acks == -1 and broker.config.flush_on_ack
    waits: list[asyncio.Future] = []
    topics = []
    for td in req.topic_data:
        parts = []
        for pd in td.partition_data:
            code, message, base, log_start = ErrorCode.none, None, -1, -1
            append_time = None  # kio writes None as -1
            plog = broker.partition(td.name, pd.index)
            if acks not in (0, 1, -1):
                code = ErrorCode.invalid_required_acks
            elif plog is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                try:
                    data = pd.records or b""
                    batches = split_batches(data)
                    limit = plog.config.max_message_bytes
                    for _pos, header in batches:
                        if header.size > limit:
                            raise _TooLarge(f"batch of {header.size} bytes exceeds max.message.bytes {limit}")
                    # Idempotence and transaction checks; a retried duplicate gets its original offset.
                    base = broker.producers.append(plog, td.name, pd.index, data, batches)
                    if plog.config.log_append_time:
                        append_time = datetime.datetime.fromtimestamp(batches[0][1].max_timestamp / 1000, datetime.UTC)
                    log_start = plog.log_start_offset
                    if durable:
                        waits.append(broker.flusher.flush(plog))
                    elif plog.unflushed_messages >= plog.config.flush_messages:
                        broker.flusher.flush(plog)
                except _TooLarge as exc:
                    code, message = ErrorCode.message_too_large, str(exc)
                except (InvalidBatch, KafkaError) as exc:
                    code, message = error_code(exc), str(exc)
            parts.append(r("PartitionProduceResponse", index=pd.index, error_code=code, base_offset=base,
                           log_append_time=append_time, log_start_offset=log_start, record_errors=(),
                           error_message=message))
        topics.append(r("TopicProduceResponse", name=td.name, partition_responses=tuple(parts)))
    if waits:
        await asyncio.gather(*waits)
    if acks == 0:
        return None
    return r("ProduceResponse", responses=tuple(topics), throttle_time=ZERO_MS)


class _TooLarge(Exception):
    pass

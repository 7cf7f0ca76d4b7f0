"""The one place where exceptions become Kafka error codes."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..config import InvalidConfig
from ..errors import KafkaError
from ..log.batch import InvalidBatch
from ..log.partition import OffsetOutOfRange
from ..metadata import InvalidPartitions, InvalidTopic, TopicExists, UnknownTopic


_BY_TYPE: list[tuple[type[BaseException], ErrorCode]] = [
    (InvalidTopic, ErrorCode.invalid_topic_exception),
    (TopicExists, ErrorCode.topic_already_exists),
    (UnknownTopic, ErrorCode.unknown_topic_or_partition),
    (InvalidPartitions, ErrorCode.invalid_partitions),
    (InvalidConfig, ErrorCode.invalid_config),
    (OffsetOutOfRange, ErrorCode.offset_out_of_range),
]


def error_code(exc: BaseException) -> ErrorCode:
    """The Kafka error code for an exception raised while serving a request."""
    if isinstance(exc, KafkaError):
        return exc.code
    if isinstance(exc, InvalidBatch):
        if exc.unreadable:
            return ErrorCode.unknown_server_error
        return ErrorCode.corrupt_message if exc.corrupt else ErrorCode.invalid_record
    for kind, code in _BY_TYPE:
        if isinstance(exc, kind):
            return code
    if isinstance(exc, OSError):  # the data directory cannot take the change (a full disk)
        return ErrorCode.kafka_storage_error
    return ErrorCode.unknown_server_error


def error_message(exc: BaseException) -> str:
    return str(exc)

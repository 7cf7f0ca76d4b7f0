"""The `__consumer_offsets` records of consumer groups (KIP-848), in Kafka's key and value layouts.

Key versions say what a record is: 3 the group's epoch, 5 a member's metadata (subscription, timeouts, client),
6 the target assignment's epoch, 7 a member's target assignment, 8 a member's current assignment (epochs, state,
assigned and pending revocation partitions). Keys are fixed-width (version, group id[, member id]); values are a
version (0) followed by a flexible (compact, tagged) structure, encoded with kio's serializers. A null value is a
tombstone: a member that leaves gets one for each of its keys, a deleted group for all of them.
"""


import io
import struct
import uuid
from dataclasses import dataclass, field
from typing import ClassVar

from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType
from kio.static.primitive import i8, i16, i32

GROUP_EPOCH, MEMBER_METADATA, TARGET_EPOCH, TARGET_MEMBER, CURRENT_ASSIGNMENT = 3, 5, 6, 7, 8
KEY_VERSIONS = (GROUP_EPOCH, MEMBER_METADATA, TARGET_EPOCH, TARGET_MEMBER, CURRENT_ASSIGNMENT)
_MEMBER_KEYS = (MEMBER_METADATA, TARGET_MEMBER, CURRENT_ASSIGNMENT)


@dataclass(frozen=True, slots=True)
class ConsumerGroupKey:
    """The key of a consumer group record; `member_id` is None for the group-level ones (3 and 6)."""

    version: int
    group: str
    member_id: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicPartitions:
    __type__: ClassVar = EntityType.nested
    __version__: ClassVar[i16] = i16(0)
    __flexible__: ClassVar[bool] = True
    topic_id: uuid.UUID = field(metadata={"kafka_type": "uuid"})
    partitions: tuple[i32, ...] = field(metadata={"kafka_type": "int32"}, default=())


@dataclass(frozen=True, slots=True, kw_only=True)
class EpochValue:
    """ConsumerGroupMetadataValue (the group epoch) and ConsumerGroupTargetAssignmentMetadataValue share a layout."""

    __type__: ClassVar = EntityType.data
    __version__: ClassVar[i16] = i16(0)
    __flexible__: ClassVar[bool] = True
    epoch: i32 = field(metadata={"kafka_type": "int32"})


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberMetadataValue:
    __type__: ClassVar = EntityType.data
    __version__: ClassVar[i16] = i16(0)
    __flexible__: ClassVar[bool] = True
    instance_id: str | None = field(metadata={"kafka_type": "string"}, default=None)
    rack_id: str | None = field(metadata={"kafka_type": "string"}, default=None)
    client_id: str = field(metadata={"kafka_type": "string"})
    client_host: str = field(metadata={"kafka_type": "string"})
    subscribed_topic_names: tuple[str, ...] = field(metadata={"kafka_type": "string"}, default=())
    subscribed_topic_regex: str | None = field(metadata={"kafka_type": "string"}, default=None)
    rebalance_timeout_ms: i32 = field(metadata={"kafka_type": "int32"})
    server_assignor: str | None = field(metadata={"kafka_type": "string"}, default=None)


@dataclass(frozen=True, slots=True, kw_only=True)
class TargetMemberValue:
    __type__: ClassVar = EntityType.data
    __version__: ClassVar[i16] = i16(0)
    __flexible__: ClassVar[bool] = True
    topic_partitions: tuple[TopicPartitions, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class CurrentAssignmentValue:
    __type__: ClassVar = EntityType.data
    __version__: ClassVar[i16] = i16(0)
    __flexible__: ClassVar[bool] = True
    member_epoch: i32 = field(metadata={"kafka_type": "int32"})
    previous_member_epoch: i32 = field(metadata={"kafka_type": "int32"})
    state: i8 = field(metadata={"kafka_type": "int8"})
    assigned_partitions: tuple[TopicPartitions, ...] = ()
    partitions_pending_revocation: tuple[TopicPartitions, ...] = ()


VALUE_TYPES = {GROUP_EPOCH: EpochValue, MEMBER_METADATA: MemberMetadataValue, TARGET_EPOCH: EpochValue,
               TARGET_MEMBER: TargetMemberValue, CURRENT_ASSIGNMENT: CurrentAssignmentValue}
_WRITERS = {v: entity_writer(t) for v, t in VALUE_TYPES.items()}
_READERS = {v: entity_reader(t) for v, t in VALUE_TYPES.items()}


def _string(value: str) -> bytes:
    data = value.encode("utf-8")
    return struct.pack(">h", len(data)) + data


def encode_key(key: ConsumerGroupKey) -> bytes:
    out = struct.pack(">h", key.version) + _string(key.group)
    if key.version in _MEMBER_KEYS:
        out += _string(key.member_id or "")
    return out


def decode_key(version: int, data: bytes, pos: int) -> ConsumerGroupKey:
    """The rest of a key whose version (already read, ending at `pos`) is one of KEY_VERSIONS."""
    strings = []
    for _ in range(2 if version in _MEMBER_KEYS else 1):
        (n,) = struct.unpack_from(">h", data, pos)
        strings.append(data[pos + 2 : pos + 2 + n].decode("utf-8"))
        pos += 2 + n
    return ConsumerGroupKey(version, *strings)


def encode_value(version: int, value) -> bytes:
    buf = io.BytesIO()
    buf.write(struct.pack(">h", 0))
    _WRITERS[version](buf, value)
    return buf.getvalue()


def decode_value(version: int, data: bytes):
    value, _size = _READERS[version](data, 2)
    return value


def topic_partitions(assignment: dict[uuid.UUID, set[int]]) -> tuple[TopicPartitions, ...]:
    return tuple(TopicPartitions(topic_id=t, partitions=tuple(i32(p) for p in sorted(ps)))
                 for t, ps in sorted(assignment.items(), key=lambda item: str(item[0])) if ps)


def assignment_of(parts: tuple[TopicPartitions, ...]) -> dict[uuid.UUID, set[int]]:
    return {tp.topic_id: set(tp.partitions) for tp in parts if tp.partitions}

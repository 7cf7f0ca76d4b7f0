"""The records of `__consumer_offsets`, in Kafka's own key and value layouts.

Keys carry a version that says what the record is: 0 and 1 are committed offsets (group, topic, partition), 2 is
a classic group's metadata (group), 3 and 5 to 8 are consumer group records (see `consumer_group_records`). We write offset values v3 and group metadata values v3 and read the older versions
Kafka wrote. A record with a null value is a tombstone. Transaction markers in the topic are control records whose
key is (version, type): type 0 aborts, 1 commits.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

from .consumer_group_records import KEY_VERSIONS as CONSUMER_GROUP_KEYS, ConsumerGroupKey
from .consumer_group_records import decode_key as decode_consumer_group_key

OFFSET_KEY_VERSION = 1
GROUP_KEY_VERSION = 2
OFFSET_VALUE_VERSION = 3
GROUP_VALUE_VERSION = 3
ABORT, COMMIT = 0, 1


class _Writer:
    def __init__(self) -> None:
        self.buf = bytearray()

    def i16(self, v: int) -> "_Writer":
        self.buf += struct.pack(">h", v)
        return self

    def i32(self, v: int) -> "_Writer":
        self.buf += struct.pack(">i", v)
        return self

    def i64(self, v: int) -> "_Writer":
        self.buf += struct.pack(">q", v)
        return self

    def string(self, v: str | None) -> "_Writer":
        if v is None:
            return self.i16(-1)
        data = v.encode("utf-8")
        self.i16(len(data))
        self.buf += data
        return self

    def bytes_(self, v: bytes | None) -> "_Writer":
        if v is None:
            return self.i32(-1)
        self.i32(len(v))
        self.buf += v
        return self


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def _take(self, fmt: str) -> int:
        (v,) = struct.unpack_from(fmt, self.data, self.pos)
        self.pos += struct.calcsize(fmt)
        return v

    def i16(self) -> int:
        return self._take(">h")

    def i32(self) -> int:
        return self._take(">i")

    def i64(self) -> int:
        return self._take(">q")

    def string(self) -> str | None:
        n = self.i16()
        if n < 0:
            return None
        v = self.data[self.pos : self.pos + n].decode("utf-8")
        self.pos += n
        return v

    def bytes_(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        v = bytes(self.data[self.pos : self.pos + n])
        self.pos += n
        return v


@dataclass(frozen=True, slots=True)
class OffsetKey:
    group: str
    topic: str
    partition: int


@dataclass(frozen=True, slots=True)
class GroupKey:
    group: str


@dataclass(slots=True)
class OffsetValue:
    """A committed offset as stored: offset, leader epoch (-1 unknown), metadata string, commit time in ms."""

    offset: int
    leader_epoch: int = -1
    metadata: str | None = ""
    commit_timestamp: int = 0


@dataclass(slots=True)
class MemberValue:
    """One member of a stored group: identity, timeouts, its subscription for the chosen protocol, its assignment."""

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    rebalance_timeout_ms: int
    session_timeout_ms: int
    subscription: bytes
    assignment: bytes


@dataclass(slots=True)
class GroupValue:
    """A group as stored after each completed rebalance (or when it becomes empty)."""

    protocol_type: str
    generation: int
    protocol: str | None
    leader: str | None
    state_timestamp: int
    members: list[MemberValue] = field(default_factory=list)


def offset_key(group: str, topic: str, partition: int) -> bytes:
    return bytes(_Writer().i16(OFFSET_KEY_VERSION).string(group).string(topic).i32(partition).buf)


def group_key(group: str) -> bytes:
    return bytes(_Writer().i16(GROUP_KEY_VERSION).string(group).buf)


def offset_value(v: OffsetValue) -> bytes:
    w = _Writer().i16(OFFSET_VALUE_VERSION).i64(v.offset).i32(v.leader_epoch).string(v.metadata)
    return bytes(w.i64(v.commit_timestamp).buf)


def group_value(v: GroupValue) -> bytes:
    w = _Writer().i16(GROUP_VALUE_VERSION).string(v.protocol_type).i32(v.generation).string(v.protocol)
    w.string(v.leader).i64(v.state_timestamp).i32(len(v.members))
    for m in v.members:
        w.string(m.member_id).string(m.instance_id).string(m.client_id).string(m.client_host)
        w.i32(m.rebalance_timeout_ms).i32(m.session_timeout_ms).bytes_(m.subscription).bytes_(m.assignment)
    return bytes(w.buf)


def decode_key(data: bytes) -> OffsetKey | GroupKey | ConsumerGroupKey | None:
    """The key of a record; None for record kinds this broker does not keep (share and streams groups')."""
    r = _Reader(data)
    version = r.i16()
    if version in (0, 1):
        return OffsetKey(r.string() or "", r.string() or "", r.i32())
    if version == 2:
        return GroupKey(r.string() or "")
    if version in CONSUMER_GROUP_KEYS:
        return decode_consumer_group_key(version, data, r.pos)
    return None


def decode_offset_value(data: bytes) -> OffsetValue:
    r = _Reader(data)
    version = r.i16()
    offset = r.i64()
    epoch = r.i32() if version >= 3 else -1
    metadata = r.string()
    ts = r.i64()
    return OffsetValue(offset, epoch, metadata, ts)


def decode_group_value(data: bytes) -> GroupValue:
    r = _Reader(data)
    version = r.i16()
    value = GroupValue(r.string() or "", r.i32(), r.string(), r.string(), 0)
    if version >= 2:
        value.state_timestamp = r.i64()
    for _ in range(r.i32()):
        member_id = r.string() or ""
        instance_id = r.string() if version >= 3 else None
        client_id, client_host = r.string() or "", r.string() or ""
        rebalance = r.i32() if version >= 1 else -1
        session = r.i32()
        if rebalance < 0:
            rebalance = session
        value.members.append(MemberValue(member_id, instance_id, client_id, client_host, rebalance, session,
                                         r.bytes_() or b"", r.bytes_() or b""))
    return value


def control_type(key: bytes) -> int:
    """COMMIT or ABORT from a control record's key."""
    return struct.unpack_from(">hh", key)[1]


def control_record(kind: int, coordinator_epoch: int = 0) -> tuple[bytes, bytes]:
    """The (key, value) of a transaction marker record."""
    return struct.pack(">hh", 0, kind), struct.pack(">hi", 0, coordinator_epoch)


def subscribed_topics(metadata: bytes) -> set[str] | None:
    """Topics named in a consumer-protocol subscription (the v0 prefix all versions share); None if unreadable."""
    try:
        r = _Reader(metadata)
        r.i16()
        return {r.string() or "" for _ in range(r.i32())}
    except (struct.error, UnicodeDecodeError):
        return None

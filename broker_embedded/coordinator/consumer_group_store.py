"""A consumer group as `__consumer_offsets` records and back (the layouts are in `consumer_group_records`).

`group_records` is what the log should hold for a group now, one record per key; the coordinator writes the ones
that differ from what it wrote last, and tombstones for keys that are gone. `groups_from_records` rebuilds the
groups from what a restart read back.
"""

from __future__ import annotations

from kio.static.primitive import i8, i32

from .consumer_group import ConsumerGroup, ConsumerMember, MemberState
from .consumer_group_records import (
    CURRENT_ASSIGNMENT, GROUP_EPOCH, MEMBER_METADATA, TARGET_EPOCH, TARGET_MEMBER, ConsumerGroupKey,
    CurrentAssignmentValue, EpochValue, MemberMetadataValue, TargetMemberValue, assignment_of, decode_value,
    encode_value, topic_partitions,
)
from .group import now_ms


def group_records(group: ConsumerGroup) -> dict[ConsumerGroupKey, bytes]:
    """Every record of the group: its epoch, its target assignment's epoch, and three per member."""
    g = group.group_id
    out = {
        ConsumerGroupKey(GROUP_EPOCH, g): encode_value(GROUP_EPOCH, EpochValue(epoch=i32(group.epoch))),
        ConsumerGroupKey(TARGET_EPOCH, g): encode_value(TARGET_EPOCH, EpochValue(epoch=i32(group.assignment_epoch))),
    }
    for mid, m in group.members.items():
        out[ConsumerGroupKey(MEMBER_METADATA, g, mid)] = encode_value(MEMBER_METADATA, MemberMetadataValue(
            instance_id=m.instance_id, rack_id=m.rack_id, client_id=m.client_id, client_host=m.client_host,
            subscribed_topic_names=m.subscribed_topic_names, subscribed_topic_regex=m.subscribed_topic_regex,
            rebalance_timeout_ms=i32(m.rebalance_timeout_ms), server_assignor=m.server_assignor))
        if mid in group.target:
            out[ConsumerGroupKey(TARGET_MEMBER, g, mid)] = encode_value(TARGET_MEMBER, TargetMemberValue(
                topic_partitions=topic_partitions(group.target[mid])))
        out[ConsumerGroupKey(CURRENT_ASSIGNMENT, g, mid)] = encode_value(CURRENT_ASSIGNMENT, CurrentAssignmentValue(
            member_epoch=i32(m.epoch), previous_member_epoch=i32(m.previous_epoch), state=i8(int(m.state)),
            assigned_partitions=topic_partitions(m.assigned),
            partitions_pending_revocation=topic_partitions(m.pending_revocation)))
    return out


def groups_from_records(records: dict[ConsumerGroupKey, bytes], session_deadline: float,
                        now: float) -> dict[str, tuple[ConsumerGroup, dict[ConsumerGroupKey, bytes]]]:
    """The groups the records describe, each with the records it was built from. Members' sessions end at
    `session_deadline`; a member caught revoking gets its rebalance timeout again from `now`."""
    by_group: dict[str, dict[ConsumerGroupKey, bytes]] = {}
    for key, value in records.items():
        by_group.setdefault(key.group, {})[key] = value
    out = {}
    for group_id, stored in by_group.items():
        if ConsumerGroupKey(GROUP_EPOCH, group_id) not in stored:
            continue  # what is left of a group whose deletion was cut short
        group = ConsumerGroup(group_id, state_timestamp=now_ms())
        members: dict[str, ConsumerMember] = {}
        for key, value in stored.items():
            decoded = decode_value(key.version, value)
            if key.version == GROUP_EPOCH:
                group.epoch = decoded.epoch
            elif key.version == TARGET_EPOCH:
                group.assignment_epoch = decoded.epoch
            elif key.version == TARGET_MEMBER:
                group.target[key.member_id] = assignment_of(decoded.topic_partitions)
            else:
                m = members.setdefault(key.member_id, ConsumerMember(key.member_id, deadline=session_deadline))
                if key.version == MEMBER_METADATA:
                    m.instance_id, m.rack_id = decoded.instance_id, decoded.rack_id
                    m.client_id, m.client_host = decoded.client_id, decoded.client_host
                    m.subscribed_topic_names = tuple(decoded.subscribed_topic_names)
                    m.subscribed_topic_regex = decoded.subscribed_topic_regex
                    m.rebalance_timeout_ms, m.server_assignor = decoded.rebalance_timeout_ms, decoded.server_assignor
                else:
                    m.epoch, m.previous_epoch = decoded.member_epoch, decoded.previous_member_epoch
                    known = {s.value for s in MemberState}
                    m.state = MemberState(decoded.state) if decoded.state in known else MemberState.UNKNOWN
                    m.assigned = assignment_of(decoded.assigned_partitions)
                    m.pending_revocation = assignment_of(decoded.partitions_pending_revocation)
        for member in members.values():
            if member.state == MemberState.UNREVOKED_PARTITIONS:
                member.revoke_deadline = now + max(member.rebalance_timeout_ms, 0) / 1000
            group.add(member)
        group.target = {mid: a for mid, a in group.target.items() if mid in group.members}
        out[group_id] = (group, dict(stored))
    return out

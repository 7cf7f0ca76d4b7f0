"""Offset retention (offsets.retention.minutes), with Kafka's rules for when a group's offsets start to age.

- A group that uses group management ages from the moment it became Empty: its offsets expire together.
- A standalone group (commits without membership, no protocol type) ages each offset from its commit.
- A Stable consumer group ages only offsets of topics it no longer subscribes to.
- A group of the consumer group protocol (KIP-848) ages from the moment it lost its last member; while it has
  members, only offsets of topics none of them subscribes to age (from their commit).
Offsets with a transaction in flight never expire; an Empty group left without offsets is removed.
"""

from __future__ import annotations

import logging

from .consumer_group import ConsumerGroup
from .group import Group, GroupState, now_ms
from .offsets import OffsetStore

log = logging.getLogger(__name__)


def expire_offsets(groups: dict[str, Group], consumer_groups: dict[str, ConsumerGroup], offsets: OffsetStore,
                   retention_ms: int) -> list[str]:
    """Delete expired offsets from `offsets`; return the ids of empty groups (classic or consumer) that have
    nothing left."""
    now = now_ms()
    for group_id, stored in list(offsets.offsets.items()):
        consumer_group = consumer_groups.get(group_id)
        group = groups.get(group_id)
        empty_since = (group.state_timestamp
                       if group is not None and group.protocol_type and group.is_(GroupState.EMPTY) else None)
        if consumer_group is not None and not consumer_group.members:
            empty_since = consumer_group.state_timestamp
        expired = []
        for (topic, partition), value in stored.items():
            if offsets.has_pending_txn_offsets(group_id, topic, partition):
                continue
            if consumer_group is not None:
                if empty_since is not None:
                    base = empty_since
                elif not consumer_group.is_subscribed_to(topic):
                    base = value.commit_timestamp
                else:
                    continue
            elif group is None or not group.protocol_type:
                base = value.commit_timestamp
            elif empty_since is not None:
                base = empty_since
            elif group.is_(GroupState.STABLE) and group.subscribed is not None and topic not in group.subscribed:
                base = value.commit_timestamp
            else:
                continue
            if now - base >= retention_ms:
                expired.append((topic, partition))
        if expired:
            log.info("group %s: %d committed offsets expired", group_id, len(expired))
            offsets.delete(group_id, expired)
    return [group_id for group_id, group in groups.items()
            if group.is_(GroupState.EMPTY) and not group.pending_members and group_id not in offsets.offsets
            and not offsets.has_pending_txn_group(group_id)] + [
        group_id for group_id, group in consumer_groups.items()
        if not group.members and group_id not in offsets.offsets and not offsets.has_pending_txn_group(group_id)]

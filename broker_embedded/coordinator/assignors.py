"""Server-side assignors of the consumer group protocol (KIP-848): `uniform` (the default) and `range`.

An assignor sees each member's subscribed topics (by topic id) and the target assignment it has now, and the
partition count of every subscribed topic; it returns the next target assignment. The coordinator then moves each
member towards its target, revoking before it assigns (see `consumer_group`).

- uniform: every partition goes to a member subscribed to its topic, members' partition counts differ by at most
  one wherever their subscriptions allow it, and a partition stays where it is unless balance needs it to move.
- range: per topic, the subscribed members sorted by member id get contiguous ranges (the first `partitions %
  members` one partition more), so that co-partitioned topics line up as with the classic RangeAssignor.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

Assignment = dict[uuid.UUID, set[int]]

DEFAULT_ASSIGNORS = ("uniform", "range")


@dataclass(slots=True)
class MemberSpec:
    """What an assignor knows about a member: what it subscribes to and its current target."""

    subscribed: set[uuid.UUID]
    current: Assignment = field(default_factory=dict)


def assign(name: str, members: dict[str, MemberSpec], partitions: dict[uuid.UUID, int]) -> dict[str, Assignment]:
    """The next target assignment; `partitions` holds the partition count of each topic someone subscribes to."""
    if name == "range":
        return _range(members, partitions)
    if name == "uniform":
        return _uniform(members, partitions)
    raise ValueError(f"unknown assignor {name!r}")


def _range(members: dict[str, MemberSpec], partitions: dict[uuid.UUID, int]) -> dict[str, Assignment]:
    out: dict[str, Assignment] = {mid: {} for mid in members}
    for topic_id, count in partitions.items():
        subscribers = sorted(mid for mid, spec in members.items() if topic_id in spec.subscribed)
        if not subscribers:
            continue
        per, extra = divmod(count, len(subscribers))
        start = 0
        for i, mid in enumerate(subscribers):
            n = per + (1 if i < extra else 0)
            if n:
                out[mid][topic_id] = set(range(start, start + n))
            start += n
    return out


def _uniform(members: dict[str, MemberSpec], partitions: dict[uuid.UUID, int]) -> dict[str, Assignment]:
    owner: dict[tuple[uuid.UUID, int], str] = {}
    owned: dict[str, set[tuple[uuid.UUID, int]]] = {mid: set() for mid in members}
    # Keep what each member has and may still have (its topic is subscribed and the partition exists).
    for mid in sorted(members):
        spec = members[mid]
        for topic_id, parts in spec.current.items():
            if topic_id not in spec.subscribed or topic_id not in partitions:
                continue
            for p in parts:
                tp = (topic_id, p)
                if p < partitions[topic_id] and tp not in owner:
                    owner[tp] = mid
                    owned[mid].add(tp)
    subscribers = {t: sorted(mid for mid, spec in members.items() if t in spec.subscribed) for t in partitions}
    # Partitions nobody has go to the least loaded subscriber.
    for topic_id in sorted(partitions, key=str):
        for p in range(partitions[topic_id]):
            tp = (topic_id, p)
            if tp in owner or not subscribers[topic_id]:
                continue
            mid = min(subscribers[topic_id], key=lambda m: (len(owned[m]), m))
            owner[tp] = mid
            owned[mid].add(tp)
    # Move partitions from the most to the least loaded member that may take them, until no move helps.
    moved = True
    while moved:
        moved = False
        for giver in sorted(owned, key=lambda m: (-len(owned[m]), m)):
            for tp in sorted(owned[giver], key=lambda t: (str(t[0]), t[1])):
                takers = [m for m in subscribers[tp[0]] if len(owned[m]) + 1 < len(owned[giver])]
                if takers:
                    taker = min(takers, key=lambda m: (len(owned[m]), m))
                    owned[giver].discard(tp)
                    owned[taker].add(tp)
                    moved = True
                    break
            if moved:
                break
    out: dict[str, Assignment] = {mid: {} for mid in members}
    for mid, tps in owned.items():
        for topic_id, p in tps:
            out[mid].setdefault(topic_id, set()).add(p)
    return out

"""A classic consumer group: its members, its state, its generation and the protocol its members agreed on.

States follow Kafka's classic group protocol:

    Empty --join--> PreparingRebalance --all joined / timeout--> CompletingRebalance --leader's sync--> Stable
      ^                  ^                                              |                                 |
      |                  +------ member joins, leaves or expires -------+---------------------------------+
      +-- no member left when a join phase completes;   Dead: deleted, never used again.

This module holds the data and the rules that need no clock; `group_coordinator` drives the transitions.
"""

from __future__ import annotations

import asyncio
import enum
import time
from collections import Counter
from dataclasses import dataclass, field

from kio.schema.errors import ErrorCode

from .group_records import GroupValue, MemberValue, subscribed_topics

CONSUMER_PROTOCOL = "consumer"


class GroupState(str, enum.Enum):
    """The states of a classic group, with Kafka's names (DescribeGroups and ListGroups show them)."""

    EMPTY = "Empty"
    PREPARING_REBALANCE = "PreparingRebalance"
    COMPLETING_REBALANCE = "CompletingRebalance"
    STABLE = "Stable"
    DEAD = "Dead"


_VALID_PREVIOUS = {
    GroupState.EMPTY: {GroupState.PREPARING_REBALANCE},
    GroupState.PREPARING_REBALANCE: {GroupState.STABLE, GroupState.COMPLETING_REBALANCE, GroupState.EMPTY},
    GroupState.COMPLETING_REBALANCE: {GroupState.PREPARING_REBALANCE},
    GroupState.STABLE: {GroupState.COMPLETING_REBALANCE},
    GroupState.DEAD: set(GroupState),
}


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class Member:
    """One member of a group. `deadline` is when its session expires (event-loop time, seconds)."""

    member_id: str
    instance_id: str | None
    client_id: str
    client_host: str
    session_timeout_ms: int
    rebalance_timeout_ms: int
    protocol_type: str
    protocols: list[tuple[str, bytes]]
    assignment: bytes = b""
    deadline: float = 0.0
    join_future: asyncio.Future | None = None
    sync_future: asyncio.Future | None = None
    is_new: bool = False

    @property
    def awaiting_join(self) -> bool:
        return self.join_future is not None and not self.join_future.done()

    @property
    def awaiting_sync(self) -> bool:
        return self.sync_future is not None and not self.sync_future.done()

    def metadata(self, protocol: str | None) -> bytes:
        for name, data in self.protocols:
            if name == protocol:
                return data
        return b""

    def matches(self, protocols: list[tuple[str, bytes]]) -> bool:
        """Same protocols with the same metadata, in the same order (a rejoin that changes nothing)."""
        return self.protocols == protocols

    def vote(self, candidates: set[str]) -> str:
        """The member's most preferred protocol among those every member supports."""
        for name, _ in self.protocols:
            if name in candidates:
                return name
        raise ValueError(f"member {self.member_id} supports none of {sorted(candidates)}")


@dataclass(eq=False)
class Group:
    """A classic group and its members; the coordinator changes it only through these methods."""

    group_id: str
    state: GroupState = GroupState.EMPTY
    previous_state: GroupState = GroupState.EMPTY
    generation: int = 0
    protocol_type: str | None = None
    protocol: str | None = None
    leader: str | None = None
    members: dict[str, Member] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # group.instance.id -> member id
    pending_members: dict[str, float] = field(default_factory=dict)  # KIP-394 member ids given out, by deadline
    pending_sync: set[str] = field(default_factory=set)
    state_timestamp: int = field(default_factory=now_ms)
    # Deadlines of the current phase (event-loop time) and the initial join delay of a new group.
    join_deadline: float = 0.0
    sync_deadline: float = 0.0
    delay_until: float = 0.0
    delay_remaining_ms: int = 0
    new_member_added: bool = False
    subscribed: set[str] | None = None

    # ---- state ----

    def is_(self, *states: GroupState) -> bool:
        return self.state in states

    def transition(self, target: GroupState) -> None:
        if self.state not in _VALID_PREVIOUS[target]:
            raise RuntimeError(f"group {self.group_id}: cannot move from {self.state.value} to {target.value}")
        self.previous_state = self.state
        self.state = target
        self.state_timestamp = now_ms()

    # ---- members ----

    def has_member(self, member_id: str) -> bool:
        return member_id in self.members

    def add(self, member: Member) -> None:
        if not self.members:
            self.protocol_type = member.protocol_type
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        self.pending_members.pop(member.member_id, None)
        if self.leader is None:
            self.leader = member.member_id

    def remove(self, member_id: str) -> Member | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
            del self.static_members[member.instance_id]
        self.pending_sync.discard(member_id)
        if self.leader == member_id:
            self.leader = next(iter(self.members), None)
        return member

    def replace_static(self, instance_id: str, old_id: str, new_id: str) -> Member:
        """Give a static member a new member id; the old one is fenced from now on (KIP-345)."""
        member = self.members.pop(old_id)
        member.member_id = new_id
        self.members[new_id] = member
        self.static_members[instance_id] = new_id
        if self.leader == old_id:
            self.leader = new_id
        if old_id in self.pending_sync:
            self.pending_sync.discard(old_id)
            self.pending_sync.add(new_id)
        return member

    def is_static_fenced(self, instance_id: str | None, member_id: str) -> bool:
        existing = self.static_members.get(instance_id) if instance_id is not None else None
        return existing is not None and existing != member_id

    def all_joined(self) -> bool:
        return not self.pending_members and all(m.awaiting_join for m in self.members.values())

    def rebalance_timeout_ms(self) -> int:
        return max((m.rebalance_timeout_ms for m in self.members.values()), default=0)

    # ---- protocols ----

    def candidate_protocols(self) -> set[str]:
        counts = Counter(name for m in self.members.values() for name in {n for n, _ in m.protocols})
        return {name for name, n in counts.items() if n == len(self.members)}

    def supports(self, protocol_type: str, names: set[str]) -> bool:
        """Whether a member with these protocols may join: same type, and a protocol every member speaks."""
        if self.is_(GroupState.EMPTY):
            return bool(protocol_type) and bool(names)
        return self.protocol_type == protocol_type and bool(names & self.candidate_protocols())

    def select_protocol(self) -> str:
        """Each member votes for its preferred candidate; the most votes win (ties go to the first voted)."""
        candidates = self.candidate_protocols()
        votes = Counter(m.vote(candidates) for m in self.members.values())
        return max(votes, key=lambda name: votes[name])

    def next_generation(self) -> None:
        """Close a join phase: bump the generation; CompletingRebalance with a protocol, or Empty."""
        self.generation += 1
        if self.members:
            self.protocol = self.select_protocol()
            self.transition(GroupState.COMPLETING_REBALANCE)
        else:
            self.protocol = None
            self.transition(GroupState.EMPTY)
        self.subscribed = self._compute_subscribed()
        self.pending_sync.clear()

    def _compute_subscribed(self) -> set[str] | None:
        if self.protocol_type != CONSUMER_PROTOCOL:
            return None
        topics: set[str] = set()
        for m in self.members.values():
            found = subscribed_topics(m.metadata(self.protocol))
            if found is None:
                return None
            topics |= found
        return topics

    def is_subscribed_to(self, topic: str) -> bool:
        """For OffsetDelete: unknown subscriptions count as subscribed when the group uses the consumer protocol."""
        if self.subscribed is not None:
            return topic in self.subscribed
        return self.protocol_type == CONSUMER_PROTOCOL

    # ---- persistence ----

    def to_value(self) -> GroupValue:
        return GroupValue(
            protocol_type=self.protocol_type or "", generation=self.generation, protocol=self.protocol,
            leader=self.leader if self.members else None, state_timestamp=self.state_timestamp,
            members=[MemberValue(m.member_id, m.instance_id, m.client_id, m.client_host, m.rebalance_timeout_ms,
                                 m.session_timeout_ms, m.metadata(self.protocol), m.assignment)
                     for m in self.members.values()],
        )

    @classmethod
    def from_value(cls, group_id: str, value: GroupValue, now: float) -> "Group":
        """A group as it was stored: Stable with its members (their sessions restart at `now`), or Empty."""
        group = cls(group_id, generation=value.generation, protocol_type=value.protocol_type or None,
                    protocol=value.protocol, state_timestamp=value.state_timestamp or now_ms())
        for mv in value.members:
            group.add(Member(mv.member_id, mv.instance_id, mv.client_id, mv.client_host, mv.session_timeout_ms,
                             mv.rebalance_timeout_ms, value.protocol_type, [(value.protocol or "", mv.subscription)],
                             mv.assignment, deadline=now + mv.session_timeout_ms / 1000))
        group.leader = value.leader if value.leader in group.members else next(iter(group.members), None)
        if group.members:
            group.state = GroupState.STABLE
        group.subscribed = group._compute_subscribed()
        return group


@dataclass(slots=True)
class JoinResult:
    """What a JoinGroup response carries; `members` (id, instance id, metadata) only for the leader."""

    error: ErrorCode = ErrorCode.none
    member_id: str = ""
    generation: int = -1
    protocol_type: str | None = None
    protocol_name: str | None = None
    leader: str = ""
    members: list[tuple[str, str | None, bytes]] = field(default_factory=list)
    skip_assignment: bool = False


@dataclass(slots=True)
class SyncResult:
    """What a SyncGroup response carries."""

    error: ErrorCode = ErrorCode.none
    protocol_type: str | None = None
    protocol_name: str | None = None
    assignment: bytes = b""

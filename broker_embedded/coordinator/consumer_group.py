"""A consumer group of the consumer group protocol (KIP-848): members, epochs, target and current assignments.

Three epochs drive it:
- the group epoch goes up whenever what the assignment depends on changes (a member joins, leaves or changes its
  subscription; a subscribed topic appears, goes or grows);
- the target assignment is recomputed by the server-side assignor when the group epoch passes its epoch;
- each member's epoch reaches the target assignment's epoch once the member has been moved to its target.

A member moves in steps (`reconcile`): first it is told to give up the partitions it must lose (it keeps its epoch
and waits in UNREVOKED_PARTITIONS until a heartbeat shows it no longer owns them); then it gets the new epoch and
the partitions of its target that nobody else still owns; those still owned by another member (whose revocation
is not acknowledged yet) come in a later heartbeat (UNRELEASED_PARTITIONS). So no partition is ever owned by two
members at once.

This module holds the data and the rules that need no clock; `consumer_coordinator` drives them.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field

import re2

from .assignors import Assignment

LEAVE_EPOCH = -1
STATIC_LEAVE_EPOCH = -2


class MemberState(enum.IntEnum):
    """Kafka's MemberState, with its stored byte values."""

    STABLE = 0
    UNREVOKED_PARTITIONS = 1
    UNRELEASED_PARTITIONS = 2
    UNKNOWN = 127


class ConsumerGroupState(str, enum.Enum):
    EMPTY = "Empty"
    ASSIGNING = "Assigning"
    RECONCILING = "Reconciling"
    STABLE = "Stable"
    DEAD = "Dead"


def copy_assignment(a: Assignment) -> Assignment:
    return {t: set(ps) for t, ps in a.items() if ps}


def is_subset(owned: Assignment | None, of: Assignment) -> bool:
    if owned is None:
        return False
    return all(ps <= of.get(t, set()) for t, ps in owned.items())


@dataclass(eq=False)
class ConsumerMember:
    """One member. `deadline` is when its session expires, `revoke_deadline` when it must have revoked
    (event-loop time, seconds; 0 when not waiting)."""

    member_id: str
    instance_id: str | None = None
    rack_id: str | None = None
    client_id: str = ""
    client_host: str = ""
    subscribed_topic_names: tuple[str, ...] = ()
    subscribed_topic_regex: str | None = None
    rebalance_timeout_ms: int = -1
    server_assignor: str | None = None
    epoch: int = 0
    previous_epoch: int = 0
    state: MemberState = MemberState.STABLE
    assigned: Assignment = field(default_factory=dict)
    pending_revocation: Assignment = field(default_factory=dict)
    deadline: float = 0.0
    revoke_deadline: float = 0.0

    def subscription(self) -> tuple:
        return (self.subscribed_topic_names, self.subscribed_topic_regex)

    def assignment_state(self) -> tuple:
        return (self.epoch, self.previous_epoch, self.state, self.assigned, self.pending_revocation)

    def metadata_state(self) -> tuple:
        return (self.instance_id, self.rack_id, self.client_id, self.client_host, self.subscribed_topic_names,
                self.subscribed_topic_regex, self.rebalance_timeout_ms, self.server_assignor)


@dataclass(eq=False)
class ConsumerGroup:
    """A consumer group; `target` is each member's target assignment (for `assignment_epoch`)."""

    group_id: str
    epoch: int = 0
    assignment_epoch: int = 0
    members: dict[str, ConsumerMember] = field(default_factory=dict)
    static_members: dict[str, str] = field(default_factory=dict)  # instance id -> member id
    target: dict[str, Assignment] = field(default_factory=dict)
    # (topic id, partition) -> epoch of the member that owns it (assigned or pending revocation).
    partition_epochs: dict[tuple[uuid.UUID, int], int] = field(default_factory=dict)
    # What the last target assignment was computed from: topic name -> (topic id, partition count).
    subscription_metadata: dict[str, tuple[uuid.UUID, int]] = field(default_factory=dict)
    state_timestamp: int = 0
    dead: bool = False

    # ---- state ----

    @property
    def state(self) -> ConsumerGroupState:
        if self.dead:
            return ConsumerGroupState.DEAD
        if not self.members:
            return ConsumerGroupState.EMPTY
        if self.epoch != self.assignment_epoch:
            return ConsumerGroupState.ASSIGNING
        if any(m.epoch != self.assignment_epoch or m.state != MemberState.STABLE for m in self.members.values()):
            return ConsumerGroupState.RECONCILING
        return ConsumerGroupState.STABLE

    # ---- members ----

    def add(self, member: ConsumerMember) -> None:
        self.members[member.member_id] = member
        if member.instance_id is not None:
            self.static_members[member.instance_id] = member.member_id
        self._own(member)

    def remove(self, member_id: str) -> ConsumerMember | None:
        member = self.members.pop(member_id, None)
        if member is None:
            return None
        if member.instance_id is not None and self.static_members.get(member.instance_id) == member_id:
            del self.static_members[member.instance_id]
        self._disown(member)
        self.target.pop(member_id, None)
        return member

    def static_member(self, instance_id: str) -> ConsumerMember | None:
        member_id = self.static_members.get(instance_id)
        return self.members.get(member_id) if member_id is not None else None

    def update_assignment(self, member: ConsumerMember, epoch: int, previous_epoch: int, state: MemberState,
                          assigned: Assignment, pending: Assignment) -> None:
        """Change a member's current assignment, keeping partition ownership in step."""
        self._disown(member)
        member.epoch, member.previous_epoch, member.state = epoch, previous_epoch, state
        member.assigned, member.pending_revocation = assigned, pending
        self._own(member)

    def _own(self, member: ConsumerMember) -> None:
        for a in (member.assigned, member.pending_revocation):
            for t, ps in a.items():
                for p in ps:
                    self.partition_epochs[(t, p)] = member.epoch

    def _disown(self, member: ConsumerMember) -> None:
        for a in (member.assigned, member.pending_revocation):
            for t, ps in a.items():
                for p in ps:
                    self.partition_epochs.pop((t, p), None)

    def owner_epoch(self, topic_id: uuid.UUID, partition: int) -> int:
        return self.partition_epochs.get((topic_id, partition), -1)

    # ---- subscriptions ----

    def subscribed_topics(self, topic_names: list[str]) -> set[str]:
        """Every topic that some member subscribes to, by name or by regex (`topic_names`: the candidates a
        regex may match)."""
        out: set[str] = set()
        for member in self.members.values():
            out |= member_topics(member, topic_names)
        return out

    def is_subscribed_to(self, topic: str) -> bool:
        return topic in self.subscription_metadata

    def assignor(self, default: str, available: tuple[str, ...]) -> str:
        """The assignor the members asked for most (ties: the first asked in member order), else the default."""
        votes: dict[str, int] = {}
        for m in self.members.values():
            if m.server_assignor in available:
                votes[m.server_assignor] = votes.get(m.server_assignor, 0) + 1
        if not votes:
            return default
        return max(votes, key=lambda name: votes[name])


def member_topics(member: ConsumerMember, topic_names: list[str]) -> set[str]:
    found = set(member.subscribed_topic_names)
    if member.subscribed_topic_regex:
        pattern = compile_regex(member.subscribed_topic_regex)
        found |= {name for name in topic_names if pattern.fullmatch(name)}
    return found


RegexError = re2.error
_REGEX_CACHE: dict[str, object] = {}


def compile_regex(regex: str):
    """A subscription regex, in RE2 syntax as Kafka's RE2/J reads it (linear time: no pattern can stall the
    broker); raises RegexError."""
    pattern = _REGEX_CACHE.get(regex)
    if pattern is None:
        if len(_REGEX_CACHE) > 1024:
            _REGEX_CACHE.clear()
        pattern = _REGEX_CACHE[regex] = re2.compile(regex)
    return pattern


def next_assignment(group: ConsumerGroup, member: ConsumerMember, owned: Assignment | None) -> tuple:
    """Where `member` moves from its current assignment towards its target (Kafka's CurrentAssignmentBuilder):
    (epoch, previous epoch, state, assigned, pending revocation). `owned` is what the member reported owning, None
    when the heartbeat did not say."""
    target_epoch = group.assignment_epoch
    target = group.target.get(member.member_id, {})
    unchanged = member.assignment_state()
    if member.state == MemberState.STABLE:
        if member.epoch == target_epoch:
            return unchanged
        return _compute(group, member, member.epoch, member.assigned, target, target_epoch, owned)
    if member.state == MemberState.UNREVOKED_PARTITIONS:
        if _owns_any(owned, member.pending_revocation):
            return unchanged
        return _compute(group, member, member.epoch + 1, member.assigned, target, target_epoch, owned)
    if member.state == MemberState.UNRELEASED_PARTITIONS:
        return _compute(group, member, member.epoch, member.assigned, target, target_epoch, owned)
    return _compute(group, member, target_epoch, member.assigned, target, target_epoch, owned)


def _owns_any(owned: Assignment | None, partitions: Assignment) -> bool:
    if owned is None:
        return True  # the member did not say: it still owns them
    return any(ps & partitions.get(t, set()) for t, ps in owned.items())


def _compute(group, member, epoch, current: Assignment, target: Assignment, target_epoch, owned) -> tuple:
    assigned: Assignment = {}
    revoke: Assignment = {}
    pending: Assignment = {}
    unreleased = False
    for topic_id in set(target) | set(current):
        want = target.get(topic_id, set())
        have = current.get(topic_id, set())
        keep = have & want
        if keep:
            assigned[topic_id] = set(keep)
        if have - keep:
            revoke[topic_id] = have - keep
        free = set()
        for p in want - keep:
            if group.owner_epoch(topic_id, p) == -1:
                free.add(p)
            else:
                unreleased = True
        if free:
            pending[topic_id] = free
    # As Kafka's updateMemberEpoch: the epoch the member had becomes its previous one.
    if revoke and _owns_any(owned, revoke):
        return (epoch, member.epoch, MemberState.UNREVOKED_PARTITIONS, assigned, revoke)
    for topic_id, ps in pending.items():
        assigned.setdefault(topic_id, set()).update(ps)
    state = MemberState.UNRELEASED_PARTITIONS if unreleased else MemberState.STABLE
    return (target_epoch, member.epoch, state, assigned, {})

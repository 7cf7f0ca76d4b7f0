"""The consumer group protocol (KIP-848): ConsumerGroupHeartbeat and ConsumerGroupDescribe, server-side assignment.

Every heartbeat runs the same three steps as Kafka's coordinator: update the member (a new member or a changed
subscription, or a change in the subscribed topics, bumps the group epoch); recompute the target assignment when
the group epoch passed it; move the member one step towards its target (`consumer_group.next_assignment`). The
group's records in `__consumer_offsets` are then brought in line with memory (only the records that changed are
written) and the answer waits for them to be durable, so a restart finds every member with its epoch and
assignment. Sessions (group.consumer.session.timeout.ms) and revocation deadlines (the member's rebalance
timeout) are enforced by the group coordinator's ticker calling `expire`.

A group id names one kind of group: an empty classic group becomes a consumer group on the first heartbeat (its
offsets stay), an empty consumer group becomes a classic group on the first JoinGroup; otherwise the other
protocol is refused (GROUP_ID_NOT_FOUND here, INCONSISTENT_GROUP_PROTOCOL on JoinGroup). Kafka can also migrate a
non-empty group between protocols (classic members inside a consumer group); this broker does not.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from ..errors import KafkaError
from .assignors import Assignment, MemberSpec, assign
from .consumer_group import (
    LEAVE_EPOCH, STATIC_LEAVE_EPOCH, ConsumerGroup, ConsumerMember, MemberState, RegexError, compile_regex,
    copy_assignment, is_subset, member_topics, next_assignment,
)
from .consumer_group_records import ConsumerGroupKey, encode_key
from .consumer_group_store import group_records, groups_from_records
from .group import now_ms

log = logging.getLogger(__name__)


@dataclass(slots=True)
class HeartbeatResult:
    member_id: str
    epoch: int
    heartbeat_interval_ms: int
    assignment: Assignment | None = None


@dataclass(slots=True)
class HeartbeatRequest:
    """A ConsumerGroupHeartbeat as the coordinator needs it; None means "unchanged since the last heartbeat"."""

    version: int
    group_id: str
    member_id: str
    member_epoch: int
    instance_id: str | None
    rack_id: str | None
    rebalance_timeout_ms: int
    subscribed_topic_names: tuple[str, ...] | None
    subscribed_topic_regex: str | None
    server_assignor: str | None
    owned: Assignment | None
    client_id: str
    client_host: str


def _invalid(message: str) -> KafkaError:
    return KafkaError(ErrorCode.invalid_request, message)


class ConsumerGroupCoordinator:
    """All consumer groups of the broker; `broker.groups.consumer`."""

    def __init__(self, classic) -> None:
        self.classic = classic
        self.broker = classic.broker
        self.config = classic.config
        self.offsets = classic.offsets
        self.groups: dict[str, ConsumerGroup] = {}
        # What __consumer_offsets holds for each group (key -> value bytes), to write only what changed.
        self._stored: dict[str, dict[ConsumerGroupKey, bytes]] = {}

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _setting(self, group_id: str, name: str) -> int:
        """A group's session timeout or heartbeat interval: its group config (IncrementalAlterConfigs on the
        group) if set, else the broker's group.consumer.* setting."""
        dynamic = getattr(self.broker.topics, "dynamic", None)
        own = dynamic.groups.get(group_id, {}) if dynamic is not None else {}
        if name in own:
            return int(own[name])
        return getattr(self.config, "group_" + name.replace(".", "_"))

    @property
    def assignors(self) -> tuple[str, ...]:
        return tuple(self.config.group_consumer_assignors)

    # ---- ConsumerGroupHeartbeat ----

    async def heartbeat(self, req: HeartbeatRequest) -> HeartbeatResult:
        """Handle one ConsumerGroupHeartbeat; raises KafkaError with Kafka's error for a refused one."""
        self.offsets.check_loaded()
        self._validate(req)
        if req.member_epoch in (LEAVE_EPOCH, STATIC_LEAVE_EPOCH):
            group, result = self._leave(req)
        else:
            group, result = self._heartbeat(req)
        await self._persist(group)
        return result

    def _validate(self, req: HeartbeatRequest) -> None:
        if not req.group_id:
            raise _invalid("GroupId can't be empty.")
        if req.instance_id == "":
            raise _invalid("InstanceId can't be empty.")
        if req.rack_id == "":
            raise _invalid("RackId can't be empty.")
        if req.version >= 1 and not req.member_id:
            raise _invalid("MemberId can't be empty.")
        if req.member_epoch > 0 or req.member_epoch == LEAVE_EPOCH:
            if not req.member_id:
                raise _invalid("MemberId can't be empty.")
        elif req.member_epoch == 0:
            if req.rebalance_timeout_ms == -1:
                raise _invalid("RebalanceTimeoutMs must be provided in first request.")
            if req.owned is None or req.owned:
                raise _invalid("TopicPartitions must be empty when (re-)joining.")
            if req.subscribed_topic_names is None and req.subscribed_topic_regex is None:
                raise _invalid("Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when "
                               "(re-)joining.")
        elif req.member_epoch == STATIC_LEAVE_EPOCH:
            if not req.member_id:
                raise _invalid("MemberId can't be empty.")
            if req.instance_id is None:
                raise _invalid("InstanceId can't be null.")
        else:
            raise _invalid("MemberEpoch is invalid.")
        if req.server_assignor is not None and req.server_assignor not in self.assignors:
            raise KafkaError(ErrorCode.unsupported_assignor,
                             f"ServerAssignor {req.server_assignor} is not supported. Supported assignors: "
                             f"{', '.join(self.assignors)}.")
        if req.subscribed_topic_regex:
            try:
                compile_regex(req.subscribed_topic_regex)
            except RegexError as exc:
                reason = exc.args[0] if exc.args else exc
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                raise KafkaError(ErrorCode.invalid_regular_expression,
                                 f"SubscribedTopicRegex `{req.subscribed_topic_regex}` is not a valid regular "
                                 f"expression: {reason}.") from None

    def _group(self, group_id: str, create: bool, what: str = "Consumer group") -> ConsumerGroup:
        group = self.groups.get(group_id)
        if group is not None:
            return group
        classic = self.classic.groups.get(group_id)
        if classic is not None:
            if not create or not self.classic.release_empty(group_id):
                raise KafkaError(ErrorCode.group_id_not_found, f"Group {group_id} is not a consumer group.")
        elif not create:
            raise KafkaError(ErrorCode.group_id_not_found, f"{what} {group_id} not found.")
        group = self.groups[group_id] = ConsumerGroup(group_id, state_timestamp=now_ms())
        return group

    def _member(self, group: ConsumerGroup, req: HeartbeatRequest) -> tuple[ConsumerMember, bool]:
        """The member the heartbeat is for, and whether it is new."""
        joining = req.member_epoch == 0
        member_id = req.member_id or str(uuid.uuid4())
        max_size = self.config.group_consumer_max_size
        if len(group.members) >= max_size and member_id not in group.members:
            raise KafkaError(ErrorCode.group_max_size_reached,
                             f"The consumer group has reached its maximum capacity of {max_size} members.")
        if req.instance_id is None:
            member = group.members.get(member_id)
            if member is None:
                if not joining:
                    raise KafkaError(ErrorCode.unknown_member_id,
                                     f"Member {member_id} is not a member of group {group.group_id}.")
                return ConsumerMember(member_id), True
            self._check_epoch(member, req)
            return member, False
        existing = group.static_member(req.instance_id)
        if not joining:
            if existing is None:
                raise KafkaError(ErrorCode.unknown_member_id, f"Instance id {req.instance_id} is unknown.")
            if existing.member_id != member_id:
                raise KafkaError(ErrorCode.fenced_instance_id,
                                 f"Static member {member_id} with instance id {req.instance_id} was fenced by "
                                 f"member {existing.member_id}.")
            self._check_epoch(existing, req)
            return existing, False
        if existing is None:
            member = group.members.get(member_id)
            if member is not None:
                self._check_epoch(member, req)
                return member, False
            return ConsumerMember(member_id), True
        if existing.epoch != STATIC_LEAVE_EPOCH:
            raise KafkaError(ErrorCode.unreleased_instance_id,
                             f"Static member {member_id} with instance id {req.instance_id} cannot join the group "
                             f"because the instance id is owned by {existing.member_id} member.")
        # The instance is back (under a new member id, or its old one): it takes over the assignment it left
        # with, at epoch 0, and reaches the target's epoch in this heartbeat without a rebalance.
        target = group.target.get(existing.member_id)
        group.remove(existing.member_id)
        member = ConsumerMember(member_id)
        for name in ("instance_id", "rack_id", "client_id", "client_host", "subscribed_topic_names",
                     "subscribed_topic_regex", "rebalance_timeout_ms", "server_assignor", "state"):
            setattr(member, name, getattr(existing, name))
        member.assigned = copy_assignment(existing.assigned)
        group.add(member)
        if target is not None:
            group.target[member_id] = target
        log.info("group %s: static member %s rejoins as %s", group.group_id, req.instance_id, member_id)
        return member, False

    @staticmethod
    def _check_epoch(member: ConsumerMember, req: HeartbeatRequest) -> None:
        epoch = req.member_epoch
        if epoch > member.epoch:
            raise KafkaError(ErrorCode.fenced_member_epoch,
                             f"The consumer group member has a greater member epoch ({epoch}) than the one known by "
                             f"the group coordinator ({member.epoch}). The member must abandon all its partitions "
                             "and rejoin.")
        if epoch < member.epoch and (epoch != member.previous_epoch or not is_subset(req.owned, member.assigned)):
            raise KafkaError(ErrorCode.fenced_member_epoch,
                             f"The consumer group member has a smaller member epoch ({epoch}) than the one known by "
                             f"the group coordinator ({member.epoch}). The member must abandon all its partitions "
                             "and rejoin.")

    def _heartbeat(self, req: HeartbeatRequest) -> tuple[ConsumerGroup, HeartbeatResult]:
        group = self._group(req.group_id, create=req.member_epoch == 0)
        member, new = self._member(group, req)
        before_subscription = None if new else member.subscription()
        before_assigned = copy_assignment(member.assigned)
        if req.instance_id is not None:
            member.instance_id = req.instance_id
        if req.rack_id is not None:
            member.rack_id = req.rack_id
        if req.rebalance_timeout_ms != -1:
            member.rebalance_timeout_ms = req.rebalance_timeout_ms
        if req.server_assignor is not None:
            member.server_assignor = req.server_assignor
        if req.subscribed_topic_names is not None:
            member.subscribed_topic_names = tuple(req.subscribed_topic_names)
        if req.subscribed_topic_regex is not None:
            member.subscribed_topic_regex = req.subscribed_topic_regex or None
        member.client_id, member.client_host = req.client_id, req.client_host
        if new:
            group.add(member)
            log.info("group %s: member %s joins (consumer protocol)", group.group_id, member.member_id)
        bump = new or member.subscription() != before_subscription
        metadata = self._subscription_metadata(group)
        if metadata != group.subscription_metadata:
            group.subscription_metadata = metadata
            bump = True
        if bump:
            group.epoch += 1
            log.info("group %s: epoch %d", group.group_id, group.epoch)
        if group.epoch > group.assignment_epoch:
            self._update_target(group)
        self._reconcile(group, member, req.owned)
        member.deadline = self._now() + self._setting(group.group_id, "consumer.session.timeout.ms") / 1000
        full = req.member_epoch == 0 or (req.rebalance_timeout_ms != -1 and req.subscribed_topic_names is not None
                                         and req.owned is not None)
        send = full or member.assigned != before_assigned
        return group, HeartbeatResult(member.member_id, member.epoch,
                                      self._setting(group.group_id, "consumer.heartbeat.interval.ms"),
                                      copy_assignment(member.assigned) if send else None)

    def _subscription_metadata(self, group: ConsumerGroup) -> dict[str, tuple[uuid.UUID, int]]:
        topics = self.broker.topics.topics
        names = [name for name, t in topics.items() if not t.internal]
        out = {}
        for name in sorted(group.subscribed_topics(names)):
            topic = topics.get(name)
            if topic is not None:
                out[name] = (topic.topic_id, topic.partitions)
        return out

    def _update_target(self, group: ConsumerGroup) -> None:
        metadata = group.subscription_metadata
        names = list(metadata)
        specs = {}
        for mid, m in group.members.items():
            subscribed = {metadata[n][0] for n in member_topics(m, names) if n in metadata}
            specs[mid] = MemberSpec(subscribed, group.target.get(mid, {}))
        name = group.assignor(self.assignors[0], self.assignors)
        group.target = assign(name, specs, {tid: count for tid, count in metadata.values()})
        group.assignment_epoch = group.epoch
        log.info("group %s: target assignment of epoch %d computed by %s", group.group_id, group.epoch, name)

    def _reconcile(self, group: ConsumerGroup, member: ConsumerMember, owned: Assignment | None) -> None:
        if member.epoch == group.assignment_epoch and member.state == MemberState.STABLE:
            return
        epoch, previous, state, assigned, pending = next_assignment(group, member, owned)
        if (epoch, previous, state, assigned, pending) == member.assignment_state():
            return
        group.update_assignment(member, epoch, previous, state, assigned, pending)
        if state == MemberState.UNREVOKED_PARTITIONS:
            timeout = member.rebalance_timeout_ms if member.rebalance_timeout_ms > 0 else 0
            member.revoke_deadline = self._now() + timeout / 1000
        else:
            member.revoke_deadline = 0.0

    # ---- leaving and fencing ----

    def _leave(self, req: HeartbeatRequest) -> tuple[ConsumerGroup, HeartbeatResult]:
        group = self._group(req.group_id, create=False, what="Group")
        if req.instance_id is None:
            member = group.members.get(req.member_id)
            if member is None:
                raise KafkaError(ErrorCode.unknown_member_id,
                                 f"Member {req.member_id} is not a member of group {group.group_id}.")
        else:
            member = group.static_member(req.instance_id)
            if member is None:
                raise KafkaError(ErrorCode.unknown_member_id, f"Instance id {req.instance_id} is unknown.")
            if member.member_id != req.member_id:
                raise KafkaError(ErrorCode.fenced_instance_id,
                                 f"Static member {req.member_id} with instance id {req.instance_id} was fenced by "
                                 f"member {member.member_id}.")
        if req.member_epoch == STATIC_LEAVE_EPOCH:
            # A static member going away for a while keeps its assignment until its session expires.
            log.info("group %s: static member %s (%s) left temporarily", group.group_id, member.member_id,
                     req.instance_id)
            group.update_assignment(member, STATIC_LEAVE_EPOCH, member.previous_epoch, member.state,
                                    member.assigned, {})
            member.revoke_deadline = 0.0
        else:
            self._fence(group, member, "it left the group")
        return group, HeartbeatResult(req.member_id, req.member_epoch, 0)

    def remove_members(self, group_id: str, leaving: list[tuple[str, str | None]]) -> list[ErrorCode]:
        """LeaveGroup for members of a consumer group, by member id or instance id (Kafka's admin clients remove
        members this way): one error per member."""
        group = self.groups[group_id]
        errors = []
        removed: dict[str, ConsumerMember] = {}
        # Every entry is checked against the group as the request found it, then the members go.
        for member_id, instance_id in leaving:
            if instance_id is None:
                member = group.members.get(member_id)
            else:
                member = group.static_member(instance_id)
                if member is not None and member_id and member.member_id != member_id:
                    errors.append(ErrorCode.fenced_instance_id)
                    continue
            if member is None:
                errors.append(ErrorCode.unknown_member_id)
                continue
            removed[member.member_id] = member
            errors.append(ErrorCode.none)
        for member in removed.values():
            self._fence(group, member, "it was removed with LeaveGroup")
        if removed:
            self._persist(group).add_done_callback(lambda _f: None)
        return errors

    def _fence(self, group: ConsumerGroup, member: ConsumerMember, reason: str) -> None:
        log.info("group %s: removing member %s: %s", group.group_id, member.member_id, reason)
        group.remove(member.member_id)
        group.subscription_metadata = self._subscription_metadata(group)
        group.epoch += 1
        if not group.members:
            group.state_timestamp = now_ms()

    def expire(self) -> None:
        """Remove members whose session expired and fence those that did not revoke within their rebalance
        timeout (called by the group coordinator's ticker)."""
        now = self._now()
        for group in list(self.groups.values()):
            changed = False
            for member in list(group.members.values()):
                if now >= member.deadline:
                    self._fence(group, member, "its session timed out")
                    changed = True
                elif member.revoke_deadline and now >= member.revoke_deadline \
                        and member.state == MemberState.UNREVOKED_PARTITIONS:
                    self._fence(group, member, "it did not revoke its partitions within its rebalance timeout")
                    changed = True
            if changed:
                self._persist(group).add_done_callback(lambda _f: None)

    # ---- ConsumerGroupDescribe and the other group APIs ----

    def describe(self, group_id: str) -> ConsumerGroup:
        self.offsets.check_loaded()
        group = self.groups.get(group_id)
        if group is None:
            if group_id in self.classic.groups:
                raise KafkaError(ErrorCode.group_id_not_found, f"Group {group_id} is not a consumer group.")
            raise KafkaError(ErrorCode.group_id_not_found, f"Group {group_id} not found.")
        return group

    def validate_offset_commit(self, group: ConsumerGroup, member_id: str, member_epoch: int,
                               instance_id: str | None, api_version: int | None,
                               transactional: bool = False) -> None:
        """Raise KafkaError unless this commit may go to `group` (Kafka's ConsumerGroup.validateOffsetCommit)."""
        if member_epoch < 0 and not group.members:
            return
        if transactional and member_epoch < 0 and not member_id:
            return
        member = group.members.get(member_id)
        if member is None:
            raise KafkaError(ErrorCode.unknown_member_id,
                             f"Member {member_id} is not a member of group {group.group_id}.")
        if not transactional and api_version is not None and api_version < 9:
            raise KafkaError(ErrorCode.unsupported_version,
                             "OffsetCommit version 9 or above must be used by members using the consumer group "
                             "protocol")
        if member_epoch != member.epoch:
            raise KafkaError(ErrorCode.stale_member_epoch,
                             f"The received member epoch {member_epoch} does not match the expected member epoch "
                             f"{member.epoch}.")

    def validate_offset_fetch(self, group_id: str, member_id: str | None, member_epoch: int) -> None:
        """OffsetFetch v9+ from a member: its id and epoch must be current (admin fetches carry neither)."""
        group = self.groups.get(group_id)
        if group is None or (member_epoch < 0 and member_id is None):
            return
        member = group.members.get(member_id or "")
        if member is None:
            raise KafkaError(ErrorCode.unknown_member_id,
                             f"Member {member_id} is not a member of group {group_id}.")
        if member_epoch != member.epoch:
            raise KafkaError(ErrorCode.stale_member_epoch,
                             f"The received member epoch {member_epoch} does not match the expected member epoch "
                             f"{member.epoch}.")

    def release_empty(self, group_id: str) -> bool:
        """Drop an empty consumer group so that a classic group can take its id; False if it has members."""
        group = self.groups.get(group_id)
        if group is None:
            return True
        if group.members:
            return False
        del self.groups[group_id]
        self._write(group_id, self._stored.pop(group_id, {}), {}).add_done_callback(lambda _f: None)
        return True

    def delete(self, group_id: str) -> asyncio.Future:
        """DeleteGroups for a consumer group: only an empty one; its offsets and records go with it."""
        group = self.groups[group_id]
        if group.members:
            raise KafkaError(ErrorCode.non_empty_group, f"Group {group_id} is not empty.")
        written = self.offsets.delete_group(group_id, classic=False)
        del self.groups[group_id]
        group.dead = True
        self._write(group_id, self._stored.pop(group_id, {}), {}).add_done_callback(lambda _f: None)
        return written

    def expire_empty(self, group_id: str) -> None:
        """An empty group whose offsets all expired goes away, as in Kafka."""
        group = self.groups.pop(group_id, None)
        if group is not None:
            group.dead = True
            self._write(group_id, self._stored.pop(group_id, {}), {}).add_done_callback(lambda _f: None)

    # ---- persistence ----

    def _persist(self, group: ConsumerGroup) -> asyncio.Future:
        if self.groups.get(group.group_id) is not group:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        stored = self._stored.setdefault(group.group_id, {})
        return self._write(group.group_id, stored, group_records(group))

    def _write(self, group_id: str, stored: dict[ConsumerGroupKey, bytes],
               wanted: dict[ConsumerGroupKey, bytes]) -> asyncio.Future:
        """Write the records that differ from what is stored, and tombstones for keys no longer wanted (member
        records before the group's, so that a reader never sees members of a group that is gone)."""
        changes: list[tuple[bytes, bytes | None]] = []
        for key in sorted(set(stored) - set(wanted), key=lambda k: -k.version):
            changes.append((encode_key(key), None))
            del stored[key]
        for key, value in wanted.items():
            if stored.get(key) != value:
                changes.append((encode_key(key), value))
                stored[key] = value
        return self.offsets.write_records(group_id, changes)

    def restore(self, records: dict[ConsumerGroupKey, bytes]) -> None:
        """Rebuild the groups from their records in `__consumer_offsets` (after a restart); sessions restart now."""
        session_deadline = self._now() + self.config.group_consumer_session_timeout_ms / 1000
        for group_id, (group, stored) in groups_from_records(records, session_deadline, self._now()).items():
            deadline = self._now() + self._setting(group_id, "consumer.session.timeout.ms") / 1000
            for member in group.members.values():
                member.deadline = deadline
            group.subscription_metadata = self._subscription_metadata(group)
            self.groups[group_id] = group
            self._stored[group_id] = stored
        log.info("restored %d consumer groups", len(self.groups))

"""The group coordinator: JoinGroup, SyncGroup, Heartbeat and LeaveGroup drive each group's state machine.

This broker coordinates every group. Requests never block each other: a JoinGroup or SyncGroup that has to wait
for the rest of the group parks on a future of its member, which the coordinator completes when the phase ends
(everyone joined, the leader sent the assignment, or a timeout passed). A ticker enforces the clocks: session
timeouts, the rebalance timeout of a join phase, the initial join delay of a new group, the sync deadline, offset
retention. The leader's assignment is stored and handed out unchanged, so any assignor works.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from kio.schema.errors import ErrorCode

from ..errors import KafkaError
from .consumer_coordinator import ConsumerGroupCoordinator
from .group import Group, GroupState, JoinResult, Member, SyncResult
from .group_retention import expire_offsets
from .group_records import GroupValue
from .offsets import OffsetStore
from ..background import cancel_and_wait

log = logging.getLogger(__name__)

EMPTY, PREPARING, COMPLETING, STABLE, DEAD = (GroupState.EMPTY, GroupState.PREPARING_REBALANCE,
                                              GroupState.COMPLETING_REBALANCE, GroupState.STABLE, GroupState.DEAD)
TICK_SECONDS = 0.05


class GroupCoordinator:
    """All classic groups of the broker, and (`consumer`) its consumer groups; the broker's `broker.groups`."""

    def __init__(self, broker, offsets: OffsetStore) -> None:
        self.broker = broker
        self.config = broker.config
        self.offsets = offsets
        self.groups: dict[str, Group] = {}
        self._task: asyncio.Task | None = None
        self.consumer = ConsumerGroupCoordinator(self)
        offsets.on_loaded.append(self._restore)

    async def start(self) -> None:
        self._task = asyncio.create_task(self._tick())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None
        # Parked JoinGroup and SyncGroup requests learn that this coordinator is gone, as on a Kafka unload.
        for group in self.groups.values():
            for member in group.members.values():
                self._complete_join(member, JoinResult(ErrorCode.not_coordinator, member.member_id))
                self._complete_sync(member, SyncResult(ErrorCode.not_coordinator))

    def _now(self) -> float:
        return asyncio.get_running_loop().time()

    def _restore(self, stored: dict[str, GroupValue]) -> None:
        now = self._now()
        self.consumer.restore(self.offsets.consumer_group_records)
        self.offsets.consumer_group_records = {}
        for group_id, value in stored.items():
            if group_id not in self.consumer.groups:
                self.groups[group_id] = Group.from_value(group_id, value, now)
        for group_id in self.offsets.groups():
            if group_id not in self.consumer.groups:
                self.groups.setdefault(group_id, Group(group_id))

    def release_empty(self, group_id: str) -> bool:
        """Drop an empty classic group so that a consumer group can take its id (its offsets stay); False if
        it has members."""
        group = self.groups.get(group_id)
        if group is None:
            return True
        if not group.is_(EMPTY, DEAD) or group.pending_members:
            return False
        del self.groups[group_id]
        group.transition(DEAD)
        if group.protocol_type:
            self.offsets.write_group(group_id, None)
        return True

    # ---- JoinGroup ----

    async def join(self, group_id: str, member_id: str, instance_id: str | None, protocol_type: str,
                   protocols: list[tuple[str, bytes]], session_timeout_ms: int, rebalance_timeout_ms: int,
                   client_id: str, client_host: str, require_known_member_id: bool,
                   supports_skip_assignment: bool) -> JoinResult:
        """Handle one JoinGroup; waits until the join phase it belongs to completes."""
        self.offsets.check_loaded()
        outcome = self._join(group_id, member_id, instance_id, protocol_type, protocols, session_timeout_ms,
                             rebalance_timeout_ms, client_id, client_host, require_known_member_id,
                             supports_skip_assignment)
        if isinstance(outcome, asyncio.Future):
            return await asyncio.shield(outcome)
        return outcome

    def _join(self, group_id, member_id, instance_id, protocol_type, protocols, session_ms, rebalance_ms,
              client_id, client_host, require_known, skip_ok):
        cfg = self.config
        if not group_id:
            return JoinResult(ErrorCode.invalid_group_id, member_id)
        if not cfg.group_min_session_timeout_ms <= session_ms <= cfg.group_max_session_timeout_ms:
            return JoinResult(ErrorCode.invalid_session_timeout, member_id)
        if group_id in self.consumer.groups and not self.consumer.release_empty(group_id):
            # Kafka would let a classic member into a consumer group (online migration); this broker does not.
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id)
        group = self.groups.get(group_id)
        if group is None:
            if member_id:
                return JoinResult(ErrorCode.unknown_member_id, member_id)
            group = self.groups[group_id] = Group(group_id)
        if not self._accepts(group, member_id):
            member = group.members.get(member_id)
            if member is not None:
                self._remove_member(group, member, "the group is full")
            return JoinResult(ErrorCode.group_max_size_reached, "")
        names = {name for name, _ in protocols}
        if group.is_(DEAD):
            return JoinResult(ErrorCode.coordinator_not_available, member_id)
        if not group.supports(protocol_type, names):
            return JoinResult(ErrorCode.inconsistent_group_protocol, member_id)
        args = (protocol_type, protocols, session_ms, rebalance_ms, client_id, client_host)
        if not member_id:
            new_id = f"{instance_id if instance_id is not None else client_id}-{uuid.uuid4()}"
            if instance_id is not None:
                existing = group.static_members.get(instance_id)
                if existing is not None:
                    return self._replace_static(group, instance_id, existing, new_id, protocols, session_ms,
                                                rebalance_ms, skip_ok)
                return self._add_member(group, new_id, instance_id, *args)
            if require_known:
                # KIP-394: hand out the id and wait for the member to come back with it.
                group.pending_members[new_id] = self._now() + session_ms / 1000
                return JoinResult(ErrorCode.member_id_required, new_id)
            return self._add_member(group, new_id, None, *args)
        if member_id in group.pending_members:
            return self._add_member(group, member_id, None, *args)
        error = self._member_error(group, member_id, instance_id)
        if error is not None:
            return JoinResult(error, member_id)
        member = group.members[member_id]
        if group.is_(PREPARING):
            return self._update_member(group, member, protocols, session_ms, rebalance_ms)
        if group.is_(COMPLETING):
            if member.matches(protocols):
                # The member lost the first answer: give it the current generation again.
                return self._join_result(group, member, with_members=group.leader == member_id)
            return self._update_member(group, member, protocols, session_ms, rebalance_ms)
        if group.is_(STABLE):
            if group.leader == member_id or not member.matches(protocols):
                # A rejoining leader forces a rebalance (metadata changes the members cannot see).
                return self._update_member(group, member, protocols, session_ms, rebalance_ms)
            return self._join_result(group, member, with_members=False)
        return JoinResult(ErrorCode.unknown_member_id, member_id)

    def _accepts(self, group: Group, member_id: str) -> bool:
        limit = self.config.group_max_size
        if group.is_(EMPTY, DEAD):
            return True
        if group.is_(PREPARING):
            member = group.members.get(member_id)
            awaiting = sum(1 for m in group.members.values() if m.awaiting_join)
            return (member is not None and member.awaiting_join) or awaiting < limit
        return member_id in group.members or len(group.members) < limit

    def _member_error(self, group: Group, member_id: str, instance_id: str | None) -> ErrorCode | None:
        """UNKNOWN_MEMBER_ID or FENCED_INSTANCE_ID when (member id, instance id) is not a current member."""
        if instance_id is not None:
            existing = group.static_members.get(instance_id)
            if existing is None:
                return ErrorCode.unknown_member_id
            if existing != member_id:
                return ErrorCode.fenced_instance_id
        if member_id not in group.members:
            return ErrorCode.unknown_member_id
        return None

    def _join_result(self, group: Group, member: Member, with_members: bool, skip: bool = False) -> JoinResult:
        members = []
        if with_members:
            members = [(m.member_id, m.instance_id, m.metadata(group.protocol)) for m in group.members.values()]
        return JoinResult(ErrorCode.none, member.member_id, group.generation, group.protocol_type, group.protocol,
                          group.leader or "", members, skip)

    def _future(self) -> asyncio.Future:
        return asyncio.get_running_loop().create_future()

    def _add_member(self, group, member_id, instance_id, protocol_type, protocols, session_ms, rebalance_ms,
                    client_id, client_host) -> asyncio.Future:
        member = Member(member_id, instance_id, client_id, client_host, session_ms, rebalance_ms, protocol_type,
                        list(protocols), deadline=self._now() + session_ms / 1000, is_new=True)
        if group.is_(PREPARING) and group.previous_state == EMPTY:
            group.new_member_added = True
        fut = member.join_future = self._future()
        group.add(member)
        self._rebalance_or_complete(group)
        return fut

    def _update_member(self, group, member, protocols, session_ms, rebalance_ms) -> asyncio.Future:
        member.protocols = list(protocols)
        member.session_timeout_ms = session_ms
        member.rebalance_timeout_ms = rebalance_ms
        if not member.awaiting_join:
            # A retried JoinGroup shares the pending one's answer.
            member.join_future = self._future()
        fut = member.join_future
        self._rebalance_or_complete(group)
        return fut

    def _replace_static(self, group, instance_id, old_id, new_id, protocols, session_ms, rebalance_ms,
                        skip_ok) -> asyncio.Future:
        """A static member came back with no member id: it takes over, the old id is fenced (KIP-345)."""
        old = group.members[old_id]
        self._complete_join(old, JoinResult(ErrorCode.fenced_instance_id, old_id))
        self._complete_sync(old, SyncResult(ErrorCode.fenced_instance_id))
        member = group.replace_static(instance_id, old_id, new_id)
        member.protocols = list(protocols)
        member.session_timeout_ms = session_ms
        member.rebalance_timeout_ms = rebalance_ms
        member.deadline = self._now() + session_ms / 1000
        fut = member.join_future = self._future()
        if group.is_(STABLE):
            if group.protocol == group.select_protocol():
                # Nothing the assignment depends on changed: no rebalance, the member keeps its assignment.
                def answer(_written: asyncio.Future) -> None:
                    leader = group.leader == new_id
                    self._complete_join(member, self._join_result(group, member, with_members=leader and skip_ok,
                                                                  skip=leader and skip_ok))

                self.offsets.write_group(group.group_id, group.to_value()).add_done_callback(answer)
                return fut
            self._prepare_rebalance(group)
        elif group.is_(COMPLETING):
            # The leader may already be assigning to the old id: start over.
            self._prepare_rebalance(group)
        else:
            self._maybe_complete_join(group)
        return fut

    # ---- the join phase ----

    def _rebalance_or_complete(self, group: Group) -> None:
        if group.is_(PREPARING):
            self._maybe_complete_join(group)
        elif group.is_(STABLE, COMPLETING, EMPTY):
            self._prepare_rebalance(group)

    def _prepare_rebalance(self, group: Group) -> None:
        if group.is_(COMPLETING):
            self._reset_assignments(group, ErrorCode.rebalance_in_progress)
        now = self._now()
        timeout_ms = group.rebalance_timeout_ms()
        if group.is_(EMPTY):
            # A new group waits group.initial.rebalance.delay.ms (longer while members keep arriving, up to the
            # rebalance timeout) so that consumers started together land in one generation.
            delay = self.config.group_initial_rebalance_delay_ms
            group.delay_until = now + min(delay, timeout_ms) / 1000
            group.delay_remaining_ms = max(timeout_ms - delay, 0)
            group.new_member_added = False
        else:
            group.delay_until = 0.0
        group.join_deadline = now + timeout_ms / 1000
        group.transition(PREPARING)
        log.debug("group %s rebalancing (generation %d)", group.group_id, group.generation)
        self._maybe_complete_join(group)

    def _maybe_complete_join(self, group: Group) -> None:
        if not group.is_(PREPARING):
            return
        now = self._now()
        if group.delay_until:
            if now < group.delay_until:
                return
            if group.new_member_added and group.delay_remaining_ms > 0:
                step = min(self.config.group_initial_rebalance_delay_ms, group.delay_remaining_ms)
                group.delay_remaining_ms -= step
                group.delay_until = now + step / 1000
                group.new_member_added = False
                return
            group.delay_until = 0.0
            self._finish_join(group)
        elif group.all_joined() or now >= group.join_deadline:
            self._finish_join(group)

    def _finish_join(self, group: Group) -> None:
        """End the join phase: drop dynamic members that did not rejoin, start the next generation."""
        for member in list(group.members.values()):
            if not member.awaiting_join and member.instance_id is None:
                self._drop(group, member)
        leader = group.members.get(group.leader or "")
        if leader is None or not leader.awaiting_join:
            joined = [m.member_id for m in group.members.values() if m.awaiting_join]
            if joined:
                group.leader = joined[0]
        group.next_generation()
        log.info("group %s generation %d: %d members, protocol %s", group.group_id, group.generation,
                 len(group.members), group.protocol)
        if group.is_(EMPTY):
            self.offsets.write_group(group.group_id, group.to_value())
            return
        now = self._now()
        group.pending_sync = set(group.members)
        group.sync_deadline = now + group.rebalance_timeout_ms() / 1000
        for member in group.members.values():
            if member.awaiting_join:
                member.is_new = False
                member.deadline = now + member.session_timeout_ms / 1000
                self._complete_join(member, self._join_result(group, member, group.leader == member.member_id))

    def _complete_join(self, member: Member, result: JoinResult) -> None:
        if member.awaiting_join:
            member.join_future.set_result(result)
        member.join_future = None

    def _complete_sync(self, member: Member, result: SyncResult) -> None:
        if member.awaiting_sync:
            member.sync_future.set_result(result)
            # As Kafka when it propagates an assignment (or its error): the session starts over with the answer.
            # A member parked in SyncGroup is spared by the session check but may send no heartbeat meanwhile
            # (kafka-python stops them for the whole rebalance); if the leader took longer than that session to
            # sync, its old deadline would expel it at the next tick, right after it got its assignment.
            member.deadline = self._now() + member.session_timeout_ms / 1000
        member.sync_future = None

    def _reset_assignments(self, group: Group, error: ErrorCode) -> None:
        for member in group.members.values():
            member.assignment = b""
            self._complete_sync(member, SyncResult(error))

    def _drop(self, group: Group, member: Member) -> None:
        self._complete_join(member, JoinResult(ErrorCode.unknown_member_id, member.member_id))
        self._complete_sync(member, SyncResult(ErrorCode.unknown_member_id))
        group.remove(member.member_id)

    def _remove_member(self, group: Group, member: Member, reason: str) -> None:
        log.info("group %s: removing member %s: %s", group.group_id, member.member_id, reason)
        self._drop(group, member)
        if group.is_(STABLE, COMPLETING):
            self._prepare_rebalance(group)
        elif group.is_(PREPARING):
            self._maybe_complete_join(group)

    # ---- SyncGroup, Heartbeat, LeaveGroup ----

    async def sync(self, group_id: str, generation: int, member_id: str, instance_id: str | None,
                   protocol_type: str | None, protocol_name: str | None,
                   assignments: dict[str, bytes]) -> SyncResult:
        """Handle one SyncGroup; a follower waits for the leader's assignment."""
        self.offsets.check_loaded()
        group = self.groups.get(group_id)
        if group is None or group.is_(EMPTY):
            return SyncResult(ErrorCode.unknown_member_id)
        if group.is_(DEAD):
            return SyncResult(ErrorCode.coordinator_not_available)
        error = self._member_error(group, member_id, instance_id)
        if error is not None:
            return SyncResult(error)
        if generation != group.generation:
            return SyncResult(ErrorCode.illegal_generation)
        if (protocol_type is not None and protocol_type != group.protocol_type) or (
                protocol_name is not None and protocol_name != group.protocol):
            return SyncResult(ErrorCode.inconsistent_group_protocol)
        if group.is_(PREPARING):
            return SyncResult(ErrorCode.rebalance_in_progress)
        member = group.members[member_id]
        member.deadline = self._now() + member.session_timeout_ms / 1000
        group.pending_sync.discard(member_id)
        if group.is_(STABLE):
            return SyncResult(ErrorCode.none, group.protocol_type, group.protocol, member.assignment)
        fut = member.sync_future if member.awaiting_sync else self._future()
        member.sync_future = fut
        if group.leader == member_id:
            self._store_assignment(group, assignments)
        return await asyncio.shield(fut)

    def _store_assignment(self, group: Group, assignments: dict[str, bytes]) -> None:
        full = {mid: assignments.get(mid, b"") for mid in group.members}
        value = group.to_value()
        for mv in value.members:
            mv.assignment = full[mv.member_id]
        generation = group.generation

        def stored(_written: asyncio.Future) -> None:
            # A member may have joined or left while the write was on its way: then this assignment is void.
            if not group.is_(COMPLETING) or group.generation != generation:
                return
            for mid, member in group.members.items():
                member.assignment = full.get(mid, b"")
                self._complete_sync(member, SyncResult(ErrorCode.none, group.protocol_type, group.protocol,
                                                       member.assignment))
            group.transition(STABLE)
            log.info("group %s generation %d is stable", group.group_id, generation)

        self.offsets.write_group(group.group_id, value).add_done_callback(stored)

    def heartbeat(self, group_id: str, generation: int, member_id: str, instance_id: str | None) -> ErrorCode:
        """Handle one Heartbeat: keep the session alive and tell the member whether to rejoin."""
        self.offsets.check_loaded()
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available
        error = self._member_error(group, member_id, instance_id)
        if error is not None:
            return error
        if generation != group.generation:
            return ErrorCode.illegal_generation
        if group.is_(EMPTY):
            return ErrorCode.unknown_member_id
        member = group.members[member_id]
        member.deadline = self._now() + member.session_timeout_ms / 1000
        if group.is_(PREPARING):
            return ErrorCode.rebalance_in_progress
        return ErrorCode.none

    def leave(self, group_id: str, leaving: list[tuple[str, str | None]]) -> tuple[ErrorCode, list[ErrorCode]]:
        """Handle LeaveGroup for (member id, instance id) pairs: a group-level error and one error per member."""
        self.offsets.check_loaded()
        if group_id in self.consumer.groups:
            # Admin clients remove members of a consumer group with LeaveGroup too (removeMembersFromConsumerGroup).
            return ErrorCode.none, self.consumer.remove_members(group_id, leaving)
        group = self.groups.get(group_id)
        if group is None:
            return ErrorCode.unknown_member_id, [ErrorCode.unknown_member_id] * len(leaving)
        if group.is_(DEAD):
            return ErrorCode.coordinator_not_available, [ErrorCode.coordinator_not_available] * len(leaving)
        errors = []
        for member_id, instance_id in leaving:
            if instance_id is None:
                if member_id in group.pending_members:
                    del group.pending_members[member_id]
                    self._maybe_complete_join(group)
                    errors.append(ErrorCode.none)
                    continue
                target = member_id
            else:
                target = group.static_members.get(instance_id)
                if target is None:
                    errors.append(ErrorCode.unknown_member_id)
                    continue
                if member_id and member_id != target:
                    errors.append(ErrorCode.fenced_instance_id)
                    continue
            member = group.members.get(target)
            if member is None:
                errors.append(ErrorCode.unknown_member_id)
                continue
            self._remove_member(group, member, "it left the group")
            errors.append(ErrorCode.none)
        return ErrorCode.none, errors

    # ---- offsets, admin ----

    def validate_offset_commit(self, group_id: str, member_id: str, generation: int, instance_id: str | None,
                               transactional: bool = False, api_version: int | None = None):
        """The group an OffsetCommit (or TxnOffsetCommit) may write to; raises KafkaError as Kafka answers.

        Generation -1 from a consumer outside group management commits to an empty (or new) group. For a
        consumer group the generation is the member epoch.
        """
        self.offsets.check_loaded()
        consumer_group = self.consumer.groups.get(group_id)
        if consumer_group is not None:
            self.consumer.validate_offset_commit(consumer_group, member_id, generation, instance_id, api_version,
                                                 transactional)
            return consumer_group
        group = self.groups.get(group_id)
        if group is None:
            if generation >= 0:
                raise KafkaError(ErrorCode.illegal_generation, f"Group {group_id} has no generation {generation}.")
            group = self.groups[group_id] = Group(group_id)
        if group.is_(DEAD):
            raise KafkaError(ErrorCode.coordinator_not_available)
        if generation < 0 and group.is_(EMPTY):
            return group
        if generation >= 0 or member_id or instance_id is not None:
            error = self._member_error(group, member_id, instance_id)
            if error is not None:
                raise KafkaError(error)
            if generation != group.generation:
                raise KafkaError(ErrorCode.illegal_generation,
                                 f"Generation {generation} is not the group's current generation {group.generation}.")
        elif not transactional:
            # Without a member id and generation, commits are only accepted while the group is empty.
            raise KafkaError(ErrorCode.unknown_member_id)
        if not transactional and group.is_(COMPLETING):
            raise KafkaError(ErrorCode.rebalance_in_progress)
        return group

    def check_member(self, group_id: str, member_id: str, generation_id: int, group_instance_id: str | None) -> None:
        """KIP-447 checks for TxnOffsetCommit: raise KafkaError (UNKNOWN_MEMBER_ID, ILLEGAL_GENERATION,
        FENCED_INSTANCE_ID, COORDINATOR_LOAD_IN_PROGRESS...) unless the member may commit."""
        self.validate_offset_commit(group_id, member_id or "", generation_id, group_instance_id, transactional=True)

    def group_for_offset_delete(self, group_id: str):
        self.offsets.check_loaded()
        if group_id in self.consumer.groups:
            return self.consumer.groups[group_id]
        group = self.groups.get(group_id)
        if group is None or group.is_(DEAD):
            raise KafkaError(ErrorCode.group_id_not_found, f"Group {group_id} not found.")
        if not group.is_(EMPTY) and group.protocol_type != "consumer":
            raise KafkaError(ErrorCode.non_empty_group)
        return group

    def delete_group(self, group_id: str) -> asyncio.Future:
        """DeleteGroups for one group: only an empty group goes; its offsets go with it."""
        self.offsets.check_loaded()
        if group_id in self.consumer.groups:
            return self.consumer.delete(group_id)
        group = self.groups.get(group_id)
        if group is None or group.is_(DEAD):
            raise KafkaError(ErrorCode.group_id_not_found, f"Group {group_id} not found.")
        if not group.is_(EMPTY):
            raise KafkaError(ErrorCode.non_empty_group, f"Group {group_id} is not empty.")
        written = self.offsets.delete_group(group_id)  # first: if the log cannot take it, the group stays
        group.transition(DEAD)
        del self.groups[group_id]
        return written

    def listed(self) -> list[Group]:
        self.offsets.check_loaded()
        return [g for g in self.groups.values() if not g.is_(DEAD)]

    # ---- clocks ----

    async def _tick(self) -> None:
        next_expiry = self._now() + self.config.offsets_retention_check_interval_ms / 1000
        while True:
            await asyncio.sleep(TICK_SECONDS)
            if self.offsets.loading:
                continue
            try:
                self._expire_sessions()
                self.consumer.expire()
                if self._now() >= next_expiry:
                    next_expiry = self._now() + self.config.offsets_retention_check_interval_ms / 1000
                    self.expire_offsets()
            except Exception:
                log.exception("group coordinator tick failed")

    def _expire_sessions(self) -> None:
        now = self._now()
        for group in list(self.groups.values()):
            for member_id, deadline in list(group.pending_members.items()):
                if now >= deadline:
                    del group.pending_members[member_id]
                    self._maybe_complete_join(group)
            for member in list(group.members.values()):
                # A parked JoinGroup or SyncGroup keeps its member alive: the phase deadlines bound the wait.
                if member.awaiting_join or member.awaiting_sync:
                    continue
                if now >= member.deadline and member.member_id in group.members:
                    self._remove_member(group, member, "its session timed out")
            if group.is_(PREPARING):
                self._maybe_complete_join(group)
            elif group.is_(COMPLETING) and group.pending_sync and now >= group.sync_deadline:
                for member_id in list(group.pending_sync):
                    member = group.members.get(member_id)
                    if member is not None:
                        self._remove_member(group, member, "it did not sync within the rebalance timeout")

    def expire_offsets(self) -> None:
        """Drop offsets past offsets.retention.minutes, and empty groups with no offsets left (as Kafka)."""
        for group_id in expire_offsets(self.groups, self.consumer.groups, self.offsets,
                                       self.config.offsets_retention_minutes * 60_000):
            if group_id in self.consumer.groups:
                self.consumer.expire_empty(group_id)
                continue
            group = self.groups.pop(group_id)
            group.transition(DEAD)
            self.offsets.write_group(group_id, None)

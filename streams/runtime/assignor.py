"""The task assignor: hands out (sub-topology, partition) tasks, not loose topic-partitions.

All partitions with number p of one sub-topology's source topics go to the member that owns task (sub, p), so
co-partitioned topics are processed together. Tasks are balanced per sub-topology (so that one worker does not get
every agent task and another every DSL task) and overall, and sticky: each member reports the tasks it owned in its
subscription's user data, and keeps as many of them as balance allows.

The leader's assignor also sees every member's subscription. Workers of one app subscribe to the same topics
(apart from a moment while an agent's new repartition topic is being joined); a member that subscribes to other
external topics runs a different app under the same id. It is given no tasks and an error in its assignment, which
stops its worker with `GroupConflictError`; assigning it the leader's topics would trip aiokafka's
"Received an assignment for unsubscribed topic" AssertionError inside the client instead.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Callable, Iterable, Mapping

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

from ..errors import GroupConflictError

log = logging.getLogger(__name__)

__all__ = ["TaskAssignor", "balance_tasks", "place_standbys", "subscription_conflict"]

Task = tuple[int, int]


def _quotas(counts: Mapping[int, int], members: list[str], previous: Mapping[str, set[Task]]
            ) -> dict[str, dict[int, int]]:
    """How many tasks of each sub-topology each member gets: floor or ceil of an even share per sub-topology, with
    the ceil ("extra") slots dealt so that members' totals also differ by at most one.

    Dealing each sub-topology's extras to the members with the fewest extras so far keeps that invariant (if all
    have k or k+1 extras, giving one more to the r smallest leaves k..k+2 only when every k was served). Among equals,
    a member that held more of the sub-topology's tasks gets the extra, so fewer tasks move.
    """
    n = len(members)
    extras = dict.fromkeys(members, 0)
    quota: dict[str, dict[int, int]] = {m: {} for m in members}
    for sid in sorted(counts):
        base, rest = divmod(counts[sid], n)
        held = {m: sum(1 for t in previous.get(m, ()) if t[0] == sid) for m in members}
        lucky = sorted(members, key=lambda m: (extras[m], -held[m], m))[:rest]
        for m in members:
            quota[m][sid] = base + (m in lucky)
        for m in lucky:
            extras[m] += 1
    return quota


def balance_tasks(tasks: list[Task], members: list[str], previous: Mapping[str, Iterable[Task]],
                  warm: Mapping[str, Iterable[Task]] | None = None) -> dict[str, list[Task]]:
    """Spread `tasks` over `members`: for every sub-topology, and in total, loads differ by at most one; a member
    keeps the tasks it owned before (`previous`) where that balance allows, and a task that lost its owner goes
    to a member holding a warm copy of its state (`warm`: standbys, or state left from before) where it can."""
    members = sorted(members)
    if not members:
        return {}
    wanted = set(tasks)
    prev = {m: {tuple(t) for t in previous.get(m, ())} & wanted for m in members}
    counts: dict[int, int] = defaultdict(int)
    for sid, _ in wanted:
        counts[sid] += 1
    quota = _quotas(counts, members, prev)
    owned: dict[str, list[Task]] = {m: [] for m in members}
    taken: set[Task] = set()
    # Keep previous tasks up to each member's quota (a task claimed twice, after a split brain, goes to the first).
    for m in members:
        for t in sorted(prev[m]):
            if t not in taken and quota[m][t[0]] > 0:
                quota[m][t[0]] -= 1
                owned[m].append(t)
                taken.add(t)
    warm_sets = {m: {tuple(t) for t in (warm or {}).get(m, ())} for m in members}
    for t in sorted(wanted - taken):
        m = next((x for x in members if quota[x][t[0]] > 0 and t in warm_sets[x]), None) or \
            next(x for x in members if quota[x][t[0]] > 0)
        quota[m][t[0]] -= 1
        owned[m].append(t)
    return owned


def place_standbys(owned: Mapping[str, list[Task]], stateful: set[int], replicas: int,
                   warm: Mapping[str, Iterable[Task]]) -> dict[str, list[Task]]:
    """Give each task of a stateful sub-topology `replicas` standbys on members other than its owner, preferring
    members that already hold its state, then the members with the fewest standbys."""
    members = sorted(owned)
    standby: dict[str, list[Task]] = {m: [] for m in members}
    if replicas <= 0 or len(members) < 2:
        return standby
    warm_sets = {m: {tuple(t) for t in warm.get(m, ())} for m in members}
    owner = {t: m for m, ts in owned.items() for t in ts}
    for t in sorted(owner):
        if t[0] not in stateful:
            continue
        candidates = [m for m in members if m != owner[t]]
        candidates.sort(key=lambda m: (t not in warm_sets[m], len(standby[m]) + len(owned[m]), m))
        for m in candidates[:replicas]:
            standby[m].append(t)
    return standby


def subscription_conflict(app_id: str, mine: set[str], theirs: set[str]) -> str | None:
    """Why a member subscribing to `theirs` cannot be in one group with a leader subscribing to `mine`, or None.

    Only external topics count: the app's internal topics (named `<app id>-...`) may differ for a moment while a
    worker joins an agent's new repartition topic. The message is written for the member that receives it.
    """
    def external(topics: set[str]) -> set[str]:
        return {t for t in topics if not t.startswith(f"{app_id}-")}

    unknown_to_them = sorted(external(mine) - external(theirs))
    unknown_to_us = sorted(external(theirs) - external(mine))
    if not unknown_to_them and not unknown_to_us:
        return None
    parts = []
    if unknown_to_them:
        parts.append(f"subscribes to topics {unknown_to_them} that this app does not know")
    if unknown_to_us:
        parts.append(f"does not subscribe to topics {unknown_to_us} that this app reads")
    return (f"another worker of app {app_id!r} (the group's leader) {' and '.join(parts)}: two different apps "
            f"(or two versions of one app) share the id {app_id!r}; give one of them another id")


def _member_tasks(user_data: bytes | None) -> tuple[list[Task], list[Task]]:
    """(tasks owned, tasks with local state) from a member's subscription user data (a plain list before
    standbys existed)."""
    try:
        data = json.loads(user_data or b"[]")
        if isinstance(data, list):
            return [tuple(t) for t in data], []
        return [tuple(t) for t in data.get("owned", [])], [tuple(t) for t in data.get("state", [])]
    except (ValueError, TypeError, AttributeError):
        return [], []


class TaskAssignor(AbstractPartitionAssignor):
    """An aiokafka assignor instance bound to the worker's live topology.

    `sources()` returns {sub-topology id: [source topic names]}; it is read at every rebalance so topics added
    while running (an agent's group_by) are assigned too. `on_conflict(error)` is called when the leader found that
    this member runs a different app under the same id (see the module docstring); `conflict` keeps the error.
    """

    name = "streams-tasks"
    version = 0

    def __init__(self, sources: Callable[[], dict[int, list[str]]], app_id: str = "",
                 on_conflict: Callable[[GroupConflictError], None] | None = None, *,
                 stateful: Callable[[], set[int]] = set, standby_replicas: int = 0,
                 local_state: Callable[[], Iterable[Task]] = tuple) -> None:
        self._sources = sources
        self._app_id = app_id
        self._on_conflict = on_conflict
        self._stateful = stateful
        self._replicas = standby_replicas
        self._local_state = local_state
        self.owned: set[Task] = set()
        self.standby: set[Task] = set()
        self.conflict: GroupConflictError | None = None

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        state = sorted({tuple(t) for t in self._local_state()} | self.standby | self.owned)
        user_data = json.dumps({"owned": sorted(self.owned), "state": state}).encode()
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(self, cluster, members: Mapping[str, ConsumerProtocolMemberMetadata]
               ) -> dict[str, ConsumerProtocolMemberAssignment]:
        sources = self._sources()
        mine = {t for topics in sources.values() for t in topics}
        errors = {}
        for mid, meta in members.items():
            error = subscription_conflict(self._app_id, mine, set(meta.subscription))
            if error is not None:
                errors[mid] = error
                log.error("group %s: member %s subscribes to %s, this worker to %s: two different apps share the "
                          "id; it gets no tasks", self._app_id, mid, sorted(meta.subscription), sorted(mine))
        workers = {mid: meta for mid, meta in members.items() if mid not in errors}
        subscribed = set().union(*(m.subscription for m in workers.values())) if workers else set()
        tasks: list[Task] = []
        for sid, topics in sorted(sources.items()):
            counts = [len(cluster.partitions_for_topic(t) or ()) for t in topics if t in subscribed]
            tasks.extend((sid, p) for p in range(max(counts, default=0)))
        previous, warm = {}, {}
        for mid, meta in workers.items():
            previous[mid], warm[mid] = _member_tasks(meta.user_data)
        owned = balance_tasks(tasks, list(workers), previous, warm)
        standby = place_standbys(owned, self._stateful(), self._replicas, warm)
        out = {}
        for mid, meta in members.items():
            # Never hand a member a topic it did not subscribe to: aiokafka asserts on that. While an agent's new
            # repartition topic is being joined, a member lacking it catches up at the rebalance its rejoin causes.
            theirs = set(meta.subscription)
            by_topic: dict[str, list[int]] = defaultdict(list)
            for sid, p in owned.get(mid, []):
                for t in sources.get(sid, []):
                    if t in theirs and p < len(cluster.partitions_for_topic(t) or ()):
                        by_topic[t].append(p)
            user_data = {"tasks": sorted(owned.get(mid, [])), "standby": sorted(standby.get(mid, []))}
            if mid in errors:
                user_data["error"] = errors[mid]
            out[mid] = ConsumerProtocolMemberAssignment(
                self.version, sorted((t, sorted(ps)) for t, ps in by_topic.items()), json.dumps(user_data).encode())
        log.info("assigned %d tasks to %d members", len(tasks), len(workers))
        return out

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        try:
            data = json.loads(assignment.user_data or b"[]")
        except (ValueError, TypeError):
            data = []
        if isinstance(data, list):  # the format before the error field
            data = {"tasks": data}
        try:
            self.owned = {tuple(t) for t in data.get("tasks", [])}
            self.standby = {tuple(t) for t in data.get("standby", [])}
        except TypeError:
            self.owned, self.standby = set(), set()
        if data.get("error") and self.conflict is None:
            self.conflict = GroupConflictError(data["error"])
            if self._on_conflict is not None:
                self._on_conflict(self.conflict)

"""The task assignor: hands out (sub-topology, partition) tasks, not loose topic-partitions.

All partitions with number p of one sub-topology's source topics go to the member that owns task (sub, p), so
co-partitioned topics are processed together. Tasks are balanced (members differ by at most one task) and sticky:
each member reports the tasks it owned in its subscription's user data, and keeps as many of them as balance allows.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from typing import Callable, Iterable, Mapping

from aiokafka.coordinator.assignors.abstract import AbstractPartitionAssignor
from aiokafka.coordinator.protocol import ConsumerProtocolMemberAssignment, ConsumerProtocolMemberMetadata

log = logging.getLogger(__name__)

__all__ = ["TaskAssignor", "balance_tasks"]

Task = tuple[int, int]


def balance_tasks(tasks: list[Task], members: list[str], previous: Mapping[str, Iterable[Task]]) -> dict[str, list[Task]]:
    """Spread `tasks` over `members` so loads differ by at most one, keeping previous owners where possible."""
    members = sorted(members)
    if not members:
        return {}
    base, extra = divmod(len(tasks), len(members))
    wanted = set(tasks)
    owned: dict[str, list[Task]] = {m: [] for m in members}
    taken: set[Task] = set()
    # Keep previous tasks up to the base share, then one more for as many members as the remainder allows.
    for limit_extra in (False, True):
        for m in members:
            for t in sorted(previous.get(m, ())):
                if t not in wanted or t in taken:
                    continue
                if len(owned[m]) < base or (limit_extra and extra > 0 and len(owned[m]) == base):
                    if len(owned[m]) == base:
                        extra -= 1
                    owned[m].append(t)
                    taken.add(t)
    for t in tasks:
        if t in taken:
            continue
        m = min(members, key=lambda x: (len(owned[x]), x))
        owned[m].append(t)
        taken.add(t)
    return owned


class TaskAssignor(AbstractPartitionAssignor):
    """An aiokafka assignor instance bound to the worker's live topology.

    `sources()` returns {sub-topology id: [source topic names]}; it is read at every rebalance so topics added
    while running (an agent's group_by) are assigned too.
    """

    name = "streams-tasks"
    version = 0

    def __init__(self, sources: Callable[[], dict[int, list[str]]]) -> None:
        self._sources = sources
        self.owned: set[Task] = set()

    def metadata(self, topics: Iterable[str]) -> ConsumerProtocolMemberMetadata:
        user_data = json.dumps(sorted(self.owned)).encode()
        return ConsumerProtocolMemberMetadata(self.version, sorted(topics), user_data)

    def assign(self, cluster, members: Mapping[str, ConsumerProtocolMemberMetadata]
               ) -> dict[str, ConsumerProtocolMemberAssignment]:
        sources = self._sources()
        subscribed = set().union(*(m.subscription for m in members.values())) if members else set()
        tasks: list[Task] = []
        for sid, topics in sorted(sources.items()):
            counts = [len(cluster.partitions_for_topic(t) or ()) for t in topics if t in subscribed]
            tasks.extend((sid, p) for p in range(max(counts, default=0)))
        previous = {}
        for mid, meta in members.items():
            try:
                previous[mid] = [tuple(t) for t in json.loads(meta.user_data or b"[]")]
            except (ValueError, TypeError):
                previous[mid] = []
        owned = balance_tasks(tasks, list(members), previous)
        out = {}
        for mid in members:
            by_topic: dict[str, list[int]] = defaultdict(list)
            for sid, p in owned.get(mid, []):
                for t in sources.get(sid, []):
                    if p < len(cluster.partitions_for_topic(t) or ()):
                        by_topic[t].append(p)
            out[mid] = ConsumerProtocolMemberAssignment(
                self.version, sorted((t, sorted(ps)) for t, ps in by_topic.items()),
                json.dumps(sorted(owned.get(mid, []))).encode())
        log.info("assigned %d tasks to %d members", len(tasks), len(members))
        return out

    def on_assignment(self, assignment: ConsumerProtocolMemberAssignment) -> None:
        try:
            self.owned = {tuple(t) for t in json.loads(assignment.user_data or b"[]")}
        except (ValueError, TypeError):
            self.owned = set()

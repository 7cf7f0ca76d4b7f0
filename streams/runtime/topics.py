"""Creating what the application needs on the broker, and learning the partition counts of what exists."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from ..topics import Topic
from ..topology.compiler import Topology

if TYPE_CHECKING:
    from ..records import AppLike

log = logging.getLogger(__name__)

__all__ = ["ensure_topics", "existing_partition_counts", "plan_topics", "wanted_topics"]


async def existing_partition_counts(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """{topic: partition count} for those of `names` that exist."""
    if not names:
        return {}
    out = {}
    wanted = set(names)
    # Ask for all topics: a Metadata request naming a missing topic may auto-create it with the wrong count.
    for desc in await admin.describe_topics(None):
        if desc["topic"] in wanted and desc.get("error_code", 0) == 0 and desc.get("partitions"):
            out[desc["topic"]] = len(desc["partitions"])
    return out


async def _wait_visible(admin: AIOKafkaAdminClient, names: set[str], timeout: float = 15.0) -> None:
    """Wait until the metadata lists every topic in `names` with a leader for each partition.

    A cluster (unlike the embedded broker) answers CreateTopics before every broker knows the topic; a consumer
    that joined its group in between would be assigned nothing for it.
    """
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        ready = {d["topic"] for d in await admin.describe_topics(None)
                 if d["topic"] in names and d.get("error_code", 0) == 0 and d.get("partitions")
                 and all(p.get("leader", -1) >= 0 for p in d["partitions"])}
        if ready >= names or asyncio.get_running_loop().time() > deadline:
            return
        await asyncio.sleep(0.1)


async def _create(admin: AIOKafkaAdminClient, topics: list[tuple[Topic, int]]) -> None:
    if not topics:
        return
    new = [NewTopic(t.name, n, 1, topic_configs={k: str(v) for k, v in t.config.items()}) for t, n in topics]
    try:
        resp = await admin.create_topics(new)
    except TopicAlreadyExistsError:
        return
    for entry in getattr(resp, "topic_errors", None) or getattr(resp, "topics", []):
        name, code = entry[0], entry[1]
        if code not in (0, 36):  # 36: created meanwhile by another worker
            raise RuntimeError(f"cannot create topic {name!r}: error code {code} {entry[2:] if len(entry) > 2 else ''}")
    await _wait_visible(admin, {t.name for t, _ in topics})
    log.info("created topics %s", ", ".join(f"{t.name}({n})" for t, n in topics))


def wanted_topics(app: "AppLike", extra: list[Topic]) -> dict[str, Topic]:
    """Every topic the app reads or writes, by name: the topology's, `extra` ones and the agents' sinks."""
    wanted = dict(app.topology().topics())
    for t in extra + app.extra_topics():
        wanted.setdefault(t.name, t)
    return wanted


def plan_topics(app: "AppLike", wanted: dict[str, Topic], existing: dict[str, int]
                ) -> tuple[Topology, dict[str, tuple[Topic, int]]]:
    """The topology as it runs once the missing topics exist, and `{name: (topic, partitions)}` of those to create.

    `existing` holds the partition counts of the topics that exist. External topics that do not are planned with
    their declared partitions (else `app.default_partitions`); repartition topics with the partition count the
    compiler resolved for them (the writing sub-topology's). No I/O: the test driver plans its topics the same way.
    """
    counts = dict(existing)
    missing: dict[str, tuple[Topic, int]] = {}

    def plan(topic: Topic, partitions: int) -> None:
        missing[topic.name] = (topic, partitions)
        counts[topic.name] = partitions

    for t in wanted.values():
        if t.name not in counts and not t.internal:
            plan(t, t.partitions or app.default_partitions)
    topology = app.topology(dict(counts))
    internal = False
    for sub in topology.subtopologies:
        for node in sub.nodes:
            if node.kind == "repartition" and node.topic.name not in counts:
                # (the topic's own count, the writer's, or that of the topic it is partitioned like)
                plan(node.topic, topology.repartition_counts.get(node.topic.name) or sub.partitions
                     or app.default_partitions)
                internal = True
        for t in sub.changelog_topics:
            # One changelog partition per task.
            if t.name not in counts:
                plan(t, sub.partitions or app.default_partitions)
                internal = True
    for t in wanted.values():
        if t.internal and t.name not in counts:
            plan(t, t.partitions or app.default_partitions)
            internal = True
    if internal:
        topology = app.topology(dict(counts))
    return topology, missing


async def ensure_topics(bootstrap: str, app: "AppLike", extra: list[Topic], counts: dict[str, int],
                        create: bool = True) -> Topology:
    """Compile the app's topology against the broker, creating missing topics (see `plan_topics`) unless
    `create` is false; fills `counts` in place with the partition counts of the topics that exist.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{app.id}-admin")
    await admin.start()
    try:
        wanted = wanted_topics(app, extra)
        counts.update(await existing_partition_counts(admin, list(wanted)))
        topology, missing = plan_topics(app, wanted, counts)
        if missing and create:
            await _create(admin, list(missing.values()))
            counts.update({name: n for name, (_, n) in missing.items()})
        return topology
    finally:
        await admin.close()

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
    from ..app import App

log = logging.getLogger(__name__)

__all__ = ["ensure_topics", "existing_partition_counts"]


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


async def ensure_topics(bootstrap: str, app: "App", extra: list[Topic], counts: dict[str, int],
                        create: bool = True) -> Topology:
    """Compile the app's topology against the broker, creating missing topics; fills `counts` in place.

    External topics that do not exist are created with their declared partitions (else `app.default_partitions`);
    repartition topics get the partition count the compiler resolved for them.
    """
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, client_id=f"{app.id}-admin")
    await admin.start()
    try:
        first = app.topology()
        wanted = dict(first.topics())
        for t in extra + app.extra_topics():
            wanted.setdefault(t.name, t)
        counts.update(await existing_partition_counts(admin, list(wanted)))
        missing = [(t, t.partitions or app.default_partitions) for t in wanted.values()
                   if t.name not in counts and not t.internal]
        if missing and create:
            await _create(admin, missing)
            counts.update({t.name: n for t, n in missing})
        topology = app.topology(dict(counts))
        internal = []
        for sub in topology.subtopologies:
            for node in sub.nodes:
                if node.kind == "repartition" and node.topic.name not in counts:
                    internal.append((node.topic, node.topic.partitions or sub.partitions or app.default_partitions))
        for t in wanted.values():
            if t.internal and t.name not in counts and t.name not in {x.name for x, _ in internal}:
                internal.append((t, t.partitions or app.default_partitions))
        if internal and create:
            await _create(admin, internal)
            counts.update({t.name: n for t, n in internal})
            topology = app.topology(dict(counts))
        return topology
    finally:
        await admin.close()

"""Committed offsets on the wire: OffsetCommit, OffsetFetch (one group, or many from v8), OffsetDelete.
The store lives in coordinator/offsets.py, the member and generation checks in coordinator/group_coordinator.py."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..coordinator.group import now_ms
from ..coordinator.group_records import OffsetValue
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import DELETE, DESCRIBE, GROUP, READ, TOPIC, allowed
from .errors import KafkaError


def _topic_name(ctx: RequestContext, t) -> str | None:
    """The topic a request entry names, by name or (v10) by id; None for an unknown id."""
    name = getattr(t, "name", None)
    if name is not None:
        return name
    topic = ctx.broker.topics.by_id.get(t.topic_id)
    return topic.name if topic is not None else None


@handles(8, 2, 10)
async def offset_commit(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    group_error = None
    try:
        broker.groups.validate_offset_commit(req.group_id, req.member_id, req.generation_id_or_member_epoch,
                                             getattr(req, "group_instance_id", None), api_version=ctx.version)
    except KafkaError as exc:
        group_error = exc.code
    if not allowed(ctx, READ, GROUP, req.group_id):  # refused before any member check, as in Kafka
        group_error = ErrorCode.group_authorization_failed
    limit = broker.config.offset_metadata_max_bytes
    ts = now_ms()
    accepted: dict[tuple[str, int], OffsetValue] = {}
    codes: list[tuple[str | None, object, list[tuple[int, ErrorCode]]]] = []
    for t in req.topics:
        name = _topic_name(ctx, t)
        parts = []
        for p in t.partitions:
            code = group_error or ErrorCode.none
            if code == ErrorCode.none:
                if name is None:
                    code = ErrorCode.unknown_topic_id
                elif not allowed(ctx, READ, TOPIC, name):
                    code = ErrorCode.topic_authorization_failed
                elif broker.partition(name, p.partition_index) is None:
                    code = ErrorCode.unknown_topic_or_partition
                elif p.committed_metadata is not None and len(p.committed_metadata.encode("utf-8")) > limit:
                    code = ErrorCode.offset_metadata_too_large
                else:
                    accepted[(name, p.partition_index)] = OffsetValue(
                        p.committed_offset, getattr(p, "committed_leader_epoch", -1),
                        p.committed_metadata if p.committed_metadata is not None else "", ts)
            parts.append((p.partition_index, code))
        codes.append((name, getattr(t, "topic_id", None), parts))
    write_error = None
    if accepted:
        try:
            await broker.offsets.commit(req.group_id, accepted)
        except KafkaError as exc:  # the offsets log cannot be written (a full disk): the client retries
            write_error = exc.code
    topics = tuple(
        r("OffsetCommitResponseTopic", name=name or "", topic_id=topic_id, partitions=tuple(
            r("OffsetCommitResponsePartition", partition_index=index,
              error_code=write_error if write_error is not None and (name, index) in accepted else code)
            for index, code in parts))
        for name, topic_id, parts in codes
    )
    return r("OffsetCommitResponse", throttle_time=ZERO_MS, topics=topics)


@handles(9, 1, 10)
def offset_fetch(ctx: RequestContext, req):
    r = ctx.reply
    if ctx.version < 8:
        code, topics = _fetch_group(ctx, req.group_id, req.topics, req.require_stable if ctx.version >= 7 else False)
        if code != ErrorCode.none and ctx.version < 2:
            # v1 has no group-level error: every partition carries it.
            topics = tuple(
                r("OffsetFetchResponseTopic", name=t.name, partitions=tuple(
                    r("OffsetFetchResponsePartition", partition_index=i, committed_offset=-1, metadata="",
                      error_code=code) for i in t.partition_indexes))
                for t in req.topics or ()
            )
        return r("OffsetFetchResponse", throttle_time=ZERO_MS, topics=topics, error_code=code)
    groups = []
    for g in req.groups:
        try:
            # v9+: a member of a consumer group (KIP-848) fetches with its id and epoch, which must be current.
            ctx.broker.groups.consumer.validate_offset_fetch(g.group_id, getattr(g, "member_id", None),
                                                             getattr(g, "member_epoch", -1))
        except KafkaError as exc:
            groups.append(r("OffsetFetchResponseGroup", group_id=g.group_id, topics=(), error_code=exc.code))
            continue
        code, topics = _fetch_group(ctx, g.group_id, g.topics, req.require_stable)
        groups.append(r("OffsetFetchResponseGroup", group_id=g.group_id, topics=topics, error_code=code))
    return r("OffsetFetchResponse", throttle_time=ZERO_MS, groups=tuple(groups))


def _fetch_group(ctx: RequestContext, group_id: str, wanted, require_stable: bool):
    """(group error, topic entries) for one group; `wanted` None means every partition it has offsets for."""
    r = ctx.reply
    v8 = ctx.version >= 8
    topic_entity = "OffsetFetchResponseTopics" if v8 else "OffsetFetchResponseTopic"
    part_entity = "OffsetFetchResponsePartitions" if v8 else "OffsetFetchResponsePartition"
    store = ctx.broker.offsets
    if not allowed(ctx, DESCRIBE, GROUP, group_id):
        return ErrorCode.group_authorization_failed, ()
    try:
        stored = store.fetch(group_id)
    except KafkaError as exc:
        return exc.code, ()
    if wanted is None:
        by_topic: dict[str, list[int]] = {}
        for topic, partition in sorted(stored):
            by_topic.setdefault(topic, []).append(partition)
        entries = [(topic, topic, None, parts) for topic, parts in by_topic.items()]
        if ctx.version >= 10:
            ids = ctx.broker.topics
            entries = [(topic, None, ids.get(topic).topic_id, parts) for topic, _, _, parts in entries
                       if ids.get(topic) is not None]
    else:
        entries = [(_topic_name(ctx, t), getattr(t, "name", None), getattr(t, "topic_id", None),
                    list(t.partition_indexes)) for t in wanted]
    if wanted is None:  # the offsets of topics the principal may not describe are left out
        entries = [e for e in entries if allowed(ctx, DESCRIBE, TOPIC, e[0])]
    topics = []
    for topic, name, topic_id, partitions in entries:
        parts = []
        for index in partitions:
            code, offset, epoch, metadata = ErrorCode.none, -1, -1, ""
            if topic is None:
                code = ErrorCode.unknown_topic_id
            elif not allowed(ctx, DESCRIBE, TOPIC, topic):
                code = ErrorCode.topic_authorization_failed
            elif require_stable and store.has_pending_txn_offsets(group_id, topic, index):
                code = ErrorCode.unstable_offset_commit
            else:
                value = stored.get((topic, index))
                if value is not None:
                    offset, epoch, metadata = value.offset, value.leader_epoch, value.metadata
            parts.append(r(part_entity, partition_index=index, committed_offset=offset,
                           committed_leader_epoch=epoch, metadata=metadata, error_code=code))
        topics.append(r(topic_entity, name=name, topic_id=topic_id, partitions=tuple(parts)))
    return ErrorCode.none, tuple(topics)


@handles(47, 0, 0)
async def offset_delete(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    if not allowed(ctx, DELETE, GROUP, req.group_id):
        return r("OffsetDeleteResponse", error_code=ErrorCode.group_authorization_failed, throttle_time=ZERO_MS,
                 topics=())
    try:
        group = broker.groups.group_for_offset_delete(req.group_id)
    except KafkaError as exc:
        return r("OffsetDeleteResponse", error_code=exc.code, throttle_time=ZERO_MS, topics=())
    deletable = []
    topics = []
    for t in req.topics:
        subscribed = group.is_subscribed_to(t.name)
        parts = []
        for p in t.partitions:
            code = ErrorCode.none
            if not allowed(ctx, READ, TOPIC, t.name):
                code = ErrorCode.topic_authorization_failed
            elif subscribed:
                code = ErrorCode.group_subscribed_to_topic
            elif broker.partition(t.name, p.partition_index) is None:
                code = ErrorCode.unknown_topic_or_partition
            else:
                deletable.append((t.name, p.partition_index))
            parts.append(r("OffsetDeleteResponsePartition", partition_index=p.partition_index, error_code=code))
        topics.append(r("OffsetDeleteResponseTopic", name=t.name, partitions=tuple(parts)))
    try:
        written = broker.offsets.delete(req.group_id, deletable)
        if written is not None:
            await written
    except KafkaError as exc:  # the offsets log cannot be written: nothing was deleted
        return r("OffsetDeleteResponse", error_code=exc.code, throttle_time=ZERO_MS, topics=())
    return r("OffsetDeleteResponse", error_code=ErrorCode.none, throttle_time=ZERO_MS, topics=tuple(topics))

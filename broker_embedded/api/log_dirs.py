"""DescribeLogDirs and AlterReplicaLogDirs: this node has one log directory, its data directory."""

from __future__ import annotations

import os
import shutil

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import ALTER, DESCRIBE, cluster_allowed


def log_dir(ctx: RequestContext) -> str:
    """The one log directory, absolute as Kafka reports `log.dirs`."""
    return os.path.abspath(ctx.broker.config.data_dir)


@handles(35, 1, 4)
def describe_log_dirs(ctx: RequestContext, req):
    r = ctx.reply
    if not cluster_allowed(ctx, DESCRIBE):  # Kafka answers no directories, and from v3 says why
        return r("DescribeLogDirsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.cluster_authorization_failed,
                 results=())
    registry = ctx.broker.topics
    if req.topics is None:
        wanted = [(t, range(t.partitions)) for t in registry.topics.values()]
    else:
        # Kafka leaves out what it does not host: unknown topics and partitions are simply absent.
        wanted = [(registry.get(d.topic), d.partitions) for d in req.topics]
    topics = []
    for topic, partitions in wanted:
        if topic is None:
            continue
        parts = tuple(
            # A single node is its own only replica: nothing lags; there is never a "future" replica being moved.
            r("DescribeLogDirsPartition", partition_index=p, partition_size=topic.logs[p].size_bytes, offset_lag=0,
              is_future_key=False)
            for p in dict.fromkeys(partitions) if 0 <= p < topic.partitions)
        if parts:
            topics.append(r("DescribeLogDirsTopic", name=topic.name, partitions=parts))
    path = log_dir(ctx)
    try:
        usage = shutil.disk_usage(path)
        total, usable = usage.total, usage.free
    except OSError:
        total = usable = -1  # Kafka's "unknown"
    result = r("DescribeLogDirsResult", error_code=ErrorCode.none, log_dir=path, topics=tuple(topics),
               total_bytes=total, usable_bytes=usable)
    return r("DescribeLogDirsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, results=(result,))


@handles(34, 1, 2)
def alter_replica_log_dirs(ctx: RequestContext, req):
    """Moving a replica to the directory it is in is a no-op, as in Kafka; any other directory is not one of this
    node's log directories (LOG_DIR_NOT_FOUND)."""
    r = ctx.reply
    ours = log_dir(ctx)
    may_alter = cluster_allowed(ctx, ALTER)
    results: dict[str, list] = {}
    for d in req.dirs:
        here = os.path.abspath(d.path) == ours
        for t in d.topics:
            topic = ctx.broker.topics.get(t.name)
            for p in t.partitions:
                if not may_alter:
                    code = ErrorCode.cluster_authorization_failed
                elif topic is None or not 0 <= p < topic.partitions:
                    code = ErrorCode.unknown_topic_or_partition
                else:
                    code = ErrorCode.none if here else ErrorCode.log_dir_not_found
                results.setdefault(t.name, []).append(
                    r("AlterReplicaLogDirPartitionResult", partition_index=p, error_code=code))
    return r("AlterReplicaLogDirsResponse", throttle_time=ZERO_MS, results=tuple(
        r("AlterReplicaLogDirTopicResult", topic_name=name, partitions=tuple(parts)) for name, parts in results.items()))

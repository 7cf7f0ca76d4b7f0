"""What the storage engine needs to know of a topic's configuration."""

from __future__ import annotations

from dataclasses import dataclass

NEVER = 2**63 - 1


@dataclass(slots=True)
class LogConfig:
    """Per-partition log settings, in Kafka's units, derived from the topic's configs."""

    segment_bytes: int = 1024 * 1024 * 1024
    segment_ms: int = 7 * 24 * 3600 * 1000
    index_interval_bytes: int = 4096
    max_message_bytes: int = 1048588
    flush_messages: int = NEVER
    flush_ms: int = NEVER
    log_append_time: bool = False
    retention_ms: int = 7 * 24 * 3600 * 1000
    retention_bytes: int = -1
    compact: bool = False
    delete: bool = True
    # Compaction (cleanup.policy=compact): when a partition is worth cleaning and what the cleaner may drop.
    min_cleanable_dirty_ratio: float = 0.5
    min_compaction_lag_ms: int = 0
    max_compaction_lag_ms: int = NEVER
    delete_retention_ms: int = 24 * 3600 * 1000

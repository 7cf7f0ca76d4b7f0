"""Store specs: what a stateful node needs from the runtime, described without opening anything.

The DSL records a `StoreSpec` on each stateful node; the compiler gathers a sub-topology's specs and gives each
logged store a changelog topic `<app id>-<store>-changelog` with one partition per task (compacted for key-value
stores, `compact,delete` with a retention for window and session stores). The runtime opens one store per
(spec, task) and restores it from that changelog. A table read from a topic (`app.table`) uses the topic itself as
its changelog.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from typing import Any

from ..errors import TopologyError
from ..topics import Topic

__all__ = ["STORE_KINDS", "StoreSpec", "changelog_topic"]

STORE_KINDS = ("kv", "window", "session")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_TS = struct.Struct(">q")
# Window and session changelogs keep records a day longer than the store (Kafka Streams' default margin).
CHANGELOG_RETENTION_MARGIN_MS = 24 * 3600 * 1000


@dataclass(eq=False)
class StoreSpec:
    """A named store: `kind` (kv, window or session), the serdes of its keys and values, and its retention.

    `logged=False` opts out of the changelog (the store is rebuilt from nothing when its task moves).
    `source_topic` set: the store mirrors that topic, which serves as its changelog (no extra topic).
    `changelog` is filled in by the compiler (or by `changelog_topic`).
    """

    name: str
    kind: str = "kv"
    key_serde: Any = None
    value_serde: Any = None
    retention_ms: int | None = None
    segment_interval_ms: int | None = None
    logged: bool = True
    source_topic: Topic | None = None
    window_size_ms: int | None = None
    timestamped: bool = False      # kv: each value is stored after the big-endian timestamp of its last update
    history_ms: int | None = None  # kv: versioned (every value kept for this long, looked up as of a time)
    changelog: Topic | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME_RE.match(self.name):
            raise TopologyError(f"bad store name {self.name!r}: use letters, digits, '.', '_' and '-'")
        if self.kind not in STORE_KINDS:
            raise TopologyError(f"bad store kind {self.kind!r}: one of {', '.join(STORE_KINDS)}")
        if self.kind != "kv" and not (isinstance(self.retention_ms, int) and self.retention_ms > 0):
            raise TopologyError(f"{self.kind} store {self.name!r} needs a retention in ms, got {self.retention_ms!r}")

    def restore_pair(self, key: bytes | None, value: bytes | None, timestamp: int) -> tuple:
        """A changelog record as the store holds it: a table's row is stored after the record's timestamp, and a
        versioned table read from a topic keeps a version per timestamp."""
        if key is None:
            return key, value
        if self.history_ms is not None and self.source_topic is not None:
            from ..runtime.versioned import version_entry
            return version_entry(key, value, timestamp)
        if self.timestamped and value is not None:
            return key, _TS.pack(timestamp) + value
        return key, value

    @property
    def settings(self) -> dict[str, int]:
        """What the state layer needs besides the name (window and session retention)."""
        if self.kind == "kv":
            return {}
        out = {"retention_ms": self.retention_ms}
        if self.segment_interval_ms is not None:
            out["segment_interval_ms"] = self.segment_interval_ms
        return out


def changelog_topic(app_id: str, spec: StoreSpec) -> Topic | None:
    """The topic that backs `spec` (created once per spec and kept on it), or None for an unlogged store."""
    if spec.source_topic is not None:
        return spec.source_topic
    if not spec.logged:
        return None
    if spec.changelog is None:
        if spec.kind == "kv":
            config = {"cleanup.policy": "compact"}
        else:
            config = {"cleanup.policy": "compact,delete",
                      "retention.ms": str(spec.retention_ms + CHANGELOG_RETENTION_MARGIN_MS)}
        spec.changelog = Topic(f"{app_id}-{spec.name}-changelog", key_serde=bytes, value_serde=bytes,
                               config=config, internal=True)
    return spec.changelog

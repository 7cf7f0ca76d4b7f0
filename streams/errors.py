"""The framework's exceptions: one home, so users can catch `StreamsError` and know what went wrong."""

from __future__ import annotations


class StreamsError(Exception):
    """Base class of every error the framework raises on purpose."""


class StaleRecord(StreamsError):
    """Raised into an agent that writes a table for a record whose task was rolled back or moved away since the
    record was handed to it: the agent function restarts with the next live record (no error is reported)."""


class TopologyError(StreamsError, ValueError):
    """The described topology cannot run: a bad name, a cycle, a missing topic."""


class CoPartitionError(TopologyError):
    """Topics that must be co-partitioned (same partition count) are not."""


class UnsupportedOperation(StreamsError):
    """The operation is recorded in the graph but cannot run yet (aggregations arrive with state stores)."""


class ProcessingError(StreamsError):
    """A record failed in a user function or in deserialization while the error policy is `fail`.

    `topic`, `partition` and `offset` name the record; the original exception is the `__cause__`.
    """

    def __init__(self, message: str, topic: str, partition: int, offset: int) -> None:
        super().__init__(message)
        self.topic = topic
        self.partition = partition
        self.offset = offset


class SerializationError(StreamsError, ValueError):
    """A value could not be encoded or decoded by its serde."""


class StateError(StreamsError):
    """A state store or state directory cannot be used: held by another owner, closed, or damaged."""


class StateDirectoryLocked(StateError):
    """A store's database or a state directory slot is held by another open handle (this process or another)."""

    def __init__(self, message: str, path: str) -> None:
        super().__init__(message)
        self.path = path


class GroupConflictError(StreamsError):
    """Two different apps (different topics) run under one app id, so they share one consumer group."""

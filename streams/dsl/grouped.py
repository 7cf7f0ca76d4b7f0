"""GroupedStream: the result of group_by / group_by_key, recorded in the graph for the aggregation part.

Grouping alone already does its work here: a changed key is repartitioned, and the compiler checks that the
grouped stream's source topics are co-partitioned. Aggregating (count, reduce, aggregate, windowing) needs state
stores, which arrive with the state part; until then those methods raise `UnsupportedOperation` with that message.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import UnsupportedOperation
from ..topology.graph import Node

if TYPE_CHECKING:
    from .stream import KStream

__all__ = ["GroupedStream"]


class GroupedStream:
    """A stream grouped by key: every record of one key is processed by one task."""

    def __init__(self, stream: "KStream", node: Node) -> None:
        self.stream = stream
        self.node = node

    def _needs_state(self, what: str) -> UnsupportedOperation:
        return UnsupportedOperation(
            f"{what}() on {self.node.name} needs state stores, which this version of streams does not have yet; "
            "the grouping (and its repartition topic) is recorded and shows in app.topology().describe()")

    def count(self, *args: Any, **kwargs: Any):
        """Count records per key (needs state stores)."""
        raise self._needs_state("count")

    def reduce(self, *args: Any, **kwargs: Any):
        """Combine the values of each key (needs state stores)."""
        raise self._needs_state("reduce")

    def aggregate(self, *args: Any, **kwargs: Any):
        """Fold the values of each key into an aggregate (needs state stores)."""
        raise self._needs_state("aggregate")

    def windowed_by(self, *args: Any, **kwargs: Any):
        """Window the grouped stream (needs window stores)."""
        raise self._needs_state("windowed_by")

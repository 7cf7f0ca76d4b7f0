"""The declarative DSL: builders that only record nodes in the topology graph."""

from .grouped import GroupedStream
from .stream import Builder, KStream, SplitStream

__all__ = ["Builder", "GroupedStream", "KStream", "SplitStream"]

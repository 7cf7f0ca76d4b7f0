"""The declarative DSL: builders that only record nodes in the topology graph."""

from .grouped import GroupedStream, SessionWindowedStream, TimeWindowedStream
from .stream import Builder, KStream, SplitStream
from .table import KTable

__all__ = ["Builder", "GroupedStream", "KStream", "KTable", "SessionWindowedStream", "SplitStream",
           "TimeWindowedStream"]

"""The declarative DSL: builders that only record nodes in the topology graph."""

from .global_table import GlobalKTable
from .grouped import GroupedStream, SessionWindowedStream, TimeWindowedStream
from .stream import Builder, KStream, SplitStream
from .table import KTable

__all__ = ["Builder", "GlobalKTable", "GroupedStream", "KStream", "KTable", "SessionWindowedStream", "SplitStream",
           "TimeWindowedStream"]

"""Stream processing on the Kafka protocol: a declarative DSL and Faust-style agents on one runtime.

    import streams
    app = streams.App("shop")
    orders = app.topic("orders", key_type=str, value_type=Order)
    app.stream(orders).filter(lambda k, o: o.amount > 100).to("big-orders")
"""

from .agents import Agent, AgentStream, Event
from .app import App
from .dsl import GlobalKTable, GroupedStream, KStream, KTable
from .errors import (CoPartitionError, ProcessingError, SerializationError, StreamsError, TopologyError,
                     UnsupportedOperation)
from .serde import BytesSerde, IntSerde, JsonSerde, Serde, StrSerde
from .tables import Table, WindowedTable
from .topics import Channel, Topic
from .topology.stores import StoreSpec
from .windows import HoppingWindows, JoinWindows, SessionWindows, SlidingWindows, TumblingWindows, Windowed, WindowedSerde

__all__ = [
    "Agent", "AgentStream", "App", "BytesSerde", "Channel", "CoPartitionError", "Event", "GlobalKTable",
    "GroupedStream", "HoppingWindows", "IntSerde", "JoinWindows", "JsonSerde", "KStream", "KTable", "ProcessingError", "Serde",
    "SerializationError", "SessionWindows", "SlidingWindows", "StoreSpec", "StrSerde", "StreamsError", "Table", "Topic",
    "TopologyError", "TumblingWindows", "UnsupportedOperation", "Windowed", "WindowedSerde", "WindowedTable",
]

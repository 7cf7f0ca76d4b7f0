"""Stream processing on the Kafka protocol: a declarative DSL and Faust-style agents on one runtime.

    import streams
    app = streams.App("shop")
    orders = app.topic("orders", key_type=str, value_type=Order)
    app.stream(orders).filter(lambda k, o: o.amount > 100).to("big-orders")
"""

from .agents import Agent, AgentStream, Event
from .app import App
from .dsl import GroupedStream, KStream
from .errors import (CoPartitionError, ProcessingError, SerializationError, StreamsError, TopologyError,
                     UnsupportedOperation)
from .serde import BytesSerde, IntSerde, JsonSerde, Serde, StrSerde
from .topics import Channel, Topic

__all__ = [
    "Agent", "AgentStream", "App", "BytesSerde", "Channel", "CoPartitionError", "Event", "GroupedStream",
    "IntSerde", "JsonSerde", "KStream", "ProcessingError", "Serde", "SerializationError", "StrSerde",
    "StreamsError", "Topic", "TopologyError", "UnsupportedOperation",
]

"""The record as user code sees it (`Event`), and `AppLike`: what the layers below `app` need from an App.

`App` sits on top of everything (DESIGN.md: nothing imports `app`); the runtime, agents, tables and topics are
handed the app object and use it through the attributes named in `AppLike`, a structural type, so they depend on
this contract and not on the module that implements it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

__all__ = ["AppLike", "Event"]


@dataclass(slots=True, eq=False, repr=False)
class Event:
    """One record as an agent sees it."""

    key: Any
    value: Any
    headers: Any = ()
    timestamp: int | None = None
    topic: str = ""
    partition: int = -1
    offset: int = -1

    def header(self, name: str) -> bytes | None:
        for k, v in self.headers or ():
            if k == name:
                return v
        return None

    def __repr__(self) -> str:
        return (f"Event(topic={self.topic!r}, partition={self.partition}, offset={self.offset}, key={self.key!r}, "
                f"value={self.value!r:.60})")


class AppLike(Protocol):
    """The parts of `streams.App` that the runtime, agents, tables and topics use."""

    id: str
    workdir: Path
    on_error: str
    dead_letter_topic: str
    default_partitions: int
    commit_interval: float
    session_timeout: float
    heartbeat_interval_ms: int
    max_poll_interval_ms: int
    max_poll_records: int
    max_partition_fetch_bytes: int
    max_batch_size: int
    max_agent_backlog: int
    linger_ms: int
    shutdown_timeout: float
    num_standby_replicas: int
    processing_guarantee: str
    producer_config: dict
    consumer_config: dict
    agents: dict
    topics: dict
    timers: list
    tasks: list
    worker: Any

    def topology(self, partition_counts: dict[str, int] | None = None) -> Any: ...

    def dead_letter(self) -> Any: ...

    def extra_topics(self) -> list: ...

    def topic(self, name: str, *args: Any, **kwargs: Any) -> Any: ...

    async def send(self, topic: Any, key: Any = None, value: Any = None, **kwargs: Any) -> None: ...

    def store(self, name: str) -> Any: ...

    def table_agents(self, name: str) -> list[str]: ...

    def add_agent_route(self, agent: Any, name: str, topic: Any) -> None: ...

    def stop_worker(self) -> None: ...


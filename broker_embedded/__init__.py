"""An embedded, single-node broker that speaks the Kafka protocol.

    async with EmbeddedBroker(data_dir="data", port=0) as broker:
        print(broker.bootstrap_servers)

For programs without an event loop, `EmbeddedBroker(...).start_in_thread()` runs it on a background thread and
`stop_thread()` stops it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

from .broker import Broker
from .config import BrokerConfig
from .dirlock import DirectoryLock, DirectoryLocked, is_locked, read_holder
from .server import KafkaServer

__all__ = ["BrokerConfig", "DirectoryLock", "DirectoryLocked", "EmbeddedBroker", "is_locked", "read_holder"]


class EmbeddedBroker:
    """A broker with its log under `data_dir`, listening on host:port (0 picks a free port)."""

    def __init__(self, data_dir: str = "./broker-data", port: int = 0, host: str = "127.0.0.1",
                 **settings: Any) -> None:
        self.config = BrokerConfig(data_dir=data_dir, host=host, port=port, **settings)
        self.broker: Broker | None = None
        self.server: KafkaServer | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("the broker is not started")
        return self.server.port

    @property
    def bootstrap_servers(self) -> str:
        return f"{self.config.host}:{self.port}"

    async def start(self) -> "EmbeddedBroker":
        self.broker = Broker(self.config)
        await self.broker.start()
        self.server = KafkaServer(self.broker, self.config.host, self.config.port)
        try:
            await self.server.start()
        except BaseException:
            await self.broker.stop()
            raise
        return self

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    async def __aenter__(self) -> "EmbeddedBroker":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- for synchronous programs ----

    def start_in_thread(self) -> "EmbeddedBroker":
        """Start on a background thread with its own event loop; returns once the broker listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._stopping = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            await self._stopping.wait()
            await self.stop()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        """Stop a broker started with `start_in_thread` and wait until its data is flushed."""
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

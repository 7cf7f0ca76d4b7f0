"""The app's embedded broker, shared by every worker started from one folder.

The model (also in docs/streams.md):

- The broker of an app without a broker URL lives in `<workdir>/broker` and keeps its port across restarts (the
  port is recorded in that directory and reused when free).
- A worker that finds the app's broker already running (another worker of the app holds the directory) connects to
  it instead of starting a second one; only one broker can ever own the directory.
- When the worker that owns the broker stops, another worker notices within a second, says so once, and takes the
  broker over: it starts it on the same directory and the same port, so every client reconnects by itself. If the
  broker cannot be had again within `give_up_after` seconds, the worker stops with a clear error instead of
  retrying forever.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path
from typing import Any, Callable

from broker_embedded import DirectoryLocked, EmbeddedBroker

from .errors import StreamsError

log = logging.getLogger(__name__)
progress = logging.getLogger("streams.progress")

__all__ = ["BrokerLost", "SharedBroker"]


class BrokerLost(StreamsError):
    """The app's embedded broker went away and could not be had again in time."""


class SharedBroker:
    """Connect to the app's running embedded broker, or start it; `watch()` takes it over if its owner stops."""

    def __init__(self, data_dir: Path, port: int | None = None, **settings: Any) -> None:
        self.data_dir = Path(data_dir)
        self.port = port
        self.settings = settings
        self.broker: EmbeddedBroker | None = None   # set while this process owns the broker
        self.address: str | None = None

    @property
    def owner(self) -> bool:
        return self.broker is not None

    async def acquire(self, timeout: float = 10.0) -> str:
        """The broker's address: the running one's, or the one this process starts now."""
        deadline = time.monotonic() + timeout
        while True:
            running = EmbeddedBroker.running_address(str(self.data_dir))
            if running is not None:
                self.address = running
                return running
            try:
                return await self._start()
            except DirectoryLocked:
                # Another worker is starting it right now: it publishes its address once it listens.
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)

    async def _start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        broker = EmbeddedBroker(data_dir=str(self.data_dir), port=self.port, **self.settings)
        await broker.start()
        self.broker = broker
        self.address = broker.bootstrap_servers
        return self.address

    async def watch(self, on_lost: Callable[[BaseException], None], give_up_after: float = 30.0,
                    interval: float = 0.5) -> None:
        """While another process owns the broker: check it is there; if it goes, take it over (same port) or,
        after `give_up_after` seconds without a broker, call `on_lost(BrokerLost(...))`."""
        lost_since: float | None = None
        delay = interval
        while not self.owner:
            await asyncio.sleep(delay)
            if EmbeddedBroker.running_address(str(self.data_dir)) is not None:
                lost_since, delay = None, interval
                continue
            if lost_since is None:
                lost_since = time.monotonic()
                progress.warning("the app's broker at %s stopped (its worker exited); taking it over", self.address)
            before = self.address
            try:
                address = await self._start()
            except DirectoryLocked:
                pass   # another worker took it over first: next round connects to it
            except OSError as exc:
                log.debug("cannot start the app's broker yet: %s", exc)
            else:
                if address != before:
                    on_lost(BrokerLost(f"the app's broker moved from {before} to {address} (its port was taken): "
                                       "restart the workers of this app"))
                    return
                progress.warning("took over the app's broker at %s", address)
                return
            if time.monotonic() - lost_since > give_up_after:
                on_lost(BrokerLost(f"the app's broker at {before} is gone and could not be started again within "
                                   f"{give_up_after:.0f}s (data directory {str(self.data_dir)!r})"))
                return
            delay = min(delay * 2, 5.0)

    async def release(self) -> None:
        """Stop the broker if this process owns it."""
        if self.broker is not None:
            broker, self.broker = self.broker, None
            await broker.stop()

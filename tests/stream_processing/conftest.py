"""Fixtures for the streams tests: a broker whose groups form at once, an app runner, and record helpers.

`embedded_broker` is overridden so that consumer groups skip the 3 s initial rebalance delay (Kafka's default, which
scripts/kafka-up also sets to 0), and so `bootstrap` (from tests/conftest.py) gives these tests a fast broker.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest

from broker_embedded import EmbeddedBroker

import streams


@pytest.fixture
def embedded_broker(tmp_path):
    broker = EmbeddedBroker(data_dir=str(tmp_path / "broker"), port=0, group_initial_rebalance_delay_ms=0,
                            group_min_session_timeout_ms=1000).start_in_thread()
    yield broker
    broker.stop_thread()


@pytest.fixture
def app_id() -> str:
    return "app-" + uuid.uuid4().hex[:10]


@pytest.fixture
def make_app(bootstrap, app_id, tmp_path):
    """A fresh App on the test broker (extra settings as keyword arguments)."""
    def make(**settings) -> streams.App:
        settings.setdefault("commit_interval", 0.1)
        settings.setdefault("session_timeout", 6.0)
        return streams.App(settings.pop("id", app_id), broker=bootstrap, workdir=tmp_path / "work", **settings)
    return make


class RunningWorker:
    """A worker running as a task in the test's event loop."""

    def __init__(self, app: streams.App) -> None:
        self.app = app
        self.task: asyncio.Task | None = None

    async def __aenter__(self) -> "RunningWorker":
        self.task = asyncio.create_task(self.app.run_worker())
        deadline = time.monotonic() + 30
        while self.app.worker is None or not self.app.worker.started.is_set():
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("worker did not start")
            await asyncio.sleep(0.01)
        # wait until the group assigned partitions
        while not self.app.worker.assigned:
            if self.task.done():
                self.task.result()
            if time.monotonic() > deadline:
                raise TimeoutError("worker got no partitions")
            await asyncio.sleep(0.01)
        return self

    async def stop(self) -> None:
        self.app.stop_worker()
        await asyncio.wait_for(self.task, 30)

    async def __aexit__(self, *exc) -> None:
        if self.task is not None and not self.task.done():
            self.app.stop_worker()
            await asyncio.wait_for(asyncio.shield(self.task), 30)


@pytest.fixture
def running():
    return RunningWorker



"""Group commit: produce requests that need their data on disk share fsyncs.

While one round of fsyncs runs in a worker thread, new requests gather for the next round, so N concurrent
producers cost about one fsync per round instead of N.
"""

from __future__ import annotations

import asyncio
import logging

from .partition import PartitionLog

log = logging.getLogger(__name__)


class GroupCommitFlusher:
    """Collects partition logs to fsync and the futures waiting on them; flushes them in rounds."""

    def __init__(self) -> None:
        self._pending: dict[int, PartitionLog] = {}
        self._waiters: list[asyncio.Future] = []
        self._task: asyncio.Task | None = None

    def flush(self, plog: PartitionLog) -> asyncio.Future:
        """Schedule an fsync of `plog`; the returned future resolves when its data written so far is on disk."""
        self._pending[id(plog)] = plog
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append(fut)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return fut

    async def _run(self) -> None:
        while self._waiters:
            logs = list(self._pending.values())
            waiters = self._waiters
            self._pending = {}
            self._waiters = []
            # Decide on the loop what to sync; the syscalls run in a thread.
            work = [(p, *p.flush_targets()) for p in logs]
            error: BaseException | None = None
            try:
                await asyncio.to_thread(_sync, work)
            except OSError as exc:  # a failed fsync must not be acknowledged as durable
                log.error("fsync failed: %s", exc)
                error = exc
            for fut in waiters:
                if not fut.done():
                    if error is None:
                        fut.set_result(None)
                    else:
                        fut.set_exception(error)

    async def drain(self) -> None:
        """Wait for the rounds in progress (shutdown)."""
        if self._task is not None:
            await asyncio.shield(self._task)


def _sync(work) -> None:
    for plog, segments, new_files in work:
        for seg in segments:
            seg.flush()
        if new_files:
            plog.sync_directory()

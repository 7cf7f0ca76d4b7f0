"""Group commit: produce requests that need their data on disk share fsyncs.

While one round of fsyncs runs in a worker thread, new requests gather for the next round, so N concurrent
producers cost about one fsync per round instead of N.

Partitions are independent inside a round: each partition's fsyncs succeed or fail on their own, and only that
partition's waiters hear of a failure (a batch that was appended but reported failed is written again by a client
that retries; failing innocent partitions would duplicate their data). A partition whose fsync failed keeps its
obligations (rolled segments, the directory entry of a new file) for the next round. A deleted partition leaves
the queue at once (`forget`), and its deletion waits for a round that is syncing it, so that no fsync ever runs on
a closed descriptor, or on a reused one.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

from .partition import LogDeleted, PartitionLog
from .segment import Segment

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Entry:
    plog: PartitionLog
    waiters: list[asyncio.Future] = field(default_factory=list)


class GroupCommitFlusher:
    """Collects partition logs to fsync and the futures waiting on them; flushes them in rounds."""

    def __init__(self) -> None:
        self._pending: dict[int, _Entry] = {}
        self._task: asyncio.Task | None = None

    def flush(self, plog: PartitionLog) -> asyncio.Future:
        """Schedule an fsync of `plog`; the returned future resolves when its data written so far is on disk, or
        fails with the OSError of its fsync (LogDeleted if the partition is deleted first)."""
        fut = asyncio.get_running_loop().create_future()
        self._entry(plog).waiters.append(fut)
        return fut

    def request(self, plog: PartitionLog) -> None:
        """Schedule an fsync of `plog` that nobody waits for (flush.messages, flush.ms)."""
        self._entry(plog)

    def forget(self, plog: PartitionLog) -> None:
        """Drop a partition that is being deleted from the queue; its waiters get LogDeleted."""
        entry = self._pending.pop(id(plog), None)
        if entry is not None:
            _settle(entry.waiters, LogDeleted(f"{plog.directory} was deleted before its data reached the disk"))

    def _entry(self, plog: PartitionLog) -> _Entry:
        entry = self._pending.get(id(plog))
        if entry is None:
            entry = self._pending[id(plog)] = _Entry(plog)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return entry

    async def _run(self) -> None:
        while self._pending:
            entries = list(self._pending.values())
            self._pending = {}
            # Decide on the loop what to sync; the syscalls run in a thread.
            work = [(e.plog, *e.plog.flush_targets()) for e in entries]
            outcomes = await asyncio.to_thread(_sync, work)
            for entry, (plog, segments, new_files), error in zip(entries, work, outcomes):
                if error is not None and not isinstance(error, LogDeleted):
                    log.error("fsync of %s failed: %s", plog.directory, error)
                    plog.flush_failed(segments, new_files)  # nothing it owed is forgotten: the next round retries
                _settle(entry.waiters, error)

    async def drain(self) -> None:
        """Wait for the rounds in progress (shutdown)."""
        if self._task is not None:
            await asyncio.shield(self._task)


def _settle(waiters: list[asyncio.Future], error: BaseException | None) -> None:
    for fut in waiters:
        if not fut.done():
            if error is None:
                fut.set_result(None)
            else:
                fut.set_exception(error)


def _sync(work: list[tuple[PartitionLog, list[Segment], bool]]) -> list[BaseException | None]:
    """fsync each partition's segments (and its directory when it has new files); one outcome per partition."""
    outcomes: list[BaseException | None] = []
    for plog, segments, new_files in work:
        try:
            plog.sync(segments, new_files)
            outcomes.append(None)
        except Exception as exc:  # noqa: BLE001 - whatever it is, it is this partition's alone
            outcomes.append(exc)
    return outcomes

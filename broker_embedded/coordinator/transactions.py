"""The transaction coordinator: transactional ids, their producer ids and epochs, and the two-phase end.

A deliberately simple, synchronous design (after franz-go's kfake): this node is the coordinator of every
transactional id, so ending a transaction writes its markers straight into the local partition logs.

Two protocol generations are served. In the first, clients add partitions with AddPartitionsToTxn and keep their
epoch across transactions. In the second (KIP-890, `transaction.version` 2, EndTxn v5), partitions join a
transaction when a Produce v12+ or TxnOffsetCommit v5 for them arrives, and every EndTxn bumps the producer epoch:
the markers carry the new epoch, which fences any late write of the transaction just ended, and the client goes on
with the epoch (or, when epochs run out, the new producer id) that EndTxn returns.

Every state change is written to the internal compacted topic `__transaction_state` (key = transactional id,
value = the whole state as JSON) and fsynced before the client hears about it. On start the topic is replayed:
a transaction found in PrepareCommit/PrepareAbort is completed (markers written again are harmless), one found
Ongoing is aborted with a bumped epoch, which fences its producer.
"""

from __future__ import annotations

import asyncio
import dataclasses
import inspect
import json
import logging
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from kio.schema.errors import ErrorCode

from ..errors import KafkaError
from ..log.batch import HEADER_SIZE, parse_header, split_batches
from ..log.partition import LogDeleted
from ..log.records import build_batch, iter_records
from .producers import ProducerIdAllocator
from ..background import cancel_and_wait

if TYPE_CHECKING:
    from ..broker import Broker

log = logging.getLogger(__name__)

TOPIC = "__transaction_state"
EMPTY, ONGOING = "Empty", "Ongoing"
PREPARE_COMMIT, PREPARE_ABORT = "PrepareCommit", "PrepareAbort"
COMPLETE_COMMIT, COMPLETE_ABORT = "CompleteCommit", "CompleteAbort"
STATES = (EMPTY, ONGOING, PREPARE_COMMIT, PREPARE_ABORT, COMPLETE_COMMIT, COMPLETE_ABORT)
MAX_EPOCH = 32767


@dataclass
class TxnMetadata:
    """The coordinator's view of one transactional id."""

    transactional_id: str
    producer_id: int
    producer_epoch: int
    timeout_ms: int
    state: str = EMPTY
    partitions: set[tuple[str, int]] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    start_ms: int = -1
    updated_ms: int = -1
    # KIP-890: whether the client speaks the second generation (Kafka's client transaction version: its last
    # EndTxn was v5, or its partitions and groups joined implicitly), the producer id that
    # takes over once the ending transaction completes (epochs ran out), and the one it replaced (for retries).
    v2: bool = False
    next_producer_id: int = -1
    previous_producer_id: int = -1

    def to_json(self) -> bytes:
        return json.dumps({
            "pid": self.producer_id, "epoch": self.producer_epoch, "timeout": self.timeout_ms, "state": self.state,
            "partitions": sorted(self.partitions), "groups": sorted(self.groups), "start": self.start_ms,
            "updated": self.updated_ms, "v2": self.v2, "next_pid": self.next_producer_id,
            "prev_pid": self.previous_producer_id,
        }).encode()

    @classmethod
    def from_json(cls, tid: str, raw: bytes) -> "TxnMetadata":
        d = json.loads(raw)
        return cls(tid, d["pid"], d["epoch"], d["timeout"], d["state"], {(t, p) for t, p in d["partitions"]},
                   set(d["groups"]), d["start"], d.get("updated", -1), d.get("v2", False),
                   d.get("next_pid", -1), d.get("prev_pid", -1))


def _now_ms() -> int:
    return int(time.time() * 1000)


class TransactionCoordinator:
    """InitProducerId, AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit checks and EndTxn for one node."""

    # transaction.max.timeout.ms and how often timed-out transactions are looked for (Kafka: 10 s).
    max_timeout_ms = 15 * 60 * 1000
    abort_check_interval = 1.0
    coordinator_epoch = 0

    def __init__(self, broker: "Broker") -> None:
        self.broker = broker
        self.ids = ProducerIdAllocator(broker.config.data_dir)
        self.txns: dict[str, TxnMetadata] = {}
        self.by_producer: dict[int, TxnMetadata] = {}
        # A copy of what `__transaction_state` says of each id: a write that fails (a full disk) puts the
        # in-memory state back to it, so that memory never runs ahead of the log.
        self._persisted: dict[str, TxnMetadata] = {}
        self._locks: defaultdict[str, asyncio.Lock] = defaultdict(asyncio.Lock)
        self._task: asyncio.Task | None = None

    # ---- lifecycle ----

    async def start(self) -> None:
        """Replay `__transaction_state`, finish what was in flight, start the timeout checker."""
        topic = self.broker.topics.get(TOPIC)
        if topic is None:
            topic = self.broker.topics.create(TOPIC, 1, {"cleanup.policy": "compact"}, internal=True)
        self._load(topic.logs[0])
        self.broker.producers.verify_transactional = self.verify_produce
        for meta in list(self.txns.values()):
            if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
                log.info("completing transaction %s left in %s", meta.transactional_id, meta.state)
                await self._complete(meta)
            elif meta.state == ONGOING:
                log.info("aborting transaction %s left open by a restart", meta.transactional_id)
                await self._abort_fenced(meta)
        self._task = asyncio.create_task(self._abort_timed_out())

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._task = None

    def _load(self, plog) -> None:
        offset = plog.log_start_offset
        while offset < plog.high_watermark:
            data = plog.read(offset, 1 << 20)
            if not data:
                break
            pos = 0
            # A read ends after whole batches, possibly followed by the start of one more: stop before that.
            while pos + HEADER_SIZE <= len(data):
                header = parse_header(data, pos)
                if pos + header.size > len(data):
                    break
                for rec in iter_records(data[pos : pos + header.size], header):
                    if rec.offset < offset or rec.key is None:
                        continue
                    tid = rec.key.decode()
                    if rec.value is None:
                        self.txns.pop(tid, None)
                    else:
                        self.txns[tid] = TxnMetadata.from_json(tid, rec.value)
                offset = header.next_offset
                pos += header.size
        self.by_producer = {m.producer_id: m for m in self.txns.values()}
        self._persisted = {tid: _copy(m) for tid, m in self.txns.items()}
        self._state_log = plog

    async def _persist(self, meta: TxnMetadata) -> None:
        """Write the state of `meta` to `__transaction_state` and wait until it is on disk.

        If the write or its fsync fails, `meta` goes back to its last persisted state (an id never persisted is
        forgotten) and KafkaError(NOT_COORDINATOR) is raised, which is what Kafka answers when it cannot write its
        transaction log; clients retry on it.
        """
        meta.updated_ms = _now_ms()
        data = bytearray(build_batch([(meta.transactional_id.encode(), meta.to_json(), None, None)]))
        try:
            self._state_log.append(data, split_batches(data))
            self.by_producer[meta.producer_id] = meta
            await self.broker.flusher.flush(self._state_log)
        except OSError as exc:
            self._revert(meta)
            raise KafkaError(ErrorCode.not_coordinator,
                             f"cannot write {TOPIC}: {exc.strerror or exc}") from exc
        self._persisted[meta.transactional_id] = _copy(meta)

    def _revert(self, meta: TxnMetadata) -> None:
        tid = meta.transactional_id
        saved = self._persisted.get(tid)
        if saved is None:
            if self.txns.get(tid) is meta:
                del self.txns[tid]
        else:
            for f in dataclasses.fields(TxnMetadata):
                setattr(meta, f.name, getattr(_copy(saved), f.name))
        self.by_producer = {m.producer_id: m for m in self.txns.values()}

    # ---- requests ----

    async def init_producer_id(self, tid: str | None, timeout_ms: int, pid: int = -1,
                               epoch: int = -1) -> tuple[int, int]:
        """A producer id and epoch for an idempotent producer (`tid` None) or a transactional one.

        For a transactional id seen before, the epoch is bumped: an open transaction is aborted and the previous
        producer instance is fenced.
        """
        if not tid:
            return self._allocate_id(), 0
        if not 0 < timeout_ms <= self.max_timeout_ms:
            raise KafkaError(ErrorCode.invalid_transaction_timeout,
                             f"transaction timeout {timeout_ms} ms is not in 1..{self.max_timeout_ms}")
        async with self._locks[tid]:
            meta = self.txns.get(tid)
            if meta is None:
                meta = TxnMetadata(tid, self._allocate_id(), 0, timeout_ms)
                self.txns[tid] = meta
                await self._persist(meta)
                return meta.producer_id, meta.producer_epoch
            if pid >= 0 and (pid, epoch) != (meta.producer_id, meta.producer_epoch):
                raise KafkaError(ErrorCode.producer_fenced,
                                 f"producer {pid} epoch {epoch} is not the current producer of {tid!r}")
            if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
                await self._complete(meta)
            if meta.state == ONGOING:
                # The abort's markers carry a bumped epoch that fences the old producer; the new one gets the
                # next epoch, as from Kafka, so that nothing the old one sends passes for a retry.
                await self._abort_fenced(meta)
            self._bump(meta)
            meta.timeout_ms = timeout_ms
            meta.v2 = False
            meta.state = EMPTY
            meta.partitions.clear()
            meta.groups.clear()
            await self._persist(meta)
            return meta.producer_id, meta.producer_epoch

    def _allocate_id(self) -> int:
        try:
            return self.ids.allocate()
        except OSError as exc:  # the id block cannot be reserved on disk (a full disk)
            raise KafkaError(ErrorCode.not_coordinator, f"cannot reserve producer ids: {exc.strerror or exc}") from exc

    def _bump(self, meta: TxnMetadata) -> None:
        """A new epoch; when epochs run out, a new producer id with epoch 0."""
        self.by_producer.pop(meta.producer_id, None)
        if meta.producer_epoch >= MAX_EPOCH - 1:
            meta.producer_id, meta.producer_epoch = self._allocate_id(), 0
        else:
            meta.producer_epoch += 1
        self.by_producer[meta.producer_id] = meta

    def _current(self, tid: str, pid: int, epoch: int) -> TxnMetadata:
        """The metadata of `tid` if (pid, epoch) is its current producer; raise the fencing error otherwise."""
        meta = self.txns.get(tid)
        if meta is None or meta.producer_id != pid:
            raise KafkaError(ErrorCode.invalid_producer_id_mapping,
                             f"producer id {pid} does not belong to transactional id {tid!r}")
        if epoch != meta.producer_epoch:
            raise KafkaError(ErrorCode.producer_fenced,
                             f"producer epoch {epoch} of {tid!r} has been fenced by epoch {meta.producer_epoch}")
        if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
            raise KafkaError(ErrorCode.concurrent_transactions, f"transaction {tid!r} is completing")
        return meta

    async def add_partitions(self, tid: str, pid: int, epoch: int, partitions: list[tuple[str, int]],
                             verify_only: bool = False, implicit: bool = False) -> dict[tuple[str, int], ErrorCode]:
        """Add partitions to the open transaction (starting it); an error code for each partition. `implicit`:
        the second generation's Produce v12+ adds them, not the client's AddPartitionsToTxn."""
        async with self._locks[tid]:
            meta = self._current(tid, pid, epoch)
            if verify_only:
                return {tp: ErrorCode.none if meta.state == ONGOING and tp in meta.partitions
                        else ErrorCode.invalid_txn_state for tp in partitions}
            unknown = {tp for tp in partitions if self.broker.partition(*tp) is None}
            if unknown:
                return {tp: ErrorCode.unknown_topic_or_partition if tp in unknown
                        else ErrorCode.operation_not_attempted for tp in partitions}
            meta.v2 = implicit
            if meta.state != ONGOING or not meta.partitions.issuperset(partitions):
                self._begin(meta)
                meta.partitions.update(partitions)
                await self._persist(meta)
            return {tp: ErrorCode.none for tp in partitions}

    def _begin(self, meta: TxnMetadata) -> None:
        if meta.state != ONGOING:
            meta.state = ONGOING
            meta.partitions.clear()
            meta.groups.clear()
            meta.start_ms = _now_ms()

    async def add_offsets(self, tid: str, pid: int, epoch: int, group: str, implicit: bool = False) -> None:
        """Make `group`'s offset commit part of the open transaction (`implicit`: by TxnOffsetCommit v5)."""
        async with self._locks[tid]:
            meta = self._current(tid, pid, epoch)
            meta.v2 = implicit
            if meta.state != ONGOING or group not in meta.groups:
                self._begin(meta)
                meta.groups.add(group)
                await self._persist(meta)

    def check_offset_commit(self, tid: str, pid: int, epoch: int, group: str) -> None:
        """Raise unless (pid, epoch) may commit offsets of `group` in its open transaction."""
        meta = self._current(tid, pid, epoch)
        if meta.state != ONGOING or group not in meta.groups:
            raise KafkaError(ErrorCode.invalid_txn_state,
                             f"group {group!r} was not added to the transaction of {tid!r} (AddOffsetsToTxn)")

    async def end_txn(self, tid: str, pid: int, epoch: int, commit: bool, bump: bool = False) -> TxnMetadata:
        """Commit or abort the open transaction: prepare durably, write markers, complete. `bump` is the second
        generation's EndTxn (v5): the epoch goes up by one on every end (see `_end_bumping`)."""
        if bump:
            async with self._locks[tid]:
                return await self._end_bumping(tid, pid, epoch, commit)
        async with self._locks[tid]:
            meta = self.txns.get(tid)
            if meta is not None and meta.producer_id == pid:
                meta.v2 = False
            if meta is not None and meta.producer_id == pid and meta.producer_epoch == epoch:
                # A retried EndTxn whose first attempt completed: answer as it was answered.
                if meta.state == (COMPLETE_COMMIT if commit else COMPLETE_ABORT):
                    return meta
            meta = self._current(tid, pid, epoch)
            if meta.state != ONGOING:
                raise KafkaError(ErrorCode.invalid_txn_state,
                                 f"transaction of {tid!r} is {meta.state}, cannot {'commit' if commit else 'abort'}")
            meta.state = PREPARE_COMMIT if commit else PREPARE_ABORT
            await self._persist(meta)
            await self._complete(meta)
            return meta

    async def _end_bumping(self, tid: str, pid: int, epoch: int, commit: bool) -> TxnMetadata:
        """EndTxn v5 as Kafka 4.1's coordinator answers it: the request's epoch must be the current one, except for
        a retry of an end that already bumped it (epoch + 1 is current, or epochs ran out and a new producer id
        took over), which gets the answer the first attempt got. Aborting when no transaction is open still bumps
        the epoch (the client aborts a transaction whose records never reached the broker); committing then is
        INVALID_TXN_STATE."""
        meta = self.txns.get(tid)
        if meta is None:
            raise KafkaError(ErrorCode.invalid_producer_id_mapping, f"no transactional id {tid!r}")
        retry_overflow = (meta.v2 and meta.previous_producer_id == pid and epoch == MAX_EPOCH - 1
                          and meta.producer_epoch == 0)
        retry = meta.v2 and meta.producer_id == pid and meta.producer_epoch == epoch + 1
        if meta.producer_id != pid and not retry_overflow:
            raise KafkaError(ErrorCode.invalid_producer_id_mapping,
                             f"producer id {pid} does not belong to transactional id {tid!r}")
        current = meta.producer_id == pid and epoch == meta.producer_epoch
        if meta.state == ONGOING and current:
            return await self._bump_and_end(meta, commit)
        if meta.state in (EMPTY, COMPLETE_COMMIT, COMPLETE_ABORT) and current:
            if commit:  # there is nothing to commit
                raise KafkaError(ErrorCode.invalid_txn_state, f"transaction of {tid!r} is {meta.state}, cannot commit")
            meta.partitions.clear()
            meta.groups.clear()
            return await self._bump_and_end(meta, commit)
        if meta.state in (COMPLETE_COMMIT, COMPLETE_ABORT) and (retry or retry_overflow) \
                or meta.state in (PREPARE_COMMIT, PREPARE_ABORT) and retry:
            if meta.state not in ((COMPLETE_COMMIT, PREPARE_COMMIT) if commit else (COMPLETE_ABORT, PREPARE_ABORT)):
                raise KafkaError(ErrorCode.invalid_txn_state,
                                 f"transaction of {tid!r} ended otherwise ({meta.state})")
            if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
                raise KafkaError(ErrorCode.concurrent_transactions, f"transaction {tid!r} is completing")
            return meta  # the retry of an end that is done: answer as it was answered
        raise KafkaError(ErrorCode.producer_fenced,
                         f"producer epoch {epoch} of {tid!r} has been fenced by epoch {meta.producer_epoch}")

    async def _bump_and_end(self, meta: TxnMetadata, commit: bool) -> TxnMetadata:
        # The markers carry the bumped epoch; when epochs run out they carry the last one, and the transactional
        # id continues under a new producer id.
        next_pid = self._allocate_id() if meta.producer_epoch >= MAX_EPOCH - 1 else -1
        meta.producer_epoch += 1
        meta.next_producer_id = next_pid
        meta.v2 = True
        meta.state = PREPARE_COMMIT if commit else PREPARE_ABORT
        await self._persist(meta)
        await self._complete(meta)
        return meta

    async def _complete(self, meta: TxnMetadata) -> None:
        """Write the markers of a prepared transaction, settle its offsets, record it complete."""
        commit = meta.state == PREPARE_COMMIT
        waits = []
        failed: list[BaseException] = []
        for topic, partition in sorted(meta.partitions):
            plog = self.broker.partition(topic, partition)
            if plog is None:
                continue  # the topic was deleted meanwhile
            try:
                self.broker.producers.write_marker(plog, meta.producer_id, meta.producer_epoch, commit,
                                                   self.coordinator_epoch)
            except OSError as exc:  # a full disk: the state stays Prepare*, and completing is retried later
                failed.append(exc)
                continue
            waits.append(self.broker.flusher.flush(plog))
        outcomes = await asyncio.gather(*waits, return_exceptions=True)
        failed += [e for e in outcomes if isinstance(e, BaseException) and not isinstance(e, LogDeleted)]
        if failed:
            exc = failed[0]
            raise KafkaError(ErrorCode.not_coordinator, f"cannot write the markers of {meta.transactional_id!r}: "
                             f"{getattr(exc, 'strerror', None) or exc}")
        if meta.groups:
            offsets = getattr(self.broker, "offsets", None)
            if offsets is not None:
                done = offsets.complete_txn_offsets(meta.producer_id, commit, producer_epoch=meta.producer_epoch,
                                                    coordinator_epoch=self.coordinator_epoch)
                if inspect.isawaitable(done):
                    await done
        meta.state = COMPLETE_COMMIT if commit else COMPLETE_ABORT
        if meta.next_producer_id >= 0:
            self.by_producer.pop(meta.producer_id, None)
            meta.previous_producer_id, meta.producer_id = meta.producer_id, meta.next_producer_id
            meta.producer_epoch, meta.next_producer_id = 0, -1
        await self._persist(meta)

    async def _abort_fenced(self, meta: TxnMetadata) -> None:
        """Abort an open transaction with a bumped epoch, so that its producer can no longer write or commit."""
        # Same producer id: the markers must name the producer that wrote the data.
        meta.producer_epoch = min(meta.producer_epoch + 1, MAX_EPOCH)
        meta.state = PREPARE_ABORT
        await self._persist(meta)
        await self._complete(meta)

    async def _abort_timed_out(self) -> None:
        """Abort transactions that stayed open longer than their transaction.timeout.ms."""
        while True:
            await asyncio.sleep(self.abort_check_interval)
            now = _now_ms()
            for meta in list(self.txns.values()):
                if meta.state in (PREPARE_COMMIT, PREPARE_ABORT) and not self._locks[meta.transactional_id].locked():
                    # Its markers could not all be written (a full disk): finish it once they can.
                    async with self._locks[meta.transactional_id]:
                        if meta.state in (PREPARE_COMMIT, PREPARE_ABORT):
                            try:
                                await self._complete(meta)
                            except KafkaError as exc:
                                log.debug("transaction %s still cannot complete: %s", meta.transactional_id, exc)
                    continue
                if meta.state == ONGOING and now - meta.start_ms > meta.timeout_ms:
                    async with self._locks[meta.transactional_id]:
                        if meta.state == ONGOING and _now_ms() - meta.start_ms > meta.timeout_ms:
                            log.info("aborting transaction %s: open longer than %d ms",
                                     meta.transactional_id, meta.timeout_ms)
                            try:
                                await self._abort_fenced(meta)
                            except Exception:
                                log.exception("aborting timed-out transaction %s failed", meta.transactional_id)

    # ---- the produce path ----

    def verify_produce(self, pid: int, epoch: int, topic: str, partition: int) -> None:
        """A transactional batch is accepted only from the current epoch, for a partition of its open transaction."""
        meta = self.by_producer.get(pid)
        if meta is None or meta.producer_id != pid:
            raise KafkaError(ErrorCode.invalid_producer_id_mapping, f"producer id {pid} has no transactional id")
        if epoch < meta.producer_epoch:
            raise KafkaError(ErrorCode.invalid_producer_epoch,
                             f"producer {pid} epoch {epoch} has been fenced by epoch {meta.producer_epoch}")
        if epoch != meta.producer_epoch or meta.state != ONGOING or (topic, partition) not in meta.partitions:
            raise KafkaError(ErrorCode.invalid_txn_state,
                             f"{topic}-{partition} is not part of an open transaction of producer {pid}")

    # ---- admin views ----

    def describe(self, tid: str) -> TxnMetadata | None:
        return self.txns.get(tid)

    def list(self) -> list[TxnMetadata]:
        return list(self.txns.values())


def _copy(meta: TxnMetadata) -> TxnMetadata:
    return dataclasses.replace(meta, partitions=set(meta.partitions), groups=set(meta.groups))


__all__ = ["TransactionCoordinator", "TxnMetadata", "TOPIC", "STATES"]

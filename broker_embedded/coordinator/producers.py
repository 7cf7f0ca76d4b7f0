"""Producer ids and per-partition producer state: idempotence, open transactions, the aborted-transaction index.

Every partition remembers, for each producer id, its epoch and the last five batches it appended (sequence range
and offsets). A retried batch is recognised and acknowledged with its original offset instead of being appended
twice; a gap in sequence numbers is OUT_OF_ORDER_SEQUENCE_NUMBER; an epoch older than the last one seen is
INVALID_PRODUCER_EPOCH. The same state tracks which transactions are open in the partition (their first offset
bounds the last stable offset) and which ones were aborted (read_committed fetches are told about those).

The state is rebuilt from the log when a partition is first touched: batch headers carry producer id, epoch and
sequences, and control batches say where transactions ended. No snapshot files: a scan reads headers only.
"""

from __future__ import annotations

import os
import struct
import weakref
from bisect import bisect_left
from collections import deque
from dataclasses import dataclass, field
from typing import Callable

from kio.schema.errors import ErrorCode

from ..errors import KafkaError
from ..log.batch import CONTROL, TRANSACTIONAL, BatchHeader, split_batches
from ..log.durable import write_atomically
from ..log.partition import PartitionLog
from ..log.records import ABORT, COMMIT, build_batch, control_marker
from ..log.segment import iter_file_batches

MAX_BATCHES = 5  # Kafka keeps the metadata of the last five batches per producer (max.in.flight <= 5)
_I32_MAX = 2**31 - 1
ID_BLOCK = 1000
ID_BLOCK_FILE = "producer-id-block"


def _add_seq(seq: int, delta: int) -> int:
    """Sequence numbers wrap from INT32_MAX back to 0."""
    s = seq + delta
    return s - _I32_MAX - 1 if s > _I32_MAX else s


@dataclass(slots=True)
class ProducerEntry:
    """What one partition knows of one producer id."""

    epoch: int = -1
    # (first sequence, last sequence, base offset, last offset) of the most recent batches.
    batches: deque = field(default_factory=lambda: deque(maxlen=MAX_BATCHES))
    last_timestamp: int = -1
    coordinator_epoch: int = -1
    txn_first_offset: int = -1

    @property
    def last_seq(self) -> int:
        return self.batches[-1][1] if self.batches else -1


class PartitionProducers:
    """Producer state of one partition log."""

    def __init__(self) -> None:
        self.producers: dict[int, ProducerEntry] = {}
        # producer id -> first offset of its open transaction in this partition.
        self.ongoing: dict[int, int] = {}
        # Aborted transactions in marker order: parallel lists of last offset (the marker) and (pid, first offset).
        self._aborted_last: list[int] = []
        self._aborted: list[tuple[int, int]] = []

    # ---- checks before an append ----

    def check(self, header: BatchHeader) -> int | None:
        """Validate a producer's batch; the original base offset when it is a duplicate, else None.

        Raises KafkaError(INVALID_PRODUCER_EPOCH) for a fenced epoch and OUT_OF_ORDER_SEQUENCE_NUMBER for a gap.
        """
        pid, epoch, seq = header.producer_id, header.producer_epoch, header.base_sequence
        entry = self.producers.get(pid)
        if entry is None or entry.epoch < 0:
            return None  # unknown producer (new, or its state expired): any sequence starts it, as in Kafka
        if epoch < entry.epoch:
            raise KafkaError(ErrorCode.invalid_producer_epoch,
                             f"producer {pid} epoch {epoch} is older than the current epoch {entry.epoch}")
        if seq < 0:
            return None  # a transactional/idempotent flag without sequences: nothing to deduplicate
        last = _add_seq(seq, header.last_offset_delta)
        if epoch == entry.epoch:
            for first_seq, last_seq, base, _last_off in entry.batches:
                if first_seq == seq and last_seq == last:
                    return base
        if epoch > entry.epoch:
            if seq != 0:
                raise KafkaError(ErrorCode.out_of_order_sequence_number,
                                 f"producer {pid}: new epoch {epoch} must start at sequence 0, got {seq}")
            return None
        expected = _add_seq(entry.last_seq, 1)
        if seq != expected:
            raise KafkaError(ErrorCode.out_of_order_sequence_number,
                             f"producer {pid} epoch {epoch}: expected sequence {expected}, got {seq}")
        return None

    # ---- state changes after an append ----

    def record(self, header: BatchHeader) -> None:
        """Remember an appended data batch (its base offset is assigned)."""
        pid = header.producer_id
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = ProducerEntry()
        if header.producer_epoch != entry.epoch:
            entry.epoch = header.producer_epoch
            entry.batches.clear()
        if header.base_sequence >= 0:
            entry.batches.append((header.base_sequence, _add_seq(header.base_sequence, header.last_offset_delta),
                                  header.base_offset, header.last_offset))
        entry.last_timestamp = header.max_timestamp
        if header.is_transactional and entry.txn_first_offset < 0:
            entry.txn_first_offset = header.base_offset
            self.ongoing[pid] = header.base_offset

    def record_marker(self, pid: int, epoch: int, kind: int, offset: int, coordinator_epoch: int) -> None:
        """A commit or abort marker at `offset` ends the producer's open transaction here, if any."""
        entry = self.producers.get(pid)
        if entry is None:
            entry = self.producers[pid] = ProducerEntry()
        if epoch > entry.epoch:
            entry.epoch = epoch
            entry.batches.clear()
        entry.coordinator_epoch = coordinator_epoch
        first = self.ongoing.pop(pid, None)
        entry.txn_first_offset = -1
        if first is not None and kind == ABORT:
            self._aborted_last.append(offset)
            self._aborted.append((pid, first))

    # ---- read_committed views ----

    def last_stable_offset(self, high_watermark: int) -> int:
        return min(self.ongoing.values(), default=high_watermark)

    def aborted_between(self, start: int, end: int) -> list[tuple[int, int]]:
        """(producer id, first offset) of aborted transactions whose range meets [start, end)."""
        out = []
        for i in range(bisect_left(self._aborted_last, start), len(self._aborted_last)):
            pid, first = self._aborted[i]
            if first < end:
                out.append((pid, first))
        return out


class ProducerStates:
    """Producer state of every partition, built from the log on first use; the produce-path hook."""

    def __init__(self) -> None:
        self._states: weakref.WeakKeyDictionary[PartitionLog, PartitionProducers] = weakref.WeakKeyDictionary()
        # Set by the transaction coordinator: (producer id, epoch, topic, partition) -> None or raises KafkaError,
        # so that a transactional batch is only accepted for a partition its transaction added (KIP-890 part 1).
        self.verify_transactional: Callable[[int, int, str, int], None] | None = None

    def state(self, plog: PartitionLog) -> PartitionProducers:
        """The partition's producer state, rebuilt from its log on first use."""
        st = self._states.get(plog)
        if st is None:
            st = self._states[plog] = rebuild(plog)
        return st

    def append(self, plog: PartitionLog, topic: str, partition: int, data: bytes,
               batches: list[tuple[int, BatchHeader]]) -> int:
        """Append a produce payload with idempotence and transaction checks; return its base offset.

        A duplicate of a recent batch is not appended again: its original base offset is returned. Raises
        KafkaError for a fenced epoch, a sequence gap or a transactional batch outside its transaction.
        """
        producer_batches = [h for _pos, h in batches if h.producer_id >= 0]
        if not producer_batches:
            return plog.append(bytearray(data), batches)
        st = self.state(plog)
        for h in producer_batches:
            if h.is_control:
                raise KafkaError(ErrorCode.invalid_record, "clients may not produce control batches")
        if len(batches) == 1:
            duplicate = st.check(batches[0][1])
            if duplicate is not None:
                return duplicate
        else:
            _check_sequence_run(st, producer_batches)
        for h in producer_batches:
            if h.is_transactional and self.verify_transactional is not None:
                self.verify_transactional(h.producer_id, h.producer_epoch, topic, partition)
        base = plog.append(bytearray(data), batches)
        for h in producer_batches:
            st.record(h)
        return base

    def write_marker(self, plog: PartitionLog, pid: int, epoch: int, commit: bool, coordinator_epoch: int) -> int:
        """Append a COMMIT or ABORT control batch for producer `pid`; returns its offset."""
        data = bytearray(encode_control_batch(pid, epoch, COMMIT if commit else ABORT, coordinator_epoch))
        st = self.state(plog)
        offset = plog.append(data, split_batches(data))
        st.record_marker(pid, epoch, COMMIT if commit else ABORT, offset, coordinator_epoch)
        return offset

    def last_stable_offset(self, plog: PartitionLog) -> int:
        return self.state(plog).last_stable_offset(plog.high_watermark)

    def aborted_transactions(self, plog: PartitionLog, start: int, end: int) -> list[tuple[int, int]]:
        return self.state(plog).aborted_between(start, end)


def _check_sequence_run(st: PartitionProducers, headers: list[BatchHeader]) -> None:
    """Several batches of one payload: each must follow the previous (duplicates are only recognised alone)."""
    last: dict[int, tuple[int, int]] = {}
    for h in headers:
        prev = last.get(h.producer_id)
        if prev is None:
            if st.check(h) is not None:
                raise KafkaError(ErrorCode.duplicate_sequence_number, "duplicate batch inside a multi-batch payload")
        elif h.base_sequence >= 0 and (prev[0] != h.producer_epoch or h.base_sequence != _add_seq(prev[1], 1)):
            raise KafkaError(ErrorCode.out_of_order_sequence_number, "batches of one payload are out of order")
        last[h.producer_id] = (h.producer_epoch, _add_seq(h.base_sequence, h.last_offset_delta))


def encode_control_batch(producer_id: int, producer_epoch: int, kind: int, coordinator_epoch: int) -> bytes:
    """A transaction marker: key = version 0 + type (0 abort, 1 commit); value = version 0 + coordinator epoch."""
    return build_batch([(struct.pack(">hh", 0, kind), struct.pack(">hi", 0, coordinator_epoch), None, None)],
                       attributes=TRANSACTIONAL | CONTROL, producer_id=producer_id, producer_epoch=producer_epoch)


def rebuild(plog: PartitionLog) -> PartitionProducers:
    """Replay every batch header of the log into a fresh producer state."""
    st = PartitionProducers()
    for seg in list(plog.segments):
        for _pos, header, raw in iter_file_batches(seg.path, seg.size):
            if header.producer_id < 0:
                continue
            if header.is_control:
                kind, coordinator_epoch = control_marker(raw, header)
                if kind in (ABORT, COMMIT):
                    st.record_marker(header.producer_id, header.producer_epoch, kind, header.base_offset,
                                     coordinator_epoch)
            else:
                st.record(header)
    return st


class ProducerIdAllocator:
    """Hands out producer ids that never repeat, also across restarts.

    Ids are reserved on disk in blocks of ID_BLOCK (as Kafka's controller does): a crash loses at most the rest
    of a block, never reuses an id.
    """

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, ID_BLOCK_FILE)
        self._next = -1
        self._limit = -1

    def _load(self) -> None:
        try:
            with open(self.path) as f:
                self._next = int(f.read().strip() or 0)
        except (FileNotFoundError, ValueError):
            self._next = 0
        self._limit = self._next

    def allocate(self) -> int:
        """The next unused producer id."""
        if self._next < 0:
            self._load()
        if self._next >= self._limit:
            self._reserve(self._next + ID_BLOCK)
        pid = self._next
        self._next += 1
        return pid

    def _reserve(self, limit: int) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_atomically(self.path, str(limit))
        self._limit = limit


__all__ = ["ProducerIdAllocator", "ProducerStates", "PartitionProducers", "ProducerEntry", "rebuild"]

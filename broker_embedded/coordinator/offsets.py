"""Committed offsets, kept in memory and made durable in the compacted internal topic `__consumer_offsets`.

Every change is a RecordBatch v2 appended to that topic (Kafka's key and value layouts, see `group_records`): a
commit writes the offset, a deletion writes a tombstone, group metadata rides along. On start the topic is read
back in a background task; until it is, group and offset requests answer COORDINATOR_LOAD_IN_PROGRESS.

Transactional offsets (TxnOffsetCommit) are appended as a transactional batch of the producer and stay invisible
until `complete_txn_offsets` writes the commit or abort marker, exactly as Kafka does, so a restart in the middle of
a transaction finds them staged again.

Methods that write return a future that resolves once the write is on disk (when the broker acknowledges only
durable writes): callers that must not answer before that await it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Callable

from kio.schema.errors import ErrorCode

from ..errors import KafkaError
from ..log.batch import CONTROL, HEADER_SIZE, TRANSACTIONAL, parse_header, split_batches
from ..log.partition import PartitionLog
from ..log.records import build_batch, iter_records
from .consumer_group_records import ConsumerGroupKey
from .group import now_ms
from .group_records import (
    ABORT, COMMIT, GroupKey, GroupValue, OffsetKey, OffsetValue, control_record, control_type, decode_group_value,
    decode_key, decode_offset_value, group_key, group_value, offset_key, offset_value,
)

log = logging.getLogger(__name__)

TOPIC = "__consumer_offsets"
TopicPartition = tuple[str, int]
_READ_CHUNK = 1 << 20


class OffsetStore:
    """Committed offsets of every group, by (topic, partition); the broker's `broker.offsets`."""

    def __init__(self, broker) -> None:
        self.broker = broker
        self.offsets: dict[str, dict[TopicPartition, OffsetValue]] = {}
        # Staged transactional offsets: producer id -> group -> partition -> offset.
        self.pending: dict[int, dict[str, dict[TopicPartition, OffsetValue]]] = {}
        self.loading = True
        # Called once the topic is read back, with the stored group metadata (group id -> value).
        self.on_loaded: list[Callable[[dict[str, GroupValue]], None]] = []
        # Records of consumer groups (KIP-848) as read back, by key, for the group coordinator's restore.
        self.consumer_group_records: dict[ConsumerGroupKey, bytes] = {}
        self._after_load: list[Callable[[], None]] = []
        self._load_task: asyncio.Task | None = None
        self._plog: PartitionLog | None = None

    # ---- lifecycle ----

    async def start(self) -> None:
        topic = self.broker.topics.get(TOPIC)
        if topic is None:
            topic = self.broker.topics.create(TOPIC, 1, {"cleanup.policy": "compact"}, internal=True)
        self._plog = topic.logs[0]
        self.loading = True
        self._load_task = asyncio.create_task(self._load())

    async def stop(self) -> None:
        if self._load_task is not None and not self._load_task.done():
            self._load_task.cancel()
            try:
                await self._load_task
            except (asyncio.CancelledError, Exception):
                pass

    async def wait_loaded(self) -> None:
        """Return once the stored offsets are loaded (or loading failed)."""
        if self._load_task is not None:
            await asyncio.shield(self._load_task)

    def check_loaded(self) -> None:
        """Raise COORDINATOR_LOAD_IN_PROGRESS while the topic is being read back."""
        if self.loading:
            raise KafkaError(ErrorCode.coordinator_load_in_progress,
                             "The coordinator is loading offsets and group metadata.")

    async def _load(self) -> None:
        groups: dict[str, GroupValue] = {}
        try:
            await asyncio.to_thread(self._replay, self._plog, groups)
        except Exception:
            log.exception("failed to read %s; starting without the stored offsets", TOPIC)
        self.loading = False
        log.info("loaded committed offsets of %d groups and metadata of %d groups", len(self.offsets), len(groups))
        for hook in self.on_loaded:
            hook(groups)
        after, self._after_load = self._after_load, []
        for action in after:
            action()

    def _replay(self, plog: PartitionLog, groups: dict[str, GroupValue]) -> None:
        """Apply every record of the topic in order (runs in a thread; nothing else touches the store meanwhile)."""
        offset = plog.log_start_offset
        end = plog.high_watermark
        while offset < end:
            data = plog.read(offset, _READ_CHUNK)
            if not data:
                break
            before = offset
            for pos, header in _whole_batches(data):
                if header.next_offset <= offset:
                    continue
                offset = header.next_offset
                batch = data[pos : pos + header.size]
                if header.is_control:
                    for rec in iter_records(batch, header):
                        self._settle(header.producer_id, control_type(rec.key or b"\0\0\0\0") == COMMIT)
                    continue
                for rec in iter_records(batch, header):
                    if rec.key is None:
                        continue
                    key = decode_key(rec.key)
                    if isinstance(key, OffsetKey):
                        tp = (key.topic, key.partition)
                        if header.is_transactional:
                            value = decode_offset_value(rec.value) if rec.value is not None else None
                            if value is not None:
                                self.pending.setdefault(header.producer_id, {}).setdefault(key.group, {})[tp] = value
                        elif rec.value is None:
                            self._drop(key.group, [tp])
                        else:
                            self.offsets.setdefault(key.group, {})[tp] = decode_offset_value(rec.value)
                    elif isinstance(key, GroupKey):
                        if rec.value is None:
                            groups.pop(key.group, None)
                        else:
                            groups[key.group] = decode_group_value(rec.value)
                    elif isinstance(key, ConsumerGroupKey):
                        if rec.value is None:
                            self.consumer_group_records.pop(key, None)
                        else:
                            self.consumer_group_records[key] = bytes(rec.value)
            if offset == before:
                raise RuntimeError(f"{TOPIC} cannot be read past offset {offset}")

    # ---- writing ----

    def _append(self, records: list[tuple[bytes, bytes | None]], **batch: int) -> asyncio.Future:
        """Append records as one batch to the topic; the future resolves when they are durable.

        Callers append before they change the in-memory state, so that a write that fails (a full disk) leaves
        memory as the log says. Raises KafkaError(NOT_COORDINATOR) if the append fails, and the future fails with
        it if the fsync does: what Kafka answers when its offsets log cannot be written, and clients retry on it.
        """
        data = bytearray(build_batch([(k, v, (), None) for k, v in records], **batch))
        try:
            self._plog.append(data, split_batches(data))
        except OSError as exc:
            raise _unavailable(exc) from exc
        if self.broker.config.flush_on_ack:
            return _durable(self.broker.flusher.flush(self._plog))
        done = asyncio.get_running_loop().create_future()
        done.set_result(None)
        return done

    def commit(self, group: str, offsets: dict[TopicPartition, OffsetValue]) -> asyncio.Future:
        """Store committed offsets of `group`; visible at once, durable when the future resolves."""
        self.check_loaded()
        written = self._append([(offset_key(group, t, p), offset_value(v)) for (t, p), v in offsets.items()])
        self.offsets.setdefault(group, {}).update(offsets)
        return written

    def fetch(self, group: str) -> dict[TopicPartition, OffsetValue]:
        """The committed offsets of `group` (empty if it has none)."""
        self.check_loaded()
        return self.offsets.get(group, {})

    def delete(self, group: str, partitions: list[TopicPartition]) -> asyncio.Future | None:
        """Forget committed offsets (tombstones); None when there was nothing to delete."""
        stored = self.offsets.get(group, {})
        gone = [tp for tp in dict.fromkeys(partitions) if tp in stored]
        if not gone:
            return None
        written = self._append([(offset_key(group, t, p), None) for t, p in gone])
        self._drop(group, gone)
        return written

    def _drop(self, group: str, partitions: list[TopicPartition]) -> list[TopicPartition]:
        stored = self.offsets.get(group)
        if not stored:
            return []
        gone = [tp for tp in partitions if stored.pop(tp, None) is not None]
        if not stored:
            del self.offsets[group]
        return gone

    def write_group(self, group_id: str, value: GroupValue | None) -> asyncio.Future:
        """Store a group's metadata (None writes its tombstone). Best effort: the group lives in memory, the
        record only lets a restart find it; a failed write is logged and the future still resolves."""
        try:
            written = self._append([(group_key(group_id), group_value(value) if value is not None else None)])
        except KafkaError as exc:
            log.warning("cannot store the metadata of group %s: %s", group_id, exc)
            written = asyncio.get_running_loop().create_future()
            written.set_result(None)
            return written
        done = asyncio.get_running_loop().create_future()

        def settle(fut: asyncio.Future) -> None:
            if fut.exception() is not None:
                log.warning("cannot store the metadata of group %s: %s", group_id, fut.exception())
            if not done.done():
                done.set_result(None)

        written.add_done_callback(settle)
        return done

    def write_records(self, group_id: str, records: list[tuple[bytes, bytes | None]]) -> asyncio.Future:
        """Append a consumer group's records (key, value or None for a tombstone), best effort as `write_group`."""
        if not records:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        try:
            written = self._append(records)
        except KafkaError as exc:
            log.warning("cannot store the metadata of group %s: %s", group_id, exc)
            written = asyncio.get_running_loop().create_future()
            written.set_result(None)
            return written
        done = asyncio.get_running_loop().create_future()

        def settle(fut: asyncio.Future) -> None:
            if fut.exception() is not None:
                log.warning("cannot store the metadata of group %s: %s", group_id, fut.exception())
            if not done.done():
                done.set_result(None)

        written.add_done_callback(settle)
        return done

    def delete_group(self, group_id: str, classic: bool = True) -> asyncio.Future:
        """Tombstones for a deleted group: its offsets and (for a classic group) its metadata."""
        records = [(offset_key(group_id, t, p), None) for t, p in self.offsets.get(group_id, {})]
        if classic:
            records.append((group_key(group_id), None))
        elif not records:
            done = asyncio.get_running_loop().create_future()
            done.set_result(None)
            return done
        written = self._append(records)
        self.offsets.pop(group_id, None)
        return written

    def on_topic_deleted(self, topic: str) -> None:
        """Offsets of a deleted topic go away with it (hooked into `broker.on_topic_deleted`)."""
        if self.loading:
            self._after_load.append(lambda: self.on_topic_deleted(topic))
            return
        for group in list(self.offsets):
            gone = [tp for tp in self.offsets[group] if tp[0] == topic]
            try:
                written = self.delete(group, gone)
                if written is not None:
                    written.add_done_callback(_log_failure)
            except KafkaError as exc:
                # Forget them anyway: a topic recreated under the same name must not resume at stale offsets.
                log.warning("cannot write the tombstones of %s's offsets of deleted topic %s: %s", group, topic, exc)
                self._drop(group, gone)
        for staged in self.pending.values():
            for parts in staged.values():
                for tp in [tp for tp in parts if tp[0] == topic]:
                    del parts[tp]

    def groups(self) -> set[str]:
        return set(self.offsets)

    # ---- transactional offsets (TxnOffsetCommit, EndTxn) ----

    def stage_txn_offsets(self, producer_id: int, group: str,
                          offsets: dict[TopicPartition, tuple[int, int, str | None]],
                          producer_epoch: int = 0) -> asyncio.Future:
        """Stage offsets (offset, leader epoch, metadata) of an open transaction: durable, invisible to
        OffsetFetch until `complete_txn_offsets(producer_id, commit=True)`."""
        self.check_loaded()
        ts = now_ms()
        values = {tp: OffsetValue(o, e, m if m is not None else "", ts) for tp, (o, e, m) in offsets.items()}
        written = self._append([(offset_key(group, t, p), offset_value(v)) for (t, p), v in values.items()],
                               attributes=TRANSACTIONAL, producer_id=producer_id, producer_epoch=producer_epoch)
        self.pending.setdefault(producer_id, {}).setdefault(group, {}).update(values)
        return written

    def complete_txn_offsets(self, producer_id: int, commit: bool, producer_epoch: int = 0,
                             coordinator_epoch: int = 0) -> asyncio.Future:
        """Commit or drop the producer's staged offsets, durably (a transaction marker in the topic)."""
        done = asyncio.get_running_loop().create_future()
        if self.loading:
            def later() -> None:
                inner = self.complete_txn_offsets(producer_id, commit, producer_epoch, coordinator_epoch)
                inner.add_done_callback(lambda f: done.set_result(None) if not done.done() else None)
            self._after_load.append(later)
            return done
        if producer_id not in self.pending:
            done.set_result(None)
            return done
        written = self._append([control_record(COMMIT if commit else ABORT, coordinator_epoch)],
                               attributes=TRANSACTIONAL | CONTROL, producer_id=producer_id,
                               producer_epoch=producer_epoch)
        self._settle(producer_id, commit)
        return written

    def _settle(self, producer_id: int, commit: bool) -> None:
        staged = self.pending.pop(producer_id, None)
        if staged and commit:
            for group, parts in staged.items():
                self.offsets.setdefault(group, {}).update(parts)

    def has_pending_txn_offsets(self, group: str, topic: str, partition: int) -> bool:
        """Whether an open transaction has staged an offset for this partition (OffsetFetch RequireStable)."""
        tp = (topic, partition)
        return any(tp in staged.get(group, ()) for staged in self.pending.values())

    def has_pending_txn_group(self, group: str) -> bool:
        return any(group in staged for staged in self.pending.values())


def _unavailable(exc: BaseException) -> KafkaError:
    return KafkaError(ErrorCode.not_coordinator, f"cannot write {TOPIC}: {getattr(exc, 'strerror', None) or exc}")


def _durable(flushed: asyncio.Future) -> asyncio.Future:
    """`flushed`, with a failed fsync turned into the error clients retry on."""
    done = asyncio.get_running_loop().create_future()

    def settle(fut: asyncio.Future) -> None:
        if done.done():
            return
        if fut.exception() is not None:
            done.set_exception(_unavailable(fut.exception()))
        else:
            done.set_result(None)

    flushed.add_done_callback(settle)
    return done


def _log_failure(fut: asyncio.Future) -> None:
    if fut.exception() is not None:
        log.warning("%s", fut.exception())


def _whole_batches(data: bytes):
    """(position, header) of each complete batch in a read (a read may end inside its last batch)."""
    pos = 0
    while pos + HEADER_SIZE <= len(data):
        header = parse_header(data, pos)
        if pos + header.size > len(data):
            return
        yield pos, header
        pos += header.size

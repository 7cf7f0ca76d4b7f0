"""The second-generation transaction protocol (KIP-890, transaction.version 2) on the wire, as Kafka 4.1 answers
it: partitions join through Produce v12+, groups through TxnOffsetCommit v5, and every EndTxn v5 bumps the epoch.
Each test passes against Apache Kafka 4.1.1 too (`--kafka`), whose markers are written after EndTxn answers (the
tests retry CONCURRENT_TRANSACTIONS as clients do)."""

from __future__ import annotations

import datetime
import time
import uuid

from confluent_kafka import Consumer
from kio.schema.errors import ErrorCode
from kio.static.primitive import i8, i16, i32, i64

from broker_embedded.log.records import build_batch
from wire import Conn

MS = datetime.timedelta(milliseconds=1)
TRANSACTIONAL = 0x10


class Txn:
    """One transactional id driven by raw requests of the second generation."""

    def __init__(self, bootstrap: str, topic: str, partitions: int = 1, timeout_ms: int = 60_000) -> None:
        self.conn = Conn(bootstrap)
        self.topic = topic
        self.tid = "tid-" + uuid.uuid4().hex[:8]
        m = self.conn.m((19, 7))
        r = self.conn.call((19, 7), topics=(m.CreatableTopic(name=topic, num_partitions=i32(partitions),
                                                             replication_factor=i16(1), assignments=(), configs=()),),
                           timeout=30_000 * MS, validate_only=False)
        assert r.topics[0].error_code in (ErrorCode.none, ErrorCode.topic_already_exists)
        for _ in range(100):  # Kafka loads the transaction coordinator on first use
            if self.conn.call((10, 4), key_type=i8(1), coordinator_keys=(self.tid,)).coordinators[0].error_code == 0:
                break
            time.sleep(0.1)
        r = self._retry((22, 5), transactional_id=self.tid, transaction_timeout=timeout_ms * MS, producer_id=i64(-1),
                        producer_epoch=i16(-1))
        assert r.error_code == ErrorCode.none
        self.pid, self.epoch, self.seq = r.producer_id, r.producer_epoch, 0

    def _retry(self, api, **fields):
        for _ in range(100):
            r = self.conn.call(api, **fields)
            if getattr(r, "error_code", None) not in (ErrorCode.concurrent_transactions,
                                                     ErrorCode.coordinator_load_in_progress):
                return r
            time.sleep(0.05)
        return r

    def produce(self, value: bytes, epoch: int | None = None, seq: int | None = None, version: int = 12):
        m = self.conn.m((0, version))
        data = build_batch([(b"k", value, [], None)], attributes=TRANSACTIONAL, producer_id=self.pid,
                           producer_epoch=self.epoch if epoch is None else epoch,
                           base_sequence=self.seq if seq is None else seq)
        for _ in range(100):
            r = self.conn.call((0, version), transactional_id=self.tid, acks=i16(-1), timeout=5000 * MS,
                               topic_data=(m.TopicProduceData(name=self.topic, partition_data=(
                                   m.PartitionProduceData(index=i32(0), records=data),)),))
            p = r.responses[0].partition_responses[0]
            # Retriable: a transaction still completing, or (Kafka) a new topic whose leader is not known yet.
            if p.error_code not in (ErrorCode.concurrent_transactions, ErrorCode.not_enough_replicas,
                                    ErrorCode.not_leader_or_follower, ErrorCode.unknown_topic_or_partition):
                break
            time.sleep(0.05)
        if p.error_code == ErrorCode.none and seq is None:
            self.seq += 1
        return p.error_code

    def end(self, commit: bool, epoch: int | None = None):
        r = self._retry((26, 5), transactional_id=self.tid, producer_id=i64(self.pid),
                        producer_epoch=i16(self.epoch if epoch is None else epoch), committed=commit)
        return r.error_code, r.producer_id, r.producer_epoch

    def ended(self, commit: bool):
        """End the transaction as a client does: take the new epoch, restart sequences."""
        code, pid, epoch = self.end(commit)
        assert code == ErrorCode.none, code
        assert (pid, epoch) == (self.pid, self.epoch + 1)
        self.epoch, self.seq = epoch, 0


def _read_committed(bootstrap: str, topic: str, expected: int) -> list[bytes]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": topic, "isolation.level": "read_committed",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False})
    c.subscribe([topic])
    values, deadline = [], time.monotonic() + 20
    while len(values) < expected and time.monotonic() < deadline:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            values.append(msg.value())
    # A little longer, to see anything that should not be there.
    end = time.monotonic() + 1
    while time.monotonic() < end:
        msg = c.poll(0.2)
        if msg is not None and not msg.error():
            values.append(msg.value())
    c.close()
    return values


def test_partitions_join_through_produce_and_every_end_bumps_the_epoch(bootstrap, topic_name):
    t = Txn(bootstrap, topic_name)
    start = t.epoch
    assert t.produce(b"a1") == ErrorCode.none and t.produce(b"a2") == ErrorCode.none  # no AddPartitionsToTxn
    t.ended(commit=True)
    assert t.produce(b"b1") == ErrorCode.none
    t.ended(commit=False)
    assert t.produce(b"c1") == ErrorCode.none
    t.ended(commit=True)
    assert t.epoch == start + 3
    # A write of an ended transaction (the old epoch) is refused.
    assert t.produce(b"late", epoch=start, seq=9) == ErrorCode.invalid_producer_epoch
    assert _read_committed(bootstrap, topic_name, 3) == [b"a1", b"a2", b"c1"]


def test_end_txn_v5_retries_and_empty_ends(bootstrap, topic_name):
    t = Txn(bootstrap, topic_name)
    e = t.epoch
    # Nothing open: an abort still bumps the epoch, a commit is refused.
    assert t.end(commit=False) == (ErrorCode.none, t.pid, e + 1)
    t.epoch += 1
    assert t.end(commit=True)[0] == ErrorCode.invalid_txn_state
    assert t.produce(b"x") == ErrorCode.none
    t.ended(commit=True)
    # The retry of a completed end (the epoch before the bump) gets the first answer; the other outcome does not.
    assert t.end(commit=True, epoch=t.epoch - 1) == (ErrorCode.none, t.pid, t.epoch)
    assert t.end(commit=False, epoch=t.epoch - 1)[0] == ErrorCode.invalid_txn_state
    # With the current epoch after a commit: abort bumps again, commit has nothing to commit.
    assert t.end(commit=True)[0] == ErrorCode.invalid_txn_state
    assert t.end(commit=False) == (ErrorCode.none, t.pid, t.epoch + 1)
    # An epoch from further back is fenced.
    assert t.end(commit=False, epoch=t.epoch - 1)[0] == ErrorCode.producer_fenced


def test_txn_offset_commit_v5_joins_the_group(bootstrap, topic_name):
    t = Txn(bootstrap, topic_name)
    group = "g-" + topic_name
    m = t.conn.m((28, 5))
    for _ in range(100):  # the group's coordinator
        if t.conn.call((10, 4), key_type=i8(0), coordinator_keys=(group,)).coordinators[0].error_code == 0:
            break
        time.sleep(0.1)
    assert t.produce(b"v") == ErrorCode.none
    r = t._retry((28, 5), transactional_id=t.tid, group_id=group, producer_id=i64(t.pid), producer_epoch=i16(t.epoch),
                 generation_id=i32(-1), member_id="", group_instance_id=None,
                 topics=(m.TxnOffsetCommitRequestTopic(name=topic_name, partitions=(
                     m.TxnOffsetCommitRequestPartition(partition_index=i32(0), committed_offset=i64(7),
                                                       committed_leader_epoch=i32(-1), committed_metadata=""),)),))
    assert r.topics[0].partitions[0].error_code == ErrorCode.none  # no AddOffsetsToTxn before it
    t.ended(commit=True)
    mf = t.conn.m((9, 8))
    for _ in range(100):
        f = t.conn.call((9, 8), require_stable=True, groups=(mf.OffsetFetchRequestGroup(
            group_id=group, topics=(mf.OffsetFetchRequestTopics(name=topic_name, partition_indexes=(i32(0),)),)),))
        p = f.groups[0].topics[0].partitions[0]
        if p.error_code != ErrorCode.unstable_offset_commit:
            break
        time.sleep(0.05)
    assert (p.error_code, p.committed_offset) == (ErrorCode.none, 7)


def test_the_bumped_epoch_survives_a_restart(broker_process, topic_name):
    broker = broker_process().start()
    t = Txn(broker.bootstrap_servers, topic_name)
    assert t.produce(b"before") == ErrorCode.none
    t.ended(commit=True)
    t.conn.close()
    assert broker.stop() == 0
    broker.start()
    t.conn = Conn(broker.bootstrap_servers)
    # The retry of the end before the restart is still recognised, and the client goes on with its new epoch.
    assert t.end(commit=True, epoch=t.epoch - 1) == (ErrorCode.none, t.pid, t.epoch)
    assert t.produce(b"after") == ErrorCode.none
    t.ended(commit=True)
    assert _read_committed(broker.bootstrap_servers, topic_name, 2) == [b"before", b"after"]


def test_a_new_instance_fences_the_old_one(bootstrap, topic_name):
    t = Txn(bootstrap, topic_name)
    assert t.produce(b"zombie") == ErrorCode.none
    r = t._retry((22, 5), transactional_id=t.tid, transaction_timeout=60_000 * MS, producer_id=i64(-1),
                 producer_epoch=i16(-1))
    # The open transaction is aborted with epoch + 1 (fencing the old instance); the new instance gets epoch + 2,
    # so that nothing the old one sends can pass for the retry of an end.
    assert (r.error_code, r.producer_id, r.producer_epoch) == (ErrorCode.none, t.pid, t.epoch + 2)
    assert t.end(commit=False)[0] == ErrorCode.producer_fenced
    assert t.end(commit=True)[0] == ErrorCode.producer_fenced
    assert t.produce(b"zombie again", seq=1) == ErrorCode.invalid_producer_epoch
    assert _read_committed(bootstrap, topic_name, 0) == []


def test_a_timed_out_transaction_is_recovered_by_its_abort(bootstrap, topic_name):
    """The coordinator aborts a transaction open past its timeout with a bumped epoch; a second-generation client
    then aborts with its old epoch, gets the bumped one, and goes on (Kafka looks for timed-out transactions every
    10 s by default)."""
    t = Txn(bootstrap, topic_name, timeout_ms=1000)
    assert t.produce(b"timed out") == ErrorCode.none
    deadline = time.monotonic() + 30
    state = None
    while time.monotonic() < deadline:
        state = t.conn.call((65, 0), transactional_ids=(t.tid,)).transaction_states[0].transaction_state
        if state == "CompleteAbort":
            break
        time.sleep(0.2)
    assert state == "CompleteAbort"
    t.ended(commit=False)
    assert t.produce(b"next") == ErrorCode.none
    t.ended(commit=True)
    assert _read_committed(bootstrap, topic_name, 1) == [b"next"]

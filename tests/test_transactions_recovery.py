"""Transactions across broker restarts, and the admin views of producers and transactions."""

from __future__ import annotations

import asyncio
import uuid

from aiokafka import AIOKafkaProducer

from broker_embedded import EmbeddedBroker
from broker_embedded.coordinator.transactions import PREPARE_COMMIT
from test_transactions import _create, _producer, read_all


async def test_open_transaction_is_aborted_by_a_broker_crash(broker_process, topic_name):
    """An Ongoing transaction found at start is aborted (its producer fenced); the aborted-transaction index is
    rebuilt from the log on the next start, so read_committed keeps hiding it."""
    broker = broker_process().start()
    bootstrap = broker.bootstrap_servers
    await _create(bootstrap, topic_name)
    producer = await _producer(bootstrap, "tx-" + uuid.uuid4().hex[:8])
    async with producer.transaction():
        await producer.send_and_wait(topic_name, b"committed")
    await producer.begin_transaction()
    await producer.send_and_wait(topic_name, b"open")
    broker.kill()
    await producer.stop()
    broker.start()
    assert await read_all(bootstrap, topic_name, "read_committed") == [b"committed"]
    assert await read_all(bootstrap, topic_name, "read_uncommitted") == [b"committed", b"open"]
    broker.stop()
    broker.start()
    assert await read_all(bootstrap, topic_name, "read_committed") == [b"committed"]


async def test_prepared_commit_completes_after_restart(tmp_path, topic_name):
    """The broker stops between writing PrepareCommit and the markers (the state a crash at that point leaves on
    disk); the next start writes the markers and the transaction's records become visible."""
    data = str(tmp_path / "broker")
    broker = await EmbeddedBroker(data_dir=data, port=0).start()
    bootstrap = broker.bootstrap_servers
    await _create(bootstrap, topic_name)
    tid = "tx-" + uuid.uuid4().hex[:8]
    producer = await _producer(bootstrap, tid)
    await producer.begin_transaction()
    await producer.send_and_wait(topic_name, b"prepared")
    meta = broker.broker.transactions.txns[tid]
    meta.state = PREPARE_COMMIT
    await broker.broker.transactions._persist(meta)
    await producer.stop()
    await broker.stop()
    broker = await EmbeddedBroker(data_dir=data, port=0).start()
    try:
        assert broker.broker.transactions.txns[tid].state == "CompleteCommit"
        assert await read_all(broker.bootstrap_servers, topic_name, "read_committed") == [b"prepared"]
    finally:
        await broker.stop()


async def test_admin_views_of_producers_and_transactions(bootstrap, topic_name):
    from kafka import TopicPartition
    from kafka.admin import KafkaAdminClient

    await _create(bootstrap, topic_name)
    tid = "tx-" + uuid.uuid4().hex[:8]
    producer = await _producer(bootstrap, tid)
    idempotent = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True)
    await idempotent.start()
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        await idempotent.send_and_wait(topic_name, b"plain")
        await producer.begin_transaction()
        await producer.send_and_wait(topic_name, b"open")
        described = await asyncio.to_thread(admin.describe_transactions, [tid])
        txn = described[tid]
        assert str(getattr(txn.state, "value", txn.state)).lower() == "ongoing"
        assert txn.producer_id >= 0
        listed = await asyncio.to_thread(admin.list_transactions)  # node id -> listings
        assert tid in {t.transactional_id for listings in listed.values() for t in listings}
        ongoing = await asyncio.to_thread(admin.list_transactions, state_filters=["Ongoing"],
                                          transactional_id_pattern=tid)
        assert [t.transactional_id for listings in ongoing.values() for t in listings] == [tid]
        producers = (await asyncio.to_thread(admin.describe_producers, [TopicPartition(topic_name, 0)]))
        states = producers[TopicPartition(topic_name, 0)]
        active = getattr(states, "active_producers", states)
        open_starts = [p.current_transaction_start_offset for p in active if p.producer_id == txn.producer_id]
        assert open_starts == [1]
        assert len(active) == 2
        await producer.commit_transaction()
        described = await asyncio.to_thread(admin.describe_transactions, [tid])
        # Kafka writes the markers after answering EndTxn, so it may still say PrepareCommit for a moment.
        assert str(getattr(described[tid].state, "value", described[tid].state)).lower() in (
            "completecommit", "preparecommit")
    finally:
        admin.close()
        await idempotent.stop()
        await producer.stop()


async def test_large_transaction_state_log_is_replayed(tmp_path):
    """More than one read's worth (1 MiB) of `__transaction_state` comes back whole after a restart."""
    data = str(tmp_path / "broker")
    broker = await EmbeddedBroker(data_dir=data, port=0).start()
    coordinator = broker.broker.transactions
    expected = {}
    for i in range(40):
        tid = f"tx-{i:04d}"
        pid, epoch = await coordinator.init_producer_id(tid, 60000)
        await coordinator.add_offsets(tid, pid, epoch, f"group-{i}-" + "x" * 30_000)  # a 30 KB state record
        expected[tid] = (pid, epoch)
    assert broker.broker.topics.get("__transaction_state").logs[0].size_bytes > 1 << 20
    await broker.stop()
    broker = await EmbeddedBroker(data_dir=data, port=0).start()
    try:
        txns = broker.broker.transactions.txns
        assert {tid: (m.producer_id, m.producer_epoch - 1) for tid, m in txns.items()} == expected
        assert {m.state for m in txns.values()} == {"CompleteAbort"}  # open at the restart: aborted, fenced
    finally:
        await broker.stop()

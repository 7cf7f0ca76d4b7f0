"""Durability across restarts: a clean stop keeps data and configs; kill -9 loses no acknowledged record."""

from __future__ import annotations

import multiprocessing
import random
import signal
import time

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic


def _read_all(bootstrap: str, topic: str, partitions: int, timeout: float = 30.0) -> list[tuple[int, int, bytes]]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "reader", "enable.auto.commit": False,
                         "enable.partition.eof": True})
    consumer.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
    got, eof = [], set()
    deadline = time.monotonic() + timeout
    while len(eof) < partitions and time.monotonic() < deadline:
        m = consumer.poll(0.5)
        if m is None:
            continue
        if m.error():
            if m.error().code() == KafkaError._PARTITION_EOF:
                eof.add(m.partition())
                continue
            raise AssertionError(m.error())
        got.append((m.partition(), m.offset(), m.value()))
    consumer.close()
    assert len(eof) == partitions, "did not reach the end of every partition"
    return got


def test_stop_and_start_keeps_data_and_topic_configs(broker_process):
    broker = broker_process().start()
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    admin.create_topics([NewTopic("kept", 3, 1, config={"retention.ms": "123456", "internal.segment.bytes": "4096"})])[
        "kept"].result(10)
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all", "linger.ms": 2,
                         "enable.idempotence": False})
    for i in range(3000):
        producer.produce("kept", value=b"v%d" % i, key=b"k%d" % i)
    assert producer.flush(20) == 0
    before = _read_all(broker.bootstrap_servers, "kept", 3)
    assert broker.stop() == 0

    broker.start()
    after = _read_all(broker.bootstrap_servers, "kept", 3)
    assert sorted(after) == sorted(before) and len(after) == 3000
    admin = AdminClient({"bootstrap.servers": broker.bootstrap_servers})
    res = ConfigResource(ConfigResource.Type.TOPIC, "kept")
    configs = admin.describe_configs([res])[res].result(10)
    assert configs["retention.ms"].value == "123456"
    assert configs["internal.segment.bytes"].value == "4096"  # small segments: below segment.bytes' 1 MiB floor
    md = admin.list_topics(timeout=10)
    assert len(md.topics["kept"].partitions) == 3
    # Appends continue after the last offset.
    producer = Producer({"bootstrap.servers": broker.bootstrap_servers, "acks": "all", "enable.idempotence": False})
    acked = []
    producer.produce("kept", value=b"new", partition=0, on_delivery=lambda err, msg: acked.append((err, msg.offset())))
    producer.flush(10)
    assert acked[0][0] is None and acked[0][1] == sum(1 for p, _, _ in before if p == 0)
    broker.stop()


def _produce_forever(bootstrap: str, topic: str, worker: int, acked_queue) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 1, "retries": 0,
                         "enable.idempotence": False, "message.timeout.ms": 5000})

    def on_delivery(err, msg):
        if err is None:
            acked_queue.put(msg.value())

    i = 0
    while True:
        producer.produce(topic, value=b"%d-%d" % (worker, i), on_delivery=on_delivery)
        producer.poll(0)
        i += 1
        if i % 200 == 0:
            producer.poll(0.001)


def test_kill_9_while_producing_loses_no_acknowledged_record(broker_process):
    broker = broker_process("--default-partitions", "2", "--config", "internal.segment.bytes=65536").start()
    bootstrap = broker.bootstrap_servers
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic("durable", 2, 1)])["durable"].result(10)
    ctx = multiprocessing.get_context("spawn")
    acked = ctx.Queue()
    workers = [ctx.Process(target=_produce_forever, args=(bootstrap, "durable", w, acked), daemon=True)
               for w in range(2)]
    for w in workers:
        w.start()
    confirmed: set[bytes] = set()
    deadline = time.monotonic() + 20
    while len(confirmed) < 20000 and time.monotonic() < deadline:
        try:
            confirmed.add(acked.get(timeout=1))
        except Exception:
            pass
    time.sleep(random.random() * 0.3)
    broker.proc.send_signal(signal.SIGKILL)
    broker.proc.wait()
    time.sleep(0.5)
    for w in workers:
        w.kill()
        w.join()
    while True:
        try:
            confirmed.add(acked.get(timeout=0.5))
        except Exception:
            break
    assert len(confirmed) > 1000, "producers must have been acknowledged before the kill"

    broker.start()
    stored = _read_all(bootstrap, "durable", 2)
    values = {v for _, _, v in stored}
    missing = confirmed - values
    assert not missing, f"{len(missing)} acknowledged records lost, e.g. {sorted(missing)[:5]}"
    # The log is readable to its end with consecutive offsets per partition.
    for p in range(2):
        offsets = [o for part, o, _ in stored if part == p]
        assert offsets == list(range(len(offsets)))
    broker.stop()

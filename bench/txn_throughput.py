"""Transactional produce throughput against plain idempotent produce, ours and Apache Kafka's, in one run.

    python bench/txn_throughput.py                 # 3 runs per figure, medians
    python bench/txn_throughput.py --quick         # a fast smoke run
    python bench/txn_throughput.py --no-kafka

librdkafka (confluent-kafka) produces N records of 100 bytes to a fresh single-partition topic with acks=all and
batching (linger.ms=5): once as an idempotent producer, once as a transactional producer that commits every 100 ms
(begin, produce until 100 ms have passed, commit). The figure runs from the first `produce()` to the last commit or
flush. Brokers and modes are interleaved run by run; the table shows medians and the ratios.

Durability differs as in bench/broker_throughput.py: ours fsyncs before acknowledging (group commit) and fsyncs
every transaction state change and marker; Kafka answers from the page cache.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from contextlib import ExitStack
from pathlib import Path

from confluent_kafka import KafkaException, Producer

sys.path.insert(0, str(Path(__file__).resolve().parent))
from broker_throughput import create_topic, free_port, start_kafka_peer, start_ours  # noqa: E402

PAYLOAD = b"x" * 100
COMMIT_EVERY = 0.1


def produce(bootstrap: str, count: int, transactional: bool) -> float:
    """Records per second for `count` records, idempotent or in transactions committed every 100 ms."""
    topic = "bench-" + uuid.uuid4().hex[:10]
    create_topic(bootstrap, topic)
    conf = {"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5, "enable.idempotence": True,
            "batch.size": 1_000_000, "queue.buffering.max.messages": 1_000_000}
    if transactional:
        conf["transactional.id"] = "bench-" + uuid.uuid4().hex[:10]
    producer = Producer(conf)
    if transactional:
        producer.init_transactions(30)
    else:
        # The idempotent producer acquires its producer id in the background: let that finish outside the timing.
        producer.produce(topic, PAYLOAD)
        producer.flush(30)
        count -= 1
    started = time.perf_counter()
    txn_started = None
    for i in range(count):
        if transactional and txn_started is None:
            producer.begin_transaction()
            txn_started = time.perf_counter()
        while True:
            try:
                producer.produce(topic, PAYLOAD)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
        if transactional and time.perf_counter() - txn_started >= COMMIT_EVERY:
            producer.commit_transaction(60)
            txn_started = None
    if transactional and txn_started is not None:
        producer.commit_transaction(60)
    if producer.flush(60):
        raise KafkaException("records left unacknowledged")
    return count / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--quick", action="store_true", help="1 run of 30,000 records")
    ap.add_argument("--no-kafka", action="store_true", help="measure only our broker")
    args = ap.parse_args(argv)
    runs, records = (1, 30_000) if args.quick else (args.runs, args.records)
    starters = {"ours": start_ours}
    if not args.no_kafka:
        starters["kafka"] = start_kafka_peer
    rates: dict[tuple[str, str], list[float]] = {}
    with ExitStack() as stack:
        peers = {name: stack.enter_context(start(free_port())) for name, start in starters.items()}
        for _run in range(runs):
            for name, peer in peers.items():
                for mode in ("idempotent", "transactional"):
                    rates.setdefault((name, mode), []).append(produce(peer.bootstrap, records, mode == "transactional"))
    med = {key: statistics.median(v) for key, v in rates.items()}
    print(f"{records} records of 100 B, acks=all, median of {runs} run(s); transactions commit every 100 ms")
    print(f"{'broker':<8} {'idempotent rec/s':>18} {'transactional rec/s':>20} {'txn/idem':>9}")
    for name in peers:
        idem, txn = med[(name, "idempotent")], med[(name, "transactional")]
        print(f"{name:<8} {idem:>18,.0f} {txn:>20,.0f} {txn / idem:>9.2f}")
    if "kafka" in peers:
        for mode in ("idempotent", "transactional"):
            print(f"ours/kafka {mode}: {med[('ours', mode)] / med[('kafka', mode)]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

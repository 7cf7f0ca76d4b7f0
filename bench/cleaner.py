"""Log cleaner benchmark: how fast a pass cleans (MB/s of log rewritten) and how much produce latency rises while
it runs, against the same produce latency with the cleaner idle, on the embedded broker.

    python bench/cleaner.py [--keys 200000] [--rounds 5] [--codec none|gzip|lz4|zstd] [--no-flush-on-ack]

Latency is measured with a probe producer (confluent-kafka, acks=all, one record in flight) writing to another
topic of the same broker, so what rises is the delay the cleaner causes to the event loop, not contention on a
partition. Apache Kafka's cleaner is not measured here (its passes cannot be triggered or timed from a client);
see the report of issue 5.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import threading
import time

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from broker_embedded import EmbeddedBroker


def _load(bootstrap: str, topic: str, keys: int, rounds: int, codec: str) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": codec,
                         "queue.buffering.max.messages": 2_000_000})
    for r in range(rounds):
        for i in range(keys):
            producer.produce(topic, key=b"key-%08d" % i, value=b"value-%d-%d-" % (i, r) + b"x" * 40)
            if i % 50000 == 0:
                producer.poll(0)
    producer.flush(120)
    time.sleep(1.1)  # segment.ms: the next record rolls the last segment, so that all of it is cleanable
    producer.produce(topic, key=b"~end", value=b"end")
    producer.flush(30)


def _probe(bootstrap: str, topic: str, stop: threading.Event, seconds: float | None = None) -> list[float]:
    """Produce one record at a time with acks=all until `stop` (or for `seconds`); return latencies in ms."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
    producer.produce(topic, value=b"warm-up")
    producer.flush(10)
    out: list[float] = []
    end = time.monotonic() + seconds if seconds else None
    while not stop.is_set() and (end is None or time.monotonic() < end):
        started = time.perf_counter()
        producer.produce(topic, value=b"probe")
        producer.flush(10)
        out.append((time.perf_counter() - started) * 1000)
    return out


def _summary(latencies: list[float]) -> str:
    q = statistics.quantiles(latencies, n=100)
    return f"p50 {q[49]:.2f} ms  p99 {q[98]:.2f} ms  max {max(latencies):.2f} ms  ({len(latencies)} probes)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--codec", default="none")
    ap.add_argument("--no-flush-on-ack", action="store_true",
                    help="acks=all without fsync: separates the cleaner's CPU (GIL) cost from its disk contention")
    ap.add_argument("--io-max-bytes-per-second", type=float, default=float("inf"))
    ap.add_argument("--thread", action="store_true", help="run the pass in a thread instead of a child process")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as data:
        broker = EmbeddedBroker(data_dir=data, port=0, log_cleaner_enable=False,
                                log_cleaner_io_max_bytes_per_second=args.io_max_bytes_per_second,
                                log_cleaner_subprocess=not args.thread,
                                flush_on_ack=not args.no_flush_on_ack).start_in_thread()
        try:
            bootstrap = broker.bootstrap_servers
            admin = AdminClient({"bootstrap.servers": bootstrap})
            topics = [NewTopic("compacted", 1, 1, config={"cleanup.policy": "compact", "segment.bytes": "8388608",
                                                          "segment.ms": "1000"}),
                      NewTopic("probe", 1, 1)]
            for fut in admin.create_topics(topics).values():
                fut.result(30)
            _load(bootstrap, "compacted", args.keys, args.rounds, args.codec)
            plog = broker.broker.partition("compacted", 0)
            idle = _probe(bootstrap, "probe", threading.Event(), seconds=3)

            stop = threading.Event()
            during: list[float] = []
            prober = threading.Thread(target=lambda: during.extend(_probe(bootstrap, "probe", stop)))
            prober.start()
            time.sleep(0.5)
            fut = asyncio.run_coroutine_threadsafe(broker.broker.cleaner.clean(plog), broker._loop)
            result = fut.result(600)
            stop.set()
            prober.join()
        finally:
            broker.stop_thread()
    mb = result.bytes_read / 1e6
    print(f"log cleaned: {mb:.1f} MB ({result.records_read} records, kept {result.records_kept}) "
          f"in {result.seconds:.2f} s (throttled {result.throttled_seconds:.2f} s) = {mb / result.seconds:.1f} MB/s, "
          f"{result.records_read / result.seconds / 1000:.0f}k records/s, written {result.bytes_written / 1e6:.1f} MB")
    print(f"produce latency, cleaner idle:    {_summary(idle)}")
    print(f"produce latency, cleaner running: {_summary(during)}")
    ratio = statistics.quantiles(during, n=100)[98] / statistics.quantiles(idle, n=100)[98]
    print(f"p99 ratio running/idle: {ratio:.2f}")


if __name__ == "__main__":
    main()

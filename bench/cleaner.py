"""Log cleaner benchmark: how fast a pass compacts a partition (MB/s of log cleaned) and how much produce latency
rises while it runs, for the embedded broker and for Apache Kafka, measured in the same run.

    python bench/cleaner.py                       # 3 runs each, medians (about 2 minutes plus Kafka's start)
    python bench/cleaner.py --runs 1 --keys 50000 --no-kafka
    python bench/cleaner.py --thread              # our pass in a thread of the broker instead of a child process
    python bench/cleaner.py --io-max-bytes-per-second 20e6   # log.cleaner.io.max.bytes.per.second, both brokers
    python bench/cleaner.py --no-flush-on-ack     # our acks=all from the page cache too, as Kafka's

Each run loads a fresh compacted topic (one partition, segment.bytes 8 MiB) with `--rounds` updates of `--keys` keys
(librdkafka, linger.ms 20), rolls the last segment so that everything is cleanable, probes produce latency for 3 s
with the cleaner idle, then lets the cleaner run and probes again until the pass is over. The probe is a second
librdkafka producer, acks=all, one record in flight, to another topic of the same broker: what rises is the delay
that cleaning causes to the broker as a whole, not contention on a partition.

- ours: an EmbeddedBroker in this process with its background cleaner off; the bench starts the pass itself.
  Cleaning speed is the pass's own figure: bytes of log rewritten over the pass's time (`CleanResult`).
- kafka: Apache Kafka 4.1 on its own port and data directory (bench/peers.py). The topic is created with
  min.compaction.lag.ms of an hour so that nothing is cleaned while loading; setting it to 0 lets the cleaner in
  (log.cleaner.backoff.ms is set to 100 ms first, a dynamic broker config). Cleaning speed is Kafka's own figure,
  from its log cleaner's statistics ("X MB of log processed in Y seconds", logger raised to INFO through a
  BROKER_LOGGER config); the pass is over when cleaner-offset-checkpoint names the topic.

Durability differs: ours answers acks=-1 after fsync (group commit), Kafka from the page cache. Both figures of
latency are for the same probe, so compare each broker's rise (running / idle), not the brokers' idle latency.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka import Producer
from confluent_kafka.admin import (AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource, NewTopic,
                                   ResourceType)

from broker_embedded import EmbeddedBroker

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import ROOT, start_kafka  # noqa: E402

SEGMENT_BYTES = 8 * 1024 * 1024
KAFKA_CLEANER_LOGGER = "org.apache.kafka.storage.internals.log.LogCleaner$CleanerThread"
# "%,.1f MB of log processed in %,.1f seconds (%,.1f MB/sec)", MB of 2^20 bytes, thousands with commas.
_KAFKA_STATS = re.compile(r"cleaned log (\S+) \(dirty section[^\n]*\n\s*([\d,.]+) MB of log processed in [\d,.]+ "
                          r"seconds \(([\d,.]+) MB/sec\)")


@dataclass
class RunFigures:
    """One run on one broker."""

    mb_cleaned: float  # MB (10^6 bytes) of log rewritten by the pass
    pass_seconds: float  # the broker's own timing of the pass
    wall_seconds: float  # from letting the cleaner in until the pass is over, seen from outside
    idle: list[float]  # probe latencies, ms
    during: list[float]

    @property
    def mb_per_s(self) -> float:
        return self.mb_cleaned / self.pass_seconds

    def p99(self, which: str) -> float:
        return statistics.quantiles(getattr(self, which), n=100)[98]


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


class Prober:
    """Produces one record at a time with acks=all in a thread, recording each latency in ms."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0, "acks": "all"})
        self.producer.produce(topic, value=b"warm-up")
        self.producer.flush(10)
        self.topic = topic
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.latencies: list[float] = []

    def run_for(self, seconds: float) -> list[float]:
        self.start()
        time.sleep(seconds)
        return self.stop()

    def start(self) -> None:
        self.latencies = []
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop)
        self._thread.start()

    def stop(self) -> list[float]:
        self._stop.set()
        self._thread.join()
        return self.latencies

    def _loop(self) -> None:
        while not self._stop.is_set():
            started = time.perf_counter()
            self.producer.produce(self.topic, value=b"probe")
            self.producer.flush(10)
            self.latencies.append((time.perf_counter() - started) * 1000)


def _create(admin: AdminClient, topics: list[NewTopic]) -> None:
    for fut in admin.create_topics(topics).values():
        fut.result(30)


def _topic_config(extra: dict[str, str] | None = None) -> dict[str, str]:
    return {"cleanup.policy": "compact", "segment.bytes": str(SEGMENT_BYTES), "segment.ms": "1000", **(extra or {})}


def run_ours(args: argparse.Namespace) -> RunFigures:
    with tempfile.TemporaryDirectory() as data:
        broker = EmbeddedBroker(data_dir=data, port=0, log_cleaner_enable=False,
                                flush_on_ack=not args.no_flush_on_ack,
                                log_cleaner_io_max_bytes_per_second=args.io_max_bytes_per_second,
                                log_cleaner_subprocess=not args.thread).start_in_thread()
        try:
            bootstrap = broker.bootstrap_servers
            _create(AdminClient({"bootstrap.servers": bootstrap}),
                    [NewTopic("compacted", 1, 1, config=_topic_config()), NewTopic("probe", 1, 1)])
            _load(bootstrap, "compacted", args.keys, args.rounds, args.codec)
            plog = broker.broker.partition("compacted", 0)
            prober = Prober(bootstrap, "probe")
            idle = prober.run_for(3)
            prober.start()
            started = time.monotonic()
            try:
                result = asyncio.run_coroutine_threadsafe(broker.broker.cleaner.clean(plog), broker._loop).result(600)
            finally:
                wall = time.monotonic() - started
                during = prober.stop()
        finally:
            broker.stop_thread()
    if result is None or result.error is not None:
        raise RuntimeError(f"our pass did not complete: {result and result.error}")
    return RunFigures(result.bytes_read / 1e6, result.seconds, wall, idle, during)


class KafkaCleaner:
    """What the bench needs of a running Apache Kafka: its data directory and cleaner log, and dynamic configs."""

    def __init__(self, bootstrap: str, kafka_dir: Path) -> None:
        self.bootstrap = bootstrap
        self.dir = kafka_dir
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self._alter(ResourceType.BROKER, "1", {"log.cleaner.backoff.ms": "100"})
        self._raise_cleaner_log_level()

    def _alter(self, kind: ResourceType, name: str, configs: dict[str, str]) -> None:
        entries = [ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET) for k, v in configs.items()]
        for fut in self.admin.incremental_alter_configs([ConfigResource(kind, name, incremental_configs=entries)]
                                                        ).values():
            fut.result(30)

    def _raise_cleaner_log_level(self) -> None:
        # confluent-kafka has no BROKER_LOGGER resource type; kafka-python has.
        from kafka.admin import ConfigResource as KPResource, ConfigResourceType, KafkaAdminClient
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            admin.alter_configs([KPResource(ConfigResourceType.BROKER_LOGGER, "1",
                                            configs={KAFKA_CLEANER_LOGGER: "INFO"})])
        finally:
            admin.close()

    def checkpoint(self, topic: str) -> int | None:
        try:
            text = (self.dir / "data" / "cleaner-offset-checkpoint").read_text()
        except FileNotFoundError:
            return None
        for line in text.splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] == topic and parts[1] == "0":
                return int(parts[2])
        return None

    def stats(self, topic: str) -> tuple[float, float] | None:
        """(MB of log processed, seconds) from the cleaner's statistics for `topic`-0 in Kafka's log (the seconds
        from its MB/sec, printed with more significant digits than its seconds)."""
        found = None
        for name, mb, rate in _KAFKA_STATS.findall((self.dir / "kafka.log").read_text(errors="replace")):
            if name == f"{topic}-0":
                mb_f, rate_f = float(mb.replace(",", "")), float(rate.replace(",", ""))
                found = (mb_f * 1024 * 1024 / 1e6, mb_f / rate_f)
        return found


def run_kafka(args: argparse.Namespace, kafka: KafkaCleaner) -> RunFigures:
    topic = "compacted-" + uuid.uuid4().hex[:8]
    probe_topic = "probe-" + topic
    _create(kafka.admin, [NewTopic(topic, 1, 1, config=_topic_config({"min.compaction.lag.ms": "3600000"})),
                          NewTopic(probe_topic, 1, 1)])
    if args.io_max_bytes_per_second != float("inf"):
        kafka._alter(ResourceType.BROKER, "1", {"log.cleaner.io.max.bytes.per.second":
                                               str(args.io_max_bytes_per_second)})
    _load(kafka.bootstrap, topic, args.keys, args.rounds, args.codec)
    prober = Prober(kafka.bootstrap, probe_topic)
    idle = prober.run_for(3)
    prober.start()
    started = time.monotonic()
    try:
        kafka._alter(ResourceType.TOPIC, topic, {"min.compaction.lag.ms": "0"})
        while kafka.checkpoint(topic) is None:
            if time.monotonic() - started > 600:
                raise RuntimeError("Kafka did not clean the topic in 10 minutes")
            time.sleep(0.01)
    finally:
        wall = time.monotonic() - started
        during = prober.stop()
    deadline = time.monotonic() + 10
    while (stats := kafka.stats(topic)) is None and time.monotonic() < deadline:
        time.sleep(0.1)  # the statistics are logged just after the checkpoint is written
    kafka.admin.delete_topics([topic, probe_topic])
    if stats is None:
        raise RuntimeError(f"no log cleaner statistics for {topic} in {kafka.dir / 'kafka.log'}")
    return RunFigures(stats[0], stats[1], wall, idle, during)


def _one(r: RunFigures) -> str:
    return f"{r.mb_per_s:.1f} MB/s p99 {r.p99('idle'):.1f}->{r.p99('during'):.1f} ms"


def _report(name: str, runs: list[RunFigures]) -> dict[str, float]:
    med = {
        "mb_per_s": statistics.median(r.mb_per_s for r in runs),
        "mb": statistics.median(r.mb_cleaned for r in runs),
        "pass_s": statistics.median(r.pass_seconds for r in runs),
        "wall_s": statistics.median(r.wall_seconds for r in runs),
        "idle_p50": statistics.median(statistics.median(r.idle) for r in runs),
        "idle_p99": statistics.median(r.p99("idle") for r in runs),
        "during_p50": statistics.median(statistics.median(r.during) for r in runs),
        "during_p99": statistics.median(r.p99("during") for r in runs),
    }
    med["rise"] = statistics.median(r.p99("during") / r.p99("idle") for r in runs)
    print(f"{name:6s} cleaned {med['mb']:.1f} MB in {med['pass_s']:.2f} s = {med['mb_per_s']:.1f} MB/s "
          f"(until done, seen from outside: {med['wall_s']:.2f} s); produce p50/p99 idle "
          f"{med['idle_p50']:.2f}/{med['idle_p99']:.2f} ms, while cleaning {med['during_p50']:.2f}/"
          f"{med['during_p99']:.2f} ms, p99 rise x{med['rise']:.1f}   "
          f"[runs: {', '.join(_one(r) for r in runs)}]")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--codec", default="none")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--io-max-bytes-per-second", type=float, default=float("inf"))
    ap.add_argument("--thread", action="store_true", help="run our pass in a thread instead of a child process")
    ap.add_argument("--no-flush-on-ack", action="store_true",
                    help="our acks=all without fsync, as Kafka answers them (from the page cache)")
    ap.add_argument("--no-kafka", action="store_true")
    ap.add_argument("--kafka-port", type=int, default=19392)
    args = ap.parse_args()

    ours: list[RunFigures] = []
    theirs: list[RunFigures] = []
    if args.no_kafka:
        ours = [run_ours(args) for _ in range(args.runs)]
    else:
        kafka_dir = Path(os.environ.get("KAFKA_DIR", ROOT / ".kafka" / f"peer-{args.kafka_port}"))
        with start_kafka(args.kafka_port) as peer:
            kafka = KafkaCleaner(peer.bootstrap, kafka_dir)
            for _ in range(args.runs):  # interleaved, so that a noisy machine hurts both alike
                ours.append(run_ours(args))
                theirs.append(run_kafka(args, kafka))
    print(f"{args.keys} keys x {args.rounds} rounds, codec {args.codec}, {args.runs} runs, medians; "
          f"log.cleaner.io.max.bytes.per.second {args.io_max_bytes_per_second:g}; "
          f"our pass in a {'thread' if args.thread else 'child process'}; our acks=all "
          f"{'without' if args.no_flush_on_ack else 'after'} fsync, Kafka's from the page cache")
    mine = _report("ours", ours)
    if theirs:
        peer = _report("kafka", theirs)
        print(f"ours/kafka: cleaning speed x{mine['mb_per_s'] / peer['mb_per_s']:.2f}, "
              f"p99 while cleaning x{mine['during_p99'] / peer['during_p99']:.2f}, "
              f"p99 rise {mine['rise']:.1f} vs {peer['rise']:.1f}")


if __name__ == "__main__":
    main()

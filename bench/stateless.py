"""JSON decode -> filter -> map -> produce over N records (default 1,000,000), four ways, same broker, same run:

  (a) streams DSL          app.stream(src).filter(...).map_values(...).to(out)
  (b) streams agent        @app.agent(src, sink=[out]) yielding the mapped value
  (c) faust-streaming      a Faust agent doing the same (pip install faust-streaming)
  (d) hand-written loop    aiokafka getmany() -> json -> create_batch/send_batch -> commit (the ceiling)

and the DSL pipeline scaled out on one machine:

  (e) proc1, proc2         `streams worker --processes 1` and `--processes 2`: the (a) pipeline in 1 and 2 worker
                           processes of one app (one consumer group), each process reporting the time of its first
                           and last processed record; the rate is N over (last of all - first of all).

Each variant runs in its own process with its own consumer group and output topic; its rate is N divided by the
time from its first record to its last (group joins and start-up are not counted). Prints records/s per run,
the medians and the ratios. proc1/proc2 count a record as done when the DSL processed it (its output is queued in
the producer), (a) after a final producer flush: compare proc2 with proc1, not with (a). The embedded broker's
3 s initial rebalance delay lets both processes join the group's first generation, so no rebalance falls inside
the timed span; against a broker without that delay (scripts/kafka-up sets 0) proc2 may include one.

    python bench/stateless.py                       # embedded broker in a child process
    python bench/stateless.py --bootstrap 127.0.0.1:19092 --records 200000 --repeat 3
    python bench/stateless.py --variants proc1,proc2 --records 500000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PARTITIONS = 4


def transform(v: dict) -> dict:
    return {"id": v["id"], "customer": v["customer"].upper(), "amount": v["amount"] * 1.2}


def keep(v: dict) -> bool:
    return v["amount"] > 500


# ---------------------------------------------------------------- variants (each in a child process)

def _report(variant: str, n: int, t0: float, t1: float) -> None:
    # A file, not stdout: Faust's worker redirects stdout into its logging.
    Path(os.environ["BENCH_RESULT"]).write_text(json.dumps({"variant": variant, "records": n, "seconds": t1 - t0}))


async def run_dsl(bootstrap: str, src: str, out: str, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    import streams
    app = streams.App(f"bench-dsl-{uuid.uuid4().hex[:6]}", broker=bootstrap, commit_interval=1.0)
    app.stream(app.topic(src)).filter(lambda k, v: keep(v)).map_values(transform).to(app.topic(out))
    times = {}

    @app.timer(0.005)
    async def watch():
        w = app.worker
        if "t0" not in times and w.processed:
            times["t0"] = time.perf_counter()
        if w.processed >= n and "t1" not in times:
            await w.flush()
            times["t1"] = time.perf_counter()
            app.stop_worker()

    await app.run_worker()
    _report("dsl", n, times["t0"], times["t1"])


async def run_agent(bootstrap: str, src: str, out: str, n: int) -> None:
    sys.path.insert(0, str(ROOT))
    import streams
    app = streams.App(f"bench-agent-{uuid.uuid4().hex[:6]}", broker=bootstrap, commit_interval=1.0)
    times = {}
    count = [0]

    @app.agent(app.topic(src), sink=[app.topic(out)])
    async def process(stream):
        async for v in stream:
            if count[0] == 0:
                times["t0"] = time.perf_counter()
            count[0] += 1
            if keep(v):
                yield transform(v)
            if count[0] >= n:
                await app.worker.flush()
                times["t1"] = time.perf_counter()
                app.stop_worker()

    await app.run_worker()
    _report("agent", n, times["t0"], times["t1"])


def run_faust(bootstrap: str, src: str, out: str, n: int) -> None:
    import logging
    import faust
    logging.disable(logging.WARNING)
    app = faust.App(f"bench-faust-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}", value_serializer="json",
                    topic_partitions=PARTITIONS, web_enabled=False, store="memory://",
                    consumer_auto_offset_reset="earliest", broker_commit_interval=1.0)
    src_t = app.topic(src, value_serializer="json", partitions=PARTITIONS)
    out_t = app.topic(out, value_serializer="json", partitions=PARTITIONS)
    times = {}
    count = [0]

    @app.agent(src_t)
    async def process(stream):
        async for v in stream:
            if count[0] == 0:
                times["t0"] = time.perf_counter()
            count[0] += 1
            if keep(v):
                await out_t.send(value=transform(v))
            if count[0] >= n:
                await app.producer.flush()
                _report("faust", n, times["t0"], time.perf_counter())
                os._exit(0)

    sys.argv = ["faust", "worker", "-l", "warn", "--without-web"]
    app.main()


async def run_loop(bootstrap: str, src: str, out: str, n: int) -> None:
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
    consumer = AIOKafkaConsumer(src, bootstrap_servers=bootstrap, group_id=f"bench-loop-{uuid.uuid4().hex[:6]}",
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                max_partition_fetch_bytes=4 * 1024 * 1024)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5, max_batch_size=512 * 1024)
    await consumer.start()
    await producer.start()
    loads, dumps = json.loads, json.dumps
    done, t0, futures, last_commit = 0, None, [], time.monotonic()
    rr = 0
    while done < n:
        batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
        if not batch:
            continue
        if t0 is None:
            t0 = time.perf_counter()
        outputs = []
        for msgs in batch.values():
            for m in msgs:
                v = loads(m.value)
                if keep(v):
                    outputs.append(dumps(transform(v)).encode())
            done += len(msgs)
        rr = (rr + 1) % PARTITIONS
        b = producer.create_batch()
        for value in outputs:
            if b.append(key=None, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(b, out, partition=rr))
                rr = (rr + 1) % PARTITIONS
                b = producer.create_batch()
                b.append(key=None, value=value, timestamp=None)
        if b.record_count():
            futures.append(await producer.send_batch(b, out, partition=rr))
        if time.monotonic() - last_commit >= 1.0:
            await asyncio.gather(*futures)
            futures = []
            await consumer.commit()
            last_commit = time.monotonic()
    await asyncio.gather(*futures)
    t1 = time.perf_counter()
    await consumer.commit()
    _report("loop", n, t0, t1)
    await consumer.stop()
    await producer.stop()


# The app that `streams worker --processes N` runs for proc1/proc2, written next to the results.
PROCESS_APP = """
import json, os, sys, time
from pathlib import Path
sys.path.insert(0, os.environ["BENCH_DIR"])
import streams
from stateless import keep, transform

app = streams.App(os.environ["BENCH_APP"], broker=os.environ["BENCH_BOOTSTRAP"], commit_interval=1.0)
app.stream(app.topic(os.environ["BENCH_SRC"])).filter(lambda k, v: keep(v)).map_values(transform) \\
    .to(app.topic(os.environ["BENCH_OUT"]))
marks = {}

@app.timer(0.005)
async def watch():
    n = app.worker.processed
    if n != marks.get("records", 0):
        now = time.time()
        marks.setdefault("first", now)
        marks.update(records=n, last=now)

@app.timer(0.1)
async def report():
    if marks:
        Path(os.environ["BENCH_RESULT"], f"{os.getpid()}.json").write_text(json.dumps(marks))
"""


def run_processes(processes: int, bootstrap: str, src: str, n: int, timeout: float) -> float | None:
    """`streams worker --processes N` over the source; records/s from the children's first and last records."""
    out = f"bench-out-proc{processes}-{uuid.uuid4().hex[:6]}"
    asyncio.run(create(bootstrap, out))
    results = Path(tempfile.mkdtemp())
    (results / "benchapp.py").write_text(PROCESS_APP)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(results)]), "BENCH_DIR": str(ROOT / "bench"),
           "BENCH_APP": f"bench-proc{processes}-{uuid.uuid4().hex[:6]}", "BENCH_BOOTSTRAP": bootstrap,
           "BENCH_SRC": src, "BENCH_OUT": out, "BENCH_RESULT": str(results)}
    parent = subprocess.Popen([sys.executable, "-m", "streams", "worker", "-A", "benchapp:app", "--processes",
                               str(processes)], cwd=results, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    marks: list[dict] = []
    try:
        while time.monotonic() < deadline and parent.poll() is None:
            marks = []
            for f in results.glob("*.json"):
                try:
                    marks.append(json.loads(f.read_text()))
                except ValueError:  # caught mid-write
                    pass
            if sum(m["records"] for m in marks) >= n:
                break
            time.sleep(0.05)
    finally:
        parent.send_signal(signal.SIGTERM)
        try:
            parent.wait(60)
        except subprocess.TimeoutExpired:
            parent.kill()
    done = sum(m["records"] for m in marks)
    if done < n:
        err = [x for x in (parent.stderr.read() or "").splitlines() if "rror" in x][-3:]
        print(f"  proc{processes}: processed {done:,} of {n:,} (exit {parent.returncode}): {err}", flush=True)
        return None
    seconds = max(m["last"] for m in marks) - min(m["first"] for m in marks)
    rate = n / seconds
    shares = ", ".join(f"{m['records']:,}" for m in marks)
    print(f"  proc{processes} {rate:12,.0f} records/s  ({seconds:.2f} s; per process {shares})", flush=True)
    return rate


# ---------------------------------------------------------------- orchestration

async def create(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    await asyncio.sleep(0.5)  # let a cluster's metadata catch up


async def fill(bootstrap: str, topic: str, n: int) -> None:
    """Create `topic` with PARTITIONS partitions and write n JSON orders in big batches."""
    from aiokafka import AIOKafkaProducer
    await create(bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1024 * 1024, linger_ms=5)
    await producer.start()
    futures = []
    per = n // PARTITIONS
    for p in range(PARTITIONS):
        b = producer.create_batch()
        for i in range(p * per, (p + 1) * per if p < PARTITIONS - 1 else n):
            value = json.dumps({"id": i, "customer": f"c{i % 100}", "amount": i % 1000}).encode()
            if b.append(key=None, value=value, timestamp=None) is None:
                futures.append(await producer.send_batch(b, topic, partition=p))
                b = producer.create_batch()
                b.append(key=None, value=value, timestamp=None)
        futures.append(await producer.send_batch(b, topic, partition=p))
    await asyncio.gather(*futures)
    await producer.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_broker(data_dir: str) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "broker_embedded", "--port", str(port), "--data-dir", data_dir,
                             "--loglevel", "WARNING"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("listening"):
        raise RuntimeError(f"broker did not start: {line!r}")
    return proc, f"127.0.0.1:{port}"


def run_variant(variant: str, bootstrap: str, src: str, n: int, timeout: float) -> float | None:
    out = f"bench-out-{variant}-{uuid.uuid4().hex[:6]}"
    asyncio.run(create(bootstrap, out))
    result = Path(tempfile.mkdtemp()) / "result.json"
    cmd = [sys.executable, __file__, "--child", variant, "--bootstrap", bootstrap, "--src", src, "--out", out,
           "--records", str(n)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=result.parent,
                             env={**os.environ, "BENCH_RESULT": str(result)})
    except subprocess.TimeoutExpired:
        print(f"  {variant}: timed out after {timeout:.0f}s", flush=True)
        return None
    if result.exists():
        if True:
            r = json.loads(result.read_text())
            rate = r["records"] / r["seconds"]
            print(f"  {variant:6s} {rate:12,.0f} records/s  ({r['seconds']:.2f} s)", flush=True)
            return rate
    print(f"  {variant}: failed (exit {res.returncode}): {[x for x in res.stderr.strip().splitlines() if 'Error' in x][-3:]}", flush=True)
    return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--bootstrap", help="an existing broker (default: an embedded broker in a child process)")
    p.add_argument("--variants", default="dsl,agent,faust,loop,proc1,proc2")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--child")
    p.add_argument("--src")
    p.add_argument("--out")
    args = p.parse_args()
    if args.child:
        if args.child == "faust":
            run_faust(args.bootstrap, args.src, args.out, args.records)
        else:
            fn = {"dsl": run_dsl, "agent": run_agent, "loop": run_loop}[args.child]
            asyncio.run(fn(args.bootstrap, args.src, args.out, args.records))
        return
    broker = None
    data_dir = tempfile.mkdtemp(prefix="bench-stateless-")
    bootstrap = args.bootstrap
    if bootstrap is None:
        broker, bootstrap = start_broker(data_dir)
    try:
        src = f"bench-in-{uuid.uuid4().hex[:6]}"
        t = time.perf_counter()
        asyncio.run(fill(bootstrap, src, args.records))
        print(f"wrote {args.records:,} records to {src} on {bootstrap} in {time.perf_counter() - t:.1f}s", flush=True)
        variants = args.variants.split(",")
        rates: dict[str, list[float]] = {v: [] for v in variants}
        for i in range(args.repeat):
            print(f"run {i + 1}/{args.repeat}", flush=True)
            for v in variants:
                if v.startswith("proc"):
                    r = run_processes(int(v[4:]), bootstrap, src, args.records, args.timeout)
                else:
                    r = run_variant(v, bootstrap, src, args.records, args.timeout)
                if r is not None:
                    rates[v].append(r)
        med = {v: statistics.median(r) for v, r in rates.items() if r}
        print("\nmedian records/s")
        for v, r in med.items():
            print(f"  {v:6s} {r:12,.0f}   (runs: {', '.join(f'{x:,.0f}' for x in rates[v])})")
        if "dsl" in med:
            if "faust" in med:
                print(f"  dsl / faust = {med['dsl'] / med['faust']:.2f}x   (target >= 5)")
            if "loop" in med:
                print(f"  dsl / loop  = {med['dsl'] / med['loop']:.2f}    (target >= 0.7)")
        if "agent" in med and "faust" in med:
            print(f"  agent / faust = {med['agent'] / med['faust']:.2f}x")
        if "proc1" in med and "proc2" in med:
            print(f"  proc2 / proc1 = {med['proc2'] / med['proc1']:.2f}x   (2 worker processes against 1, "
                  f"{os.cpu_count()} cores)")
    finally:
        if broker is not None:
            broker.terminate()
            broker.wait(30)


if __name__ == "__main__":
    main()

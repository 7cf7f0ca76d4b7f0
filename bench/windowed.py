"""Per-key tumbling-window count (60 s windows, RocksDB state, changelogs on) over N JSON records (default
1,000,000), four ways, on the same broker in the same run:

  (a) dsl     streams DSL     app.stream(src).group_by_key().windowed_by(TumblingWindows(60)).count("per-key")
  (b) agent   streams agent   wt = app.Table(...).tumbling(60, expires=3600); `wt[event.key] += 1` in an agent
  (c) faust   faust-streaming the same windowed table in a Faust agent, store="rocksdb://" (its rocksdict driver)
  (d) quix    Quix Streams    sdf.tumbling_window(60000).count().current() (RocksDB state, changelog topic)

`dsl-sink` (not in the default set) is (a) with `table.to_stream().to(out)`: one output record per input record.

The input is written once per key count: 4 partitions, keys `k<i mod K>` placed by murmur2 (Kafka's default
partitioner) and JSON values, with timestamps increasing by 6 ms per record (1,000,000 records span 100 minutes, so
about 100 windows), ending now (Faust expires windows by the wall clock). Every variant runs in its own process with
its own consumer group (and state directory), reads from the beginning, and reports the times of its first and last
processed record; its rate is the records processed after the first mark over that span (group joins, restores and
start-up are not counted; nor is the final commit). Prints records/s per run, medians and ratios.

    python bench/windowed.py                                 # 1,000 and 200,000 keys, 3 runs, embedded broker
    python bench/windowed.py --records 200000 --runs 1 --keys 1000
    python bench/windowed.py --variants dsl,quix --bootstrap 127.0.0.1:9092
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PARTITIONS = 4
WINDOW_S = 60.0
STEP_MS = 6
COMMIT_INTERVAL = 1.0
TARGETS = {("dsl", "faust"): 25.0, ("dsl", "quix"): 1.5}


# ---------------------------------------------------------------- variants (each in a child process)

def _report(variant: str, n: int, t0: float, t1: float, before: int, **extra) -> None:
    # A file, not stdout: Faust's worker redirects stdout into its logging.
    Path(os.environ["BENCH_RESULT"]).write_text(json.dumps({"variant": variant, "records": n - before,
                                                            "seconds": t1 - t0, **extra}))


def _our_app(kind: str, bootstrap: str, workdir: str):
    import streams
    return streams.App(f"bench-{kind}-{uuid.uuid4().hex[:6]}", broker=bootstrap, workdir=workdir,
                       commit_interval=COMMIT_INTERVAL)


async def run_dsl(bootstrap: str, src: str, n: int, workdir: str, sink: str | None = None) -> None:
    import streams
    app = _our_app("dsl", bootstrap, workdir)
    table = (app.stream(app.topic(src, key_type=str, partitions=PARTITIONS)).group_by_key()
             .windowed_by(streams.TumblingWindows(size=WINDOW_S)).count("per-key"))
    if sink:
        table.to_stream().to(app.topic(sink))
    marks = {}

    @app.timer(0.005)
    async def watch():
        w = app.worker
        done = w.processed
        if "t0" not in marks and done:
            marks["t0"], marks["before"] = time.perf_counter(), done  # records done before the first mark
        if done >= n and "t1" not in marks:
            if sink:
                await w.flush()
            marks["t1"] = time.perf_counter()
            app.stop_worker()

    await app.run_worker()
    _report("dsl-sink" if sink else "dsl", n, marks["t0"], marks["t1"], marks["before"])


async def run_agent(bootstrap: str, src: str, n: int, workdir: str) -> None:
    app = _our_app("agent", bootstrap, workdir)
    wt = app.Table("wcounts", default=int).tumbling(WINDOW_S, expires=3600.0)
    marks = {}
    count = 0

    @app.agent(app.topic(src, key_type=str, partitions=PARTITIONS))
    async def counter(stream):
        nonlocal count
        async for event in stream.events():
            if not count:
                marks["t0"] = time.perf_counter()
            wt[event.key] += 1
            count += 1
            if count >= n:
                marks["t1"] = time.perf_counter()
                app.stop_worker()

    await app.run_worker()
    _report("agent", n, marks["t0"], marks["t1"], 1)


def run_faust(bootstrap: str, src: str, n: int, workdir: str) -> None:
    import logging
    import faust
    from faust.stores import rocksdb as faust_rocksdb
    logging.disable(logging.WARNING)
    app = faust.App(f"bench-faust-{uuid.uuid4().hex[:6]}", broker=f"kafka://{bootstrap}", store="rocksdb://",
                    datadir=workdir, key_serializer="json", value_serializer="json", topic_partitions=PARTITIONS, web_enabled=False,
                    consumer_auto_offset_reset="earliest", broker_commit_interval=COMMIT_INTERVAL)
    src_t = app.topic(src, key_serializer="raw", value_serializer="json", partitions=PARTITIONS)
    # Windowed keys are (key, (start, end)) tuples: the app's JSON key serializer writes them to the changelog.
    wt = app.Table("wcounts", default=int, partitions=PARTITIONS).tumbling(WINDOW_S, expires=3600.0)
    driver = "rocksdict" if faust_rocksdb.USE_ROCKSDICT else "python-rocksdb"
    count = 0
    t0 = 0.0

    @app.agent(src_t)
    async def counter(stream):
        nonlocal count, t0
        async for event in stream.events():
            if not count:
                t0 = time.perf_counter()
            wt[event.key.decode()] += 1
            count += 1
            if count >= n:
                _report("faust", n, t0, time.perf_counter(), 1, store=f"rocksdb:// ({driver})")
                os._exit(0)

    sys.argv = ["faust", "worker", "-l", "warn", "--without-web"]
    app.main()


def run_quix(bootstrap: str, src: str, n: int, workdir: str) -> None:
    import logging
    from quixstreams import Application
    logging.disable(logging.WARNING)
    app = Application(broker_address=bootstrap, consumer_group=f"bench-quix-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", state_dir=workdir, commit_interval=COMMIT_INTERVAL,
                      loglevel="WARNING")
    topic = app.topic(src, key_deserializer="str", value_deserializer="json")
    marks = {"count": 0}

    def mark(_value):
        c = marks["count"] = marks["count"] + 1
        if c == 1:
            marks["t0"] = time.perf_counter()
        if c >= n:
            marks["t1"] = time.perf_counter()
            app.stop()

    sdf = app.dataframe(topic)
    sdf = sdf.tumbling_window(duration_ms=int(WINDOW_S * 1000)).count().current()
    sdf.update(mark)
    app.run()
    _report("quix", n, marks["t0"], marks["t1"], 1)


# ---------------------------------------------------------------- input

async def create(bootstrap: str, topic: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    await asyncio.sleep(0.5)


async def fill(bootstrap: str, topic: str, n: int, keys: int) -> None:
    """n JSON records over `keys` keys, partitioned by murmur2 of the key, timestamps STEP_MS apart ending now."""
    from peers import fill_keyed
    await create(bootstrap, topic)
    await fill_keyed(bootstrap, topic, n, keys, PARTITIONS, STEP_MS, lambda i: {"id": i, "amount": i % 1000})


# ---------------------------------------------------------------- orchestration

def run_variant(variant: str, bootstrap: str, src: str, n: int, timeout: float) -> dict | None:
    work = Path(tempfile.mkdtemp(prefix=f"bench-windowed-{variant}-"))
    result = work / "result.json"
    cmd = [sys.executable, __file__, "--child", variant, "--bootstrap", bootstrap, "--src", src,
           "--records", str(n), "--workdir", str(work / "state")]
    if variant == "dsl-sink":
        out = f"bench-wout-{uuid.uuid4().hex[:6]}"
        asyncio.run(create(bootstrap, out))
        cmd += ["--out", out]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=work,
                             env={**os.environ, "BENCH_RESULT": str(result)})
        if result.exists():
            r = json.loads(result.read_text())
            r["rate"] = r["records"] / r["seconds"]
            extra = f"; store {r['store']}" if "store" in r else ""
            print(f"  {variant:8s} {r['rate']:12,.0f} records/s  ({r['seconds']:.2f} s{extra})", flush=True)
            return r
        err = [x for x in res.stderr.strip().splitlines() if "rror" in x][-3:]
        print(f"  {variant}: failed (exit {res.returncode}): {err}", flush=True)
    except subprocess.TimeoutExpired:
        print(f"  {variant}: timed out after {timeout:.0f}s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return None


def bench_keys(bootstrap: str, keys: int, args) -> dict[str, float]:
    src = f"bench-win-{keys}-{uuid.uuid4().hex[:6]}"
    t = time.perf_counter()
    asyncio.run(fill(bootstrap, src, args.records, keys))
    print(f"\n{keys:,} keys: wrote {args.records:,} records to {src} in {time.perf_counter() - t:.1f}s", flush=True)
    variants = args.variants.split(",")
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", flush=True)
        for v in variants:
            n = args.faust_records if v == "faust" and args.faust_records else args.records
            r = run_variant(v, bootstrap, src, n, args.timeout)
            if r is not None:
                rates[v].append(r["rate"])
    med = {v: statistics.median(r) for v, r in rates.items() if r}
    print(f"\n{keys:,} keys, median records/s over {args.runs} run(s)")
    for v, m in med.items():
        print(f"  {v:8s} {m:12,.0f}   (runs: {', '.join(f'{x:,.0f}' for x in rates[v])})")
    for a, b in (("dsl", "faust"), ("dsl", "quix"), ("agent", "faust"), ("agent", "quix")):
        if a in med and b in med:
            target = TARGETS.get((a, b))
            note = f"   (target >= {target:g}: {'met' if med[a] / med[b] >= target else 'MISSED'})" if target else ""
            print(f"  {a} / {b} = {med[a] / med[b]:.2f}x{note}")
    return med


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--faust-records", type=int,
                   help="records Faust processes (default: --records); it runs at a few thousand per second")
    p.add_argument("--keys", default="1000,200000", help="comma-separated key counts")
    p.add_argument("--variants", default="dsl,agent,faust,quix", help="of dsl,dsl-sink,agent,faust,quix")
    p.add_argument("--bootstrap", help="an existing broker (default: our broker in a child process)")
    p.add_argument("--timeout", type=float, default=1200)
    p.add_argument("--child")
    p.add_argument("--src")
    p.add_argument("--out")
    p.add_argument("--workdir")
    args = p.parse_args()
    if args.child:
        if args.child == "faust":
            run_faust(args.bootstrap, args.src, args.records, args.workdir)
        elif args.child == "quix":
            run_quix(args.bootstrap, args.src, args.records, args.workdir)
        elif args.child == "agent":
            asyncio.run(run_agent(args.bootstrap, args.src, args.records, args.workdir))
        else:
            asyncio.run(run_dsl(args.bootstrap, args.src, args.records, args.workdir, args.out))
        return
    from peers import start_ours
    if args.bootstrap:
        for keys in args.keys.split(","):
            bench_keys(args.bootstrap, int(keys), args)
        return
    with start_ours() as broker:
        print(f"our broker at {broker.bootstrap}", flush=True)
        for keys in args.keys.split(","):
            bench_keys(broker.bootstrap, int(keys), args)


if __name__ == "__main__":
    main()

"""Exactly-once against at-least-once: what `processing_guarantee="exactly_once"` costs, on our broker, in one run.

1. Throughput over the same pre-filled input (N JSON records, default 500,000, 4 partitions, keys `k<i mod K>`
   placed by murmur2, timestamps 6 ms apart ending now), same app, each variant in its own process with its own
   consumer group and state directory:
     stateless  app.stream(src).filter(...).map_values(...).to(out)            (as in bench/stateless.py)
     windowed   group_by_key().windowed_by(TumblingWindows(60)).count(...).to_stream().to(out), K keys
                (as bench/windowed.py's dsl-sink: one output record per input, RocksDB state, changelog)
   under at-least-once (the app's default commit interval, 0.5 s) and exactly-once at 0.1 s (Kafka Streams' EOS
   default) and 0.5 s. A variant's time runs from its first processed record until a final `worker.commit()`
   returned after its last one: under exactly-once an output counts once its transaction is committed, under
   at-least-once once it is acknowledged and the input offsets are committed. Group joins and start-up are not
   counted. Each child also reports how many commits it made and the time spent inside them (Worker.commit wrapped
   here, in the child only).
2. End-to-end latency of the stateless pipeline at a steady rate (default 10,000 events/s for 25 s; the first 3 s
   are warm-up and not counted): a paced aiokafka producer puts its send time (time.time()) in each value, and an
   `isolation_level="read_committed"` aiokafka consumer (default fetch settings) on the output topic records when
   it sees each output; p50 / p99 / max of the difference, per guarantee and commit interval.
3. Quix Streams (quixstreams.Application, processing_guarantee="exactly-once" and "at-least-once") on the same
   broker and input: `sdf.filter(...).apply(...).to_topic(out)` and
   `sdf.tumbling_window(60000).count().current().to_topic(out)`, timed the same way: from its first record to the
   end of its last checkpoint commit (Checkpoint.commit wrapped in the child).

Prints every run, medians, exactly-once / at-least-once against the team's target (>= 0.8), and ours / Quix at
the same guarantee and commit interval.

    python bench/eos.py                                   # 500,000 records, 3 runs, latency at 10,000/s
    python bench/eos.py --records 100000 --runs 1 --latency-seconds 10        # smoke run
    python bench/eos.py --no-latency --variants sl:alo:0.5,sl:eos:0.1,quix-sl:eos:0.1
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
TARGET = 0.8            # exactly-once / at-least-once, set by the team
GUARANTEES = {"alo": ("at_least_once", "at-least-once"), "eos": ("exactly_once", "exactly-once")}
# kind:guarantee:commit interval. sl = stateless, win = windowed count; quix-* the same pipelines in Quix Streams.
DEFAULT_VARIANTS = ("sl:alo:0.5,sl:eos:0.1,sl:eos:0.5,win:alo:0.5,win:eos:0.1,win:eos:0.5,"
                    "quix-sl:alo:0.5,quix-sl:eos:0.1,quix-sl:eos:0.5,quix-win:eos:0.1,quix-win:eos:0.5")
DEFAULT_LATENCY = "alo:0.5,eos:0.1,eos:0.5"


def transform(v: dict) -> dict:
    out = {"id": v["id"], "customer": v["customer"].upper(), "amount": v["amount"] * 1.2}
    if "ts" in v:   # the latency phase carries the producer's send time through
        out["ts"] = v["ts"]
    return out


def keep(v: dict) -> bool:
    return v["amount"] > 500


# ---------------------------------------------------------------- children

def _report(**fields) -> None:
    Path(os.environ["BENCH_RESULT"]).write_text(json.dumps(fields))


def _count_commits(cls, name: str = "commit") -> dict:
    """Wrap cls.<name> (sync or async) to count calls and the seconds spent in them."""
    stats = {"commits": 0, "commit_s": 0.0, "last_end": 0.0}
    original = getattr(cls, name)
    if asyncio.iscoroutinefunction(original):
        async def wrapped(self, *a, **kw):
            t = time.perf_counter()
            try:
                return await original(self, *a, **kw)
            finally:
                stats["last_end"] = time.perf_counter()
                stats["commits"] += 1
                stats["commit_s"] += stats["last_end"] - t
    else:
        def wrapped(self, *a, **kw):
            t = time.perf_counter()
            try:
                return original(self, *a, **kw)
            finally:
                stats["last_end"] = time.perf_counter()
                stats["commits"] += 1
                stats["commit_s"] += stats["last_end"] - t
    setattr(cls, name, wrapped)
    return stats


def _ours(kind: str, guarantee: str, interval: float, bootstrap: str, src: str, out: str, workdir: str):
    import streams
    app = streams.App(f"bench-eos-{kind}-{guarantee}-{uuid.uuid4().hex[:6]}", broker=bootstrap, workdir=workdir,
                      processing_guarantee=GUARANTEES[guarantee][0], commit_interval=interval)
    stream = app.stream(app.topic(src, key_type=str, partitions=PARTITIONS))
    if kind == "sl":
        stream.filter(lambda k, v: keep(v)).map_values(transform).to(app.topic(out))
    else:
        (stream.group_by_key().windowed_by(streams.TumblingWindows(size=WINDOW_S)).count("per-key")
         .to_stream().to(app.topic(out)))
    return app


async def run_ours(kind: str, guarantee: str, interval: float, bootstrap: str, src: str, out: str, n: int,
                   workdir: str) -> None:
    from streams.runtime.worker import Worker
    stats = _count_commits(Worker)
    app = _ours(kind, guarantee, interval, bootstrap, src, out, workdir)
    marks: dict = {}

    @app.timer(0.005)
    async def watch():
        w = app.worker
        done = w.processed
        if "t0" not in marks and done:
            marks["t0"], marks["before"] = time.perf_counter(), done
            marks["c0"], marks["cs0"] = stats["commits"], stats["commit_s"]
        if done >= n and "t1" not in marks:
            marks["t1"] = 0.0                     # once: the commit below awaits, and the timer fires again
            await w.commit()
            marks["t1"] = time.perf_counter()
            app.stop_worker()

    await app.run_worker()
    _report(records=n - marks["before"], seconds=marks["t1"] - marks["t0"], commits=stats["commits"] - marks["c0"],
            commit_s=stats["commit_s"] - marks["cs0"], interval=app.commit_interval,
            guarantee=app.processing_guarantee)


def run_quix(kind: str, guarantee: str, interval: float, bootstrap: str, src: str, out: str, n: int,
             workdir: str) -> None:
    import logging
    from quixstreams import Application
    from quixstreams.checkpointing.checkpoint import Checkpoint
    logging.disable(logging.WARNING)
    stats = _count_commits(Checkpoint)
    app = Application(broker_address=bootstrap, consumer_group=f"bench-eos-quix-{uuid.uuid4().hex[:6]}",
                      auto_offset_reset="earliest", state_dir=workdir, commit_interval=interval,
                      processing_guarantee=GUARANTEES[guarantee][1], loglevel="WARNING")
    topic = app.topic(src, key_deserializer="str", value_deserializer="json")
    out_topic = app.topic(out, key_serializer="str", value_serializer="json")
    marks = {"count": 0}

    def mark(_value):
        c = marks["count"] = marks["count"] + 1
        if c == 1:
            marks["t0"] = time.perf_counter()
            marks["c0"], marks["cs0"] = stats["commits"], stats["commit_s"]
        if c == n:
            app.stop()   # the run loop ends with a forced checkpoint commit: counted, as ours is

    sdf = app.dataframe(topic)
    sdf.update(mark)
    if kind == "sl":
        sdf = sdf.filter(keep).apply(transform)
    else:
        sdf = sdf.tumbling_window(duration_ms=int(WINDOW_S * 1000)).count().current()
    sdf.to_topic(out_topic)
    app.run()
    _report(records=n - 1, seconds=stats["last_end"] - marks["t0"], commits=stats["commits"] - marks["c0"],
            commit_s=stats["commit_s"] - marks["cs0"], interval=interval, guarantee=GUARANTEES[guarantee][1])


async def run_latency_app(guarantee: str, interval: float, bootstrap: str, src: str, out: str, workdir: str,
                          control: str) -> None:
    """The stateless app for the latency phase: writes `ready` once it owns all partitions, stops on `stop`."""
    from streams.runtime.worker import Worker
    stats = _count_commits(Worker)
    app = _ours("sl", guarantee, interval, bootstrap, src, out, workdir)
    ctl = Path(control)

    @app.timer(0.05)
    async def watch():
        w = app.worker
        if len(w.assigned) >= PARTITIONS and not (ctl / "ready").exists():
            (ctl / "ready").write_text(json.dumps({"interval": app.commit_interval,
                                                   "guarantee": app.processing_guarantee}))
        if (ctl / "stop").exists():
            (ctl / "processed").write_text(json.dumps({"processed": w.processed, **stats}))
            app.stop_worker()

    await app.run_worker()


# ---------------------------------------------------------------- input and latency probe (parent)

async def create(bootstrap: str, *topics: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    await admin.close()
    await asyncio.sleep(0.5)


def value_of(i: int, **extra) -> dict:
    return {"id": i, "customer": f"c{i % 100}", "amount": i % 1000, **extra}


async def fill(bootstrap: str, topic: str, n: int, keys: int) -> None:
    """n JSON records over `keys` keys, partitioned by murmur2 of the key, timestamps STEP_MS apart ending now."""
    from peers import fill_keyed
    await create(bootstrap, topic)
    await fill_keyed(bootstrap, topic, n, keys, PARTITIONS, STEP_MS, value_of)


async def probe(bootstrap: str, src: str, out: str, rate: int, seconds: float, warmup: float, keys: int,
                dump: list | None = None) -> dict:
    """Produce `rate` records/s for `seconds`, each value carrying its send time; a read_committed consumer on
    `out` measures send -> visible for the outputs of records sent after `warmup`."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, isolation_level="read_committed",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    consumer.assign([TopicPartition(out, p) for p in range(PARTITIONS)])
    await consumer.seek_to_beginning()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=0)
    await producer.start()
    latencies: list[float] = []
    expected = 0
    state = {"sending": True}

    async def consume() -> None:
        loads = json.loads
        while state["sending"] or len(latencies) < expected:
            batch = await consumer.getmany(timeout_ms=100, max_records=10_000)
            now = time.time()
            for msgs in batch.values():
                for m in msgs:
                    v = loads(m.value)
                    if v["ts"] >= state.get("measure_from", float("inf")):
                        latencies.append((now - v["ts"]) * 1000)
                        if dump is not None:
                            dump.append((v["ts"] - start, m.partition, (now - v["ts"]) * 1000))
            if not state["sending"] and time.time() > state["deadline"]:
                break

    reader = asyncio.create_task(consume())
    start = time.time()
    state["measure_from"] = start + warmup
    pending: list = []
    i = 0
    total = int(rate * seconds)
    dumps = json.dumps
    while i < total:
        due = min(total, int((time.time() - start) * rate) + 1)
        while i < due:
            ts = time.time()
            v = value_of(i, ts=ts)
            pending.append(await producer.send(src, dumps(v).encode(), key=f"k{i % keys}".encode()))
            if ts >= state["measure_from"] and keep(v):
                expected += 1
            i += 1
        if len(pending) >= 1000:
            # Settle acknowledgements as we go: one gather over every future at the end blocked this event loop
            # (and the consumer's clock) for about a second, which showed as a latency tail on the last outputs.
            done = [f for f in pending if f.done()]
            for f in done:
                f.result()
            pending = [f for f in pending if not f.done()]
        await asyncio.sleep(0.002)
    sent_s = time.time() - start
    await asyncio.gather(*pending)
    state["sending"] = False
    state["deadline"] = time.time() + 10
    await reader
    await producer.stop()
    await consumer.stop()
    latencies.sort()
    got = len(latencies)

    def pct(q: float) -> float:
        return latencies[min(got - 1, int(q * got))] if got else float("nan")
    return {"sent": total, "rate": total / sent_s, "expected": expected, "seen": got,
            "p50": pct(0.50), "p99": pct(0.99), "max": latencies[-1] if got else float("nan")}


# ---------------------------------------------------------------- orchestration

def _child(args: list[str], env_result: Path, timeout: float) -> subprocess.CompletedProcess | None:
    try:
        return subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, timeout=timeout,
                              cwd=env_result.parent, env={**os.environ, "BENCH_RESULT": str(env_result)})
    except subprocess.TimeoutExpired:
        return None


def run_variant(variant: str, bootstrap: str, src: str, n: int, timeout: float) -> dict | None:
    work = Path(tempfile.mkdtemp(prefix="bench-eos-"))
    result = work / "result.json"
    out = f"bench-eos-out-{uuid.uuid4().hex[:6]}"
    asyncio.run(create(bootstrap, out))
    try:
        res = _child(["--child", variant, "--bootstrap", bootstrap, "--src", src, "--out", out, "--records", str(n),
                      "--workdir", str(work / "state")], result, timeout)
        if res is None:
            print(f"  {variant:16s} timed out after {timeout:.0f}s", flush=True)
            return None
        if result.exists():
            r = json.loads(result.read_text())
            r["rate"] = r["records"] / r["seconds"]
            print(f"  {variant:16s} {r['rate']:10,.0f} records/s  ({r['seconds']:.2f} s; {r['guarantee']}, "
                  f"commit_interval {r['interval']} s; {r['commits']} commits, {r['commit_s']:.2f} s in them, "
                  f"{1000 * r['commit_s'] / max(1, r['commits']):.0f} ms each)",
                  flush=True)
            return r
        err = [x for x in res.stderr.strip().splitlines() if "rror" in x][-3:]
        print(f"  {variant}: failed (exit {res.returncode}): {err}", flush=True)
        return None
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run_latency(spec: str, bootstrap: str, args) -> dict | None:
    guarantee, interval = spec.split(":")
    work = Path(tempfile.mkdtemp(prefix="bench-eos-lat-"))
    control = work / "control"
    control.mkdir()
    src, out = f"bench-eos-lat-in-{uuid.uuid4().hex[:6]}", f"bench-eos-lat-out-{uuid.uuid4().hex[:6]}"
    asyncio.run(create(bootstrap, src, out))
    child = subprocess.Popen([sys.executable, __file__, "--child", f"lat:{spec}", "--bootstrap", bootstrap,
                              "--src", src, "--out", out, "--workdir", str(work / "state"), "--control",
                              str(control)], cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (control / "ready").exists():
            if child.poll() is not None or time.monotonic() > deadline:
                print(f"  latency {spec}: the app did not start: {(child.stderr.read() or '')[-500:]}", flush=True)
                return None
            time.sleep(0.05)
        used = json.loads((control / "ready").read_text())
        dump = [] if args.latency_dump else None
        r = asyncio.run(probe(bootstrap, src, out, args.latency_rate, args.latency_seconds, args.latency_warmup,
                              args.keys, dump))
        if dump is not None:   # (seconds since the probe started, output partition, latency ms) per output
            Path(args.latency_dump).mkdir(parents=True, exist_ok=True)
            (Path(args.latency_dump) / f"{spec.replace(':', '-')}-{uuid.uuid4().hex[:4]}.json").write_text(
                json.dumps(dump))
        (control / "stop").write_text("")
        child.wait(60)
        r.update(used)
        if (control / "processed").exists():
            c = json.loads((control / "processed").read_text())
            r["commit_ms"] = 1000 * c["commit_s"] / max(1, c["commits"])
        note = "" if r["seen"] == r["expected"] else f"  SAW {r['seen']:,} OF {r['expected']:,} OUTPUTS"
        print(f"  latency {r['guarantee']:13s} commit_interval {r['interval']} s: p50 {r['p50']:7.1f} ms  "
              f"p99 {r['p99']:7.1f} ms  max {r['max']:7.1f} ms  ({r['sent']:,} sent at {r['rate']:,.0f}/s, "
              f"{r['seen']:,} outputs measured; {r.get('commit_ms', float('nan')):.0f} ms per commit){note}",
              flush=True)
        return r
    finally:
        if child.poll() is None:
            child.terminate()
            child.wait(30)
        shutil.rmtree(work, ignore_errors=True)


def summarize(rates: dict[str, list[float]], lat: dict[str, list[dict]], runs: int) -> None:
    med = {v: statistics.median(r) for v, r in rates.items() if r}
    if med:
        print(f"\nthroughput, median records/s over {runs} run(s)")
        for v, m in med.items():
            print(f"  {v:16s} {m:10,.0f}   (runs: {', '.join(f'{x:,.0f}' for x in rates[v])})")
        print(f"\nexactly-once / at-least-once (target >= {TARGET:g})")
        for v in med:
            kind, g, interval = v.split(":")
            if g != "eos":
                continue
            for base in (f"{kind}:alo:0.5", f"{kind}:alo:{interval}"):
                if base in med:
                    ratio = med[v] / med[base]
                    verdict = "" if kind.startswith("quix") else f"   {'met' if ratio >= TARGET else 'MISSED'}"
                    print(f"  {v:16s} / {base:16s} = {ratio:.2f}{verdict}")
                    break
        print("\nours / quix (same pipeline, guarantee and commit interval)")
        for v in med:
            q = f"quix-{v}"
            if q in med:
                print(f"  {v:16s} / {q:21s} = {med[v] / med[q]:.2f}")
    if lat:
        print(f"\nend-to-end latency, stateless, read_committed consumer, medians over {runs} run(s)")
        for spec, rs in lat.items():
            if rs:
                print(f"  {rs[0]['guarantee']:13s} commit_interval {rs[0]['interval']} s: "
                      f"p50 {statistics.median(r['p50'] for r in rs):7.1f} ms  "
                      f"p99 {statistics.median(r['p99'] for r in rs):7.1f} ms   "
                      f"(p50 runs {', '.join('%.1f' % r['p50'] for r in rs)}; "
                      f"p99 runs {', '.join('%.1f' % r['p99'] for r in rs)})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=500_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--keys", type=int, default=1000)
    p.add_argument("--variants", default=DEFAULT_VARIANTS, help="kind:guarantee:commit_interval, comma-separated; "
                   "kind sl, win, quix-sl, quix-win; guarantee alo or eos ('' for none)")
    p.add_argument("--latency", default=DEFAULT_LATENCY, help="guarantee:commit_interval for the latency phase")
    p.add_argument("--no-latency", action="store_true")
    p.add_argument("--latency-rate", type=int, default=10_000)
    p.add_argument("--latency-seconds", type=float, default=25.0)
    p.add_argument("--latency-warmup", type=float, default=3.0)
    p.add_argument("--latency-dump", help="a directory: write every measured latency there (for a time series)")
    p.add_argument("--bootstrap", help="an existing broker (default: our broker in a child process)")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--child")
    p.add_argument("--src")
    p.add_argument("--out")
    p.add_argument("--workdir")
    p.add_argument("--control")
    args = p.parse_args()
    if args.child:
        kind, guarantee, interval = args.child.split(":")
        if kind == "lat":
            asyncio.run(run_latency_app(guarantee, float(interval), args.bootstrap, args.src, args.out,
                                        args.workdir, args.control))
        elif kind.startswith("quix-"):
            run_quix(kind[5:], guarantee, float(interval), args.bootstrap, args.src, args.out, args.records,
                     args.workdir)
        else:
            asyncio.run(run_ours(kind, guarantee, float(interval), args.bootstrap, args.src, args.out, args.records,
                                 args.workdir))
        return
    from peers import start_ours

    def bench(bootstrap: str) -> None:
        variants = [v for v in args.variants.split(",") if v]
        specs = [] if args.no_latency else [s for s in args.latency.split(",") if s]
        src = f"bench-eos-in-{uuid.uuid4().hex[:6]}"
        t = time.perf_counter()
        asyncio.run(fill(bootstrap, src, args.records, args.keys))
        print(f"wrote {args.records:,} records ({args.keys:,} keys, {PARTITIONS} partitions) to {src} in "
              f"{time.perf_counter() - t:.1f}s", flush=True)
        rates: dict[str, list[float]] = {v: [] for v in variants}
        lat: dict[str, list[dict]] = {s: [] for s in specs}
        for i in range(args.runs):
            print(f"run {i + 1}/{args.runs}", flush=True)
            for v in variants:
                r = run_variant(v, bootstrap, src, args.records, args.timeout)
                if r is not None:
                    rates[v].append(r["rate"])
            for s in specs:
                r = run_latency(s, bootstrap, args)
                if r is not None:
                    lat[s].append(r)
        summarize(rates, lat, args.runs)

    if args.bootstrap:
        bench(args.bootstrap)
        return
    with start_ours() as broker:
        print(f"our broker at {broker.bootstrap} (python -m broker_embedded, shipped defaults)", flush=True)
        bench(broker.bootstrap)


if __name__ == "__main__":
    main()

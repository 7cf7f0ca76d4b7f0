"""Restore rate: a key-value store's state rebuilt from a changelog of N records (default 1,000,000), ours and Quix
Streams', on the same broker in the same run.

Once: N JSON records with N distinct keys go to a 4-partition input topic; our app (`group_by_key().count("counts")`)
and a Quix Streams app (a stateful `apply` counting per key in its RocksDB state) each process them once, so each
writes a changelog of N records in its own format (`<app id>-counts-changelog`, Quix's
`changelog__<group>--<topic>--default`). Then, per run, each starts again with the same group and an empty state
directory (nothing to process: the input offsets are committed), so it restores its whole changelog:

  ours  the worker's RestoreResults: records restored / the slowest partition's seconds (from the restore consumer's
        first fetch to that partition's end; the 4 partitions are read by one consumer at once)
  quix  RecoveryManager.do_recovery, counting the changelog messages it applies: records / (last applied message -
        first applied message); its whole do_recovery call, which ends with a 1 s poll that finds nothing, is
        printed too

    python bench/restore.py                   # 1,000,000 records, 3 runs, our broker in a child process
    python bench/restore.py --records 200000 --runs 1
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
TARGET = 300_000


def _report(**r) -> None:
    Path(os.environ["BENCH_RESULT"]).write_text(json.dumps(r))


# ---------------------------------------------------------------- ours

def _our_app(app_id: str, bootstrap: str, src: str, workdir: str):
    import streams
    app = streams.App(app_id, broker=bootstrap, workdir=workdir, commit_interval=1.0)
    app.stream(app.topic(src, key_type=str, partitions=PARTITIONS)).group_by_key().count("counts")
    return app


async def ours_fill(app_id: str, bootstrap: str, src: str, n: int, workdir: str) -> None:
    app = _our_app(app_id, bootstrap, src, workdir)
    t0 = time.perf_counter()

    @app.timer(0.05)
    async def watch():
        if app.worker.processed >= n:
            app.stop_worker()

    await app.run_worker()
    _report(seconds=time.perf_counter() - t0)


async def ours_restore(app_id: str, bootstrap: str, src: str, workdir: str) -> None:
    app = _our_app(app_id, bootstrap, src, workdir)
    rs = []

    @app.timer(0.01)
    async def watch():
        if not rs and len(app.worker.restores) >= PARTITIONS:
            rs.extend(app.worker.restores)
            app.stop_worker()

    await app.run_worker()
    _report(records=sum(r.restored for r in rs), seconds=max(r.seconds for r in rs),
            parts=[[r.task, r.restored, round(r.seconds, 3)] for r in rs])


# ---------------------------------------------------------------- Quix Streams

def _quix_app(group: str, bootstrap: str, workdir: str):
    import logging
    from quixstreams import Application
    logging.disable(logging.WARNING)
    return Application(broker_address=bootstrap, consumer_group=group, auto_offset_reset="earliest",
                       state_dir=workdir, commit_interval=1.0, loglevel="WARNING")


def _count(value, state):
    n = state.get("n", 0) + 1
    state.set("n", n)
    return n


def quix_fill(group: str, bootstrap: str, src: str, n: int, workdir: str) -> None:
    app = _quix_app(group, bootstrap, workdir)
    seen = [0]
    t0 = time.perf_counter()

    def mark(_):
        seen[0] += 1
        if seen[0] >= n:
            app.stop()

    sdf = app.dataframe(app.topic(src, key_deserializer="str", value_deserializer="json"))
    sdf = sdf.apply(_count, stateful=True)
    sdf.update(mark)
    app.run()
    _report(seconds=time.perf_counter() - t0)


def quix_restore(group: str, bootstrap: str, src: str, workdir: str) -> None:
    from quixstreams.state import recovery
    app = _quix_app(group, bootstrap, workdir)
    marks = {"count": 0}
    apply = recovery.RecoveryPartition.recover_from_changelog_message
    do_recovery = recovery.RecoveryManager.do_recovery

    def counted(self, *args, **kwargs):
        if not marks["count"]:
            marks["first"] = time.perf_counter()
        apply(self, *args, **kwargs)
        marks["count"] += 1
        marks["last"] = time.perf_counter()

    def timed(self):
        t0 = time.perf_counter()
        do_recovery(self)
        if marks["count"]:
            marks["total"] = time.perf_counter() - t0
            app.stop()

    recovery.RecoveryPartition.recover_from_changelog_message = counted
    recovery.RecoveryManager.do_recovery = timed
    sdf = app.dataframe(app.topic(src, key_deserializer="str", value_deserializer="json"))
    sdf.apply(_count, stateful=True)
    app.run()
    _report(records=marks["count"], seconds=marks["last"] - marks["first"], total=marks["total"])


# ---------------------------------------------------------------- orchestration

async def fill(bootstrap: str, topic: str, n: int) -> None:
    """n JSON records, each with its own key, partitioned by murmur2 of the key."""
    from aiokafka import AIOKafkaProducer
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    from aiokafka.partitioner import murmur2
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    await admin.close()
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", max_batch_size=1024 * 1024, linger_ms=5)
    await producer.start()
    batches = [producer.create_batch() for _ in range(PARTITIONS)]
    futures = []
    for i in range(n):
        key = f"key-{i}".encode()
        p = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
        value = json.dumps({"id": i, "amount": i % 1000}).encode()
        if batches[p].append(key=key, value=value, timestamp=None) is None:
            futures.append(await producer.send_batch(batches[p], topic, partition=p))
            batches[p] = producer.create_batch()
            batches[p].append(key=key, value=value, timestamp=None)
    for p, b in enumerate(batches):
        if b.record_count():
            futures.append(await producer.send_batch(b, topic, partition=p))
    await asyncio.gather(*futures)
    await producer.stop()


def child(role: str, name: str, bootstrap: str, src: str, n: int, timeout: float) -> dict | None:
    work = Path(tempfile.mkdtemp(prefix=f"bench-restore-{role}-"))
    result = work / "result.json"
    cmd = [sys.executable, __file__, "--child", role, "--name", name, "--bootstrap", bootstrap, "--src", src,
           "--records", str(n), "--workdir", str(work / "state")]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=work,
                             env={**os.environ, "BENCH_RESULT": str(result)})
        if result.exists():
            return json.loads(result.read_text())
        err = [x for x in res.stderr.strip().splitlines() if "rror" in x][-3:]
        print(f"  {role}: failed (exit {res.returncode}): {err}", flush=True)
    except subprocess.TimeoutExpired:
        print(f"  {role}: timed out after {timeout:.0f}s", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the state directory goes with it: the next start restores
    return None


def bench(bootstrap: str, args) -> None:
    uid = uuid.uuid4().hex[:6]
    src, ours, quix = f"bench-restore-in-{uid}", f"bench-restore-ours-{uid}", f"bench-restore-quix-{uid}"
    t = time.perf_counter()
    asyncio.run(fill(bootstrap, src, args.records))
    print(f"wrote {args.records:,} records with distinct keys to {src} in {time.perf_counter() - t:.1f}s", flush=True)
    variants = args.variants.split(",")
    for v in variants:
        r = child(f"{v}-fill", ours if v == "ours" else quix, bootstrap, src, args.records, args.timeout)
        if r is None:
            return
        print(f"  {v}: processed them (writing the changelog) in {r['seconds']:.1f}s", flush=True)
    rates: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.runs):
        print(f"run {i + 1}/{args.runs}", flush=True)
        for v in variants:
            r = child(f"{v}-restore", ours if v == "ours" else quix, bootstrap, src, args.records, args.timeout)
            if r is None:
                continue
            rate = r["records"] / r["seconds"]
            rates[v].append(rate)
            extra = f"; do_recovery {r['total']:.2f} s" if "total" in r else ""
            print(f"  {v:5s} restored {r['records']:,} records in {r['seconds']:.2f} s: {rate:12,.0f} records/s"
                  f"{extra}", flush=True)
    med = {v: statistics.median(r) for v, r in rates.items() if r}
    print(f"\nmedian restore records/s over {args.runs} run(s)")
    for v, m in med.items():
        print(f"  {v:5s} {m:12,.0f}   (runs: {', '.join(f'{x:,.0f}' for x in rates[v])})")
    if "ours" in med:
        print(f"  ours: target >= {TARGET:,}: {'met' if med['ours'] >= TARGET else 'MISSED'}")
        if "quix" in med:
            print(f"  ours / quix = {med['ours'] / med['quix']:.2f}x")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--variants", default="ours,quix")
    p.add_argument("--bootstrap", help="an existing broker (default: our broker in a child process)")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--child")
    p.add_argument("--name")
    p.add_argument("--src")
    p.add_argument("--workdir")
    args = p.parse_args()
    if args.child:
        fn = {"ours-fill": ours_fill, "ours-restore": ours_restore, "quix-fill": quix_fill,
              "quix-restore": quix_restore}[args.child]
        call = [args.name, args.bootstrap, args.src] + ([args.records] if args.child.endswith("fill") else [])
        out = fn(*call, args.workdir)
        if asyncio.iscoroutine(out):
            asyncio.run(out)
        return
    from peers import start_ours
    if args.bootstrap:
        bench(args.bootstrap, args)
        return
    with start_ours() as broker:
        print(f"our broker at {broker.bootstrap}", flush=True)
        bench(broker.bootstrap, args)


if __name__ == "__main__":
    main()

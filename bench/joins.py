"""Joins, ours against Quix Streams, on the same broker (ours, in a child process) in the same run.

1. Stream-table: N stream records (default 1,000,000) over K keys joined with a K-key table (default 100,000),
   inner join, one output per stream record:
     ours  app.stream(S).join(app.table(T), joiner).to(out)
     quix  sdf(S).join_asof(sdf(T), how="inner", on_merge=joiner).to_topic(out)   (Quix's stream-table join: each
           left record takes the right side's latest value at or before its timestamp)
   The table is loaded first, apart from the measurement: for each run and engine, a first child process with the
   app's group and state dir starts while S is still empty, processes the K table records, commits and stops; only
   then is S filled (once, for every run). The measured child restarts the same app (same group and state dir:
   the table offsets are committed, its rows are in the local store), so it reads only the stream.
   Timestamps: the table's rows all come before the stream's first record (Quix's as-of lookup needs that).
2. Stream-stream: M records per side (default 200,000) on two topics L and R over the same keys (default 10,000),
   1 ms apart, the i-th records of both sides with the same key and the same timestamp; window +-2 s; each key
   recurs every K ms (10 s), so every record has exactly one partner: M outputs.
     ours  left.join(right, joiner, JoinWindows(2, grace=G)).to(out)
     quix  sdf(L).join_interval(sdf(R), how="inner", on_merge=joiner, backward_ms=2000, forward_ms=2000,
           grace_ms=G).to_topic(out)
   The grace G defaults to the input's whole event-time span plus 10 s (210 s): our worker interleaves a task's
   partitions by timestamp only within one `getmany()` batch, which aiokafka fills partition by partition, so one
   side can be read a whole fetch (up to 4 MB, here most of a partition) ahead of the other; with a shorter grace
   (`--grace 60`) our join then drops most matches as late (64,003 of 200,000 outputs, measured), where Kafka
   Streams, which picks the lowest timestamp across the task's partition buffers, finds them all. Quix's interval
   join looks only backwards in time from the record being processed; with equal timestamps per pair that finds
   every pair whatever the processing order (it found all 200,000 with 60 s).

Rates: input records (stream records; both sides for stream-stream) over the time from the first input record the
app processed (a `peek` / `update` before the join, in the child, time.monotonic) to the moment the parent's
consumer (confluent-kafka, by assignment from offset 0 of a fresh output topic per run) receives the last expected
output. So the time includes producing and the broker, not start-up, group joins, restores or the table load.
Both engines: at-least-once (`--guarantee eos`: exactly-once for both; ours defaults to exactly-once, Quix to
at-least-once), commit interval 1 s, RocksDB state with changelogs. Runs are interleaved (ours, quix, ours,
quix...); medians. `--profile DIR` writes a cProfile dump of each of our measured children.

    python bench/joins.py                                    # 1M stream records, 100k table keys, 200k x 2; 3 runs
    python bench/joins.py --records 200000 --keys 20000 --ss-records 50000 --runs 1          # quick
    python bench/joins.py --only ss --engines ours --profile /tmp/prof   # cProfile of our measured children
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
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

PARTITIONS = 4
COMMIT_INTERVAL = 1.0
STEP_MS = 1
WINDOW_S = 2.0
GUARANTEES = {"alo": ("at_least_once", "at-least-once"), "eos": ("exactly_once", "exactly-once")}
GUARANTEE = "alo"


def st_joiner(order: dict, row: dict) -> dict:
    return {"id": order["id"], "amount": order["amount"], "name": row["name"], "tier": row["tier"]}


def ss_joiner(left: dict, right: dict) -> dict:
    return {"id": left["id"], "amount": left["amount"], "status": right["status"]}


# ---------------------------------------------------------------- children

class Control:
    """Files in the run's control directory: `done` (the child processed every input), `stop` (the parent saw every
    output; the child then stops), `result.json` (the child's marks)."""

    def __init__(self) -> None:
        self.dir = Path(os.environ["BENCH_CTL"])
        self.marks: dict = {"count": 0}

    def mark(self, expect: int) -> None:
        m = self.marks
        c = m["count"] = m["count"] + 1
        if c == 1:
            m["t0"] = time.monotonic()
        if c == expect:
            m["t_inputs"] = time.monotonic()
            (self.dir / "done").write_text("")

    @property
    def stopping(self) -> bool:
        return (self.dir / "stop").exists()

    def report(self, **extra) -> None:
        (self.dir / "result.json").write_text(json.dumps({**self.marks, **extra}))


def _our_app(group: str, bootstrap: str, workdir: str):
    import streams
    return streams.App(group, broker=bootstrap, workdir=workdir, commit_interval=COMMIT_INTERVAL,
                       processing_guarantee=GUARANTEES[os.environ.get("BENCH_GUARANTEE", "alo")][0])


async def ours_child(kind: str, args) -> None:
    import streams
    app = _our_app(args.group, args.bootstrap, args.workdir)
    ctl = Control()
    topics = args.topics.split(",")
    mark = (lambda k, v: ctl.mark(args.expect))
    if kind == "st":
        stream = app.stream(app.topic(topics[0], key_type=str, partitions=PARTITIONS))
        table = app.table(app.topic(topics[1], key_type=str, partitions=PARTITIONS))
        if not args.load:
            stream = stream.peek(mark)
        stream.join(table, st_joiner).to(app.topic(args.out, key_type=str))
    else:
        left = app.stream(app.topic(topics[0], key_type=str, partitions=PARTITIONS)).peek(mark)
        right = app.stream(app.topic(topics[1], key_type=str, partitions=PARTITIONS)).peek(mark)
        left.join(right, ss_joiner, streams.JoinWindows(WINDOW_S, grace=args.grace)).to(app.topic(args.out, key_type=str))

    @app.timer(0.01)
    async def watch():
        w = app.worker
        if args.load:
            if w.processed >= args.expect:        # the table is loaded: stop (the worker commits on the way out)
                app.stop_worker()
        elif ctl.stopping:
            app.stop_worker()

    await app.run_worker()
    ctl.report()


def quix_child(kind: str, args) -> None:
    import logging
    from quixstreams import Application
    logging.disable(logging.WARNING)
    app = Application(broker_address=args.bootstrap, consumer_group=args.group, auto_offset_reset="earliest",
                      state_dir=args.workdir, commit_interval=COMMIT_INTERVAL, loglevel="WARNING",
                      processing_guarantee=GUARANTEES[os.environ.get("BENCH_GUARANTEE", "alo")][1])
    ctl = Control()
    topics = [app.topic(t, key_deserializer="str", value_deserializer="json") for t in args.topics.split(",")]
    out = app.topic(args.out, key_serializer="str", value_serializer="json")
    mark = (lambda _v: ctl.mark(args.expect))
    left, right = app.dataframe(topics[0]), app.dataframe(topics[1])
    if kind == "st":
        if args.load:
            loaded = {"n": 0}

            def count(_v):
                loaded["n"] += 1
                if loaded["n"] == args.expect:
                    app.stop()
            right = right.update(count)
        else:
            left = left.update(mark)
        joined = left.join_asof(right, how="inner", on_merge=st_joiner)
    else:
        left, right = left.update(mark), right.update(mark)
        w = int(WINDOW_S * 1000)
        joined = left.join_interval(right, how="inner", on_merge=ss_joiner, grace_ms=int(args.grace * 1000),
                                    backward_ms=w, forward_ms=w)
    joined.to_topic(out)

    def watch():
        while not ctl.stopping:
            time.sleep(0.01)
        app.stop()
    if not args.load:
        threading.Thread(target=watch, daemon=True).start()
    app.run()
    ctl.report()


def child_main(args) -> None:
    engine, kind = args.child.split("-")
    profile = os.environ.get("BENCH_PROFILE")
    prof = None
    if profile and not args.load:
        import cProfile
        prof = cProfile.Profile()
        prof.enable()
    try:
        if engine == "ours":
            asyncio.run(ours_child(kind, args))
        else:
            quix_child(kind, args)
    finally:
        if prof is not None:
            prof.disable()
            prof.dump_stats(profile)


# ---------------------------------------------------------------- parent

async def create(bootstrap: str, *topics: str) -> None:
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    await admin.create_topics([NewTopic(t, PARTITIONS, 1) for t in topics])
    await admin.close()
    await asyncio.sleep(0.5)


def fill(bootstrap: str, topic: str, n: int, keys: int, value_of, end_ms: int) -> None:
    from peers import fill_keyed
    t = time.perf_counter()
    asyncio.run(fill_keyed(bootstrap, topic, n, keys, PARTITIONS, STEP_MS, value_of, end_ms=end_ms))
    print(f"  wrote {n:,} records over {keys:,} keys to {topic} in {time.perf_counter() - t:.1f} s", flush=True)


def spawn(role: str, bootstrap: str, topics: list[str], out: str, group: str, workdir: Path, expect: int,
          ctl: Path, load: bool = False, profile: str | None = None, grace: float | None = None
          ) -> subprocess.Popen:
    cmd = [sys.executable, __file__, "--child", role, "--bootstrap", bootstrap, "--topics", ",".join(topics),
           "--out", out, "--group", group, "--workdir", str(workdir), "--expect", str(expect)]
    if load:
        cmd.append("--load")
    if grace is not None:
        cmd += ["--grace", str(grace)]
    env = {**os.environ, "BENCH_CTL": str(ctl), "BENCH_GUARANTEE": GUARANTEE}
    if profile:
        env["BENCH_PROFILE"] = profile
    ctl.mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(cmd, cwd=ctl, env=env, stdout=subprocess.DEVNULL, stderr=open(ctl / "stderr", "w"))


def _stderr_tail(ctl: Path) -> str:
    try:
        lines = [x for x in (ctl / "stderr").read_text().strip().splitlines() if x.strip()]
        return " | ".join(lines[-3:])
    except OSError:
        return ""


def load_table(role: str, bootstrap: str, topics: list[str], out: str, group: str, workdir: Path, keys: int,
               ctl: Path, timeout: float) -> bool:
    proc = spawn(role, bootstrap, topics, out, group, workdir, keys, ctl, load=True)
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        print(f"  {role} {group}: table load timed out", flush=True)
        return False
    if rc != 0:
        print(f"  {role} {group}: table load failed (exit {rc}): {_stderr_tail(ctl)}", flush=True)
        return False
    return True


def measure(role: str, bootstrap: str, topics: list[str], out: str, group: str, workdir: Path, inputs: int,
            outputs: int, ctl: Path, timeout: float, profile: str | None = None, grace: float | None = None
            ) -> dict | None:
    """Run the measured child and count its outputs; returns rate and counts, or None when it failed."""
    from confluent_kafka import Consumer, TopicPartition, OFFSET_BEGINNING
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"bench-out-{uuid.uuid4().hex[:8]}",
                         "enable.auto.commit": False, "enable.auto.offset.store": False,
                         "fetch.max.bytes": 64 * 1024 * 1024, "max.partition.fetch.bytes": 8 * 1024 * 1024,
                         "queued.min.messages": 10_000_000, "queued.max.messages.kbytes": 1024 * 1024,
                         "fetch.wait.max.ms": 10})
    consumer.assign([TopicPartition(out, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    proc = spawn(role, bootstrap, topics, out, group, workdir, inputs, ctl, profile=profile, grace=grace)
    seen, t_last, failed = 0, None, None
    deadline = time.monotonic() + timeout
    settle = None
    try:
        while seen < outputs:
            msgs = consumer.consume(num_messages=1000, timeout=0.2)
            if msgs:
                got = sum(1 for m in msgs if m.error() is None)
                if got:
                    seen += got
                    t_last = time.monotonic()
            now = time.monotonic()
            if proc.poll() is not None:
                failed = f"exited {proc.returncode}: {_stderr_tail(ctl)}"
                break
            if now > deadline:
                failed = f"timed out after {timeout:.0f} s with {seen:,} of {outputs:,} outputs"
                break
            if (ctl / "done").exists():
                # Every input processed: the outputs should follow within seconds. Fewer than expected (a join
                # that dropped matches) ends the run 5 s after the last output, and the count is reported.
                settle = settle or now
                if now - max(settle, t_last or 0) > 5.0:
                    break
    finally:
        consumer.close()
        (ctl / "stop").write_text("")
        try:
            proc.wait(120)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if failed:
        print(f"  {role}: {failed}", flush=True)
        return None
    try:
        r = json.loads((ctl / "result.json").read_text())
    except (OSError, ValueError):
        print(f"  {role}: no result ({_stderr_tail(ctl)})", flush=True)
        return None
    if t_last is None or "t0" not in r:
        print(f"  {role}: no output", flush=True)
        return None
    seconds = t_last - r["t0"]
    res = {"rate": inputs / seconds, "seconds": seconds, "outputs": seen, "inputs_seen": r["count"],
           "inputs_s": r.get("t_inputs", t_last) - r["t0"]}
    note = "" if seen == outputs else f"  ** {seen:,} outputs, expected {outputs:,} **"
    print(f"  {role:8s} {res['rate']:10,.0f} records/s  ({seconds:.2f} s; inputs processed in "
          f"{res['inputs_s']:.2f} s; {seen:,} outputs){note}", flush=True)
    return res


def quix_has(method: str) -> bool:
    from quixstreams.dataframe import StreamingDataFrame
    return hasattr(StreamingDataFrame, method)


def quix_version() -> str:
    import quixstreams
    return quixstreams.__version__


def bench_st(bootstrap: str, args, base: Path) -> dict:
    n, keys = args.records, args.keys
    tag = uuid.uuid4().hex[:6]
    stream_t, table_t = f"bench-join-orders-{tag}", f"bench-join-rows-{tag}"
    engines = [e for e in args.engines.split(",") if e != "quix" or quix_has("join_asof")]
    runs = [(i, e, f"bench-join-st-{e}-{i}-{tag}") for i in range(args.runs) for e in engines]
    asyncio.run(create(bootstrap, stream_t, table_t, *[f"{g}-out" for _, _, g in runs]))
    print(f"\nstream-table: {n:,} stream records, {keys:,}-row table", flush=True)
    now = int(time.time() * 1000)
    fill(bootstrap, table_t, keys, keys, lambda i: {"name": f"customer-{i}", "tier": i % 5},
         end_ms=now - n * STEP_MS - 1000)
    loaded = []
    t = time.perf_counter()
    for i, e, g in runs:
        if load_table(f"{e}-st", bootstrap, [stream_t, table_t], f"{g}-out", g, base / g / "state", keys,
                      base / g / "load", args.timeout):
            loaded.append((i, e, g))
    print(f"  table loaded by {len(loaded)} app(s) in {time.perf_counter() - t:.1f} s", flush=True)
    fill(bootstrap, stream_t, n, keys, lambda i: {"id": i, "amount": i % 1000}, end_ms=now)
    rates: dict[str, list] = {e: [] for e in engines}
    for i, e, g in loaded:
        if e == engines[0]:
            print(f" run {i + 1}/{args.runs}", flush=True)
        prof = f"{args.profile}/st-{e}-{i}.prof" if args.profile and e == "ours" else None
        r = measure(f"{e}-st", bootstrap, [stream_t, table_t], f"{g}-out", g, base / g / "state", n, n,
                    base / g / "run", args.timeout, prof)
        if r:
            rates[e].append(r)
    return rates


def bench_ss(bootstrap: str, args, base: Path) -> dict:
    m, keys = args.ss_records, args.ss_keys
    # Default grace: the whole event-time span of the input, so that neither engine drops a match because one side
    # was read far ahead of the other (see the module docstring); --grace sets it.
    grace = args.grace if args.grace is not None else m * STEP_MS / 1000 + 10
    if keys * STEP_MS <= 2 * WINDOW_S * 1000:
        raise SystemExit(f"--ss-keys {keys}: a key must recur less often than the window ({2 * WINDOW_S:g} s), "
                         f"i.e. more than {int(2 * WINDOW_S * 1000 / STEP_MS)} keys")
    tag = uuid.uuid4().hex[:6]
    left_t, right_t = f"bench-join-left-{tag}", f"bench-join-right-{tag}"
    engines = [e for e in args.engines.split(",") if e != "quix" or quix_has("join_interval")]
    runs = [(i, e, f"bench-join-ss-{e}-{i}-{tag}") for i in range(args.runs) for e in engines]
    asyncio.run(create(bootstrap, left_t, right_t, *[f"{g}-out" for _, _, g in runs]))
    print(f"\nstream-stream: {m:,} records per side over {keys:,} keys, window +-{WINDOW_S:g} s, grace {grace:g} s",
          flush=True)
    now = int(time.time() * 1000)
    fill(bootstrap, left_t, m, keys, lambda i: {"id": i, "amount": i % 1000}, end_ms=now)
    fill(bootstrap, right_t, m, keys, lambda i: {"id": i, "status": "paid"}, end_ms=now)
    rates: dict[str, list] = {e: [] for e in engines}
    for i, e, g in runs:
        if e == engines[0]:
            print(f" run {i + 1}/{args.runs}", flush=True)
        prof = f"{args.profile}/ss-{e}-{i}.prof" if args.profile and e == "ours" else None
        r = measure(f"{e}-ss", bootstrap, [left_t, right_t], f"{g}-out", g, base / g / "state", 2 * m, m,
                    base / g / "run", args.timeout, prof, grace)
        if r:
            rates[e].append(r)
    return rates


def summary(rows: list[tuple[str, dict | None, str]], args) -> None:
    version = quix_version()
    print(f"\nmedians over {args.runs} run(s), input records/s, {GUARANTEES[args.guarantee][1]}, "
          f"quixstreams {version}")
    print("| join | ours | quix | ours/quix | outputs ours / quix | ours runs | quix runs |")
    print("| --- | ---: | ---: | ---: | --- | --- | --- |")
    for label, rates, quix_method in rows:
        if rates is None:
            continue
        med = {e: statistics.median(x["rate"] for x in r) for e, r in rates.items() if r}
        outs = {e: "/".join(sorted({f"{x['outputs']:,}" for x in r})) for e, r in rates.items() if r}
        runs = {e: " / ".join(f"{x['rate']:,.0f}" for x in r) for e, r in rates.items()}
        ours = f"{med['ours']:,.0f}" if "ours" in med else "failed"
        if "quix" in args.engines.split(",") and not quix_has(quix_method):
            quix, ratio = f"no equivalent in Quix Streams {version}", ""
        else:
            quix = f"{med['quix']:,.0f}" if "quix" in med else ("failed" if "quix" in rates else "not run")
            ratio = f"{med['ours'] / med['quix']:.2f}" if "ours" in med and "quix" in med else ""
        print(f"| {label} | {ours} | {quix} | {ratio} | {outs.get('ours', '-')} / {outs.get('quix', '-')} | "
              f"{runs.get('ours', '')} | {runs.get('quix', '')} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--records", type=int, default=1_000_000, help="stream records of the stream-table join")
    p.add_argument("--keys", type=int, default=100_000, help="table rows (and stream keys) of the stream-table join")
    p.add_argument("--ss-records", type=int, default=200_000, help="records per side of the stream-stream join")
    p.add_argument("--ss-keys", type=int, default=10_000, help="keys of the stream-stream join (> 4000)")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--grace", type=float, help="grace (s) of the stream-stream join, both engines (default: the "
                   "input's event-time span plus 10 s)")
    p.add_argument("--guarantee", choices=sorted(GUARANTEES), default="alo",
                   help="processing guarantee of both engines (default alo: at-least-once)")
    p.add_argument("--only", choices=["st", "ss"], help="one of the two joins")
    p.add_argument("--engines", default="ours,quix")
    p.add_argument("--bootstrap", help="an existing broker (default: our broker in a child process, removed after)")
    p.add_argument("--profile", help="directory for cProfile dumps of our measured children (st-ours-N.prof ...)")
    p.add_argument("--timeout", type=float, default=900)
    p.add_argument("--child")
    p.add_argument("--topics")
    p.add_argument("--out")
    p.add_argument("--group")
    p.add_argument("--workdir")
    p.add_argument("--expect", type=int)
    p.add_argument("--load", action="store_true")
    args = p.parse_args()
    global GUARANTEE
    GUARANTEE = args.guarantee
    if args.child:
        child_main(args)
        return
    if args.profile:
        os.makedirs(args.profile, exist_ok=True)
        args.profile = os.path.abspath(args.profile)
    from peers import start_ours
    base = Path(tempfile.mkdtemp(prefix="bench-joins-"))
    try:
        def run_all(bootstrap: str) -> None:
            st = bench_st(bootstrap, args, base) if args.only in (None, "st") else None
            ss = bench_ss(bootstrap, args, base) if args.only in (None, "ss") else None
            summary([(f"stream-table ({args.records:,} x {args.keys:,} rows)", st, "join_asof"),
                     (f"stream-stream ({args.ss_records:,} x 2, +-{WINDOW_S:g} s)", ss, "join_interval")], args)
        if args.bootstrap:
            run_all(args.bootstrap)
        else:
            with start_ours() as broker:
                print(f"our broker at {broker.bootstrap}", flush=True)
                run_all(broker.bootstrap)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()

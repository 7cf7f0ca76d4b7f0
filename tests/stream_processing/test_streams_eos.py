"""Exactly-once, end to end: workers (and the broker) killed at random moments, a zombie stopped past its session
timeout; what `read_committed` readers see must equal a crash-free run, record by record.

The app (tests/crash/eos_app.py) repartitions by page and counts per page and minute, and counts per user in a
Faust-style table inside an agent; both emit every update. So a crash-free run writes, per window, the counts
1, 2, ..., n and, per user, "user:1", ..., "user:n": any duplicate, loss or double count shows as a wrong sequence.

The default suite runs a short version, the zombie test and the rebalance test; `pytest -m slow -k eos` runs the
full harness (1,000,000 events, three workers, 20 SIGKILLs and two broker kills; EOS_EVENTS and EOS_KILLS scale it).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import types
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from streamtest import create_topic, produce, read_all

ROOT = Path(__file__).resolve().parents[2]
USERS, PAGES, STEP_MS = 200, 20, 10
# Event times start six hours ago, on the hour: recent enough that no broker's 7-day retention deletes the input or
# outputs during a run (Kafka rolls a segment per batch of records that old and deletes them at its next retention
# check: from 1970 on, a run against Kafka lost whatever the check found), old enough that the 1M-event run
# (2.8 hours of event time) stays within Kafka's one hour for timestamps in the future.
BASE_MS = (int(time.time() * 1000) // 3_600_000 - 6) * 3_600_000


def event(i: int) -> tuple[str, str, int]:
    return f"u{i % USERS}", f"p{(i * 7) % PAGES}", BASE_MS + i * STEP_MS


def expected(n: int) -> tuple[dict, dict]:
    """The crash-free outputs: the final count per page window and per user."""
    windows, users = Counter(), Counter()
    for i in range(n):
        user, page, ts = event(i)
        windows[f"{page}@{ts // 60_000 * 60_000}"] += 1
        users[user] += 1
    return windows, users


async def produce_events(bootstrap: str, topic: str, n: int, rate: float,
                         stop: threading.Event | None = None) -> None:
    """Produce the n events at about `rate` per second (idempotent: a broker restart duplicates nothing), until
    `stop` is set."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=20,
                                request_timeout_ms=60_000)
    await producer.start()
    try:
        chunk, begun = 500, time.monotonic()
        for start in range(0, n, chunk):
            if stop is not None and stop.is_set():
                return
            futs = []
            for i in range(start, min(n, start + chunk)):
                user, page, ts = event(i)
                futs.append(await producer.send(topic, json.dumps({"page": page}).encode(), key=user.encode(),
                                                timestamp_ms=ts))
            await asyncio.gather(*futs)
            ahead = (start + chunk) / rate - (time.monotonic() - begun)
            if ahead > 0:
                await asyncio.sleep(ahead)
    finally:
        await producer.stop()


async def read_committed(bootstrap: str, topic: str, idle: float = 2.0) -> list:
    return await read_all(bootstrap, topic, idle=idle, isolation_level="read_committed")


class Worker:
    def __init__(self, folder: Path, env: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "-A", "eos_app:app"], cwd=folder,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True)
        self.reader.start()


class Harness:
    def __init__(self, bootstrap: str, tmp_path: Path, app_id: str, src: str) -> None:
        self.bootstrap = bootstrap
        self.app_id = app_id
        self.env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests' / 'crash'}",
                    "BROKER": f"kafka://{bootstrap}", "APP_ID": app_id, "SRC": src, "WORKDIR": str(tmp_path / "w"),
                    "GUARANTEE": "exactly_once"}
        self.folder = tmp_path
        self.src = src
        self.workers: list[Worker] = []
        self._stop_producing = threading.Event()

    def producer(self, n: int, seconds: float) -> threading.Thread:
        """A thread (not started) producing the n events over `seconds`; `stop_all` stops it, so a failed test does
        not go on loading the broker."""
        return threading.Thread(daemon=True, target=lambda: asyncio.run(
            produce_events(self.bootstrap, self.src, n, n / seconds, self._stop_producing)))

    def start(self) -> Worker:
        w = Worker(self.folder, self.env)
        self.workers.append(w)
        return w

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.proc.poll() is None]

    def outputs(self) -> tuple[dict, dict]:
        views: dict[str, list] = defaultdict(list)
        for r in asyncio.run(read_committed(self.bootstrap, f"{self.app_id}-page-views")):
            views[r.key.decode()].append(int.from_bytes(r.value, "big", signed=True))
        echoes: dict[str, list] = defaultdict(list)
        for r in asyncio.run(read_committed(self.bootstrap, f"{self.app_id}-user-echo")):
            echoes[r.key.decode()].append(r.value.decode())
        return views, echoes

    def wait_done(self, n: int, timeout: float) -> tuple[dict, dict]:
        """The outputs once there are at least n of each kind; fails after `timeout` seconds with how many there
        are and what the workers printed last."""
        deadline = time.monotonic() + timeout
        while True:
            views, echoes = self.outputs()
            got = (sum(len(v) for v in views.values()), sum(len(v) for v in echoes.values()))
            if min(got) >= n:
                return views, echoes
            assert time.monotonic() < deadline, (
                f"after {timeout:.0f} s, {got[0]} page-view and {got[1]} user outputs for {n} events; the workers' "
                "last lines:\n" + "".join(self.tails()))
            time.sleep(1)

    def tails(self, lines: int = 15) -> list[str]:
        """The last lines each worker printed (for a failure's message)."""
        return [f"--- worker {i} (exit {w.proc.poll()}):\n" + "".join(list(w.lines)[-lines:])
                for i, w in enumerate(self.workers)]

    def stop_all(self) -> None:
        self._stop_producing.set()
        for w in self.live():
            w.proc.send_signal(signal.SIGTERM)
        for w in self.workers:
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
            w.reader.join(10)   # the last lines, once the process has exited


@pytest.fixture
def eos_broker(request, kafka_reference):
    """Our broker in a child process (it can be killed), or Apache Kafka under `pytest --kafka` (not killed)."""
    if kafka_reference:
        return types.SimpleNamespace(bootstrap_servers=kafka_reference, kill=None, start=None)
    return request.getfixturevalue("broker_process")().start()


def check_exactly_once(views: dict, echoes: dict, n: int) -> None:
    windows, users = expected(n)
    bad_views = {k: v for k, v in views.items() if v != list(range(1, windows[k] + 1))}
    assert set(views) == set(windows) and not bad_views, \
        f"page-view counts differ from a crash-free run in {len(bad_views)} windows, e.g. " \
        f"{dict(list(bad_views.items())[:2])}"
    bad_echoes = {u: v for u, v in echoes.items() if v != [f"{u}:{i}" for i in range(1, users[u] + 1)]}

    def first_difference(u: str, got: list) -> str:
        want = [f"{u}:{i}" for i in range(1, users[u] + 1)]
        i = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
        return f"{u}: {len(got)} outputs for {len(want)} events, first difference at {i}: got {got[max(0, i - 2):i + 4]}"
    assert set(echoes) == set(users) and not bad_echoes, \
        f"per-user outputs differ from a crash-free run for {len(bad_echoes)} users, e.g. " \
        f"{[first_difference(u, v) for u, v in list(bad_echoes.items())[:3]]}"


def run_with_kills(broker, tmp_path, app_id, topic_name, n: int, workers: int, kills: int, broker_kills: int,
                   seconds: float):
    """Events arrive over `seconds` while `kills` SIGKILLs (and `broker_kills` broker kills) land among them."""
    bootstrap = broker.bootstrap_servers
    src = f"{topic_name}-events"
    asyncio.run(create_topic(bootstrap, src, 4))
    h = Harness(bootstrap, tmp_path, app_id, src)
    rng = random.Random(11)
    producer = h.producer(n, seconds)
    try:
        for _ in range(workers):
            h.start()
        producer.start()
        broker_kill_at = set(rng.sample(range(kills), min(broker_kills, kills)))
        for k in range(kills):
            time.sleep(rng.uniform(0.5, 2 * seconds / kills - 0.5))
            victim = rng.choice(h.live())
            victim.proc.send_signal(signal.SIGKILL)
            victim.proc.wait(10)
            if k in broker_kill_at and broker.kill is not None:
                broker.kill()
                time.sleep(rng.uniform(0.2, 1.0))
                broker.start()
            h.start()
        producer.join(300)
        views, echoes = h.wait_done(n, timeout=200 + n / 1000)
        check_exactly_once(views, echoes, n)
    finally:
        h.stop_all()
        logs = "".join(line for w in h.workers for line in w.lines)
    assert "Traceback" not in logs, logs[-3000:]


def test_exactly_once_through_sigkills(eos_broker, tmp_path, app_id, topic_name):
    run_with_kills(eos_broker, tmp_path, app_id, topic_name, n=30_000, workers=2, kills=4,
                   broker_kills=0, seconds=10)


@pytest.mark.slow
@pytest.mark.timeout(3600)
def test_exactly_once_crash_harness(eos_broker, tmp_path, app_id, topic_name):
    n = int(os.environ.get("EOS_EVENTS", 1_000_000))
    kills = int(os.environ.get("EOS_KILLS", 20))
    run_with_kills(eos_broker, tmp_path, app_id, topic_name, n=n, workers=3, kills=kills,
                   broker_kills=2, seconds=n / 15_000)


def run_scenario(broker, tmp_path, app_id, topic_name, n: int, seconds: float, scenario) -> Harness:
    bootstrap = broker.bootstrap_servers
    src = f"{topic_name}-events"
    asyncio.run(create_topic(bootstrap, src, 4))
    h = Harness(bootstrap, tmp_path, app_id, src)
    producer = h.producer(n, seconds)
    try:
        producer.start()
        scenario(h)
        producer.join(300)
        views, echoes = h.wait_done(n, timeout=240)
        check_exactly_once(views, echoes, n)
    finally:
        for w in h.workers:
            if w.proc.poll() is None and w.proc.returncode is None:
                try:
                    os.kill(w.proc.pid, signal.SIGCONT)
                except ProcessLookupError:
                    pass
        h.stop_all()
    return h


def wait_assigned(w: Worker, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not any("assigned" in line for line in list(w.lines)):
        assert time.monotonic() < deadline and w.proc.poll() is None, "".join(w.lines)
        time.sleep(0.05)


def test_a_zombie_is_fenced_and_its_output_never_visible(eos_broker, tmp_path, app_id, topic_name):
    """A worker SIGSTOPped past its session timeout loses its tasks; resumed, whatever it sends is fenced (not
    visible to read_committed readers), it drops its uncommitted work, rejoins, and carries on without a crash."""
    def scenario(h: Harness) -> None:
        a, b = h.start(), h.start()
        wait_assigned(a)
        wait_assigned(b)
        time.sleep(2)
        os.kill(a.proc.pid, signal.SIGSTOP)
        time.sleep(9)          # > session timeout (6 s): b takes a's tasks over
        os.kill(a.proc.pid, signal.SIGCONT)
        time.sleep(4)
    h = run_scenario(eos_broker, tmp_path, app_id, topic_name, n=40_000, seconds=16,
                     scenario=scenario)
    a = h.workers[0]
    assert a.proc.returncode == 0, "".join(a.lines)[-3000:]
    logs = "".join(line for w in h.workers for line in w.lines)
    assert "Traceback" not in logs, logs[-3000:]


def test_no_duplicates_through_rebalances(eos_broker, tmp_path, app_id, topic_name):
    """Faust's known failure: duplicates after a rebalance under exactly-once. Workers join and leave while events
    arrive; every output is still there exactly once.

    It failed about one run in five under CPU load until a rolled-back task stopped leaking: while its producer
    was being replaced, an agent holding its records went on writing the table on top of the aborted writes and
    sending through the non-transactional producer (test_a_rollback_while_an_agent_holds_records_leaks_nothing
    pins that down). Run it in a loop beside a busy loop to check it stays fixed:
    `pytest -o addopts='' tests/stream_processing/test_streams_eos.py -k rebalances`.
    """
    def scenario(h: Harness) -> None:
        first = h.start()
        wait_assigned(first)
        time.sleep(2)
        second = h.start()
        time.sleep(3)
        third = h.start()
        time.sleep(3)
        # (a worker still importing has no SIGTERM handler yet: wait until both took part in a rebalance)
        wait_assigned(second)
        wait_assigned(third)
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(30) == 0
    run_scenario(eos_broker, tmp_path, app_id, topic_name, n=30_000, seconds=12, scenario=scenario)


async def test_a_rollback_while_an_agent_holds_records_leaks_nothing(make_app, running, bootstrap, topic_name):
    """A task rolled back (its transaction aborted) while its agent is half-way through a chunk: the agent must not
    go on writing its table and sending outputs in the moments the task's producer is being replaced (they would
    go out beside the transaction, visible at once, and count on the aborted writes). read_committed readers see
    each count exactly once, in order, as in a run without the rollback."""
    n = 600
    src, out = f"{topic_name}-src", f"{topic_name}-out"
    await create_topic(bootstrap, src)
    await create_topic(bootstrap, out)
    app = make_app(commit_interval=60.0)   # no commit of its own: the rollback is the only thing that happens
    seen = app.Table("seen", default=int)

    @app.agent(app.topic(src, key_type=str), sink=[app.topic(out, key_type=str, value_type=str)])
    async def echo(stream):
        async for event in stream.events():
            seen[event.key] += 1
            await asyncio.sleep(0)   # yields to the loop between records, as real agents do
            yield f"{event.key}:{seen[event.key]}"

    async with running(app):
        worker = app.worker
        producing = asyncio.create_task(produce(bootstrap, src, [(b"u", b"{}")] * n))
        deadline = time.monotonic() + 30
        rolled_back = False
        while not rolled_back:
            assert time.monotonic() < deadline, "the agent never held records"
            async with worker._commit_lock:
                held = worker.tracker.outstanding()
                if held:
                    task_id = worker.processor.task_of(src, 0)
                    await worker.committer._roll_back(task_id)
                    rolled_back = True
            await asyncio.sleep(0)
        await producing
        values: list = []
        while len(values) < n and time.monotonic() < deadline:
            await worker.commit()   # (waits for the agent, then commits what it did since the rollback)
            await asyncio.sleep(0.2)
            values = [m.value.decode() for m in await read_all(bootstrap, out, isolation_level="read_committed")]
    want = [f"u:{i}" for i in range(1, n + 1)]
    first = next((i for i, (a, b) in enumerate(zip(values, want)) if a != b), None)
    assert values == want, f"{len(values)} outputs; first difference at {first}: {values[first:first + 5]}" \
        if first is not None else f"{len(values)} outputs for {n} records"

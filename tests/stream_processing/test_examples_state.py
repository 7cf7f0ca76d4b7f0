"""The stateful examples: examples/metrics_monitoring.py (windowed averages, emit final, grace, late samples) and
examples/account_balances.py (an event-sourced projection queried from its store, rebuilt by a replay).

Expected values are computed here from the inputs with plain Python, following the documented rules (tumbling
windows [start, start + 60 s); a sample is dropped once the task's stream time >= window end + grace; a window is
emitted once, when stream time reaches end + grace), not copied from a run.
"""

from __future__ import annotations

import importlib.util
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

import streams
from streams.testing import TestDriver
from streamtest import consume, eventually

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def load_example(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module   # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def run_example(name: str, cwd: Path) -> list[str]:
    result = subprocess.run([sys.executable, str(ROOT / "examples" / f"{name}.py")], capture_output=True, text=True,
                            cwd=cwd, env=ENV, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bootstrap 127.0.0.1:")
    return lines[1:]


# ---- metrics monitoring ----

def expected_minutes(samples, grace_ms: int) -> tuple[dict, list]:
    """{(host, minute start): (average, samples)} of the windows that closed, and the samples dropped as late, for
    samples processed in this order by one task."""
    stream_time = -1
    sums: dict[tuple[str, int], list] = {}
    dropped = []
    for host, ts, cpu in samples:
        stream_time = max(stream_time, ts)
        start = ts - ts % 60_000
        if start + 60_000 + grace_ms <= stream_time:
            dropped.append((host, ts, cpu))
            continue
        acc = sums.setdefault((host, start), [0.0, 0])
        acc[0] += cpu
        acc[1] += 1
    closed = {w: (round(s / n, 2), n) for w, (s, n) in sums.items() if w[1] + 60_000 + grace_ms <= stream_time}
    return closed, dropped


def test_metrics_example_averages_each_closed_minute_once_and_drops_late_samples():
    mm = load_example("metrics_monitoring")
    grace = mm.GRACE * 1000
    rng = random.Random(5)
    t0 = 1_700_000_040_000   # a whole minute
    samples = []
    for i in range(300):
        ts = t0 + i * 2_000 + rng.choice([0, 0, 0, -20_000, -45_000, -100_000])   # some late, some very late
        samples.append((rng.choice(["a", "b", "c", "d"]), max(t0, ts), round(rng.uniform(0, 100), 1)))
    closed, dropped = expected_minutes(samples, grace)
    assert dropped and len(closed) > 20   # the input exercises both cases

    # One partition: one task, one stream time, as expected_minutes models it.
    with TestDriver(mm.app, partitions={"cpu-samples": 1}) as driver:
        for host, ts, cpu in samples:
            driver.pipe(mm.cpu_samples, host, cpu, timestamp=ts)
        out = driver.read(mm.per_minute)
        assert sorted(dict(mm.app.store("cpu-sums").fetch_all()))   # the open windows are queryable
    got = {(avg.host, avg.start): (avg.average, avg.samples) for host, avg in out}
    assert len(got) == len(out), "a window was emitted more than once"
    assert all(host == avg.host for host, avg in out)
    assert got.keys() == closed.keys()
    for window, (average, n) in closed.items():
        assert got[window][1] == n, window
        assert got[window][0] == pytest.approx(average, abs=0.006), window
    # each host's minutes come out in time order
    for host in "abcd":
        starts = [avg.start for h, avg in out if h == host]
        assert starts == sorted(starts)


def test_metrics_demo_prints_the_closed_minutes_and_drops_the_late_sample(tmp_path, only_embedded):
    mm = load_example("metrics_monitoring")
    samples = mm.demo_samples()
    # The demo's hosts may share partitions (and so a stream time); its in-grace and late samples are in grace
    # and late by the host's own samples alone, so the one-task model gives the same result.
    closed, dropped = expected_minutes(samples, mm.GRACE * 1000)
    assert dropped == [mm.LATE_SAMPLE]
    lines = run_example("metrics_monitoring", tmp_path)
    printed = {}
    for line in lines[:-3]:
        host, clock, _, average, _, n, _ = line.split()
        printed[(host, clock)] = (float(average.rstrip("%")), int(n))
    assert printed == {(host, mm.clock(start)): (average, n) for (host, start), (average, n) in closed.items()}
    host, ts, _ = mm.LATE_SAMPLE
    assert lines[-3].startswith(f"late sample {host}@{mm.clock(ts)} dropped")
    assert lines[-1] == f"{len(closed)} per-minute averages for 3 hosts"


# ---- account balances ----

def fold_balances(events) -> dict[str, int]:
    balances: dict[str, int] = {}
    for account, event in events:
        sign = 1 if event.kind == "deposit" else -1
        balances[account] = balances.get(account, 0) + sign * event.cents
    return balances


async def test_account_balances_are_queried_from_the_store_and_rebuilt_by_replaying_the_log(
        make_app, running, bootstrap, tmp_path, app_id):
    ab = load_example("account_balances")
    events = ab.demo_events(n=300, accounts=7)
    expected = fold_balances(events)

    app = ab.build(make_app())
    async with running(app):
        for account, event in events:
            await app.send("account-events", key=account, value=event)
        store = await eventually(lambda: app.store("balances") if dict(app.store("balances").all()) == expected
                                 else None, timeout=30)
        assert store.get("acc-3") == expected["acc-3"] and store.get("nobody") is None
        assert [k for k, _ in store.range("acc-2", "acc-5")] == ["acc-2", "acc-3", "acc-4"]
    # every balance update went downstream: the last record per account is its balance
    latest = {}
    for r in await consume(bootstrap, "account-balances", len(events)):
        latest[r.key.decode()] = streams.IntSerde().deserialize(r.value)
    assert latest == expected

    # A new projection (another app id, its own state directory) replays the event log from offset 0. Every event
    # is there before it starts, so its first fetch races its stores' first restore: the records must wait for it
    # (they were once processed into a store that the restore then wiped, and the balances came out empty).
    replay = ab.build(streams.App(f"{app_id}-replay", broker=bootstrap, workdir=tmp_path / "replay",
                                  commit_interval=0.1, session_timeout=6.0))
    async with running(replay):
        await eventually(lambda: dict(replay.store("balances").all()) == expected, timeout=30)
        assert replay.worker.processed == len(events)


def test_account_balances_demo_prints_the_folded_balances(tmp_path, only_embedded):
    ab = load_example("account_balances")
    expected = fold_balances(ab.demo_events())
    lines = run_example("account_balances", tmp_path)
    assert lines[:-1] == [f"{account}: {ab.cents(b)}" for account, b in sorted(expected.items())]
    assert lines[-1].startswith(f"200 events, {len(expected)} accounts, total {ab.cents(sum(expected.values()))}")

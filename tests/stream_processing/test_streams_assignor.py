"""The task assignor: balance per sub-topology and overall, stickiness, and two apps sharing one id."""

from __future__ import annotations

import asyncio
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from streams.errors import GroupConflictError
from streams.runtime.assignor import balance_tasks, subscription_conflict
from streamtest import eventually

ROOT = Path(__file__).resolve().parents[2]


def _check_balanced(owned: dict[str, list], tasks: list) -> None:
    assert sorted(t for ts in owned.values() for t in ts) == sorted(tasks)  # each task exactly once
    totals = [len(ts) for ts in owned.values()]
    assert max(totals) - min(totals) <= 1, owned
    for sid in {s for s, _ in tasks}:
        per = [sum(1 for s, _ in ts if s == sid) for ts in owned.values()]
        assert max(per) - min(per) <= 1, (sid, owned)


def test_each_subtopology_is_spread_over_the_workers():
    # The old balancer balanced totals only: with previous owners {a: all of sub 0, b: all of sub 1} it kept that,
    # so a did all the DSL work and b all the agent work.
    tasks = [(s, p) for s in range(2) for p in range(4)]
    owned = balance_tasks(tasks, ["a", "b"], {"a": [(0, p) for p in range(4)], "b": [(1, p) for p in range(4)]})
    _check_balanced(owned, tasks)
    assert {s for s, _ in owned["a"]} == {s for s, _ in owned["b"]} == {0, 1}
    # and it keeps what it can: a keeps two of its sub-0 tasks, b two of its sub-1 tasks
    assert sum(1 for t in owned["a"] if t[0] == 0) == 2 and sum(1 for t in owned["b"] if t[0] == 1) == 2
    assert set(owned["a"]) & {(0, p) for p in range(4)} and set(owned["b"]) & {(1, p) for p in range(4)}


def test_extras_of_uneven_subtopologies_go_round_so_totals_stay_even():
    # Three sub-topologies of 3 tasks on two workers: each has one extra task; one worker taking all three
    # extras would hold 6 tasks against 3.
    tasks = [(s, p) for s in range(3) for p in range(3)]
    owned = balance_tasks(tasks, ["a", "b"], {})
    _check_balanced(owned, tasks)
    assert sorted(len(v) for v in owned.values()) == [4, 5]


def test_growing_and_shrinking_group_is_balanced_and_sticky():
    tasks = [(s, p) for s in range(2) for p in range(4)]
    first = balance_tasks(tasks, ["a"], {})
    assert sorted(first["a"]) == tasks
    second = balance_tasks(tasks, ["a", "b"], first)
    _check_balanced(second, tasks)
    assert set(second["a"]) <= set(first["a"])
    third = balance_tasks(tasks, ["a", "b", "c"], second)
    _check_balanced(third, tasks)
    assert sum(1 for m in ("a", "b") for t in third[m] if t not in second[m]) == 0  # existing members only gave
    # c leaves: a and b keep everything they had and share c's tasks
    fourth = balance_tasks(tasks, ["a", "b"], {m: third[m] for m in ("a", "b")})
    _check_balanced(fourth, tasks)
    assert all(set(third[m]) <= set(fourth[m]) for m in ("a", "b"))


def test_random_groups_stay_balanced_and_move_little():
    rng = random.Random(7)
    for _ in range(300):
        tasks = [(s, p) for s in range(rng.randint(1, 4)) for p in range(rng.randint(0, 9))]
        members = [f"m{i}" for i in range(rng.randint(1, 5))]
        previous = {m: [t for t in tasks if rng.random() < 0.5] for m in members}  # overlapping claims too
        owned = balance_tasks(tasks, members, previous)
        _check_balanced(owned, tasks)
        # Stable: feeding an assignment back as the previous one moves nothing.
        again = balance_tasks(tasks, members, owned)
        assert all(set(again[m]) == set(owned[m]) for m in members)


def test_no_tasks_or_no_members():
    assert balance_tasks([], ["a", "b"], {}) == {"a": [], "b": []}
    assert balance_tasks([(0, 0)], [], {}) == {}


def test_subscription_conflict_names_the_topics_and_ignores_internal_ones():
    assert subscription_conflict("shop", {"orders", "shop-x-repartition"}, {"orders"}) is None
    assert subscription_conflict("shop", {"orders"}, {"orders", "shop-agent-k-repartition"}) is None
    msg = subscription_conflict("shop", {"orders", "payments"}, {"orders", "clicks"})
    assert "subscribes to topics ['payments'] that this app does not know" in msg
    assert "does not subscribe to topics ['clicks'] that this app reads" in msg
    assert "two different apps (or two versions of one app) share the id 'shop'" in msg


# ---------------------------------------------------------------- real workers on a real broker

def _two_subtopology_app(make_app, app_id, topic_name, seen):
    app = make_app(id=app_id)
    app.stream(app.topic(f"{topic_name}-a", partitions=4)).to(f"{topic_name}-out")

    @app.agent(app.topic(f"{topic_name}-b", partitions=4))
    async def count(stream):
        async for value in stream:
            seen.append(value)

    return app


async def test_two_workers_each_get_tasks_of_every_subtopology(make_app, running, app_id, topic_name):
    seen: list = []
    a = _two_subtopology_app(make_app, app_id, topic_name, seen)
    b = _two_subtopology_app(make_app, app_id, topic_name, seen)
    subs = {s.id for s in a.topology().subtopologies}
    assert len(subs) == 2
    async with running(a):
        # Alone, a owns all 8 tasks; when b joins, the sticky assignment must still hand b tasks of both.
        await eventually(lambda: len(a.worker.assignor.owned) == 8)
        async with running(b):
            def split():
                ta, tb = a.worker.assignor.owned, b.worker.assignor.owned
                return len(ta) == len(tb) == 4 and not ta & tb and \
                    {s for s, _ in ta} == {s for s, _ in tb} == subs
            await eventually(split, timeout=30)
            assert Counter(s for s, _ in a.worker.assignor.owned) == Counter({sid: 2 for sid in subs})


async def test_a_different_app_with_the_same_id_stops_with_a_clear_error(make_app, running, app_id, topic_name,
                                                                          bootstrap, tmp_path):
    first = make_app(id=app_id)
    first.stream(first.topic(f"{topic_name}-orders", partitions=2)).to(f"{topic_name}-out")
    other = make_app(id=app_id)
    other.stream(other.topic(f"{topic_name}-clicks", partitions=2)).to(f"{topic_name}-out2")
    async with running(first):
        with pytest.raises(GroupConflictError) as info:
            await asyncio.wait_for(other.run_worker(), 30)
        msg = str(info.value)
        assert f"topics ['{topic_name}-orders'] that this app does not know" in msg, msg
        assert f"share the id {app_id!r}" in msg
        # the first app goes on with all its tasks once the other left
        await eventually(lambda: len(first.worker.assignor.owned) == 2 and first.worker.assigned, timeout=30)
        assert not first.is_stopping
        # `streams worker` of the other app says so in one line and exits 2
        (tmp_path / "otherapp.py").write_text(
            "import streams\n"
            f"app = streams.App({app_id!r}, session_timeout=6.0)\n"
            f"app.stream(app.topic('{topic_name}-clicks', partitions=2)).to('{topic_name}-out2')\n")
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}"}
        result = await asyncio.to_thread(
            subprocess.run, [sys.executable, "-m", "streams", "worker", "-A", "otherapp:app", "--broker",
                             f"kafka://{bootstrap}"], capture_output=True, text=True, env=env, timeout=60)
        assert result.returncode == 2, result.stderr
        lines = [x for x in result.stderr.splitlines() if x.startswith("streams:")]
        assert lines == [f"streams: error: {msg}"], result.stderr
        assert "Traceback" not in result.stderr and not first.is_stopping

"""`streams reset`: input offsets moved, internal topics and local state deleted, refused while a worker runs."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import streams
from streams.reset import ResetTarget, parse_duration, reset_app
from streamtest import committed, consume, create_topic, eventually, produce

ROOT = Path(__file__).resolve().parents[2]

# The same app in the test (to run workers) and in the `streams reset` child (loaded with -A resetapp:app).
APP_SOURCE = textwrap.dedent("""
    import os
    import streams

    def build(app_id, broker, workdir, src, out):
        app = streams.App(app_id, broker=broker, workdir=workdir, commit_interval=0.1, session_timeout=6.0)
        seen = app.seen = []
        (app.stream(app.topic(src, partitions=2))
            .peek(lambda k, v: seen.append(v))
            .map(lambda k, v: (str(v), v))
            .repartition(name="rekeyed")
            .to(out))
        # a store, so that the app has a changelog topic and local state
        app.stream(src).group_by(lambda k, v: str(v % 2), name="parity").count(name="counts")
        return app

    app = build(os.environ["APP_ID"], os.environ.get("BROKER") or None, os.environ["WORKDIR"], os.environ["SRC"],
                os.environ["OUT"])
""")


@pytest.fixture
def reset_env(tmp_path, app_id, topic_name):
    """(build(broker), run_cli(*args)): the app built in this process, and the CLI on the same app in a child."""
    (tmp_path / "resetapp.py").write_text(APP_SOURCE)
    namespace: dict = {}
    exec(compile(APP_SOURCE.split("app = build(")[0], "resetapp", "exec"), namespace)
    src, out, workdir = f"{topic_name}-in", f"{topic_name}-out", tmp_path / "work"

    def build(broker: str | None) -> streams.App:
        return namespace["build"](app_id, broker, workdir, src, out)

    def run_cli(*args: str, broker: str | None) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "APP_ID": app_id, "BROKER": broker or "",
               "WORKDIR": str(workdir), "SRC": src, "OUT": out}
        return subprocess.run([sys.executable, "-m", "streams", "reset", "-A", "resetapp:app", *args],
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60)

    return build, run_cli, src, out, workdir


async def _topics(bootstrap: str) -> set[str]:
    from aiokafka.admin import AIOKafkaAdminClient
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_reset_to_earliest_reprocesses_everything_and_dry_run_changes_nothing(bootstrap, running, reset_env,
                                                                                 app_id):
    build, run_cli, src, out, workdir = reset_env
    await create_topic(bootstrap, src, 2)
    await produce(bootstrap, src, [(None, str(i).encode(), i % 2) for i in range(10)])
    app = build(bootstrap)
    async with running(app):
        await consume(bootstrap, out, 10)
    assert await committed(bootstrap, app_id, src, 2) == {0: 5, 1: 5}
    repartition = f"{app_id}-rekeyed-repartition"
    assert repartition in await _topics(bootstrap)
    (workdir / "state" / "0_0").mkdir(parents=True)  # what a stateful task leaves behind
    (workdir / "state" / "0_0" / "db").write_text("x")

    dry = await asyncio.to_thread(run_cli, "--dry-run", broker=bootstrap)
    assert dry.returncode == 0, dry.stderr
    assert f"would reset offset of {src}[0] from 5 to 0" in dry.stdout, dry.stdout
    assert f"would delete internal topic {repartition}" in dry.stdout
    assert "would delete local state" in dry.stdout
    assert await committed(bootstrap, app_id, src, 2) == {0: 5, 1: 5}
    assert repartition in await _topics(bootstrap)
    assert (workdir / "state" / "0_0" / "db").exists()

    done = await asyncio.to_thread(run_cli, "--to-earliest", broker=bootstrap)
    assert done.returncode == 0, done.stderr
    assert f"reset offset of {src}[1] from 5 to 0" in done.stdout, done.stdout
    assert f"deleted internal topic {repartition}" in done.stdout and "deleted local state" in done.stdout
    assert f"deleted internal topic {app_id}-counts-changelog" in done.stdout, done.stdout
    assert not any(t.startswith(app_id) and t.endswith("-changelog") for t in await _topics(bootstrap))
    assert await committed(bootstrap, app_id, src, 2) == {0: 0, 1: 0}
    assert repartition not in await _topics(bootstrap)
    assert not (workdir / "state").exists()

    again = build(bootstrap)  # a new run reads every input record again
    async with running(again):
        await eventually(lambda: len(again.seen) >= 10, timeout=30)
        await consume(bootstrap, out, 20)
    assert sorted(again.seen) == list(range(10))


async def test_reset_is_refused_while_a_worker_runs(bootstrap, running, reset_env, app_id):
    build, run_cli, src, out, workdir = reset_env
    await create_topic(bootstrap, src, 2)
    app = build(bootstrap)
    async with running(app):
        refused = await asyncio.to_thread(run_cli, broker=bootstrap)
        assert refused.returncode == 2, refused
        assert refused.stderr.count("\n") == 1 and "has 1 active member" in refused.stderr, refused.stderr
        assert "stop its workers first" in refused.stderr
        assert app.worker.assigned  # and nothing happened to the running worker


async def test_reset_to_a_time_or_the_end_plans_from_timestamps(bootstrap, reset_env, app_id):
    build, run_cli, src, out, workdir = reset_env
    await create_topic(bootstrap, src, 1)
    old = int(time.time() * 1000) - 3_600_000
    from aiokafka import AIOKafkaProducer
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
    await producer.start()
    for i in range(6):  # three records an hour old, then three new ones
        await producer.send_and_wait(src, str(i).encode(), partition=0, timestamp_ms=old + i if i < 3 else None)
    await producer.stop()
    app = build(bootstrap)
    lines: list[str] = []
    plan = await reset_app(app, bootstrap, ResetTarget.ago("30m"), dry_run=True, report=lines.append)
    assert plan.offsets == {(src, 0): (None, 3)}, lines
    plan = await reset_app(app, bootstrap, ResetTarget.at_datetime("2000-01-01T00:00:00Z"), dry_run=True,
                           report=lines.append)
    assert plan.offsets == {(src, 0): (None, 0)}
    plan = await reset_app(app, bootstrap, ResetTarget("latest"), report=lines.append)
    assert plan.offsets == {(src, 0): (None, 6)}
    assert await committed(bootstrap, app_id, src, 1) == {0: 6}
    assert parse_duration("P1DT2H") == 93600 and parse_duration("PT0.5S") == 0.5 and parse_duration("15m") == 900
    bad = await asyncio.to_thread(run_cli, "--by-duration", "soon", broker=bootstrap)
    assert bad.returncode == 2 and bad.stderr.strip() == ("streams: error: bad duration 'soon': use ISO 8601 "
                                                          "(PT1H, P1D) or 90s, 15m, 2h, 1d"), bad.stderr


async def test_reset_of_an_app_on_its_embedded_broker(running, reset_env, only_embedded):
    """No broker URL: the worker's embedded broker keeps its data in <workdir>/broker; reset starts a broker on that
    directory itself when none runs, and is refused while the worker (and its broker) runs."""
    build, run_cli, src, out, workdir = reset_env
    app = build(None)
    async with running(app):
        await app.send(src, None, 1)
        await app.send(src, None, 2)
        await eventually(lambda: len(app.seen) == 2)
        refused = await asyncio.to_thread(run_cli, broker=None)
        assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
        assert "active member" in refused.stderr or "in use by process" in refused.stderr, refused.stderr
    assert app.embedded is None  # the worker stopped its broker
    done = await asyncio.to_thread(run_cli, broker=None)
    assert done.returncode == 0, done.stderr
    assert f"reset offset of {src}[" in done.stdout and " to 0\n" in done.stdout, done.stdout
    again = build(None)
    async with running(again):
        await eventually(lambda: sorted(again.seen) == [1, 2], timeout=30)

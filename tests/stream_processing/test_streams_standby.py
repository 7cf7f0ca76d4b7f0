"""Standby replicas: a second worker keeps a warm copy of a task's stores; when the active worker is SIGKILLed, the
task moves to the worker holding the copy, which restores only the changelog's tail."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from test_streams_state_crash import fill, table_from_changelog
from streamtest import create_topic

ROOT = Path(__file__).resolve().parents[2]
KEYS = 500

STANDBY_APP = textwrap.dedent("""
    import os
    import streams
    app = streams.App(os.environ["APP_ID"], broker=os.environ["BROKER"], commit_interval=0.2, session_timeout=6.0,
                      workdir=os.environ["WORKDIR"], num_standby_replicas=1)
    src = app.topic(os.environ["SRC"], key_type=str, partitions=2)
    app.stream(src).group_by_key().count("totals")
""")


class Worker:
    def __init__(self, folder: Path, env: dict) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "-A", "standbyapp:app"], cwd=folder,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def last(self, pattern: str, since: int = 0) -> re.Match | None:
        found = [m for m in (re.search(pattern, line) for line in list(self.lines)[since:]) if m]
        return found[-1] if found else None


def test_killed_worker_fails_over_to_its_standby_which_restores_only_the_tail(broker_process, tmp_path, app_id,
                                                                             topic_name):
    bootstrap = broker_process().start().bootstrap_servers
    src, total = f"{topic_name}-in", 100_000
    (tmp_path / "standbyapp.py").write_text(STANDBY_APP)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "BROKER": f"kafka://{bootstrap}",
           "APP_ID": app_id, "SRC": src, "WORKDIR": str(tmp_path / "work")}
    asyncio.run(create_topic(bootstrap, src, 2))
    a, b = Worker(tmp_path, env), Worker(tmp_path, env)
    try:
        # each worker holds one task and the other's standby
        deadline = time.monotonic() + 60
        while not (a.last(r"tasks 0_\d, standby 0_\d") and b.last(r"tasks 0_\d, standby 0_\d")):
            assert time.monotonic() < deadline, "".join(a.lines + b.lines)
            time.sleep(0.1)
        asyncio.run(fill(bootstrap, src, total))
        changelog = f"{app_id}-totals-changelog"
        deadline = time.monotonic() + 90
        while sum(asyncio.run(table_from_changelog(bootstrap, changelog)).values()) < total:
            assert time.monotonic() < deadline
        time.sleep(2.5)   # the standbys checkpoint every second
        moved = a.last(r"tasks (0_\d)(, standby 0_\d)?\s*$").group(1)
        mark = len(b.lines)
        a.proc.send_signal(signal.SIGKILL)
        a.proc.wait(10)
        # b takes a's task over (after the session timeout) and restores it from its standby's checkpoint
        deadline = time.monotonic() + 60
        pattern = rf"restored store totals \(task {moved}\): (\d+) records"
        while not b.last(pattern, mark):
            assert time.monotonic() < deadline, "".join(b.lines)
            time.sleep(0.1)
        restored = int(b.last(pattern, mark).group(1))
        from aiokafka import AIOKafkaConsumer, TopicPartition

        async def changelog_size() -> int:
            consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
            await consumer.start()
            try:
                tp = TopicPartition(changelog, int(moved[-1]))
                return (await consumer.end_offsets([tp]))[tp]
            finally:
                await consumer.stop()
        size = asyncio.run(changelog_size())
        # a cold restore would read the whole changelog partition; the warm standby reads (almost) nothing
        assert size > 1000 and restored <= size // 10, (restored, size)
        assert b.last(r"tasks 0_0, 0_1", mark)
    finally:
        for w in (a, b):
            if w.proc.poll() is None:
                w.proc.send_signal(signal.SIGTERM)
        assert b.proc.wait(30) == 0

"""A worker aggregating 200,000 records is SIGKILLed mid-stream and restarted: no update is lost (at-least-once),
the restart restores only the changelog's tail from the checkpoint, and says so in its output."""

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

from aiokafka import AIOKafkaProducer

from streamtest import create_topic

ROOT = Path(__file__).resolve().parents[2]

CRASH_APP = textwrap.dedent("""
    import os
    import streams
    app = streams.App(os.environ["APP_ID"], broker=os.environ["BROKER"], commit_interval=0.2, session_timeout=6.0,
                      workdir=os.environ["WORKDIR"])
    src = app.topic(os.environ["SRC"], key_type=str, partitions=2)
    app.stream(src).group_by_key().count("totals")
""")

KEYS = 500


async def fill(bootstrap: str, topic: str, total: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=20)
    await producer.start()
    try:
        futs = []
        for i in range(total):
            futs.append(await producer.send(topic, b"1", key=f"k{i % KEYS}".encode()))
            if len(futs) >= 5000:
                await asyncio.gather(*futs)
                futs = []
        await asyncio.gather(*futs)
    finally:
        await producer.stop()


async def table_from_changelog(bootstrap: str, topic: str) -> dict[str, int]:
    """The latest count per key, read from the store's changelog (what a fresh restore would build)."""
    from aiokafka import AIOKafkaConsumer
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                isolation_level="read_committed", enable_auto_commit=False)
    await consumer.start()
    try:
        table: dict[str, int] = {}
        idle = time.monotonic()
        while time.monotonic() - idle < 2.0:
            batch = await consumer.getmany(timeout_ms=200, max_records=50_000)
            for records in batch.values():
                idle = time.monotonic()
                for r in records:
                    table[r.key.decode()] = int.from_bytes(r.value, "big", signed=True)
        return table
    finally:
        await consumer.stop()


def test_sigkill_mid_stream_then_restart_loses_no_update(broker_process, tmp_path, app_id, topic_name):
    bootstrap = broker_process().start().bootstrap_servers
    total = 200_000
    src = f"{topic_name}-in"
    (tmp_path / "crashapp.py").write_text(CRASH_APP)
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "BROKER": f"kafka://{bootstrap}",
           "APP_ID": app_id, "SRC": src, "WORKDIR": str(tmp_path / "work")}
    asyncio.run(create_topic(bootstrap, src, 2))

    def start() -> tuple[subprocess.Popen, list[str]]:
        proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "-A", "crashapp:app"], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True).start()
        return proc, lines

    first, first_lines = start()
    deadline = time.monotonic() + 60
    while not any("assigned 2 partitions" in line for line in first_lines):
        assert time.monotonic() < deadline and first.poll() is None, "".join(first_lines)
        time.sleep(0.05)
    # Records arrive while the worker runs; it is killed once it has committed part of them (its checkpoints say
    # so), well before the end.
    producer = threading.Thread(target=lambda: asyncio.run(fill(bootstrap, src, total)))
    producer.start()
    checkpoints = tmp_path / "work" / "state"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done = sum(int(p.read_text().split()[-1]) for p in checkpoints.glob("worker-*/0_*/totals.*") if p.is_file()
                   and p.read_text().strip())
        if done >= 2 * KEYS:
            break
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    producer.join(60)
    changelog = f"{app_id}-totals-changelog"
    counted = sum(asyncio.run(table_from_changelog(bootstrap, changelog)).values())
    assert 0 < counted < total, f"the worker was not killed mid-stream ({counted} of {total} counted)"

    second, lines = start()
    try:
        deadline = time.monotonic() + 120
        table: dict[str, int] = {}
        while time.monotonic() < deadline:
            table = asyncio.run(table_from_changelog(bootstrap, changelog))
            if len(table) == KEYS and min(table.values()) >= total // KEYS:
                break
            time.sleep(0.5)
        # at-least-once: every update is there (a record processed again after the kill counts twice)
        assert len(table) == KEYS and all(n >= total // KEYS for n in table.values()), \
            sorted(table.items())[:5]
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(30) == 0
    output = "".join(lines)
    # the restart restored from its checkpoints: only the tail of each changelog partition
    restored = [int(n) for n in re.findall(r"restored store totals \(task 0_\d\): (\d+) records", output)]
    assert len(restored) == 2, output[-2000:]
    assert sum(restored) < total // 2, (restored, output[-2000:])
    assert "assigned 2 partitions, tasks 0_0, 0_1" in output

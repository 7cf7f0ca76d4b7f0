"""Workers of one app started in one folder share the app's embedded broker, and survive each other's restarts."""

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

from streamtest import consume, produce

ROOT = Path(__file__).resolve().parents[2]

SHARED_APP = textwrap.dedent("""
    import streams
    app = streams.App("shared-app", commit_interval=0.1, session_timeout=6.0)
    src = app.topic("in", partitions=2)
    app.stream(src).map_values(lambda v: v * 2).to("out")
""")


class Worker:
    def __init__(self, folder: Path) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{folder}"}
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "-A", "sharedapp:app"], cwd=folder,
                                     env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=lambda: self.lines.extend(self.proc.stdout), daemon=True).start()

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                m = re.search(pattern, line)
                if m:
                    return m
            assert self.proc.poll() is None, "".join(self.lines)
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in:\n{''.join(self.lines)}")

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(30)


def send(bootstrap: str, start: int, n: int) -> None:
    asyncio.run(produce(bootstrap, "in", [(str(i).encode(), str(i).encode()) for i in range(start, start + n)]))


def test_two_workers_share_the_broker_and_take_it_over_on_restarts(tmp_path):
    (tmp_path / "sharedapp.py").write_text(SHARED_APP)
    a = Worker(tmp_path)
    address = a.wait_for(r"^bootstrap (\S+)$").group(1)
    b = Worker(tmp_path)
    assert b.wait_for(r"^bootstrap (\S+) \(the app's broker").group(1) == address
    a.wait_for("assigned")
    send(address, 0, 100)
    # the owner stops: the other worker takes the broker over on the same port and goes on
    assert a.stop() == 0
    b.wait_for(r"took over the app's broker at " + re.escape(address))
    send(address, 100, 100)
    # the first worker comes back and joins the broker the second one now runs
    a2 = Worker(tmp_path)
    assert a2.wait_for(r"^bootstrap (\S+) \(the app's broker").group(1) == address
    send(address, 200, 100)
    values = sorted(int(r.value) for r in asyncio.run(consume(address, "out", 300, timeout=60)))
    assert set(values) == {2 * i for i in range(300)}   # at-least-once: all of them
    assert a2.stop() == 0
    assert b.stop() == 0
    noisy = [line for line in a.lines + b.lines + a2.lines if "Traceback" in line or "ERROR" in line]
    assert not noisy, noisy

"""`streams worker --processes N`: N worker processes of one app in one group, a clean stop, a child that dies."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from streamtest import consume, create_topic, produce, wait_for_split

ROOT = Path(__file__).resolve().parents[2]

PROC_APP = textwrap.dedent("""
    import os
    import streams
    app = streams.App(os.environ["APP_ID"], broker=os.environ.get("BROKER") or None, workdir=os.environ["WORKDIR"],
                      commit_interval=0.1, session_timeout=6.0, shutdown_timeout=5.0)
    app.stream(app.topic(os.environ["SRC"], partitions=4)).map_values(lambda v: {"v": v, "pid": os.getpid()}) \\
        .to(os.environ["OUT"])
""")


class Parent:
    """`streams worker --processes N` in a child process, its output collected line by line."""

    def __init__(self, tmp_path: Path, env: dict, *extra: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "streams", "worker", "-A", "procapp:app", "--loglevel",
                                      "INFO", *extra], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self.out: list[str] = []
        self.err: list[str] = []
        threading.Thread(target=lambda: self.out.extend(self.proc.stdout), daemon=True).start()
        threading.Thread(target=lambda: self.err.extend(self.proc.stderr), daemon=True).start()

    def wait_for(self, check, timeout: float = 30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            if self.proc.poll() is not None:
                time.sleep(0.2)  # let the reader threads drain
                break
            time.sleep(0.05)
        raise AssertionError(f"not seen within {timeout}s; stdout={self.out} stderr={self.err[-20:]}")

    def pids(self) -> list[int]:
        line = self.wait_for(lambda: next((x for x in self.out if x.startswith("started ")), None))
        return [int(p) for p in line.split("pids ")[1].split(", ")]

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def _env(tmp_path: Path, app_id: str, topic_name: str, broker: str | None) -> dict:
    (tmp_path / "procapp.py").write_text(PROC_APP)
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "APP_ID": app_id, "BROKER": broker or "",
            "WORKDIR": str(tmp_path / "work"), "SRC": f"{topic_name}-in", "OUT": f"{topic_name}-out"}


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_two_processes_share_the_tasks_process_everything_once_and_stop_cleanly(tmp_path, app_id, topic_name,
                                                                               only_embedded):
    """Embedded default: the parent runs the broker and prints its address; both children get tasks."""
    env = _env(tmp_path, app_id, topic_name, None)
    parent = Parent(tmp_path, env, "--processes", "2")
    try:
        line = parent.wait_for(lambda: next((x for x in parent.out if x.startswith("bootstrap ")), None))
        bootstrap = line.split()[1].strip()
        pids = parent.pids()
        assert len(pids) == 2
        # Both joined: each holds two of the four tasks.
        owned = wait_for_split(bootstrap, app_id, 2, 4)
        assert sorted(p for tps in owned.values() for _, p in tps) == [0, 1, 2, 3]
        total = 400
        asyncio.run(produce(bootstrap, env["SRC"], [(None, str(i).encode(), i % 4) for i in range(total)]))
        records = asyncio.run(consume(bootstrap, env["OUT"], total, timeout=30))
        values = [json.loads(r.value) for r in records]
        assert sorted(v["v"] for v in values) == list(range(total))  # every record, once
        assert {v["pid"] for v in values} == set(pids)  # and both processes did part of the work
        parent.proc.send_signal(signal.SIGINT)
        assert parent.proc.wait(30) == 0, parent.err[-20:]
        assert all(_gone(p) for p in pids)
        assert not any("Traceback" in x for x in parent.err), parent.err
    finally:
        parent.kill()


def test_a_child_that_dies_stops_the_others_and_fails_the_parent(bootstrap, tmp_path, app_id, topic_name):
    """With a broker URL the parent only spawns the children. A child killed from outside is reported with its
    exit status; the parent stops the other child and exits with 128 + 9."""
    env = _env(tmp_path, app_id, topic_name, f"kafka://{bootstrap}")
    asyncio.run(create_topic(bootstrap, env["SRC"], 4))
    parent = Parent(tmp_path, env, "--processes", "2")
    try:
        pids = parent.pids()
        assert not any(x.startswith("bootstrap ") for x in parent.out)
        wait_for_split(bootstrap, app_id, 2, 4)
        os.kill(pids[0], signal.SIGKILL)
        assert parent.proc.wait(30) == 128 + signal.SIGKILL
        parent.wait_for(lambda: any("worker process 1" in x for x in parent.err), timeout=5)
        report = [x for x in parent.err if x.startswith("streams: error:")]
        assert report == [f"streams: error: worker process 1 (pid {pids[0]}) was killed by SIGKILL; stopping the "
                          "others\n"], parent.err[-20:]
        assert _gone(pids[1])
    finally:
        parent.kill()

"""The command line, the runnable examples, and scale-out: two worker processes, one killed with SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from streamtest import consume, create_topic, produce, wait_for_split

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=timeout)


def test_mistakes_print_one_line_and_exit_2(tmp_path):
    for args, words in [
        (["topology", "-A", "no_such_module:app"], "cannot import 'no_such_module'"),
        (["topology", "-A", "examples.orders:nope"], "has no attribute 'nope'"),
        (["worker", "-A", "examples.orders:app", "--bogus"], "unrecognized arguments: --bogus"),
        (["send", "-A", "examples.orders:app", "--broker", "kafka://127.0.0.1:1", "orders",
          '{"id": "1", "customer": "ada", "amount": 5}'], "cannot reach the broker"),
        (["topics", "-A", "examples.orders:app", "--broker", "http://x"], "bad broker URL"),
        # a typed topic refuses what its worker could not read, before connecting
        (["send", "-A", "examples.orders:app", "--broker", "kafka://127.0.0.1:1", "orders", "ada"],
         "bad value for topic 'orders' 'ada': not JSON for Order"),
        (["send", "-A", "examples.orders:app", "--broker", "kafka://127.0.0.1:1", "orders", '{"id": "1"}'],
         "cannot build Order from {'id': '1'}: Order.__init__() missing 2 required positional arguments"),
        (["send", "-A", "examples.orders:app", "--broker", "kafka://127.0.0.1:1", "orders", '["x"]'],
         "expected a JSON object for Order"),
        (["send", "-A", "examples.orders:app", "--broker", "kafka://127.0.0.1:1", "other", '{"a": 1'],
         "bad value for topic 'other' '{\"a\": 1': not JSON"),
        (["worker", "-A", "examples.orders:app", "--on-error", "ignore"], "argument --on-error: invalid choice"),
        (["worker", "-A", "examples.orders:app", "--processes", "0"], "'0' is not a positive number of processes"),
        (["reset", "-A", "examples.orders:app", "--to-datetime", "yesterday"], "bad datetime 'yesterday'"),
        (["reset", "-A", "examples.orders:app", "--to-earliest", "--to-latest"], "not allowed with argument"),
        (["send", "-A", "examples.orders:app", "--broker", "kafka://127.0.0.1:1", "notes", "null"],
         "a null value is a tombstone, which deletes a key: give the key with --key"),
    ]:
        result = run_cli(*args, cwd=ROOT)
        assert result.returncode == 2, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and words in result.stderr, (args, result.stderr)


def test_topology_formats():
    text = run_cli("topology", "-A", "examples.orders:app", cwd=ROOT)
    assert text.returncode == 0 and "Sub-topology: 1" in text.stdout and "Agent: notify" in text.stdout
    mermaid = run_cli("topology", "-A", "examples.orders:app", "--format", "mermaid", cwd=ROOT).stdout
    assert mermaid.startswith("flowchart TD") and 't_big_orders(["big-orders"])' in mermaid
    dot = run_cli("topology", "-A", "examples/orders.py:app", "--format", "dot", cwd=ROOT).stdout
    assert dot.startswith("digraph topology {")


def test_send_and_topics(bootstrap, tmp_path):
    url = f"kafka://{bootstrap}"
    created = run_cli("topics", "-A", "examples.orders:app", "--broker", url, "--create", cwd=ROOT)
    assert created.returncode == 0, created.stderr
    assert "orders\t" in created.stdout and "big-orders\t" in created.stdout
    sent = run_cli("send", "-A", "examples.orders:app", "--broker", url, "orders", "--key", "ada",
                   '{"id": "x1", "customer": "ada", "amount": 5}', cwd=ROOT)
    assert sent.returncode == 0 and sent.stdout.startswith("sent to orders["), sent.stderr


def test_send_accepts_bare_words_on_plain_json_topics_and_null_tombstones(bootstrap):
    url = f"kafka://{bootstrap}"
    for value in ("hello", '{"a": 1}', "null"):
        sent = run_cli("send", "-A", "examples.orders:app", "--broker", url, "notes", value, "--key", "k", cwd=ROOT)
        assert sent.returncode == 0, sent.stderr
    import asyncio
    records = asyncio.run(consume(bootstrap, "notes", 3))
    assert [r.value for r in records] == [b'"hello"', b'{"a":1}', None]


POISON_APP = textwrap.dedent("""
    import os
    from dataclasses import dataclass
    import streams

    @dataclass
    class Reading:
        sensor: str
        value: float

    app = streams.App(os.environ["APP_ID"], broker=os.environ["BROKER"], commit_interval=0.1)
    (app.stream(app.topic(os.environ["SRC"], value_type=Reading, partitions=1))
        .map_values(lambda r: r.value * 2)
        .to(os.environ["OUT"]))
""")


def test_on_error_flag_gets_a_worker_past_a_poison_pill(bootstrap, tmp_path, app_id, topic_name):
    """A record the serde cannot read stops the worker (on_error="fail" in the code); rerun with
    `--on-error dead_letter` and it goes on, the bad record in the dead-letter topic, without a code change."""
    import asyncio
    (tmp_path / "poisonapp.py").write_text(POISON_APP)
    src, out = f"{topic_name}-in", f"{topic_name}-out"
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "BROKER": f"kafka://{bootstrap}", "APP_ID": app_id,
           "SRC": src, "OUT": out}
    asyncio.run(create_topic(bootstrap, src, 1))
    asyncio.run(produce(bootstrap, src, [(None, b"not json"), (None, b'{"sensor": "a", "value": 2.5}')]))
    cmd = [sys.executable, "-m", "streams", "worker", "-A", "poisonapp:app"]
    failed = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert failed.returncode == 1 and "streams: worker stopped:" in failed.stderr, failed.stderr
    worker = subprocess.Popen([*cmd, "--on-error", "dead_letter"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        assert [json.loads(r.value) for r in asyncio.run(consume(bootstrap, out, 1, timeout=30))] == [5.0]
        dead = asyncio.run(consume(bootstrap, f"{app_id}-dead-letter", 1, timeout=30))
        assert dead[0].value == b"not json"
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, worker.stderr.read()


@pytest.mark.parametrize("example, last_line", [
    ("orders.py", "12 of 20 orders were big"),
    ("log_aggregation.py", "total errors per service: api=32, auth=37, billing=30"),
])
def test_examples_run_end_to_end_on_the_embedded_broker(tmp_path, example, last_line, only_embedded):
    result = subprocess.run([sys.executable, str(ROOT / "examples" / example)], capture_output=True, text=True,
                            cwd=tmp_path, env=ENV, timeout=60)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("bootstrap 127.0.0.1:")
    assert lines[-1] == last_line
    assert (tmp_path / ".streams").is_dir()


SCALE_APP = textwrap.dedent("""
    import os, time
    import streams
    app = streams.App(os.environ["APP_ID"], broker=os.environ["BROKER"], session_timeout=6.0, commit_interval=0.1,
                      max_poll_records=20)
    src = app.topic(os.environ["SRC"], partitions=4)
    app.stream(src).peek(lambda k, v: time.sleep(0.002)).to(os.environ["OUT"])
""")


def test_two_workers_one_killed_nothing_lost(request, kafka_reference, tmp_path, app_id, topic_name):
    """Two `streams worker` processes share the tasks; one is SIGKILLed and the other finishes its work.

    Against the embedded broker in a child process by default; against Apache Kafka under `pytest --kafka`.
    """
    if kafka_reference:
        bootstrap = kafka_reference
    else:
        bootstrap = request.getfixturevalue("broker_process")().start().bootstrap_servers
    (tmp_path / "scaleapp.py").write_text(SCALE_APP)
    src, out = f"{topic_name}-in", f"{topic_name}-out"
    env = {**ENV, "PYTHONPATH": f"{ROOT}{os.pathsep}{tmp_path}", "BROKER": f"kafka://{bootstrap}", "APP_ID": app_id,
           "SRC": src, "OUT": out}
    import asyncio
    total = 3000
    asyncio.run(create_topic(bootstrap, src, 4))
    asyncio.run(produce(bootstrap, src, [(None, str(i).encode(), i % 4) for i in range(total)]))

    def worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "streams", "worker", "-A", "scaleapp:app", "--loglevel",
                                 "INFO"], cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True)

    a, b = worker(), worker()
    try:
        for p in (a, b):  # drain their logs so that they never block on a full pipe
            threading.Thread(target=lambda p=p: p.stderr.read(), daemon=True).start()
        # both workers hold tasks once the second join settled (the broker says so: 2 members, 2 partitions each)
        wait_for_split(bootstrap, app_id, 2, 4)
        a.send_signal(signal.SIGKILL)
        a.wait(10)
        # At-least-once: everything, duplicates allowed; so `total` records may not yet hold every value.
        deadline = time.monotonic() + 60
        values: set = set()
        while values != set(range(total)) and time.monotonic() < deadline:
            records = asyncio.run(consume(bootstrap, out, total, timeout=60))
            values = {json.loads(r.value) for r in records}
        assert values == set(range(total))
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        assert b.wait(30) == 0
        a.wait(10)

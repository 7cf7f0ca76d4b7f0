"""The server command: ready line, clean exit on SIGTERM, one-line errors with status 2; kcat against it."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest


def _run(*args: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "broker_embedded", *args], capture_output=True, text=True,
                          timeout=timeout)


def test_bad_flag_exits_2_with_one_line():
    res = _run("--port", "notaport")
    assert res.returncode == 2
    assert len(res.stderr.strip().splitlines()) == 1 and "--port" in res.stderr


def test_unusable_data_dir_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = _run("--data-dir", str(blocker / "sub"), "--port", "0")
    assert res.returncode == 2
    assert res.stderr.strip().count("\n") == 0 and "data dir" in res.stderr


def test_bad_topic_default_exits_2(tmp_path):
    res = _run("--data-dir", str(tmp_path), "--port", "0", "--config", "retention.ms=forever")
    assert res.returncode == 2 and "retention.ms" in res.stderr


def test_console_script_is_installed():
    assert shutil.which("broker-embedded"), "pip install must provide the broker-embedded command"


def test_sigterm_flushes_and_exits_0(broker_process):
    broker = broker_process().start()
    assert broker.stop() == 0


@pytest.mark.skipif(shutil.which("kcat") is None, reason="kcat is installed by .ci/run (Debian package kcat)")
def test_kcat_produces_and_consumes(bootstrap, topic_name):
    lines = [f"key{i}:value {i}" for i in range(50)]
    produced = subprocess.run(
        ["kcat", "-b", bootstrap, "-P", "-t", topic_name, "-K", ":", "-z", "gzip", "-X", "acks=all"],
        input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60,
    )
    assert produced.returncode == 0, produced.stderr
    consumed = subprocess.run(
        ["kcat", "-b", bootstrap, "-C", "-t", topic_name, "-o", "beginning", "-e", "-f", "%k=%s|%o\\n"],
        capture_output=True, text=True, timeout=60,
    )
    assert consumed.returncode == 0, consumed.stderr
    got = consumed.stdout.strip().splitlines()
    assert got == [f"key{i}=value {i}|{i}" for i in range(50)]
    listing = subprocess.run(["kcat", "-b", bootstrap, "-L", "-t", topic_name], capture_output=True, text=True,
                             timeout=60)
    assert f'topic "{topic_name}" with 1 partitions' in listing.stdout


def test_data_dir_that_is_a_file_exits_2(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    res = _run("--data-dir", str(blocker), "--port", "0")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and str(blocker) in line and "not a directory" in line, line
    assert blocker.read_text() == "not a directory"


def test_second_broker_on_one_data_dir_exits_2_naming_the_holder(broker_process, tmp_path):
    first = broker_process(data_dir=tmp_path / "shared").start()
    res = _run("--data-dir", str(tmp_path / "shared"), "--port", "0")
    assert res.returncode == 2
    line = res.stderr.strip()
    assert len(line.splitlines()) == 1 and str(tmp_path / "shared") in line and str(first.proc.pid) in line, line
    assert first.stop() == 0

"""Worker slots of the state directory (real processes, real SIGKILL) and checkpoint files."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from streams.errors import StateError
from streams.state import Checkpoint, StateDirectory, open_store


def test_two_workers_in_one_folder_get_their_own_slots(tmp_path):
    first = StateDirectory(tmp_path).acquire()
    second = StateDirectory(tmp_path).acquire()
    assert (first.slot, second.slot) == (0, 1)
    assert first.path == tmp_path / "worker-0" and second.path == tmp_path / "worker-1"
    first.release()
    with StateDirectory(tmp_path) as again:  # the lowest free slot: a restarted worker finds its stores
        assert again.slot == 0
    second.release()
    second.release()  # twice is fine


def test_a_killed_workers_slot_is_free_again(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from streams.state import StateDirectory
        state = StateDirectory({str(tmp_path)!r}).acquire()
        print(state.slot, flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "0"
        taken = StateDirectory(tmp_path).acquire()
        assert taken.slot == 1  # slot 0 is held by the live process
        taken.release()
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    with StateDirectory(tmp_path) as state:
        assert state.slot == 0


def test_task_and_store_paths(tmp_path):
    with StateDirectory(tmp_path) as state:
        assert state.tasks() == []
        path = state.store_path("1_0", "counts")
        assert path == tmp_path / "worker-0" / "1_0" / "counts"
        assert state.checkpoint_path("1_0", "counts") == tmp_path / "worker-0" / "1_0" / "counts.checkpoint"
        store = open_store("kv", path, "counts")
        store.put(b"k", b"v")
        store.flush()
        store.close()
        Checkpoint(state.checkpoint_path("1_0", "counts")).write(7)
        state.task_dir("0_3").mkdir()
        assert state.tasks() == ["0_3", "1_0"]
        state.wipe_task("1_0")
        assert state.tasks() == ["0_3"] and not path.exists()
        for bad in ["", "../x", ".hidden", "a/b"]:
            with pytest.raises(ValueError, match="task id must be a non-empty name"):
                state.task_dir(bad)
        with pytest.raises(ValueError, match="store name .* got 'x.checkpoint'"):
            state.store_path("1_0", "x.checkpoint")
    with pytest.raises(StateError, match="no slot acquired"):
        state.task_dir("1_0")


def test_checkpoint_write_read_overwrite_delete(tmp_path):
    checkpoint = Checkpoint(tmp_path / "task" / "store.checkpoint")
    assert checkpoint.read() is None
    checkpoint.write(42)
    assert checkpoint.read() == 42
    checkpoint.write(0)
    assert checkpoint.read() == 0
    checkpoint.write(10**15)
    assert Checkpoint(checkpoint.path).read() == 10**15
    assert sorted(p.name for p in checkpoint.path.parent.iterdir()) == ["store.checkpoint"]  # no temp left
    checkpoint.delete()
    checkpoint.delete()
    assert checkpoint.read() is None
    with pytest.raises(ValueError, match="checkpoint offset must be an int >= 0, got -1"):
        checkpoint.write(-1)


def test_a_damaged_checkpoint_is_a_clear_error(tmp_path):
    path = tmp_path / "store.checkpoint"
    path.write_text("garbage")
    with pytest.raises(StateError, match="store.checkpoint.*damaged"):
        Checkpoint(path).read()

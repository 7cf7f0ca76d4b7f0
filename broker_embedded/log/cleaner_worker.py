"""Running a cleaning pass in a child process, so that it never holds the broker's GIL.

In a thread of the broker's process a pass (pure Python over every record) and the event loop share one GIL: each
time the loop wakes up for a socket or an fsync it waits for the pass to let go, and a produce wakes it up several
times. Yielding every half millisecond keeps produce p99 around 5 ms but costs a quarter of the pass's speed; a
child process costs neither (see bench/cleaner.py).

The parent starts `python -c "from broker_embedded.log.cleaner_worker import main; main()" <parent pid>` (not
`-m`: the broker package imports this module, and runpy would run a second copy), writes the job as one JSON line on
its stdin and reads JSON lines back: `{"swapped": [base, end]}` after each group is swapped on disk (the parent then
opens the new segment and adopts it when the pass ends), and `{"result": {...}}` at the end. Closing the child's
stdin asks it to stop at the next safe point. Crash safety is the swap protocol's (cleaner_swap.py): the child dies
with the parent (PR_SET_PDEATHSIG), and when the child dies alone the parent finishes a committed swap itself and
drops unfinished `.cleaned` files, as recovery would on the next open.
"""

from __future__ import annotations

import asyncio
import ctypes
import json
import logging
import math
import os
import signal
import sys
import threading
from dataclasses import fields as dataclass_fields

from .cleaner_pass import CleaningAborted, CleanJob, CleanResult, SegmentInfo, open_cleaned, run_pass
from .cleaner_swap import CLEANED, SWAP, complete_swap

log = logging.getLogger(__name__)

_FIGURES = ("first_dirty", "bytes_read", "bytes_written", "records_read", "records_kept", "seconds",
            "throttled_seconds")
_INFO_FIELDS = ("base", "path", "size", "next_offset", "max_timestamp")


def _info_dict(info: SegmentInfo) -> dict:
    return {name: getattr(info, name) for name in _INFO_FIELDS}


def encode_job(job: CleanJob) -> bytes:
    """The job as the JSON line the child reads (Segment objects and the abort event stay in the parent)."""
    fields = {f.name: getattr(job, f.name) for f in dataclass_fields(job)
              if f.name not in ("segments", "active", "abort", "on_swapped")}
    fields["max_bytes_per_second"] = None if job.max_bytes_per_second == math.inf else job.max_bytes_per_second
    fields["segments"] = [_info_dict(i) for i in job.segments]
    fields["active"] = _info_dict(job.active)
    return json.dumps(fields).encode() + b"\n"


def decode_job(line: bytes) -> CleanJob:
    fields = json.loads(line)
    fields["segments"] = [SegmentInfo(**i) for i in fields["segments"]]
    fields["active"] = SegmentInfo(**fields["active"])
    if fields["max_bytes_per_second"] is None:
        fields["max_bytes_per_second"] = math.inf
    return CleanJob(**fields)


# ---- the parent's side ----

async def run_pass_in_worker(job: CleanJob) -> CleanResult:
    """Run `job` in a child process; like run_pass, never raises (the failure is in `result.error`), and the groups
    swapped on disk are in `result.groups`, with their new Segment objects, whatever happened after them."""
    # Started from the event loop's thread, which lives as long as the broker: PR_SET_PDEATHSIG follows the thread.
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", f"from {__name__} import main; main()", str(os.getpid()),
        stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE)
    result = CleanResult()
    finished = False
    watcher = asyncio.get_running_loop().create_task(_abort_when_asked(job, proc))
    try:
        proc.stdin.write(encode_job(job))
        await proc.stdin.drain()
        while line := await proc.stdout.readline():
            message = json.loads(line)
            if "swapped" in message:
                base, end = message["swapped"]
                await _adopt_swapped(job, result, base, end)
            elif "result" in message:
                figures = message["result"]
                for name in _FIGURES:
                    setattr(result, name, figures[name])
                error = figures.get("error")
                if error == "aborted":
                    result.error = CleaningAborted()
                elif error:
                    result.error = RuntimeError(f"cleaner worker: {error}")
                finished = True
    except (OSError, ValueError) as exc:  # the child died under us (broken pipe) or wrote garbage
        result.error = exc
    finally:
        watcher.cancel()
        status = await proc.wait()
    if not finished:
        result.error = result.error or RuntimeError(f"cleaner worker exited with status {status}")
        try:
            for base, end in await asyncio.to_thread(_finish_interrupted, job.directory):
                await _adopt_swapped(job, result, base, end)
        except OSError as exc:  # the topic was deleted meanwhile
            log.debug("%s: after the cleaner worker died: %s", job.directory, exc)
    return result


async def _abort_when_asked(job: CleanJob, proc: asyncio.subprocess.Process) -> None:
    while not job.abort.is_set():
        await asyncio.sleep(0.05)
    proc.stdin.close()  # EOF: the child stops at its next safe point


async def _adopt_swapped(job: CleanJob, result: CleanResult, base: int, end: int) -> None:
    group = [info for info in job.segments if base <= info.base < end]
    result.groups.append((group, await asyncio.to_thread(open_cleaned, job, base)))


def _finish_interrupted(directory: str) -> list[tuple[int, int]]:
    """After the child died mid-pass: complete every committed swap, drop `.cleaned` files; return the swaps."""
    done = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(SWAP):
            first, _, last = name[: -len(SWAP)].partition("-")
            base, end = int(first), int(last)
            complete_swap(directory, base, end)
            done.append((base, end))
    for name in os.listdir(directory):
        if name.endswith(CLEANED):
            os.unlink(os.path.join(directory, name))
    return done


# ---- the child's side ----

def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


def _read_line(fd: int) -> bytes:
    """One line from the raw descriptor (a buffered read could swallow what follows it)."""
    data = bytearray()
    while not data.endswith(b"\n"):
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return bytes(data)


def main() -> None:
    """The child: read the job, run the pass, report each swap and the result on stdout."""
    _die_with_parent(int(sys.argv[1]))
    job = decode_job(_read_line(0))
    out = sys.stdout

    def report(message: dict) -> None:
        out.write(json.dumps(message) + "\n")
        out.flush()

    def stop_on_eof() -> None:
        while os.read(0, 65536):  # the raw descriptor: a daemon thread must not hold sys.stdin's lock at exit
            pass
        job.abort.set()

    threading.Thread(target=stop_on_eof, daemon=True).start()
    job.share_gil = False
    job.on_swapped = lambda group, end: report({"swapped": [group[0].base, end]})
    result = run_pass(job)
    figures = {name: getattr(result, name) for name in _FIGURES}
    if isinstance(result.error, CleaningAborted):
        figures["error"] = "aborted"
    elif result.error is not None:
        figures["error"] = f"{type(result.error).__name__}: {result.error}"
    report({"result": figures})
    os._exit(0)  # not through interpreter shutdown, where the daemon thread still blocks in read()

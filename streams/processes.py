"""`streams worker --processes N`: N worker processes of one app on one machine, in one consumer group.

One Python process runs one event loop on one core; an app uses every core by running several workers, which share
its tasks through the consumer group exactly as workers on different machines do. This module is their parent:

- without a broker URL it starts the app's embedded broker (data under `<workdir>/broker`, the port it had before
  when the broker supports that) and prints `bootstrap HOST:PORT`; the children connect to it;
- it spawns N children `python -m streams worker -A <app> --broker kafka://HOST:PORT ...` (the other worker flags
  passed through), each with STREAMS_PROCESS=<i> so its log lines and errors say which one it is;
- SIGINT/SIGTERM: it forwards SIGTERM, waits for the children to commit and leave the group (up to the app's
  `shutdown_timeout` plus 10 s), kills those still running, then stops the broker.

A child that ends on its own is not restarted: a worker exits only on a failure (a record that fails under
`on_error="fail"`, a lost broker, another app using the same id), and a restarted one would meet the same failure
again and hide it in a restart loop. The parent reports the child's exit status, stops the others and exits
non-zero, so that whatever supervises it (systemd, Kubernetes, a shell) sees the failure. Get past a poison pill with
`--on-error skip` or `dead_letter`.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .app import App

__all__ = ["run_processes", "exit_status"]

GRACE_EXTRA = 10.0


def exit_status(returncode: int) -> int:
    """A shell-style status: a child killed by signal N counts as 128 + N."""
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with status {returncode}"


def _die_with_parent() -> None:
    """In the child before exec: get SIGTERM if the parent dies (even by SIGKILL), so no worker is orphaned."""
    if sys.platform.startswith("linux"):
        import ctypes
        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


async def _start_broker(app: "App"):
    from broker_embedded import EmbeddedBroker
    data_dir = Path(app.workdir) / "broker"
    data_dir.mkdir(parents=True, exist_ok=True)
    sticky = hasattr(EmbeddedBroker, "running_address")  # the same change brought port=None (sticky port)
    port = app.broker_port or (None if sticky else 0)
    broker = EmbeddedBroker(data_dir=str(data_dir), port=port, group_initial_rebalance_delay_ms=0)
    await broker.start()
    return broker


async def run_processes(app: "App", spec: str, count: int, worker_args: list[str], *,
                        stop_timeout: float | None = None) -> int:
    """Run `count` worker processes of the app `spec` (module:attribute) until SIGINT/SIGTERM or a child ends.

    Returns the exit status for the command: 0 after a requested stop in which every child stopped cleanly, else
    the status of the child that failed (128 + N for a signal N), or 1.
    """
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    broker = None
    procs: list[asyncio.subprocess.Process] = []
    try:
        if app.broker is None:
            broker = await _start_broker(app)
            bootstrap = broker.bootstrap_servers
            print(f"bootstrap {bootstrap}", flush=True)
        else:
            bootstrap = app.broker
        for i in range(1, count + 1):
            cmd = [sys.executable, "-m", "streams", "worker", "-A", spec, "--broker", f"kafka://{bootstrap}",
                   *worker_args]
            # Own session: a terminal's Ctrl-C reaches the parent only, which stops the children in order.
            procs.append(await asyncio.create_subprocess_exec(*cmd, env={**os.environ, "STREAMS_PROCESS": str(i)},
                                                              start_new_session=True,
                                                              preexec_fn=_die_with_parent))
        print(f"started {count} worker process{'es' if count != 1 else ''} of app {app.id}: pids "
              f"{', '.join(str(p.pid) for p in procs)}", flush=True)
        waits = {asyncio.ensure_future(p.wait()): (i, p) for i, p in enumerate(procs, 1)}
        stopped = asyncio.ensure_future(stop.wait())
        done, _ = await asyncio.wait([*waits, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        status = 0
        if not stop.is_set():
            for task in done:
                i, p = waits[task]
                status = status or exit_status(p.returncode) or 1
                print(f"streams: error: worker process {i} (pid {p.pid}) {_describe(p.returncode)}; stopping the "
                      "others", file=sys.stderr, flush=True)
        return max(status, await _stop_children(procs, stop_timeout or app.shutdown_timeout + GRACE_EXTRA))
    finally:
        for p in procs:
            if p.returncode is None:  # an exception above: never leave a child behind
                p.kill()
                await p.wait()
        if broker is not None:
            await broker.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _stop_children(procs: list, timeout: float) -> int:
    """SIGTERM every running child, wait up to `timeout` s, SIGKILL the rest; 1 if any did not stop cleanly."""
    running = [p for p in procs if p.returncode is None]
    for p in running:
        p.send_signal(signal.SIGTERM)
    status = 0
    try:
        await asyncio.wait_for(asyncio.gather(*(p.wait() for p in running)), timeout)
    except asyncio.TimeoutError:
        for p in procs:
            if p.returncode is None:
                print(f"streams: error: worker process pid {p.pid} did not stop within {timeout:.0f} s; killed it",
                      file=sys.stderr, flush=True)
                p.kill()
                await p.wait()
                status = 1
    for i, p in enumerate(procs, 1):
        if p in running and p.returncode not in (0, -signal.SIGKILL) and status == 0:
            print(f"streams: error: worker process {i} (pid {p.pid}) {_describe(p.returncode)} while stopping",
                  file=sys.stderr, flush=True)
            status = 1
    return status

"""Where a data directory's broker listens: the port it used last time, and the address of the one running now.

Workers that share one embedded broker find it through its data directory: the running broker publishes its
address in the directory's lock file (see `dirlock`), and a broker restarted on the directory with `port=None`
listens on the port it had before, so that clients configured with the old address reconnect by themselves.
"""

from __future__ import annotations

import logging
import os

from .dirlock import is_locked, read_holder
from .log.durable import write_atomically

log = logging.getLogger(__name__)

PORT_FILE = "broker-port"


def last_port(data_dir: str) -> int:
    """The port the directory's broker listened on last time, or 0 when it never ran (or the file is unusable)."""
    try:
        with open(os.path.join(data_dir, PORT_FILE)) as f:
            port = int(f.read().strip())
    except (OSError, ValueError):
        return 0
    return port if 0 < port <= 65535 else 0


def remember_port(data_dir: str, port: int) -> None:
    """Record `port` durably for the next start with `port=None` (best effort: a full disk only costs stickiness)."""
    if last_port(data_dir) == port:
        return
    try:
        write_atomically(os.path.join(data_dir, PORT_FILE), str(port))
    except OSError as exc:
        log.warning("cannot record the port in %s: %s", data_dir, exc)


def running_address(data_dir: str) -> str | None:
    """"host:port" of the live broker that holds `data_dir`, or None (no broker, or one still starting)."""
    if not is_locked(data_dir):
        return None
    holder = read_holder(data_dir)
    host, port = holder.get("host"), holder.get("port")
    if not isinstance(host, str) or not isinstance(port, int) or not host or port <= 0:
        return None
    return f"{host}:{port}"

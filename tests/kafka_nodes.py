"""A second Apache Kafka for `--kafka` runs of scenarios that need it configured their own way (secured listeners,
an authorizer): started by scripts/kafka-up on a port and in a folder of its own, stopped and removed after."""

from __future__ import annotations

import os
import subprocess
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent


class KafkaNode:
    """Its listeners by name, as the embedded broker answers `listener_address`; it lists no connections."""

    def __init__(self, listeners: dict[str, str]) -> None:
        self.listeners = listeners

    def listener_address(self, name: str) -> str:
        return self.listeners[name]

    def connections(self) -> None:
        return None


@contextmanager
def kafka_node(port: int, folder: str, **settings: str) -> Iterator[KafkaNode]:
    """scripts/kafka-up with KAFKA_PORT=port, KAFKA_DIR=.kafka/<folder> and `settings` (KAFKA_SASL, ...)."""
    env = {**os.environ, "KAFKA_PORT": str(port), "KAFKA_DIR": str(ROOT / ".kafka" / folder), **settings}
    out = subprocess.run([str(ROOT / "scripts" / "kafka-up")], env=env, check=True, capture_output=True,
                         text=True, timeout=900).stdout
    listeners = {"PLAINTEXT": f"127.0.0.1:{port}"}
    listeners.update(line.split()[1:3] for line in out.splitlines() if line.startswith("listener "))
    try:
        yield KafkaNode(listeners)
    finally:
        subprocess.run([str(ROOT / "scripts" / "kafka-down"), "--clean"], env=env, timeout=120)

"""Topics, their partitions and configs, kept durable, and the partition logs that belong to them.

Topic metadata is small and changes rarely: it is one JSON document replaced atomically (write, fsync, rename,
fsync the directory) on every change, like Kafka's per-partition metadata files rather than its KRaft log.
"""

from __future__ import annotations

import json
import logging
import os
import re
import uuid
from dataclasses import dataclass, field
from typing import Callable

from .config import BrokerConfig, InvalidConfig, log_config, validate_topic_configs
from .dynamic_configs import DynamicConfigs
from .log.durable import write_atomically
from .log.partition import PartitionLog

log = logging.getLogger(__name__)

METADATA_FILE = "__topics.json"
MAX_TOPIC_NAME = 249
_LEGAL = re.compile(r"^[a-zA-Z0-9._-]+$")
MAX_PARTITIONS = 10000


class TopicError(Exception):
    """Base for topic-level refusals; each maps to one Kafka error code in api/errors.py."""


class InvalidTopic(TopicError):
    pass


class TopicExists(TopicError):
    pass


class UnknownTopic(TopicError):
    pass


class InvalidPartitions(TopicError):
    pass


def check_topic_name(name: str) -> None:
    """Raise InvalidTopic unless `name` is a legal Kafka topic name."""
    if not name:
        raise InvalidTopic("Topic name is illegal, it can't be empty")
    if name in (".", ".."):
        raise InvalidTopic(f"Topic name cannot be '{name}'")
    if len(name) > MAX_TOPIC_NAME:
        raise InvalidTopic(f"Topic name is illegal, it can't be longer than {MAX_TOPIC_NAME} characters: {name}")
    if not _LEGAL.match(name):
        raise InvalidTopic(
            f"Topic name '{name}' is illegal, it contains a character other than ASCII alphanumerics, '.', '_' and '-'"
        )


@dataclass
class Topic:
    """A topic: its id, partition count, config overrides and open logs."""

    name: str
    topic_id: uuid.UUID
    partitions: int
    configs: dict[str, str] = field(default_factory=dict)
    logs: list[PartitionLog] = field(default_factory=list)
    internal: bool = False


class TopicRegistry:
    """All topics of the broker; every change is on disk before it returns."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.data_dir = config.data_dir
        self.topics: dict[str, Topic] = {}
        self.by_id: dict[uuid.UUID, Topic] = {}
        # Broker configs changed at runtime (they set topic defaults) and group configs; loaded before any log.
        self.dynamic = DynamicConfigs(config)

    def _partition_dir(self, name: str, partition: int) -> str:
        return os.path.join(self.data_dir, f"{name}-{partition}")

    def load(self) -> None:
        os.makedirs(self.data_dir, exist_ok=True)
        self.dynamic.load()
        path = os.path.join(self.data_dir, METADATA_FILE)
        if not os.path.exists(path):
            return
        with open(path) as f:
            doc = json.load(f)
        self.config.cluster_id = doc.get("cluster_id", self.config.cluster_id)
        for t in doc["topics"]:
            topic = Topic(t["name"], uuid.UUID(t["id"]), t["partitions"], t["configs"], internal=t.get("internal", False))
            self._open_logs(topic)
            self.topics[topic.name] = topic
            self.by_id[topic.topic_id] = topic

    def save(self, topics: list[Topic] | None = None) -> None:
        """Write the topics (default: the current ones) durably. Changes are saved before memory changes, so that
        a failed save (a full disk) leaves both as they were."""
        doc = {
            "cluster_id": self.config.cluster_id,
            "topics": [
                {"name": t.name, "id": str(t.topic_id), "partitions": t.partitions, "configs": t.configs,
                 "internal": t.internal}
                for t in (self.topics.values() if topics is None else topics)
            ],
        }
        write_atomically(os.path.join(self.data_dir, METADATA_FILE), json.dumps(doc))

    def _open_logs(self, topic: Topic) -> None:
        cfg = log_config(topic.configs, self.config.topic_defaults)
        for p in range(len(topic.logs), topic.partitions):
            plog = PartitionLog(self._partition_dir(topic.name, p), cfg)
            plog.open()
            topic.logs.append(plog)

    def get(self, name: str) -> Topic | None:
        return self.topics.get(name)

    def partition(self, name: str, partition: int) -> PartitionLog | None:
        topic = self.topics.get(name)
        if topic is None or not 0 <= partition < topic.partitions:
            return None
        return topic.logs[partition]

    def validate_new(self, name: str, partitions: int, configs: dict[str, str | None]) -> dict[str, str]:
        """Check a CreateTopics entry without creating it (also serves validate_only)."""
        check_topic_name(name)
        if name in self.topics:
            raise TopicExists(f"Topic '{name}' already exists.")
        collide = name.replace(".", "_")
        for other in self.topics:
            if other.replace(".", "_") == collide:
                raise InvalidTopic(f"Topic '{name}' collides with existing topic: {other}")
        if not 1 <= partitions <= MAX_PARTITIONS:
            raise InvalidPartitions(f"Number of partitions must be between 1 and {MAX_PARTITIONS}, got {partitions}.")
        return validate_topic_configs(configs, self.config.topic_defaults)

    def create(self, name: str, partitions: int, configs: dict[str, str | None] | None = None,
               internal: bool = False) -> Topic:
        overrides = self.validate_new(name, partitions, configs or {})
        topic = Topic(name, uuid.uuid4(), partitions, overrides, internal=internal)
        try:
            self._open_logs(topic)
            self.save([*self.topics.values(), topic])
        except OSError:
            _remove_logs(topic.logs)
            raise
        self.topics[name] = topic
        self.by_id[topic.topic_id] = topic
        log.info("created topic %s with %d partitions %s", name, partitions, overrides or "")
        return topic

    def delete(self, name: str, forget: Callable[[PartitionLog], None] | None = None) -> Topic:
        """Remove a topic from the metadata, then `forget` each of its partitions (the flusher drops them), then
        delete their files."""
        topic = self.topics.get(name)
        if topic is None:
            raise UnknownTopic(f"Topic '{name}' does not exist.")
        self.save([t for t in self.topics.values() if t is not topic])
        del self.topics[name]
        self.by_id.pop(topic.topic_id, None)
        for plog in topic.logs:
            if forget is not None:
                forget(plog)
            plog.delete()
        log.info("deleted topic %s", name)
        return topic

    def add_partitions(self, name: str, count: int, validate_only: bool = False) -> None:
        topic = self.topics.get(name)
        if topic is None:
            raise UnknownTopic(f"Topic '{name}' does not exist.")
        if count == topic.partitions:
            raise InvalidPartitions(f"Topic already has {count} partition(s).")
        if count < topic.partitions:
            raise InvalidPartitions(f"The topic {name} currently has {topic.partitions} partition(s); {count} would "
                                    "not be an increase.")
        if count > MAX_PARTITIONS:
            raise InvalidPartitions(f"Number of partitions must be at most {MAX_PARTITIONS}, got {count}.")
        if validate_only:
            return
        before = topic.partitions
        topic.partitions = count
        try:
            self._open_logs(topic)
            self.save()
        except OSError:
            _remove_logs(topic.logs[before:])
            del topic.logs[before:]
            topic.partitions = before
            raise

    def set_configs(self, name: str, overrides: dict[str, str], validate_only: bool = False) -> None:
        """Replace a topic's overrides (validated) and apply them to its open logs."""
        topic = self.topics.get(name)
        if topic is None:
            raise UnknownTopic(f"Topic '{name}' does not exist.")
        checked = validate_topic_configs(overrides, self.config.topic_defaults)
        if validate_only:
            return
        before, topic.configs = topic.configs, checked
        try:
            self.save()
        except OSError:
            topic.configs = before
            raise
        cfg = log_config(topic.configs, self.config.topic_defaults)
        for plog in topic.logs:
            plog.config = cfg

    def refresh_log_configs(self) -> None:
        """Apply changed broker-wide topic defaults to every open log (a topic's own overrides still win)."""
        for topic in self.topics.values():
            cfg = log_config(topic.configs, self.config.topic_defaults)
            for plog in topic.logs:
                plog.config = cfg

    def close(self) -> None:
        for topic in self.topics.values():
            for plog in topic.logs:
                plog.close()


def _remove_logs(logs: list[PartitionLog]) -> None:
    """Undo the logs opened for a change whose metadata could not be saved (best effort: the disk is full)."""
    for plog in logs:
        try:
            plog.delete()
        except OSError as exc:
            log.warning("cannot remove %s: %s", plog.directory, exc)


__all__ = [
    "InvalidConfig", "InvalidPartitions", "InvalidTopic", "Topic", "TopicError", "TopicExists",
    "TopicRegistry", "UnknownTopic", "check_topic_name",
]

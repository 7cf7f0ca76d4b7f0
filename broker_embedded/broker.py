"""The broker's state: configuration, topics and their logs, the flusher and the coordinators.

API handlers reach everything through one `Broker`; it knows nothing of sockets or the wire format.
"""

from __future__ import annotations

import asyncio
import logging
import time

from .config import BrokerConfig
from .dirlock import DirectoryLock
from .coordinator.group_coordinator import GroupCoordinator
from .coordinator.offsets import OffsetStore
from .coordinator.producers import ProducerStates
from .coordinator.transactions import TransactionCoordinator
from .log.cleaner import LogCleaner
from .log.config import NEVER
from .log.flush import GroupCommitFlusher
from .log.retention import RetentionService
from .log.partition import PartitionLog
from .metadata import Topic, TopicRegistry
from .background import cancel_and_wait
from .acl import Authorizer
from .connections import ConnectionQuotas
from .quotas import CONSUMER_BYTE_RATE, PRODUCER_BYTE_RATE, ClientQuotaManager, QuotaConfig, QuotaStore
from .security.scram import MECHANISMS as SCRAM_MECHANISMS, CredentialStore

log = logging.getLogger(__name__)


class Broker:
    """One node's state; `start()` loads it from disk, `stop()` flushes and closes it."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        # One broker per data directory, for its whole life: two would interleave appends and corrupt the log.
        self.lock = DirectoryLock(config.data_dir, "broker data")
        self.topics = TopicRegistry(config)
        self.flusher = GroupCommitFlusher()
        self._background: list[asyncio.Task] = []
        # Services (coordinators, retention, the cleaner) start after the logs are loaded, in this order, and
        # stop in reverse before the logs close.
        self.services: list = []
        # Callbacks run after a topic is deleted (coordinators drop the offsets they hold for it).
        self.on_topic_deleted: list = []
        self.advertised_port = config.port
        # Listener name -> advertised (host, port), filled in once the server listens (Metadata answers each
        # client with the address of the listener it came through).
        self.endpoints: dict[str, tuple[str, int]] = {}
        # SCRAM credentials (salted and hashed, in the data directory).
        self.scram = CredentialStore(config.data_dir)
        # Consumer groups and their committed offsets (durable in __consumer_offsets).
        self.offsets = OffsetStore(self)
        self.groups = GroupCoordinator(self, self.offsets)
        self.services += [self.offsets, self.groups]
        self.on_topic_deleted.append(self.offsets.on_topic_deleted)
        # Idempotence and transactions: per-partition producer state and the transaction coordinator. The
        # coordinator must start after the offset store (recovery settles transactional offsets there).
        self.producers = ProducerStates()
        self.transactions = TransactionCoordinator(self)
        self.services.append(self.transactions)
        # Retention deletes old segments; the cleaner compacts cleanup.policy=compact partitions.
        self.retention = RetentionService(self)
        self.cleaner = LogCleaner(self)
        self.services += [self.retention, self.cleaner]
        # Authorization (None: off, everything allowed) and client quotas; ACLs and quota values are durable in
        # the data directory (acl.py, quotas.py).
        self.authorizer = (Authorizer(config.data_dir, config.super_users, config.allow_everyone_if_no_acl_found)
                           if config.authorizer else None)
        self.quotas = QuotaStore(config.data_dir)
        window = QuotaConfig(config.quota_window_num, config.quota_window_size_seconds)
        self.produce_quota = ClientQuotaManager(self.quotas, PRODUCER_BYTE_RATE, window, config.quota_producer_default)
        self.fetch_quota = ClientQuotaManager(self.quotas, CONSUMER_BYTE_RATE, window, config.quota_consumer_default)
        # Open connections, counted across every listener (max.connections, max.connections.per.ip).
        self.connection_quotas = ConnectionQuotas(config.max_connections, config.max_connections_per_ip,
                                                  config.max_connections_per_ip_overrides)

    async def start(self) -> None:
        """Take the data directory (DirectoryLocked if another broker has it), load it, start the services."""
        started = time.monotonic()
        self.lock.acquire()  # before reading anything: what another live broker writes is not ours to read
        running: list = []
        try:
            await asyncio.to_thread(self._load_credentials)
            await asyncio.to_thread(self.topics.load)
            await asyncio.to_thread(self._load_access)
            for service in self.services:
                await service.start()
                running.append(service)
        except BaseException:
            for service in reversed(running):
                await service.stop()
            await self.flusher.drain()
            self.topics.close()
            self.lock.release()
            raise
        self._background.append(asyncio.create_task(self._flush_by_time()))
        log.info("broker loaded %d topics in %.2fs", len(self.topics.topics), time.monotonic() - started)

    def _load_credentials(self) -> None:
        self.scram.load()
        for user, spec in self.config.scram_users.items():
            password, mechanism = spec if isinstance(spec, tuple) else (spec, None)
            self.scram.set_password(user, password, (mechanism,) if mechanism else tuple(SCRAM_MECHANISMS))

    def _load_access(self) -> None:
        """ACLs and client quotas as they were left."""
        if self.authorizer is not None:
            self.authorizer.load()
        self.quotas.load()

    async def stop(self) -> None:
        """Stop the services, flush and close every log, then give the data directory up."""
        try:
            for task in self._background:
                await cancel_and_wait(task)
            self._background.clear()
            for service in reversed(self.services):
                await service.stop()
            await self.flusher.drain()
            self.topics.close()
        finally:
            self.lock.release()

    def get_or_create_topic(self, name: str, auto_create: bool) -> Topic | None:
        """The topic named `name`, created with the default partition count when allowed and enabled."""
        topic = self.topics.get(name)
        if topic is None and auto_create and self.config.auto_create_topics and not name.startswith("__"):
            topic = self.topics.create(name, self.config.default_partitions)
        return topic

    def delete_topic(self, name: str) -> Topic:
        """Delete a topic and its logs, then let the coordinators forget what they hold for it."""
        # Its partitions leave the flush queue before their files close: an fsync queued for a closed (or reused)
        # descriptor would otherwise fail, and with it the produce requests waiting on it.
        topic = self.topics.delete(name, forget=self.flusher.forget)
        for hook in self.on_topic_deleted:
            hook(topic.name)
        return topic

    def partition(self, name: str, partition: int) -> PartitionLog | None:
        return self.topics.partition(name, partition)

    def last_stable_offset(self, plog: PartitionLog) -> int:
        """The offset below which no transaction is open."""
        return self.producers.last_stable_offset(plog)

    def aborted_transactions(self, plog: PartitionLog, start: int, end: int) -> tuple:
        """(producer id, first offset) of aborted transactions overlapping [start, end), for read_committed."""
        return self.producers.aborted_transactions(plog, start, end)

    async def _flush_by_time(self) -> None:
        """Enforce flush.ms: fsync partitions whose oldest unflushed append is older than their setting."""
        while True:
            await asyncio.sleep(0.1)
            now = time.monotonic()
            for topic in list(self.topics.topics.values()):
                # Partitions of a topic share one config; most topics never set flush.ms.
                if not topic.logs or topic.logs[0].config.flush_ms == NEVER:
                    continue
                for plog in topic.logs:
                    if plog.unflushed_messages and (now - plog.last_flush) * 1000 >= plog.config.flush_ms:
                        self.flusher.request(plog)

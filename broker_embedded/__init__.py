"""An embedded, single-node broker that speaks the Kafka protocol.

    async with EmbeddedBroker(data_dir="data", port=0) as broker:
        print(broker.bootstrap_servers)

For programs without an event loop, `EmbeddedBroker(...).start_in_thread()` runs it on a background thread and
`stop_thread()` stops it.

One broker owns a data directory at a time: a second `start()` on it raises `DirectoryLocked` (naming the holder's
pid). `EmbeddedBroker.running_address(data_dir)` finds the live broker of a directory, so that workers can share it
instead of starting another; `port=None` restarts a directory's broker on the port it had before.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from . import address
from .broker import Broker
from .config import BrokerConfig
from .dirlock import DirectoryLock, DirectoryLocked, is_locked, read_holder
from .security.listeners import Listener
from .security.tls import server_context
from .server import KafkaServer

log = logging.getLogger(__name__)

__all__ = ["BrokerConfig", "DirectoryLock", "DirectoryLocked", "EmbeddedBroker", "is_locked", "read_holder"]


class EmbeddedBroker:
    """A broker with its log under `data_dir`, listening on host:port.

    `port=0` picks any free port; `port=None` reuses the port this directory's broker listened on last time when
    it is free (else picks a free one). Raises ValueError for a bad setting, such as a `data_dir` that is a file.

    Security settings (docs/broker.md, "Security") replace host:port with Kafka's listeners, e.g.
    `listeners="PLAINTEXT://127.0.0.1:0,SASL_SSL://0.0.0.0:9093"` with `ssl_keystore_location=...`,
    `sasl_plain_users={"alice": "secret"}` or `scram_users={"alice": "secret"}`.
    """

    def __init__(self, data_dir: str = "./broker-data", port: int | None = 0, host: str = "127.0.0.1",
                 **settings: Any) -> None:
        self.config = BrokerConfig(data_dir=data_dir, host=host, port=port, **settings)
        self.broker: Broker | None = None
        self.server: KafkaServer | None = None  # the first listener's
        self.servers: list[KafkaServer] = []
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    @property
    def port(self) -> int:
        if self.server is None:
            raise RuntimeError("the broker is not started")
        return self.server.port

    @property
    def bootstrap_servers(self) -> str:
        """host:port of the first listener."""
        if self.server is None:
            raise RuntimeError("the broker is not started")
        return self._address(self.server)

    def listener_address(self, name: str) -> str:
        """host:port of the listener called `name` (e.g. "SASL_SSL"), for a client on this machine."""
        for server in self.servers:
            if server.listener.name == name.upper():
                return self._address(server)
        raise KeyError(f"no listener named {name!r}; listeners: {[s.listener.name for s in self.servers]}")

    @staticmethod
    def _address(server: KafkaServer) -> str:
        host = server.host if server.host not in ("", "0.0.0.0", "::") else "127.0.0.1"
        return f"[{host}]:{server.port}" if ":" in host else f"{host}:{server.port}"

    def connections(self) -> list[tuple[str, str, str]]:
        """(listener name, client address, principal) of each open client connection."""
        for _ in range(10):  # the broker's thread may open or close one meanwhile
            try:
                return [(s.listener, s.client_host, s.principal)
                        for server in self.servers for s in list(server.sessions.values())]
            except RuntimeError:
                continue
        return []

    def add_scram_user(self, name: str, password: str, mechanism: str | None = None, iterations: int = 4096) -> None:
        """Create `name` (or reset its password) for SCRAM-SHA-256 and SCRAM-SHA-512, or only `mechanism`;
        stored salted and hashed in the data directory. The broker must be started; safe from any thread."""
        if self.broker is None:
            raise RuntimeError("the broker is not started (or pass scram_users={name: password} to the constructor)")
        mechanisms = (mechanism,) if mechanism else ("SCRAM-SHA-256", "SCRAM-SHA-512")
        self.broker.scram.set_password(name, password, mechanisms, iterations)

    @staticmethod
    def running_address(data_dir: str) -> str | None:
        """"host:port" of the live broker (in any process) that holds `data_dir`, else None.

        None also while that broker is still starting (it publishes its address once it listens): a caller whose
        own start then fails with DirectoryLocked should ask again shortly.
        """
        return address.running_address(data_dir)

    async def start(self) -> "EmbeddedBroker":
        """Take the data directory, load it and listen. Raises DirectoryLocked if another broker holds the
        directory, NotADirectoryError if it is a file, OSError if the port cannot be bound."""
        broker = Broker(self.config)
        await broker.start()
        self.server = None
        self.servers = []
        try:
            self.server = await self._listen(broker)
            await self._listen_more(broker)
            address.remember_port(self.config.data_dir, self.server.port)
            try:
                broker.lock.publish(host=self._address(self.server).rsplit(":", 1)[0].strip("[]"),
                                    port=self.server.port)
            except OSError as exc:  # a full disk: the broker works, only running_address cannot find it
                log.warning("cannot publish the broker address in %s: %s", self.config.data_dir, exc)
        except BaseException:
            for server in self.servers:
                await server.stop()
            self.server = None
            self.servers = []
            await broker.stop()
            raise
        self.broker = broker
        return self

    async def _listen(self, broker: Broker) -> KafkaServer:
        """Open the first listener (the one `port=None` keeps sticky)."""
        first = self.config.listener_list()[0]
        port = first.port if self.config.listeners is not None else self.config.port
        if port is not None:
            return await self._open(broker, first, port)
        remembered = address.last_port(self.config.data_dir)
        if remembered:
            try:
                return await self._open(broker, first, remembered)
            except OSError as exc:  # taken meanwhile (or no longer allowed): any free port will do
                log.info("port %d of %s is not available (%s); picking a free one", remembered,
                         self.config.data_dir, exc.strerror)
        return await self._open(broker, first, 0)

    async def _listen_more(self, broker: Broker) -> None:
        for listener in self.config.listener_list()[1:]:
            await self._open(broker, listener, listener.port)
        broker.advertised_port = self.server.port

    async def _open(self, broker: Broker, listener: Listener, port: int) -> KafkaServer:
        cfg = self.config
        ctx = None
        if listener.tls:
            # As Kafka (KIP-684), ssl.client.auth applies to SSL listeners; SASL_SSL clients prove who they are
            # with SASL, so they are not asked for a certificate.
            client_auth = cfg.ssl_client_auth if listener.protocol == "SSL" else "none"
            ctx = server_context(cfg.ssl_keystore_location, cfg.ssl_key_location, cfg.ssl_key_password,
                                 cfg.ssl_truststore_location, client_auth)
        server = KafkaServer(broker, listener.host, port, listener, ctx)
        await server.start()
        listener.port = server.port
        broker.endpoints[listener.name] = listener.advertised()
        self.servers.append(server)
        return server

    async def stop(self) -> None:
        """Stop listening, flush and close the log, and give the data directory up."""
        for server in self.servers:
            await server.stop()
        if self.broker is not None:
            await self.broker.stop()
            self.broker = None

    async def __aenter__(self) -> "EmbeddedBroker":
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- for synchronous programs ----

    def start_in_thread(self) -> "EmbeddedBroker":
        """Start on a background thread with its own event loop; returns once the broker listens."""
        ready = threading.Event()
        failure: list[BaseException] = []

        async def main() -> None:
            self._stopping = asyncio.Event()
            try:
                await self.start()
            except BaseException as exc:
                failure.append(exc)
                ready.set()
                return
            ready.set()
            await self._stopping.wait()
            await self.stop()

        def run() -> None:
            self._loop = asyncio.new_event_loop()
            self._loop.run_until_complete(main())
            self._loop.close()

        self._thread = threading.Thread(target=run, name="embedded-broker", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            self._thread.join()
            raise failure[0]
        return self

    def stop_thread(self) -> None:
        """Stop a broker started with `start_in_thread` and wait until its data is flushed."""
        if self._thread is None or self._loop is None or self._stopping is None:
            return
        self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join()
        self._thread = None

    def __enter__(self) -> "EmbeddedBroker":
        return self.start_in_thread()

    def __exit__(self, *exc: object) -> None:
        self.stop_thread()

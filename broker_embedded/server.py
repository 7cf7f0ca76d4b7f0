"""The asyncio TCP server: read frames, parse headers, dispatch to handlers, write responses in order.

Requests on one connection are read ahead and handled concurrently (a producer pipelines its batches and they
share fsyncs), but responses leave in request order, as Kafka clients require.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import struct

from kio.schema.errors import ErrorCode

from .api import RequestContext, load_handlers
from .broker import Broker
from .protocol import MalformedRequest, Reply, codec, parse_header
from .security.session import Session

log = logging.getLogger(__name__)

_I32 = struct.Struct(">i")
MAX_IN_FLIGHT = 100
_CLOSE = object()


class CannotListen(OSError):
    """The server's address cannot be bound (in use, not local, not permitted); `strerror` says why."""


class KafkaServer:
    """Serves the Kafka protocol for one `Broker` on host:port (port 0 picks a free one)."""

    def __init__(self, broker: Broker, host: str, port: int) -> None:
        self.broker = broker
        self.host = host
        self.port = port
        self.handlers = load_handlers()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host, self.port, limit=1 << 20)
        except OSError as exc:
            raise CannotListen(exc.errno, exc.strerror or str(exc)) from exc
        self.port = self._server.sockets[0].getsockname()[1]
        self.broker.advertised_port = self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        peername = writer.get_extra_info("peername")[:2]
        peer = "%s:%s" % peername
        session = Session(client_host=peername[0])
        pending: asyncio.Queue = asyncio.Queue(MAX_IN_FLIGHT)
        sender = asyncio.create_task(self._send(pending, writer, peer))
        limit = self.broker.config.socket_request_max_bytes
        try:
            while not sender.done():
                size = _I32.unpack(await reader.readexactly(4))[0]
                if size < 0 or size > limit:
                    log.warning("closing %s: request of %d bytes exceeds socket.request.max.bytes %d", peer, size, limit)
                    break
                frame = await reader.readexactly(size)
                try:
                    header, pos = parse_header(frame)
                except MalformedRequest as exc:
                    log.warning("closing %s: malformed request: %s", peer, exc)
                    break
                await pending.put(asyncio.create_task(self._dispatch(header, frame, pos, peer, session)))
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            sender.cancel()
        finally:
            if not sender.done():
                await pending.put(None)
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass
            writer.close()
            self._connections.discard(task)

    async def _send(self, pending: asyncio.Queue, writer: asyncio.StreamWriter, peer: str) -> None:
        while True:
            task = await pending.get()
            if task is None:
                return
            response = await task
            if response is _CLOSE:
                writer.close()  # the reader then sees EOF and the client learns at once
                return
            if response is not None:
                writer.write(response)
                await writer.drain()

    async def _dispatch(self, header, frame: bytes, pos: int, peer: str, session: Session):
        api = self.handlers.get(header.api_key)
        if api is None:
            log.warning("closing %s: unknown API key %d (client %s)", peer, header.api_key, header.client_id)
            return _CLOSE
        version = header.api_version
        if header.api_key == 0 and 0 <= version < 3:
            return _produce_v0_2_unsupported(header, frame, pos)
        if not api.min_version <= version <= api.max_version:
            if header.api_key == 18:
                return self._api_versions_fallback(header)
            log.warning("closing %s: API key %d version %d is not supported (supported %d-%d)",
                        peer, header.api_key, version, api.min_version, api.max_version)
            return _CLOSE
        try:
            c = codec(header.api_key, version)
            request = c.decode(frame, pos)
        except Exception as exc:
            log.warning("closing %s: cannot decode API key %d v%d: %s", peer, header.api_key, version, exc)
            return _CLOSE
        ctx = RequestContext(self.broker, header, Reply(c.response_module, version), peer, session.principal,
                             session.client_host, session.listener, session)
        try:
            response = api.handler(ctx, request)
            if inspect.isawaitable(response):
                response = await response
            if response is None:
                return None
            return c.encode(header.correlation_id, response)
        except Exception:
            log.exception("closing %s: handler for API key %d v%d failed", peer, header.api_key, version)
            return _CLOSE

    def _api_versions_fallback(self, header) -> bytes:
        """KIP-511: answer an unknown ApiVersions version with a v0 response carrying UNSUPPORTED_VERSION and,
        as Kafka does, only ApiVersions' own range, so the client can retry with a version we know."""
        api = self.handlers[18]
        body = struct.pack(">ihihhh", header.correlation_id, ErrorCode.unsupported_version, 1, 18,
                           api.min_version, api.max_version)
        return _I32.pack(len(body)) + body


def _produce_v0_2_unsupported(header, frame: bytes, pos: int) -> bytes | object:
    """Produce v0-2 are advertised (librdkafka needs them listed to enable compression) but refused, as in
    Kafka 4: every partition gets UNSUPPORTED_VERSION."""
    try:
        p = pos
        if header.api_version >= 3:
            raise MalformedRequest("not v0-2")
        acks, _timeout, ntopics = struct.unpack_from(">hii", frame, p)
        p += 10
        topics = []
        for _ in range(ntopics):
            (n,) = struct.unpack_from(">h", frame, p)
            name = frame[p + 2 : p + 2 + n]
            p += 2 + n
            (nparts,) = struct.unpack_from(">i", frame, p)
            p += 4
            parts = []
            for _ in range(nparts):
                idx, size = struct.unpack_from(">ii", frame, p)
                p += 8 + max(size, 0)
                parts.append(idx)
            topics.append((name, parts))
    except (struct.error, MalformedRequest):
        log.warning("closing: malformed Produce v%d", header.api_version)
        return _CLOSE
    if acks == 0:
        return None
    body = bytearray(_I32.pack(header.correlation_id))
    body += _I32.pack(len(topics))
    for name, parts in topics:
        body += struct.pack(">h", len(name)) + name + _I32.pack(len(parts))
        for idx in parts:
            body += struct.pack(">ihq", idx, ErrorCode.unsupported_version, -1)
            if header.api_version >= 2:
                body += struct.pack(">q", -1)
    if header.api_version >= 1:
        body += _I32.pack(0)
    return _I32.pack(len(body)) + bytes(body)

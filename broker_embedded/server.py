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
from .connections import ConnectionActivity, TooManyConnections, Unanswered
from .inflight import HeldBytes
from .protocol import MalformedRequest, Reply, codec, parse_header
from .regions import Answer, splice, write_chunks
from .security.listeners import Listener
from .security.sasl import AuthenticationFailed, SaslAuthenticator
from .security.session import Session
from .security.tls import NoMatchingRule, PrincipalMapper, peer_principal

log = logging.getLogger(__name__)

_I32 = struct.Struct(">i")
MAX_IN_FLIGHT = 100


class _Close:
    """An answer that closes the connection instead; `reason` is logged by the sender, so that a connection whose
    pipelined requests are all bad logs once, and the answers due before it still go out."""

    __slots__ = ("reason",)

    def __init__(self, reason: str | None) -> None:
        self.reason = reason


_CLOSE = _Close(None)  # a close whose reason was logged already


class CannotListen(OSError):
    """The server's address cannot be bound (in use, not local, not permitted); `strerror` says why."""


class KafkaServer:
    """Serves the Kafka protocol for one `Broker` on one listener's host:port (port 0 picks a free one); a TLS
    listener needs its `ssl_context` (security/tls.py)."""

    def __init__(self, broker: Broker, host: str, port: int, listener: Listener | None = None,
                 ssl_context=None) -> None:
        self.broker = broker
        self.host = host
        self.port = port
        self.listener = listener or Listener("PLAINTEXT", "PLAINTEXT", host, port)
        self.ssl_context = ssl_context
        self.sessions: dict[asyncio.Task, Session] = {}  # open connections, by their serving task
        self.principal_mapper = PrincipalMapper(broker.config.ssl_principal_mapping_rules)
        self.handlers = load_handlers()
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    async def start(self) -> None:
        try:
            self._server = await asyncio.start_server(self._serve, self.host or None, self.port, limit=1 << 20,
                                                      ssl=self.ssl_context,
                                                      ssl_handshake_timeout=10 if self.ssl_context else None)
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
        session = self._session(peername[0], writer)
        if session is None or not await self._admit(session.client_host, peer):
            writer.close()
            self._connections.discard(task)
            return
        activity = ConnectionActivity()
        idle_ms = self.broker.config.connections_max_idle_ms
        pending: asyncio.Queue = asyncio.Queue(MAX_IN_FLIGHT)
        limit = self.broker.config.socket_request_max_bytes
        held = HeldBytes(limit)  # memory per connection: what it read ahead and has yet to answer
        sender = asyncio.create_task(self._send(pending, writer, peer, held))
        try:
            while not sender.done():
                head = await activity.read(reader, 4, idle_ms)
                if head is None:
                    log.info("closing %s: idle for connections.max.idle.ms (%d ms)", peer, idle_ms)
                    break
                size = _I32.unpack(head)[0]
                if size < 0 or size > limit:
                    await _put(pending, _closing(f"request of {size} bytes exceeds socket.request.max.bytes {limit}"),
                               sender)
                    break
                if not session.authenticated and size > self.broker.config.sasl_server_max_receive_size:
                    # Kafka's sasl.server.max.receive.size: nobody unauthenticated makes us hold a large frame.
                    log.info("closing %s: failing SASL authentication due to invalid receive size %d", peer, size)
                    break
                await held.room_for(size)
                frame = await reader.readexactly(size)
                if not session.authenticated:  # a SASL listener's connection, before (re-)authentication
                    if not await self._authenticate(session, frame, peer, pending):
                        break
                    continue
                try:
                    header, pos = parse_header(frame)
                except MalformedRequest as exc:
                    await _put(pending, _closing(f"malformed request: {exc}"), sender)
                    break
                if session.expires_at is not None:  # KIP-368: re-authenticate, or go once the session expired
                    if header.api_key == 17 and session.authenticator.begin_reauthentication():
                        if not await self._authenticate(session, frame, peer, pending):
                            break
                        continue
                    if session.expired():
                        log.info("closing %s: SASL session of %s expired", peer, session.principal)
                        break
                await activity.wait_unmuted()  # a throttled client's next request waits (KIP-219)
                job = asyncio.create_task(self._dispatch(header, frame, pos, peer, session, activity))
                held.track(job, size, reserve=limit if header.api_key == 1 else 0)  # a Fetch answer may be large
                if not await _put(pending, job, sender):
                    job.cancel()
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            sender.cancel()
        finally:
            await _put(pending, None, sender)
            try:
                await sender
            except (asyncio.CancelledError, Exception):
                pass
            writer.close()
            self._connections.discard(task)
            self.broker.connection_quotas.release(session.client_host)

    async def _admit(self, host: str, peer: str) -> bool:
        """Take a connection slot (waiting while max.connections are open); False past max.connections.per.ip."""
        try:
            await self.broker.connection_quotas.acquire(host)
        except TooManyConnections as exc:
            log.warning("closing %s: %s", peer, exc)
            return False
        except asyncio.CancelledError:  # the server stops while this connection waits for a slot
            return False
        return True

    def _session(self, client_host: str, writer: asyncio.StreamWriter) -> Session | None:
        """The connection's security state; None refuses it (no ssl.principal.mapping.rules rule applies)."""
        listener = self.listener
        session = Session(listener=listener.name, security_protocol=listener.protocol, client_host=client_host)
        if listener.sasl:
            cfg = self.broker.config
            session.authenticated = False
            session.authenticator = SaslAuthenticator(session, cfg.sasl_enabled_mechanisms, cfg.sasl_plain_users,
                                                      self.broker.scram, cfg.connections_max_reauth_ms)
        elif listener.tls:
            try:
                session.principal = peer_principal(writer.get_extra_info("ssl_object"), self.principal_mapper)
            except NoMatchingRule as exc:
                log.warning("closing %s:%s: %s", client_host, writer.get_extra_info("peername")[1], exc)
                return None
        task = asyncio.current_task()
        self.sessions[task] = session
        task.add_done_callback(self._forget)
        return session

    def _forget(self, task: asyncio.Task) -> None:
        self.sessions.pop(task, None)

    async def _authenticate(self, session: Session, frame: bytes, peer: str, pending: asyncio.Queue) -> bool:
        """One frame of a connection that is (re-)authenticating, handled before the next is read; False closes
        the connection (after any response already queued, such as an authentication failure)."""
        auth = session.authenticator
        if auth.raw_tokens and auth.state == "authenticate":  # after SaslHandshake v0: bare tokens both ways
            try:
                token, _lifetime = auth.authenticate(frame, 0)
            except AuthenticationFailed as exc:
                log.info("closing %s: SASL authentication failed: %s", peer, exc)
                await self._failed_authentication_delay()
                return False
            done = asyncio.get_running_loop().create_future()
            done.set_result(_I32.pack(len(token)) + token)
            await pending.put(done)
            return True
        try:
            header, pos = parse_header(frame)
        except MalformedRequest as exc:
            log.warning("closing %s: malformed request during SASL authentication: %s", peer, exc)
            return False
        if not auth.allows(header.api_key):
            log.info("closing %s: unexpected Kafka request of type %d during SASL %s", peer, header.api_key,
                     "authentication" if auth.state == "authenticate" else "handshake")
            return False
        task = asyncio.create_task(self._dispatch(header, frame, pos, peer, session))
        await pending.put(task)
        await asyncio.wait([task])
        if task.cancelled() or task.exception() is not None or isinstance(task.result(), _Close):
            return False
        if header.api_key == 18:
            api = self.handlers[18]
            if api.min_version <= header.api_version <= api.max_version:
                auth.api_versions_answered()
        if auth.state == "failed":
            log.info("closing %s: SASL authentication failed", peer)
            await self._failed_authentication_delay()
            return False
        return True

    async def _failed_authentication_delay(self) -> None:
        await asyncio.sleep(self.broker.config.connection_failed_authentication_delay_ms / 1000)

    async def _send(self, pending: asyncio.Queue, writer: asyncio.StreamWriter, peer: str,
                    held: HeldBytes | None = None) -> None:
        while True:
            task = await pending.get()
            if task is None:
                return
            response = await task
            if held is not None:
                held.sent(task)
            if isinstance(response, _Close):
                if response.reason:
                    log.warning("closing %s: %s", peer, response.reason)
                writer.close()  # the reader then sees EOF and the client learns at once
                return
            if isinstance(response, list):  # bytes and file regions
                await write_chunks(writer, response)
            elif response is not None:
                writer.write(response)
                await writer.drain()

    async def _dispatch(self, header, frame: bytes, pos: int, peer: str, session: Session,
                        activity: ConnectionActivity | None = None):
        api = self.handlers.get(header.api_key)
        if api is None:
            return _Close(f"unknown API key {header.api_key} (client {header.client_id})")
        version = header.api_version
        if header.api_key == 0 and 0 <= version < 3:
            return _produce_v0_2_unsupported(header, frame, pos)
        if not api.min_version <= version <= api.max_version:
            if header.api_key == 18:
                return self._api_versions_fallback(header)
            return _Close(f"API key {header.api_key} version {version} is not supported "
                          f"(supported {api.min_version}-{api.max_version})")
        try:
            c = codec(header.api_key, version)
            request = c.decode(frame, pos)
        except Exception as exc:
            return _Close(f"cannot decode API key {header.api_key} v{version}: {exc}")
        ctx = RequestContext(self.broker, header, Reply(c.response_module, version), peer, session.principal,
                             session.client_host, session.listener, session)
        try:
            if activity is not None:
                activity.begin()
            try:
                response = api.handler(ctx, request)
                if inspect.isawaitable(response):
                    response = await response
            finally:
                if activity is not None:
                    activity.end()
            if isinstance(response, Unanswered):  # no answer, but the quota still mutes the connection
                if activity is not None:
                    await activity.throttle(header.api_key, version, response.throttle_ms)
                return None
            if response is None:
                return None
            regions = None
            if isinstance(response, Answer):  # records to send from their segment files (regions.py)
                response, regions = response.entity, response.regions
            throttle = getattr(response, "throttle_time", None)
            if throttle and activity is not None:  # a quota was exceeded: mute the connection, or delay this answer
                await activity.throttle(header.api_key, version, int(throttle.total_seconds() * 1000))
            data = c.encode(header.correlation_id, response)
            return splice(data, regions, c.flexible) if regions else data
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


async def _put(pending: asyncio.Queue, item, sender: asyncio.Task) -> bool:
    """Queue an answer for the sender; False if the sender stopped first (it closed the connection): a full queue
    must not keep the reader waiting for a sender that is gone."""
    if not pending.full():
        pending.put_nowait(item)
        return True
    put = asyncio.ensure_future(pending.put(item))
    await asyncio.wait([put, sender], return_when=asyncio.FIRST_COMPLETED)
    if put.done():
        return True
    put.cancel()
    return False


def _closing(reason: str) -> asyncio.Future:
    """A close, queued after the requests read before it (they are answered first)."""
    fut = asyncio.get_running_loop().create_future()
    fut.set_result(_Close(reason))
    return fut


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
        return _Close(f"malformed Produce v{header.api_version}")
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

"""SASL on a connection (KIP-43, KIP-84, KIP-152, KIP-368): the handshake, the mechanisms' exchanges, re-auth.

A SASL listener's connection starts unauthenticated: it may send ApiVersions (once, first) and SaslHandshake;
after a successful handshake, SaslAuthenticate requests (handshake v1) or raw size-prefixed tokens (handshake v0)
carry the mechanism's exchange. Anything else before authentication closes the connection, as a failed exchange
does after its error response. With `connections.max.reauth.ms` > 0 a session expires: the client re-authenticates
on the same connection (a new handshake with the same mechanism and principal), or is disconnected at its next
request after expiry.
"""

from __future__ import annotations

import hmac
import logging
import re
import time

from kio.schema.errors import ErrorCode

from .scram import MECHANISMS as SCRAM_MECHANISMS, CredentialStore, ScramError, ScramServer
from .session import Session

log = logging.getLogger(__name__)

SUPPORTED_MECHANISMS = ("PLAIN", *SCRAM_MECHANISMS)
_JAAS_USER = re.compile(r'user_(?P<name>[^=\s"]+)\s*=\s*"(?P<password>(?:[^"\\]|\\.)*)"')


class AuthenticationFailed(Exception):
    """The exchange failed; `message` goes to the client in SaslAuthenticate's error_message."""


def parse_jaas_users(text: str) -> dict[str, str]:
    """PLAIN users from JAAS text as Kafka's PlainLoginModule reads them: `user_<name>="<password>"`."""
    return {m["name"]: re.sub(r"\\(.)", r"\1", m["password"]) for m in _JAAS_USER.finditer(text)}


def check_mechanisms(mechanisms: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """`sasl.enabled.mechanisms`, checked: ValueError names one this broker does not implement."""
    out = tuple(m.strip().upper() for m in mechanisms if m.strip())
    for m in out:
        if m not in SUPPORTED_MECHANISMS:
            raise ValueError(f"unsupported SASL mechanism {m!r} in sasl.enabled.mechanisms: this broker "
                             f"implements {', '.join(SUPPORTED_MECHANISMS)}")
    if not out:
        raise ValueError("sasl.enabled.mechanisms must name at least one mechanism")
    return out


class PlainServer:
    """RFC 4616 PLAIN against the configured users, with Kafka's error messages."""

    def __init__(self, users: dict[str, str]) -> None:
        self.users = users
        self.user: str | None = None
        self.complete = False

    def evaluate(self, token: bytes) -> bytes:
        tokens = token.decode("utf-8", "replace").split("\0")
        if len(tokens) != 3:
            raise AuthenticationFailed("Invalid SASL/PLAIN response: expected 3 tokens, got "
                                       f"{min(len(tokens), 4)}")
        authzid, user, password = tokens
        if not user:
            raise AuthenticationFailed("Authentication failed: username not specified")
        if not password:
            raise AuthenticationFailed("Authentication failed: password not specified")
        expected = self.users.get(user)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            raise AuthenticationFailed("Authentication failed: Invalid username or password")
        if authzid and authzid != user:
            raise AuthenticationFailed("Authentication failed: Client requested an authorization id that is "
                                       "different from username")
        self.user = user
        self.complete = True
        return b""


class SaslAuthenticator:
    """One connection's SASL state machine; the server and the SaslHandshake/SaslAuthenticate handlers drive it.

    States: "versions_or_handshake" -> "handshake" (after ApiVersions) -> "authenticate" -> "complete" | "failed".
    """

    def __init__(self, session: Session, mechanisms: tuple[str, ...], plain_users: dict[str, str],
                 scram: CredentialStore, max_reauth_ms: int) -> None:
        self.session = session
        self.mechanisms = mechanisms
        self.plain_users = plain_users
        self.scram = scram
        self.max_reauth_ms = max_reauth_ms
        self.state = "versions_or_handshake"
        self.raw_tokens = False  # SaslHandshake v0: the exchange continues in raw size-prefixed tokens
        self.server = None
        self.reauthenticating = False
        self.last_reauth_start = 0.0
        self.bad_reauth_mechanism: str | None = None

    # ---- what may pass before authentication ----

    def allows(self, api_key: int) -> bool:
        """Whether a request with this key may be handled now; False closes the connection, as Kafka does."""
        if self.state == "versions_or_handshake":
            return api_key in (18, 17)
        if self.state == "handshake":
            return api_key == 17
        if self.state == "authenticate":
            return api_key == 36 and not self.raw_tokens
        return False

    def api_versions_answered(self) -> None:
        self.state = "handshake"

    def begin_reauthentication(self) -> bool:
        """An authenticated connection sent SaslHandshake: start re-authenticating if its session can expire
        (connections.max.reauth.ms > 0) and the last attempt began more than a second ago (KIP-368)."""
        now = time.monotonic()
        if self.session.expires_at is None or now - self.last_reauth_start < 1.0:
            return False
        self.last_reauth_start = now
        self.reauthenticating = True
        self.state = "handshake"
        self.session.authenticated = False
        return True

    # ---- SaslHandshake ----

    def handshake(self, mechanism: str, version: int) -> int:
        """The error code for SaslHandshake; a failed one sets state "failed" (the connection closes after the
        response)."""
        if mechanism not in self.mechanisms:
            log.debug("SASL mechanism %r requested by client is not supported", mechanism)
            self.state = "failed"
            return ErrorCode.unsupported_sasl_mechanism
        if self.reauthenticating and mechanism != self.session.mechanism:
            # Kafka answers the handshake, then fails the exchange that follows with this message.
            self.bad_reauth_mechanism = (f"SASL mechanism '{mechanism}' requested by client is not supported for "
                                         f"re-authentication of mechanism '{self.session.mechanism}'")
        self.server = (PlainServer(self.plain_users) if mechanism == "PLAIN"
                       else ScramServer(mechanism, self.scram))
        self.pending_mechanism = mechanism
        self.raw_tokens = version == 0
        self.state = "authenticate"
        return ErrorCode.none

    # ---- the exchange ----

    def authenticate(self, token: bytes, version: int) -> tuple[bytes, int]:
        """Evaluate one client token: (server token, session lifetime ms). Raises AuthenticationFailed with the
        message for the client (the connection closes after the error response)."""
        if version > 0:
            self.session.reauth_supported = True
        try:
            if self.bad_reauth_mechanism:
                raise AuthenticationFailed(self.bad_reauth_mechanism)
            try:
                response = self.server.evaluate(token)
            except ScramError as exc:
                log.debug("SCRAM %s failed for %s: %s", self.pending_mechanism, self.session.client_host, exc)
                raise AuthenticationFailed(exc.message or (
                    f"Authentication failed during {self._text()} due to invalid credentials with SASL "
                    f"mechanism {self.pending_mechanism}")) from None
            if not self.server.complete:
                return response, 0
            principal = "User:" + self.server.user
            if self.reauthenticating and principal != self.session.principal:
                raise AuthenticationFailed(
                    f"Cannot change principals during re-authentication from "
                    f"{self.session.principal.replace(':', '.', 1)}: {principal.replace(':', '.', 1)}")
        except AuthenticationFailed:
            self.state = "failed"
            raise
        lifetime = self._complete(principal)
        return response, lifetime

    def _complete(self, principal: str) -> int:
        session = self.session
        session.principal = principal
        session.mechanism = self.pending_mechanism
        session.authenticated = True
        self.state = "complete"
        self.server = None
        self.reauthenticating = False
        if self.max_reauth_ms > 0:
            session.expires_at = time.monotonic() + self.max_reauth_ms / 1000
            return self.max_reauth_ms
        session.expires_at = None
        return 0

    def _text(self) -> str:
        return "re-authentication" if self.reauthenticating else "authentication"

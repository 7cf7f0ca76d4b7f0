"""The security state of one client connection: its listener, its address, and the principal it proved."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

ANONYMOUS = "User:ANONYMOUS"


@dataclass(slots=True)
class Session:
    """One connection's identity. `principal` is "User:ANONYMOUS" until SASL succeeds (or for ever on PLAINTEXT
    and on SSL without a client certificate); `authenticated` says whether requests other than ApiVersions and
    SaslHandshake may pass (always true on PLAINTEXT and SSL listeners)."""

    listener: str = "PLAINTEXT"
    security_protocol: str = "PLAINTEXT"
    client_host: str = ""
    principal: str = ANONYMOUS
    authenticated: bool = True
    # SASL: the mechanism authenticated with, the authenticator in progress, and when the session expires
    # (time.monotonic(); None: never), for KIP-368 re-authentication.
    mechanism: str | None = None
    authenticator: Any = None
    expires_at: float | None = None
    reauth_supported: bool = False  # the client sent SaslAuthenticate v1+ (KIP-368)

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    def expired(self) -> bool:
        return self.expires_at is not None and time.monotonic() >= self.expires_at

"""SCRAM-SHA-256 / SCRAM-SHA-512 (RFC 5802, RFC 7677, KIP-84): credentials, their durable store, the server side.

The broker keeps only what RFC 5802 says a server keeps: salt, iteration count, StoredKey = H(HMAC(salted, "Client
Key")) and ServerKey = HMAC(salted, "Server Key"). Neither the password nor the salted password is stored, so the
file in the data directory cannot be replayed as a password (it is still a secret: it allows offline guessing).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass

from ..log.durable import write_atomically

log = logging.getLogger(__name__)

# Kafka's ScramMechanism types (DescribeUserScramCredentials / AlterUserScramCredentials) and hash functions.
MECHANISMS = {"SCRAM-SHA-256": (1, "sha256"), "SCRAM-SHA-512": (2, "sha512")}
BY_TYPE = {t: name for name, (t, _h) in MECHANISMS.items()}
MIN_ITERATIONS = 4096
MAX_ITERATIONS = 16384
CREDENTIALS_FILE = "scram-credentials.json"


class ScramError(Exception):
    """A SCRAM exchange failed; `message` is what Kafka would tell the client (None: the generic message)."""

    def __init__(self, reason: str, message: str | None = None) -> None:
        super().__init__(reason)
        self.message = message


@dataclass(frozen=True, slots=True)
class ScramCredential:
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


def _hash(mechanism: str) -> str:
    return MECHANISMS[mechanism][1]


def salted_password(mechanism: str, password: str, salt: bytes, iterations: int) -> bytes:
    """Hi(Normalize(password), salt, i) of RFC 5802, i.e. PBKDF2 with the mechanism's HMAC."""
    return hashlib.pbkdf2_hmac(_hash(mechanism), password.encode(), salt, iterations)


def credential_from_salted(mechanism: str, salt: bytes, salted: bytes, iterations: int) -> ScramCredential:
    """What the server keeps, from the salted password an AlterUserScramCredentials client computed."""
    h = _hash(mechanism)
    client_key = hmac.digest(salted, b"Client Key", h)
    return ScramCredential(salt, hashlib.new(h, client_key).digest(), hmac.digest(salted, b"Server Key", h),
                           iterations)


def make_credential(mechanism: str, password: str, iterations: int = MIN_ITERATIONS) -> ScramCredential:
    salt = secrets.token_bytes(32)
    return credential_from_salted(mechanism, salt, salted_password(mechanism, password, salt, iterations),
                                  iterations)


class CredentialStore:
    """SCRAM credentials by (user, mechanism), kept in `<data_dir>/scram-credentials.json` (written atomically
    and fsynced before an alteration is acknowledged)."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, CREDENTIALS_FILE)
        self.credentials: dict[str, dict[str, ScramCredential]] = {}
        self._lock = threading.Lock()  # the Python API may alter from another thread than the broker's loop

    def load(self) -> None:
        try:
            with open(self.path) as f:
                raw = json.load(f)
        except FileNotFoundError:
            return
        except ValueError as exc:
            raise ValueError(f"cannot read SCRAM credentials {self.path}: {exc}") from exc
        self.credentials = {
            user: {mech: ScramCredential(base64.b64decode(c["salt"]), base64.b64decode(c["stored_key"]),
                                         base64.b64decode(c["server_key"]), int(c["iterations"]))
                   for mech, c in mechs.items() if mech in MECHANISMS}
            for user, mechs in raw.get("users", {}).items()
        }

    def _save(self, credentials: dict[str, dict[str, ScramCredential]]) -> None:
        raw = {"version": 1, "users": {
            user: {mech: {"salt": base64.b64encode(c.salt).decode(),
                          "stored_key": base64.b64encode(c.stored_key).decode(),
                          "server_key": base64.b64encode(c.server_key).decode(),
                          "iterations": c.iterations}
                   for mech, c in mechs.items()}
            for user, mechs in credentials.items() if mechs}}
        write_atomically(self.path, json.dumps(raw, indent=1, sort_keys=True))
        try:
            os.chmod(self.path, 0o600)
        except OSError:
            pass

    def get(self, user: str, mechanism: str) -> ScramCredential | None:
        return self.credentials.get(user, {}).get(mechanism)

    def apply(self, upserts: dict[tuple[str, str], ScramCredential], deletes: set[tuple[str, str]]) -> None:
        """Apply alterations all at once: saved to disk first, then visible. OSError leaves nothing changed."""
        with self._lock:
            new = {user: dict(mechs) for user, mechs in self.credentials.items()}
            for user, mech in deletes:
                new.get(user, {}).pop(mech, None)
            for (user, mech), cred in upserts.items():
                new.setdefault(user, {})[mech] = cred
            new = {user: mechs for user, mechs in new.items() if mechs}
            self._save(new)
            self.credentials = new

    def set_password(self, user: str, password: str, mechanisms: tuple[str, ...] = tuple(MECHANISMS),
                     iterations: int = MIN_ITERATIONS) -> None:
        """Create or replace `user`'s credentials for `mechanisms` (ValueError for a bad name or iteration
        count)."""
        if not user:
            raise ValueError("SCRAM user name must not be empty")
        if not MIN_ITERATIONS <= iterations <= MAX_ITERATIONS:
            raise ValueError(f"SCRAM iterations must be in {MIN_ITERATIONS}..{MAX_ITERATIONS}, got {iterations}")
        for mech in mechanisms:
            if mech not in MECHANISMS:
                raise ValueError(f"unknown SCRAM mechanism {mech!r}: expected one of {', '.join(MECHANISMS)}")
        self.apply({(user, m): make_credential(m, password, iterations) for m in mechanisms}, set())


# ---- the server side of one exchange ----

_SASLNAME = r"(?:[\x01-\x2b\x2d-\x3c\x3e-\x7f]|=2C|=3D)+"
_CLIENT_FIRST = re.compile(r"^n,(?:a=(?P<authzid>%s))?,(?P<bare>n=(?P<saslname>%s),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
                           r"(?P<extensions>(?:,[A-Za-z]+=[\x01-\x2b\x2d-\x7f]*)*))$" % (_SASLNAME, _SASLNAME))
_CLIENT_FINAL = re.compile(r"^(?P<without_proof>c=(?P<channel>[A-Za-z0-9+/=]*),r=(?P<nonce>[\x21-\x2b\x2d-\x7e]+)"
                           r"(?:,[A-Za-z]+=[\x01-\x2b\x2d-\x7f]*)*),p=(?P<proof>[A-Za-z0-9+/=]+)$")


def username(saslname: str) -> str:
    """RFC 5802's saslname decoding (=2C is ',', =3D is '='); any other '=' is invalid."""
    name = saslname.replace("=2C", ",")
    if "=" in name.replace("=3D", ""):
        raise ScramError(f"Invalid username: {saslname}")
    return name.replace("=3D", "=")


class ScramServer:
    """Server side of one SCRAM exchange: client-first -> server-first, client-final -> server-final.

    A failure raises ScramError; as Kafka, the client is told only that the credentials were invalid unless the
    error carries its own message (an authorization id that differs from the user name)."""

    def __init__(self, mechanism: str, store: CredentialStore) -> None:
        self.mechanism = mechanism
        self.store = store
        self.user: str | None = None
        self.complete = False
        self._state = "first"

    def evaluate(self, token: bytes) -> bytes:
        if self._state == "first":
            return self._first(token)
        if self._state == "final":
            return self._final(token)
        raise ScramError(f"Unexpected challenge in Sasl server state {self._state}")

    def _first(self, token: bytes) -> bytes:
        self._state = "failed"
        message = token.decode("utf-8", "replace")
        m = _CLIENT_FIRST.match(message)
        if m is None:
            raise ScramError(f"Invalid SCRAM client first message format: {message}")
        user = username(m["saslname"])
        cred = self.store.get(user, self.mechanism)
        if cred is None:
            raise ScramError("Authentication failed: Invalid user credentials")
        if m["authzid"] and m["authzid"] != user:
            raise ScramError("authorization id mismatch", "Authentication failed: Client requested an "
                             "authorization id that is different from username")
        if cred.iterations < MIN_ITERATIONS:
            raise ScramError(f"Iterations {cred.iterations} is less than the minimum {MIN_ITERATIONS}")
        self._cred = cred
        self.user = user
        self._nonce = m["nonce"] + secrets.token_urlsafe(24).replace("-", "a").replace("_", "b")
        self._client_first_bare = m["bare"]
        self._server_first = f"r={self._nonce},s={base64.b64encode(cred.salt).decode()},i={cred.iterations}"
        self._state = "final"
        return self._server_first.encode()

    def _final(self, token: bytes) -> bytes:
        self._state = "failed"
        message = token.decode("utf-8", "replace")
        m = _CLIENT_FINAL.match(message)
        if m is None:
            raise ScramError(f"Invalid SCRAM client final message format: {message}")
        # RFC 5802: exactly the nonce of the server-first message. Kafka 4.1 checks it so (CVE-2024-56128), which
        # refuses librdkafka before 2.6.1: it sends the client's part twice.
        if m["nonce"] != self._nonce:
            raise ScramError("Invalid client nonce in the final client message.")
        h = _hash(self.mechanism)
        auth_message = f"{self._client_first_bare},{self._server_first},{m['without_proof']}".encode()
        signature = hmac.digest(self._cred.stored_key, auth_message, h)
        try:
            proof = base64.b64decode(m["proof"], validate=True)
        except ValueError:
            raise ScramError("Invalid client proof encoding") from None
        if len(proof) != len(signature):
            raise ScramError("Invalid client credentials")
        client_key = bytes(a ^ b for a, b in zip(proof, signature))
        if not hmac.compare_digest(hashlib.new(h, client_key).digest(), self._cred.stored_key):
            raise ScramError("Invalid client credentials")
        server_signature = hmac.digest(self._cred.server_key, auth_message, h)
        self._state = "complete"
        self.complete = True
        return b"v=" + base64.b64encode(server_signature)

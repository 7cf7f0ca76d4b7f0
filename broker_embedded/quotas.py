"""Client quotas (KIP-13, KIP-55, KIP-219, KIP-546): byte-rate limits per user and/or client id, and the throttle
time that brings a client back to its quota.

Quota values are set with AlterClientQuotas on entities {user, client-id} (either may be the default, a None name)
or {ip}; they are durable in `<data dir>/__client_quotas.json`, one JSON document replaced atomically on every
change. A request's quota comes from the most specific entity that sets the key, in Kafka's order:

    /users/<u>/clients/<c>, /users/<u>/clients/<default>, /users/<u>,
    /users/<default>/clients/<c>, /users/<default>/clients/<default>, /users/<default>,
    /clients/<c>, /clients/<default>, then the broker's static default (if configured).

Clients that match the same entity share one rate (all of alice's clients share /users/alice; each client id has
its own rate under /clients/<default>). The rate is Kafka's sampled Rate: `quota.window.num` samples of
`quota.window.size.seconds`; a client over its bound is throttled for (rate - bound) / bound * window.
"""

from __future__ import annotations

import json
import math
import os
import socket
import time
from dataclasses import dataclass

from .log.durable import write_atomically

QUOTA_FILE = "__client_quotas.json"
USER, CLIENT_ID, IP = "user", "client-id", "ip"
PRODUCER_BYTE_RATE = "producer_byte_rate"
CONSUMER_BYTE_RATE = "consumer_byte_rate"
# Keys per entity kind and their types (Kafka's QuotaConfig): integral ones refuse fractions.
LONG, DOUBLE, INT = "long", "double", "int"
CLIENT_KEYS = {PRODUCER_BYTE_RATE: LONG, CONSUMER_BYTE_RATE: LONG, "request_percentage": DOUBLE,
               "controller_mutation_rate": DOUBLE}
IP_KEYS = {"connection_creation_rate": INT}
_LIMITS = {LONG: 2**63 - 1, INT: 2**31 - 1}

Entity = tuple[tuple[str, str | None], ...]  # sorted (type, name) pairs; a None name is the default entity


class InvalidQuota(ValueError):
    """An entity, filter or value Kafka refuses with INVALID_REQUEST (or UNSUPPORTED_VERSION: `unsupported`)."""

    def __init__(self, message: str, unsupported: bool = False) -> None:
        super().__init__(message)
        self.unsupported = unsupported


def entity_key(pairs) -> Entity:
    return tuple(sorted(pairs, key=lambda p: p[0]))


def check_entity(pairs: list[tuple[str, str | None]]) -> dict[str, type]:
    """Validate an AlterClientQuotas entity as Kafka does; returns the config keys it may set."""
    if not pairs:
        raise InvalidQuota("Invalid empty client quota entity")
    seen: set[str] = set()
    for kind, name in pairs:
        if kind in seen:
            raise InvalidQuota(f"Invalid client quota entity, duplicate entity entry {kind}")
        seen.add(kind)
        if kind not in (USER, CLIENT_ID, IP):
            raise InvalidQuota(f"Unhandled client quota entity type: {kind}")
        if name is not None and name == "":
            raise InvalidQuota(f"Empty {kind} not supported")
    if IP in seen:
        if len(seen) > 1:
            raise InvalidQuota("Invalid quota entity combination, IP entity should not be combined with User or "
                               "ClientId")
        ip = dict(pairs)[IP]
        if ip is not None:
            try:
                socket.getaddrinfo(ip, None, flags=socket.AI_NUMERICHOST)
            except OSError:
                raise InvalidQuota(f"{ip} is not a valid IP or resolvable host.") from None
        return IP_KEYS
    return CLIENT_KEYS


def check_value(keys: dict[str, str], key: str, value: float) -> None:
    kind = keys.get(key)
    if kind is None:
        raise InvalidQuota(f"Invalid configuration key {key}")
    if not value > 0:
        raise InvalidQuota(f"Quota {key} must be greater than 0")
    if kind in _LIMITS:
        if value > _LIMITS[kind]:
            raise InvalidQuota(f"Proposed value for {key} is too large for a{'n' if kind == INT else ''} "
                               f"{kind.upper()}.")
        if abs(math.fmod(value, 1.0)) > 1e-6:
            raise InvalidQuota(f"{key} cannot be a fractional value.")


class QuotaStore:
    """The quota values per entity, durable in the data directory."""

    def __init__(self, data_dir: str) -> None:
        self.path = os.path.join(data_dir, QUOTA_FILE)
        self.entities: dict[Entity, dict[str, float]] = {}

    def load(self) -> None:
        try:
            with open(self.path) as f:
                doc = json.load(f)
            self.entities = {entity_key((k, n) for k, n in e["entity"]): {k: float(v) for k, v in e["values"].items()}
                             for e in doc["quotas"]}
        except FileNotFoundError:
            self.entities = {}
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ValueError(f"cannot read the client quotas in {self.path}: {exc!r}") from exc

    def alter(self, changes: list[tuple[Entity, dict[str, float | None]]]) -> None:
        """Apply validated changes (a None value removes the key) and make them durable; OSError changes nothing."""
        entities = {e: dict(v) for e, v in self.entities.items()}
        for entity, ops in changes:
            values = entities.setdefault(entity, {})
            for key, value in ops.items():
                if value is None:
                    values.pop(key, None)
                else:
                    values[key] = float(value)
            if not values:
                del entities[entity]
        if entities != self.entities:
            doc = {"version": 1, "quotas": [{"entity": [list(p) for p in e], "values": v} for e, v in entities.items()]}
            os.makedirs(os.path.dirname(self.path), exist_ok=True)
            write_atomically(self.path, json.dumps(doc))
            self.entities = entities

    def describe(self, components: list[tuple[str, int, str | None]], strict: bool) -> list[tuple[Entity, dict]]:
        """DescribeClientQuotas: components are (entity type, match type 0 exact/1 default/2 specified, match)."""
        exact: dict[str, str | None] = {}
        specified: set[str] = set()
        for kind, match_type, match in components:
            if not kind:
                raise InvalidQuota("Invalid empty entity type.")
            if kind in exact or kind in specified:
                raise InvalidQuota(f"Entity type {kind} cannot appear more than once in the filter.")
            if kind not in (IP, USER, CLIENT_ID):
                raise InvalidQuota(f"Unsupported entity type {kind}", unsupported=True)
            if match_type == 0:
                if match is None:
                    raise InvalidQuota("Request specified MATCH_TYPE_EXACT, but set match string to null.")
                exact[kind] = match
            elif match_type == 1:
                if match is not None:
                    raise InvalidQuota("Request specified MATCH_TYPE_DEFAULT, but also specified a match string.")
                exact[kind] = None
            elif match_type == 2:
                if match is not None:
                    raise InvalidQuota("Request specified MATCH_TYPE_SPECIFIED, but also specified a match string.")
                specified.add(kind)
            else:
                raise InvalidQuota(f"Unknown match type {match_type}")
        kinds = set(exact) | specified
        if IP in kinds and kinds & {USER, CLIENT_ID}:
            raise InvalidQuota("Invalid entity filter component combination. IP filter component should not be "
                               "used with user or clientId filter component.")
        out = []
        for entity, values in self.entities.items():
            d = dict(entity)
            if strict and len(d) != len(kinds):
                continue
            if any(k not in d or d[k] != v for k, v in exact.items()) or any(k not in d for k in specified):
                continue
            out.append((entity, values))
        return out

    def lookup(self, key: str, user: str, client_id: str) -> tuple[float, tuple[str, str]] | None:
        """(bound, metric tags) of the most specific entity setting `key` for this user and client id."""
        e = self.entities
        order = (
            (((CLIENT_ID, client_id), (USER, user)), (user, client_id)),
            (((CLIENT_ID, None), (USER, user)), (user, client_id)),
            (((USER, user),), (user, "")),
            (((CLIENT_ID, client_id), (USER, None)), (user, client_id)),
            (((CLIENT_ID, None), (USER, None)), (user, client_id)),
            (((USER, None),), (user, "")),
            (((CLIENT_ID, client_id),), ("", client_id)),
            (((CLIENT_ID, None),), ("", client_id)),
        )
        for entity, tags in order:
            values = e.get(entity)
            if values is not None and key in values:
                return values[key], tags
        return None


SENSOR_EXPIRY_MS = 3600_000  # Kafka drops a client's quota sensors after an hour without use


class Rate:
    """Kafka's sampled rate: events per second over up to `samples` windows of `window_ms`, where a young rate
    counts as if samples - 1 whole windows had passed (so a first burst is not an infinite rate)."""

    __slots__ = ("samples", "window_ms", "_s", "_current")

    def __init__(self, samples: int, window_ms: int) -> None:
        self.samples = samples
        self.window_ms = window_ms
        self._s: list[list[float]] = []  # [start ms, last event ms, value]
        self._current = 0

    def record(self, value: float, now: float) -> None:
        if not self._s:
            self._s.append([now, now, 0.0])
        s = self._s[self._current]
        if now - s[0] >= self.window_ms:
            self._current = (self._current + 1) % (self.samples + 1)
            if self._current >= len(self._s):
                self._s.append([now, now, 0.0])
            else:
                self._s[self._current][:] = [now, now, 0.0]
            s = self._s[self._current]
        s[2] += value
        s[1] = now

    def last_event(self) -> float:
        return max((s[1] for s in self._s), default=0.0)

    def _purge(self, now: float) -> None:
        expire = self.samples * self.window_ms
        for s in self._s:
            if now - s[1] >= expire:
                s[:] = [now, now, 0.0]

    def window_size(self, now: float) -> float:
        self._purge(now)
        oldest = min((s[0] for s in self._s), default=now)
        elapsed = now - oldest
        full = int(elapsed // self.window_ms)
        if full < self.samples - 1:
            elapsed += (self.samples - 1 - full) * self.window_ms
        return max(elapsed, 1.0)

    def measure(self, now: float) -> float:
        """Per second."""
        size = self.window_size(now)
        return sum(s[2] for s in self._s) / (size / 1000.0)


@dataclass(frozen=True, slots=True)
class QuotaConfig:
    samples: int = 11  # quota.window.num
    window_seconds: int = 1  # quota.window.size.seconds


class ClientQuotaManager:
    """One quota type (produce or fetch bytes): records usage per quota entity and answers throttle times."""

    def __init__(self, store: QuotaStore, key: str, config: QuotaConfig, static_default: float | None = None,
                 clock=None) -> None:
        self.store = store
        self.key = key
        self.config = config
        self.static_default = static_default
        self._rates: dict[tuple[str, str], Rate] = {}
        self._clock = clock or (lambda: time.monotonic() * 1000.0)
        self._next_expiry = 0.0

    @property
    def active(self) -> bool:
        return bool(self.store.entities) or self.static_default is not None

    def quota(self, user: str, client_id: str) -> tuple[float, tuple[str, str]] | None:
        if not self.active:  # no quotas at all: the common case
            return None
        found = self.store.lookup(self.key, user, client_id)
        if found is None and self.static_default is not None:
            return self.static_default, ("", client_id)
        return found

    def _rate(self, tags: tuple[str, str]) -> Rate:
        rate = self._rates.get(tags)
        if rate is None:
            self._expire()
            rate = self._rates[tags] = Rate(self.config.samples, self.config.window_seconds * 1000)
        return rate

    def _expire(self) -> None:
        """Forget the rates of clients idle for an hour (checked at most once a minute, when a new one appears)."""
        now = self._clock()
        if now < self._next_expiry:
            return
        self._next_expiry = now + 60_000
        for tags in [t for t, r in self._rates.items() if now - r.last_event() > SENSOR_EXPIRY_MS]:
            del self._rates[tags]

    def record(self, user: str, client_id: str, value: float) -> int:
        """Record `value` bytes; the throttle time in ms (0 within the quota)."""
        found = self.quota(user, client_id)
        if found is None:
            return 0
        bound, tags = found
        now = self._clock()
        rate = self._rate(tags)
        rate.record(value, now)
        observed = rate.measure(now)
        if observed <= bound:
            return 0
        return int(round((observed - bound) / bound * rate.window_size(now)))

    def unrecord(self, user: str, client_id: str, value: float) -> None:
        """Take back a recorded value (a throttled fetch answers empty, so its bytes were not sent)."""
        found = self.quota(user, client_id)
        if found is not None:
            self._rate(found[1]).record(-value, self._clock())

    def max_bytes_in_window(self, user: str, client_id: str) -> int | None:
        """The most bytes a client may take in one quota window (fetch sizes are capped to it), None: no quota."""
        found = self.quota(user, client_id)
        if found is None:
            return None
        return max(1, int(found[0] * (self.config.samples - 1) * self.config.window_seconds))


def user_of(principal: str) -> str:
    """The user name a quota entity names: "User:alice" -> "alice"."""
    return principal.split(":", 1)[1] if ":" in principal else principal

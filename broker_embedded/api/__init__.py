"""One module per API family. Each handler turns a decoded request into a response object.

A handler is registered with `@handles(api_key, min_version, max_version)`; ApiVersions advertises exactly what
is registered. Handlers may be plain functions or coroutines; returning None sends no response (acks=0).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from ..protocol import Reply, RequestHeader

if TYPE_CHECKING:
    from ..broker import Broker


@dataclass(frozen=True, slots=True)
class Api:
    key: int
    min_version: int
    max_version: int
    handler: Callable[..., Any]


@dataclass(slots=True)
class RequestContext:
    """What a handler may use: the broker's state, the request header, a builder for its response, and who
    sent it: `principal` as Kafka forms it ("User:ANONYMOUS" before or without authentication, "User:alice" after
    SASL, "User:CN=alice,OU=..." for a TLS client certificate), the client's IP (`client_host`), and the name of
    the listener it connected through (`listener`, e.g. "PLAINTEXT", "SASL_SSL")."""

    broker: "Broker"
    header: RequestHeader
    reply: Reply
    peer: str
    principal: str = "User:ANONYMOUS"
    client_host: str = ""
    listener: str = "PLAINTEXT"
    # The connection's security state (security.session.Session), for the SASL handlers; None in raw tests.
    session: Any = None

    @property
    def version(self) -> int:
        return self.header.api_version


HANDLERS: dict[int, Api] = {}

MODULES = ("versions", "metadata", "produce", "fetch", "offsets", "admin", "configs", "txn", "producers", "groups", "group_offsets",
           "delete_records", "sasl", "scram", "features", "log_dirs", "replication", "cluster", "topic_partitions",
           "disabled")
MODULES += ("consumer_groups",)  # the consumer group protocol (KIP-848)
MODULES += ("acls", "client_quotas")  # ACL and client-quota administration (security part 5)


def handles(key: int, min_version: int, max_version: int) -> Callable:
    def register(fn: Callable) -> Callable:
        HANDLERS[key] = Api(key, min_version, max_version, fn)
        return fn

    return register


def load_handlers(extra: tuple[str, ...] = ()) -> dict[int, Api]:
    for name in MODULES + extra:
        importlib.import_module(f"{__name__}.{name}")
    return HANDLERS

"""Kafka's listener settings: `listeners`, `listener.security.protocol.map` and `advertised.listeners`.

    listeners=PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093

Each listener has a name, a security protocol (from the map; by default a name is its own protocol), an address to
bind and an address to advertise. Metadata answers a client with the advertised address of the listener that the
client connected through.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
DEFAULT_PROTOCOL_MAP = ",".join(f"{p}:{p}" for p in PROTOCOLS)

_ENDPOINT = re.compile(r"^(?P<name>[A-Za-z0-9_.-]+)://(?P<host>\[[0-9a-fA-F:.]+\]|[^:\[\]/]*):(?P<port>-?\d+)$")


@dataclass(slots=True)
class Listener:
    """One endpoint: its name ("PLAINTEXT", "SASL_SSL", or a custom name mapped to a protocol), its security
    protocol, the address it binds and the address it advertises (port 0: the bound port)."""

    name: str
    protocol: str
    host: str
    port: int
    advertised_host: str | None = None
    advertised_port: int | None = None

    @property
    def tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def sasl(self) -> bool:
        return self.protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    def advertised(self) -> tuple[str, int]:
        """(host, port) that Metadata gives clients of this listener."""
        host = self.advertised_host
        if not host:
            # Kafka advertises the canonical host name for a listener bound to every interface.
            host = socket.gethostname() if self.host in ("", "0.0.0.0", "::") else self.host
        return host, self.advertised_port or self.port


def _endpoints(value: str, setting: str) -> list[tuple[str, str, int]]:
    out = []
    for item in (v.strip() for v in value.split(",")):
        if not item:
            continue
        m = _ENDPOINT.match(item)
        if m is None:
            raise ValueError(f"Invalid value {item!r} in {setting}: expected NAME://host:port")
        port = int(m["port"])
        if not 0 <= port <= 65535:
            raise ValueError(f"Invalid port {port} in {setting} entry {item!r}: expected 0..65535")
        out.append((m["name"].upper(), m["host"].strip("[]"), port))
    return out


def parse_protocol_map(value: str | None) -> dict[str, str]:
    """`listener.security.protocol.map`: NAME:PROTOCOL pairs; ValueError names a bad entry."""
    out: dict[str, str] = {}
    for item in (v.strip() for v in (value or DEFAULT_PROTOCOL_MAP).split(",")):
        if not item:
            continue
        name, sep, protocol = item.partition(":")
        protocol = protocol.strip().upper()
        if not sep or not name.strip() or protocol not in PROTOCOLS:
            raise ValueError(f"Invalid value {item!r} in listener.security.protocol.map: expected NAME:PROTOCOL "
                             f"with PROTOCOL one of {', '.join(PROTOCOLS)}")
        out[name.strip().upper()] = protocol
    return out


def parse_listeners(listeners: str, protocol_map: str | None = None,
                    advertised: str | None = None) -> list[Listener]:
    """The listeners as Kafka reads them. Raises ValueError for an unknown name, a name or a non-zero port used
    twice, an advertised listener with no matching listener, or an advertised 0.0.0.0."""
    protocols = parse_protocol_map(protocol_map)
    result: list[Listener] = []
    seen_ports: set[int] = set()
    for name, host, port in _endpoints(listeners, "listeners"):
        if name not in protocols:
            raise ValueError(f"No security protocol defined for listener {name} "
                             "(add it to listener.security.protocol.map)")
        if any(l.name == name for l in result):
            raise ValueError(f"Each listener must have a different name, listeners: {listeners}")
        if port and port in seen_ports:
            raise ValueError(f"Each listener must have a different port, listeners: {listeners}")
        seen_ports.add(port)
        result.append(Listener(name, protocols[name], host, port))
    if not result:
        raise ValueError("listeners must name at least one listener, e.g. PLAINTEXT://127.0.0.1:9092")
    by_name = {l.name: l for l in result}
    for name, host, port in _endpoints(advertised or "", "advertised.listeners"):
        if name not in by_name:
            raise ValueError(f"advertised.listeners listener names must be equal to or a subset of the ones "
                             f"defined in listeners; {name} is not")
        if host in ("0.0.0.0", "::"):
            raise ValueError(f"advertised.listeners cannot use the nonroutable meta-address {host}. "
                             "Use a routable IP address.")
        by_name[name].advertised_host = host or None
        by_name[name].advertised_port = port or None
    return result

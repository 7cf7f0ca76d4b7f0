"""A raw Kafka connection for tests that must see exactly what the broker answers (no client to hide it).

`Conn(bootstrap).call((api_key, version), **fields)` encodes the request with kio, sends it, and decodes the
response of the same version.
"""

from __future__ import annotations

import io
import socket
import struct

from kio.index import load_payload_module
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType


def payload_class(module, kind: EntityType) -> type:
    """The request or response class of a kio schema module."""
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "__type__", None) is kind and value.__module__ == module.__name__:
            return value
    raise LookupError(module.__name__)


class Conn:
    """One socket speaking one request at a time."""

    def __init__(self, bootstrap: str, timeout: float = 30) -> None:
        host, port = bootstrap.rsplit(":", 1)
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.corr = 0

    def m(self, api: tuple[int, int]):
        """The request schema module of (api_key, version), for building nested entities."""
        return load_payload_module(api[0], api[1], EntityType.request)

    def call(self, api: tuple[int, int], **fields):
        key, version = api
        req_cls = payload_class(self.m(api), EntityType.request)
        resp_cls = payload_class(load_payload_module(key, version, EntityType.response), EntityType.response)
        self.corr += 1
        buf = io.BytesIO()
        entity_writer(req_cls)(buf, req_cls(**fields))
        header = struct.pack(">hhih", key, version, self.corr, 4) + b"test"
        if req_cls.__flexible__:
            header += b"\0"
        frame = header + buf.getvalue()
        self.sock.sendall(struct.pack(">i", len(frame)) + frame)
        size = struct.unpack(">i", self._recv(4))[0]
        data = self._recv(size)
        assert struct.unpack(">i", data[:4])[0] == self.corr
        # ApiVersions answers with header v0 even in flexible versions.
        pos = 5 if resp_cls.__flexible__ and key != 18 else 4
        return entity_reader(resp_cls)(data, pos)[0]

    def _recv(self, n: int) -> bytes:
        out = b""
        while len(out) < n:
            chunk = self.sock.recv(n - len(out))
            if not chunk:
                raise ConnectionError("closed")
            out += chunk
        return out

    def close(self) -> None:
        self.sock.close()

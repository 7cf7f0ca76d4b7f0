"""Answers that carry segment file regions: encoded around the regions, sent with sendfile.

A Fetch answer is mostly stored record bytes. On a plain socket they go from the page cache to the socket by
sendfile, never through Python: the handler puts `FileRegion`s where the records go, `Answer` swaps each for a
unique 16-byte marker before kio encodes the answer, and `splice` cuts the encoded frame at the markers into a list
of bytes and regions (each marker's length prefix rewritten for the region's length, the frame size fixed). The
server writes that list in order: bytes through the transport, regions by `loop.sendfile`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import struct
from typing import Any

from .log.region import FileRegion

_I32 = struct.Struct(">i")
_MARKER = 16


class Answer:
    """A handler's response entity whose `records` fields may hold FileRegions."""

    __slots__ = ("entity", "regions")

    def __init__(self, entity: Any) -> None:
        self.regions: list[tuple[bytes, FileRegion]] = []
        self.entity = self._mark(entity)

    def _mark(self, value: Any) -> Any:
        if isinstance(value, FileRegion):
            marker = os.urandom(_MARKER)
            self.regions.append((marker, value))
            return marker
        if isinstance(value, tuple):
            return tuple(self._mark(v) for v in value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            changes = {}
            for f in dataclasses.fields(value):
                v = getattr(value, f.name)
                if isinstance(v, (FileRegion, tuple)) or (dataclasses.is_dataclass(v) and not isinstance(v, type)):
                    marked = self._mark(v)
                    if marked is not v:
                        changes[f.name] = marked
            return dataclasses.replace(value, **changes) if changes else value
        return value


def sendfile_allowed(session: Any) -> bool:
    """Only a plain socket: TLS must encrypt the bytes, and SASL listeners stay on the copying path too."""
    return session is None or getattr(session, "security_protocol", "PLAINTEXT") == "PLAINTEXT"


def splice(frame: bytes, regions: list[tuple[bytes, FileRegion]], flexible: bool) -> list[bytes | FileRegion]:
    """Cut an encoded frame (size prefix included) at each marker: bytes, region, bytes, ... with the regions'
    length prefixes and the frame size made right."""
    chunks: list[bytes | FileRegion] = []
    start = 0
    size = len(frame) - 4
    for marker, region in regions:
        at = frame.find(marker, start)
        if at < 0:  # not in the answer (a throttled Fetch answers without records)
            region.close()
            continue
        old_prefix = 1 if flexible else 4  # a compact length of 17 is one byte; a legacy one is an int32
        prefix = _uvarint(region.length + 1) if flexible else _I32.pack(region.length)
        chunks.append(frame[start : at - old_prefix] + prefix)
        chunks.append(region)
        size += len(prefix) - old_prefix + region.length - _MARKER
        start = at + _MARKER
    chunks.append(frame[start:])
    chunks[0] = _I32.pack(size) + chunks[0][4:]
    return chunks


def _uvarint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


async def write_chunks(writer: asyncio.StreamWriter, chunks: list) -> None:
    """Write an answer made of bytes and regions, in order; the regions are closed once sent (or not)."""
    loop = asyncio.get_running_loop()
    try:
        for chunk in chunks:
            if not isinstance(chunk, FileRegion):
                if chunk:
                    writer.write(chunk)
                continue
            if not chunk.length:
                continue
            with open(chunk.fd, "rb", buffering=0, closefd=False) as file:
                sent = await loop.sendfile(writer.transport, file, chunk.offset, chunk.length, fallback=True)
            if sent != chunk.length:  # the frame announced more: the stream cannot be continued
                raise ConnectionError(f"segment region sent {sent} of {chunk.length} bytes")
            chunk.close()
        await writer.drain()
    finally:
        for chunk in chunks:
            if isinstance(chunk, FileRegion):
                chunk.close()

"""Wire framing around kio's generated codecs: request headers, response frames, building responses.

kio gives one dataclass per (API, version); handlers build responses through `Reply`, which drops the fields a
version does not have, so one handler serves every version of its API.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import typing
from dataclasses import dataclass
from functools import lru_cache
from types import ModuleType
from typing import Any

from kio.index import load_payload_module
from kio.serial import entity_reader, entity_writer
from kio.static.constants import EntityType

from .wire_check import check_arrays

_HEADER = struct.Struct(">hhih")
_I32 = struct.Struct(">i")
ZERO_MS = datetime.timedelta(0)


class MalformedRequest(ValueError):
    """The frame cannot be a Kafka request; the connection is closed with this reason in the log."""


@dataclass(slots=True)
class RequestHeader:
    api_key: int
    api_version: int
    correlation_id: int
    client_id: str | None


def _uvarint(buf: bytes, pos: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= len(buf):
            raise MalformedRequest("truncated varint in request header")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 28:
            raise MalformedRequest("varint too long in request header")


def parse_header(frame: bytes) -> tuple[RequestHeader, int]:
    """The v1 part of the request header (common to all versions) and where the rest starts."""
    if len(frame) < _HEADER.size:
        raise MalformedRequest(f"frame of {len(frame)} bytes is shorter than a request header")
    key, version, corr, n = _HEADER.unpack_from(frame)
    pos = _HEADER.size
    client_id = None
    if n >= 0:
        if pos + n > len(frame):
            raise MalformedRequest("client id runs past the frame")
        client_id = frame[pos : pos + n].decode("utf-8", "replace")
        pos += n
    return RequestHeader(key, version, corr, client_id), pos


def skip_tagged_fields(frame: bytes, pos: int) -> int:
    count, pos = _uvarint(frame, pos)
    for _ in range(count):
        _tag, pos = _uvarint(frame, pos)
        size, pos = _uvarint(frame, pos)
        pos += size
    if pos > len(frame):
        raise MalformedRequest("tagged fields run past the frame")
    return pos


class Codec:
    """Request reader and response writer for one (API key, version)."""

    def __init__(self, api_key: int, version: int) -> None:
        self.request_module = load_payload_module(api_key, version, EntityType.request)
        self.response_module = load_payload_module(api_key, version, EntityType.response)
        self.request_type = _payload_class(self.request_module, EntityType.request)
        self.response_type = _payload_class(self.response_module, EntityType.response)
        self.flexible = bool(self.request_type.__flexible__)
        self.read = entity_reader(self.request_type)
        self.write = entity_writer(self.response_type)
        # ApiVersions answers with header v0 even in flexible versions, so that any client can read it.
        self.response_tagged = self.flexible and api_key != 18

    def decode(self, frame: bytes, pos: int) -> Any:
        if self.flexible:
            pos = skip_tagged_fields(frame, pos)
        check_arrays(self.request_type, frame, pos)  # before kio sizes storage from a hostile length
        req, _size = self.read(frame, pos)
        _check_nulls(req)
        return req

    def encode(self, correlation_id: int, response: Any) -> bytes:
        buf = io.BytesIO()
        buf.write(b"\0\0\0\0")
        buf.write(_I32.pack(correlation_id))
        if self.response_tagged:
            buf.write(b"\0")
        self.write(buf, response)
        out = buf.getbuffer()
        _I32.pack_into(out, 0, len(out) - 4)
        return bytes(out)


def _check_nulls(entity: Any) -> None:
    """kio reads a null where the schema forbids one (a string, array or struct of length -1); Kafka refuses such
    a request as malformed ("non-nullable field ... was serialized as null"), and so do we, before a handler meets
    the None."""
    for name, nullable, nested, is_array in _nullable_fields(type(entity)):
        value = getattr(entity, name)
        if value is None:
            if nullable:
                continue
            raise MalformedRequest(f"non-nullable field {name} was serialized as null")
        if nested:
            for item in value if is_array else (value,):
                _check_nulls(item)


@lru_cache(maxsize=None)
def _nullable_fields(cls: type) -> tuple[tuple[str, bool, bool, bool], ...]:
    """(field, may be null, holds entities, is an array) for the fields of `cls` that can be null on the wire
    (strings, bytes, records, arrays, structs)."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        nullable = type(None) in args
        if nullable:
            hint = next(a for a in args if a is not type(None))
        is_array = typing.get_origin(hint) is tuple
        inner = typing.get_args(hint)[0] if is_array else hint
        nested = dataclasses.is_dataclass(inner)
        if is_array or nested or f.metadata.get("kafka_type") in ("string", "bytes", "records"):
            if not (nullable and not nested):
                out.append((f.name, nullable, nested, is_array))
    return tuple(out)


def _payload_class(module: ModuleType, kind: EntityType) -> type:
    for value in vars(module).values():
        if isinstance(value, type) and getattr(value, "__type__", None) is kind and value.__module__ == module.__name__:
            return value
    raise LookupError(f"no {kind.name} class in {module.__name__}")


@lru_cache(maxsize=None)
def codec(api_key: int, version: int) -> Codec:
    return Codec(api_key, version)


@lru_cache(maxsize=None)
def _field_names(cls: type) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls))


def build(cls: type, kwargs: dict[str, Any]) -> Any:
    names = _field_names(cls)
    return cls(**{k: v for k, v in kwargs.items() if k in names})


class Reply:
    """Builds response entities of one version: `reply("PartitionData", index=0, ...)`; unknown fields drop."""

    __slots__ = ("module", "version")

    def __init__(self, module: ModuleType, version: int) -> None:
        self.module = module
        self.version = version

    def __call__(self, entity: str, /, **kwargs: Any) -> Any:
        cls = getattr(self.module, entity, None)
        # An entity this version lacks can only feed a field this version lacks, which build() drops.
        return None if cls is None else build(cls, kwargs)

    def has(self, name: str, field: str) -> bool:
        return field in _field_names(getattr(self.module, name))

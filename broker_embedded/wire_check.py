"""A walk over a request's bytes, by its kio schema, before kio decodes it: no array may claim more elements than
there are bytes left.

kio's native reader sizes an array's storage from the length on the wire. A request of twenty bytes claiming an
array of two billion structs made it ask for 90 GB, and a failed allocation in native code aborts the whole
process. Kafka's generated readers refuse such a length ("Tried to allocate a collection of size N, but there are
only M bytes remaining") and close the connection; this walk does the same before kio sees the frame.

It checks only that rule. Anything else that does not parse (a string running past the frame, a bad varint) stops
the walk quietly: kio then finds it and raises its own error.
"""

from __future__ import annotations

import dataclasses
import struct
import typing
from functools import lru_cache

_FIXED = {"int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint16": 2, "float64": 8, "bool": 1, "uuid": 16,
          "timedelta_i32": 4, "timedelta_i64": 8, "datetime_i64": 8, "error_code": 2}
_I16 = struct.Struct(">h")
_I32 = struct.Struct(">i")

# Field kinds.
_PRIM, _PRIMS, _ENTITY, _ENTITIES = range(4)


class ArrayTooLong(ValueError):
    """An array's length on the wire is larger than what is left of the frame."""


class _Stop(Exception):
    """The bytes do not parse; kio will say why."""


def check_arrays(cls: type, frame: bytes, pos: int, end: int | None = None) -> None:
    """Raise ArrayTooLong if some array in the entity `cls` at `pos` claims more elements than bytes remain."""
    try:
        _entity(cls, frame, pos, len(frame) if end is None else end)
    except _Stop:
        pass


def _uvarint(buf: bytes, pos: int, end: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        if pos >= end or shift > 28:
            raise _Stop
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


@lru_cache(maxsize=None)
def _layout(cls: type) -> tuple[tuple, dict[int, tuple]]:
    """(positional fields, tagged fields by tag); each field is (kind, kafka type, nullable, entity class)."""
    hints = typing.get_type_hints(cls)
    positional = []
    tagged = {}
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        args = typing.get_args(hint)
        nullable = type(None) in args
        if nullable:
            hint = next(a for a in args if a is not type(None))
        if typing.get_origin(hint) is tuple:
            inner = typing.get_args(hint)[0]
            kind = _ENTITIES if dataclasses.is_dataclass(inner) else _PRIMS
        else:
            inner = hint
            kind = _ENTITY if dataclasses.is_dataclass(inner) else _PRIM
        tag = f.metadata.get("tag")
        field = (kind, f.metadata.get("kafka_type"), nullable and tag is None, inner)
        if tag is None:
            positional.append(field)
        else:
            tagged[tag] = field
    return tuple(positional), tagged


def _entity(cls: type, buf: bytes, pos: int, end: int) -> int:
    flexible = bool(cls.__flexible__)
    positional, tagged = _layout(cls)
    for field in positional:
        pos = _field(field, flexible, buf, pos, end)
    if flexible:
        count, pos = _uvarint(buf, pos, end)
        for _ in range(count):
            tag, pos = _uvarint(buf, pos, end)
            size, pos = _uvarint(buf, pos, end)
            if pos + size > end:
                raise _Stop
            field = tagged.get(tag)
            if field is not None:
                _field(field, flexible, buf, pos, pos + size)
            pos += size
    return pos


def _field(field: tuple, flexible: bool, buf: bytes, pos: int, end: int) -> int:
    kind, kafka_type, nullable, inner = field
    if kind in (_PRIMS, _ENTITIES):
        if flexible:
            n, pos = _uvarint(buf, pos, end)
            count = n - 1
        else:
            if pos + 4 > end:
                raise _Stop
            count = _I32.unpack_from(buf, pos)[0]
            pos += 4
        if count < 0:
            return pos
        if count > end - pos:
            raise ArrayTooLong(f"Tried to allocate a collection of size {count}, but there are only {end - pos} "
                               f"bytes remaining.")
        for _ in range(count):
            pos = _entity(inner, buf, pos, end) if kind == _ENTITIES else _primitive(kafka_type, flexible, buf, pos,
                                                                                     end)
        return pos
    if kind == _ENTITY:
        if nullable:
            if pos >= end:
                raise _Stop
            marker = buf[pos]
            pos += 1
            if marker == 0xFF:
                return pos
        return _entity(inner, buf, pos, end)
    return _primitive(kafka_type, flexible, buf, pos, end)


def _primitive(kafka_type: str, flexible: bool, buf: bytes, pos: int, end: int) -> int:
    size = _FIXED.get(kafka_type)
    if size is None:
        if kafka_type not in ("string", "bytes", "records"):
            raise _Stop  # a type this walk does not know: leave the frame to kio
        if flexible:
            n, pos = _uvarint(buf, pos, end)
            size = max(n - 1, 0)
        elif kafka_type == "string":
            if pos + 2 > end:
                raise _Stop
            size = max(_I16.unpack_from(buf, pos)[0], 0)
            pos += 2
        else:
            if pos + 4 > end:
                raise _Stop
            size = max(_I32.unpack_from(buf, pos)[0], 0)
            pos += 4
    if pos + size > end:
        raise _Stop
    return pos + size

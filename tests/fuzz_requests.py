"""Hypothesis strategies for Kafka requests: valid requests of every API the broker serves, built from the same kio
schemas the broker decodes with, and byte-level mutations of them.

Values lean towards what makes a broker do work (names of topics, groups and transactional ids that exist or will,
small partition indexes, short timeouts, real record batches) with the whole range of each type mixed in. Names
come from pools the fuzz test owns, so that no generated request can touch the data it checks afterwards.
"""

from __future__ import annotations

import dataclasses
import datetime
import io
import struct
import typing
from functools import lru_cache

from hypothesis import strategies as st
from kio.index import load_payload_module
from kio.serial import entity_writer
from kio.static.constants import EntityType

from broker_embedded.log.records import build_batch
from wire import payload_class

TOPICS = ("fuzz-a", "fuzz-b", "fuzz-c", "__consumer_offsets", "__transaction_state")
GROUPS = ("fuzz-g1", "fuzz-g2", "")
TXN_IDS = ("fuzz-t1", "fuzz-t2")
# Settings that would slow or stop everyone else (quotas) are left out: a throttled probe would be right, not a bug.
EXCLUDED_KEYS = {49}

_INT_RANGES = {"int8": 7, "int16": 15, "int32": 31, "int64": 63}


def _int(bits: int, small: st.SearchStrategy | None = None) -> st.SearchStrategy:
    full = st.integers(-(1 << bits), (1 << bits) - 1)
    return st.one_of(small if small is not None else st.integers(-2, 8), full)


def _name_like(name: str) -> str:
    return name.rsplit("_", 1)[-1] if name.endswith(("_id", "_ids")) else name


def _string_for(field: str) -> st.SearchStrategy:
    text = st.text(max_size=16)
    if "topic" in field or field in ("name", "names", "resource_name") or field.endswith("topic_names"):
        return st.one_of(st.sampled_from(TOPICS), st.sampled_from(TOPICS), text)
    if "group" in field:
        return st.one_of(st.sampled_from(GROUPS), text)
    if "transactional" in field:
        return st.one_of(st.sampled_from(TXN_IDS), text)
    if "member" in field or "instance" in field:
        return st.one_of(st.just(""), st.sampled_from(("m1", "m2")), text)
    if "protocol" in field:
        return st.one_of(st.sampled_from(("consumer", "range", "roundrobin")), text)
    if field in ("config_name", "key") or field.endswith("config_names"):
        return st.one_of(st.sampled_from(("retention.ms", "cleanup.policy", "segment.bytes", "max.message.bytes")),
                         text)
    if field == "value":
        return st.one_of(st.sampled_from(("1000", "compact", "delete", "-1", "1048576")), text)
    return text


def _int_for(field: str, kafka_type: str) -> st.SearchStrategy:
    bits = _INT_RANGES[kafka_type]
    if "partition" in field or field in ("index", "count", "num_partitions", "replication_factor"):
        return _int(bits, st.integers(-2, 4))
    if field == "acks":
        return _int(bits, st.sampled_from((-1, 0, 1)))
    if field in ("resource_type",):
        return _int(bits, st.sampled_from((2, 2, 2, 32)))  # topics (and groups): broker configs stay as they are
    if "offset" in field:
        return _int(bits, st.integers(-3, 300))
    if "epoch" in field or "sequence" in field or "generation" in field:
        return _int(bits, st.integers(-1, 3))
    if "producer_id" in field:
        return _int(bits, st.integers(-1, 2000))
    if "timestamp" in field:
        return _int(bits, st.integers(-3, 2_000_000_000_000))
    if "bytes" in field:
        return _int(bits, st.integers(0, 1 << 20))
    return _int(bits)


def _records() -> st.SearchStrategy:
    record = st.tuples(st.one_of(st.none(), st.binary(max_size=12)), st.one_of(st.none(), st.binary(max_size=64)),
                       st.just(None), st.one_of(st.none(), st.integers(0, 2_000_000_000_000)))
    batch = st.builds(
        lambda recs, codec, pid, seq: build_batch(recs, attributes=codec, producer_id=pid,
                                                  producer_epoch=0 if pid >= 0 else -1,
                                                  base_sequence=seq if pid >= 0 else -1),
        st.lists(record, min_size=1, max_size=5), st.sampled_from((0, 0, 1, 2, 3, 4)),
        st.one_of(st.just(-1), st.integers(0, 5)), st.integers(0, 3))
    return st.one_of(batch, batch, st.none(), st.binary(max_size=80))


def _timedelta(kafka_type: str, field: str) -> st.SearchStrategy:
    # Short waits: a long poll or a long join would be the broker doing as asked, not a stuck connection.
    top = 300 if kafka_type == "timedelta_i32" else 86_400_000
    return st.integers(0, top).map(lambda ms: datetime.timedelta(milliseconds=ms))


def _field(name: str, hint, kafka_type: str | None) -> st.SearchStrategy:
    args = typing.get_args(hint)
    if type(None) in args:  # X | None
        inner = next(a for a in args if a is not type(None))
        return st.one_of(st.none(), _field(name, inner, kafka_type))
    if typing.get_origin(hint) is tuple:
        inner = args[0]
        if dataclasses.is_dataclass(inner):
            return st.lists(entity(inner), max_size=3).map(tuple)
        return st.lists(_field(name, inner, kafka_type), max_size=4).map(tuple)
    if dataclasses.is_dataclass(hint):
        return entity(hint)
    if kafka_type in _INT_RANGES:
        return _int_for(name, kafka_type)
    if kafka_type == "uint16":
        return st.integers(0, 65535)
    if kafka_type == "float64":
        return st.floats(allow_nan=True, allow_infinity=True)
    if kafka_type == "bool":
        return st.booleans()
    if kafka_type == "string":
        return _string_for(name)
    if kafka_type == "bytes":
        return st.binary(max_size=64)
    if kafka_type == "records":
        return _records()
    if kafka_type == "uuid":
        return st.uuids()
    if kafka_type in ("timedelta_i32", "timedelta_i64"):
        return _timedelta(kafka_type, name)
    if kafka_type == "datetime_i64":
        return st.datetimes(min_value=datetime.datetime(1971, 1, 1), max_value=datetime.datetime(2100, 1, 1),
                            timezones=st.just(datetime.timezone.utc))
    raise LookupError(f"no strategy for field {name} ({hint}, {kafka_type})")


@lru_cache(maxsize=None)
def entity(cls: type) -> st.SearchStrategy:
    hints = typing.get_type_hints(cls)
    fields = {f.name: _field(f.name, hints[f.name], f.metadata.get("kafka_type")) for f in dataclasses.fields(cls)}
    return st.fixed_dictionaries(fields).map(lambda kw: cls(**kw))


@lru_cache(maxsize=None)
def request_class(key: int, version: int) -> type | None:
    try:
        return payload_class(load_payload_module(key, version, EntityType.request), EntityType.request)
    except Exception:  # Produce v0-2 have no kio schema
        return None


def encode(key: int, version: int, body, corr: int) -> bytes:
    """A whole request frame: size, header (v1, or v2 with tagged fields for flexible versions), body."""
    cls = type(body)
    buf = io.BytesIO()
    entity_writer(cls)(buf, body)
    header = struct.pack(">hhih", key, version, corr, 4) + b"fuzz" + (b"\0" if cls.__flexible__ else b"")
    return struct.pack(">i", len(header) + buf.tell()) + header + buf.getvalue()


@dataclasses.dataclass
class Request:
    key: int
    version: int
    frame: bytes
    mutated: str | None  # how the bytes were changed, None for a valid request

    def __repr__(self) -> str:
        return f"Request(key={self.key}, v={self.version}, mutated={self.mutated}, frame={self.frame[:200]!r})"


def _mutate(frame: bytes, draw) -> tuple[bytes, str | None]:
    how = draw(st.sampled_from(("none", "none", "none", "flip", "truncate", "insert", "append", "version", "key",
                                "length", "header")))
    body = bytearray(frame[4:])
    if how == "none":
        return frame, None
    if how == "flip":
        for _ in range(draw(st.integers(1, 6))):
            i = draw(st.integers(0, len(body) - 1))
            body[i] = draw(st.integers(0, 255))
    elif how == "truncate":
        body = body[: draw(st.integers(0, max(0, len(body) - 1)))]
    elif how == "insert":
        i = draw(st.integers(0, len(body)))
        body[i:i] = draw(st.binary(min_size=1, max_size=16))
    elif how == "append":
        body += draw(st.binary(min_size=1, max_size=32))
    elif how == "version":
        struct.pack_into(">h", body, 2, draw(st.integers(-(1 << 15), (1 << 15) - 1)))
    elif how == "key":
        key = draw(st.integers(-(1 << 15), (1 << 15) - 1).filter(lambda k: k not in EXCLUDED_KEYS))
        struct.pack_into(">h", body, 0, key)
    elif how == "header":  # the client id's length
        struct.pack_into(">h", body, 8, draw(st.integers(-(1 << 15), (1 << 15) - 1)))
    elif how == "length":  # the frame claims another size than it has; the test then ends its side
        return struct.pack(">i", draw(st.integers(-(1 << 31), (1 << 31) - 1))) + bytes(body), how
    return struct.pack(">i", len(body)) + bytes(body), how


def requests(apis: list[tuple[int, int, int]]) -> st.SearchStrategy:
    """One request of any served (key, version), valid or mutated."""

    @st.composite
    def build(draw):
        key, lo, hi = draw(st.sampled_from(apis))
        version = draw(st.integers(lo, hi))
        cls = request_class(key, version)
        if cls is None:
            return Request(key, version, struct.pack(">i", 10) + struct.pack(">hhih", key, version, 0, -1), "raw")
        body = draw(entity(cls))
        try:
            frame = encode(key, version, body, 0)
        except Exception:  # a value kio cannot write for this version (e.g. a string too long): send garbage
            frame = struct.pack(">i", 10) + struct.pack(">hhih", key, version, 0, -1)
            return Request(key, version, frame, "unencodable")
        frame, how = _mutate(frame, draw)
        return Request(key, version, frame, how)

    return build()

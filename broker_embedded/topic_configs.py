"""Topic configs as Apache Kafka 4.1 defines them: names, types, defaults, valid ranges and the messages Kafka
gives when a value is refused (CreateTopics, AlterConfigs, IncrementalAlterConfigs and broker-wide defaults).

Values are parsed the way Kafka's ConfigDef parses them (trimmed; INT is 32-bit, LONG 64-bit; booleans in any
case), so a value Kafka accepts is accepted here and one it refuses is refused with the same words.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable

# DescribeConfigs config types.
BOOLEAN, STRING, INT, SHORT, LONG, DOUBLE, LIST = 1, 2, 3, 4, 5, 6, 7
TYPE_NAMES = {BOOLEAN: "BOOLEAN", STRING: "STRING", INT: "INT", SHORT: "SHORT", LONG: "LONG", DOUBLE: "DOUBLE",
              LIST: "LIST"}

I32_MIN, I32_MAX = -(2**31), 2**31 - 1
I64_MIN, I64_MAX = -(2**63), 2**63 - 1

TIERED_STORAGE_DISABLED = ("Tiered Storage functionality is disabled in the broker. "
                           "Topic cannot be configured with remote log storage.")


class InvalidConfig(ValueError):
    """A config name or value Kafka would refuse; the message names both."""


_INTEGER = re.compile(r"[+-]?[0-9]+\Z")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?[dDfF]?\Z")


def parse(ctype: int, value: str) -> Any:
    """The value as Kafka's ConfigDef parses it; raises ValueError with Kafka's reason."""
    v = value.strip()
    if ctype == BOOLEAN:
        if v.lower() in ("true", "false"):
            return v.lower() == "true"
        raise ValueError("Expected value to be either true or false")
    if ctype in (INT, LONG, SHORT):
        low, high, name = {INT: (I32_MIN, I32_MAX, "INT"), LONG: (I64_MIN, I64_MAX, "LONG"),
                           SHORT: (-(2**15), 2**15 - 1, "SHORT")}[ctype]
        if _INTEGER.match(v) and low <= int(v) <= high:
            return int(v)
        raise ValueError(f"Not a number of type {name}")
    if ctype == DOUBLE:
        if _DECIMAL.match(v):
            return float(v.rstrip("dDfF"))
        raise ValueError("Not a number of type DOUBLE")
    if ctype == LIST:
        return [] if not v else [p.strip() for p in v.split(",")]
    return v


def _shown(value: Any) -> str:
    """A parsed value as Java prints it in a ConfigException."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(value) + "]"
    return str(value)


def at_least(low: int | float) -> Callable[[Any], str | None]:
    return lambda n: None if n >= low else f"Value must be at least {low}"


def between(low: int, high: int) -> Callable[[Any], str | None]:
    def check(n):
        if n < low:
            return f"Value must be at least {low}"
        if n > high:
            return f"Value must be no more than {high}"
        return None

    return check


def one_of(*choices: str) -> Callable[[Any], str | None]:
    return lambda v: None if v in choices else "String must be one of: " + ", ".join(choices)


def _gzip_level(n: int) -> str | None:
    return None if n == -1 or 1 <= n <= 9 else "Value must be between 1 and 9 or equal to -1"


def _throttled_replicas(name: str) -> Callable[[list[str]], str | None]:
    def check(items: list[str]) -> str | None:
        if "".join(items) == "*" or all(re.fullmatch(r"([0-9]+:[0-9]+)?", s.strip()) for s in items):
            return None
        return (f"{name} must be the literal '*' or a list of replicas in the following format: "
                "[partitionId]:[brokerId],[partitionId]:[brokerId],...")

    return check


@dataclass(frozen=True, slots=True)
class ConfigDef:
    """One topic config: its type, Kafka's default (as DescribeConfigs prints it) and its validator, which returns
    Kafka's reason for refusing a parsed value, or None. `synonym` is the broker config that sets its default."""

    name: str
    type: int
    default: str
    check: Callable[[Any], str | None] | None = None
    synonym: str | None = None
    each: bool = False  # the validator judges a LIST element by element (Kafka shows the bad element)

    def validate(self, value: str, name: str | None = None) -> str:
        """`value` if Kafka accepts it for this config; raises InvalidConfig with Kafka's message, naming the
        config `name` (a broker synonym) or its own name."""
        name = name or self.name
        try:
            parsed = parse(self.type, value)
        except ValueError as exc:
            raise InvalidConfig(f"Invalid value {value} for configuration {name}: {exc}") from None
        if self.check is not None:
            for item in (parsed if self.each else [parsed]):
                reason = self.check(item)
                if reason is not None:
                    raise InvalidConfig(f"Invalid value {_shown(item)} for configuration {name}: {reason}")
        return value


NEVER = str(I64_MAX)
_COMPRESSION = ("uncompressed", "zstd", "lz4", "snappy", "gzip", "producer")

TOPIC_CONFIGS: dict[str, ConfigDef] = {
    d.name: d
    for d in [
        ConfigDef("cleanup.policy", LIST, "delete", one_of("compact", "delete"), "log.cleanup.policy", each=True),
        ConfigDef("compression.gzip.level", INT, "-1", _gzip_level, "compression.gzip.level"),
        ConfigDef("compression.lz4.level", INT, "9", between(1, 17), "compression.lz4.level"),
        ConfigDef("compression.type", STRING, "producer", one_of(*_COMPRESSION), "compression.type"),
        ConfigDef("compression.zstd.level", INT, "3", between(-131072, 22), "compression.zstd.level"),
        ConfigDef("delete.retention.ms", LONG, "86400000", at_least(0), "log.cleaner.delete.retention.ms"),
        ConfigDef("file.delete.delay.ms", LONG, "60000", at_least(0), "log.segment.delete.delay.ms"),
        ConfigDef("flush.messages", LONG, NEVER, at_least(1), "log.flush.interval.messages"),
        ConfigDef("flush.ms", LONG, NEVER, at_least(0), "log.flush.interval.ms"),
        ConfigDef("follower.replication.throttled.replicas", LIST, "",
                  _throttled_replicas("follower.replication.throttled.replicas")),
        ConfigDef("index.interval.bytes", INT, "4096", at_least(0), "log.index.interval.bytes"),
        ConfigDef("leader.replication.throttled.replicas", LIST, "",
                  _throttled_replicas("leader.replication.throttled.replicas")),
        ConfigDef("local.retention.bytes", LONG, "-2", at_least(-2), "log.local.retention.bytes"),
        ConfigDef("local.retention.ms", LONG, "-2", at_least(-2), "log.local.retention.ms"),
        ConfigDef("max.compaction.lag.ms", LONG, NEVER, at_least(1), "log.cleaner.max.compaction.lag.ms"),
        ConfigDef("max.message.bytes", INT, "1048588", at_least(0), "message.max.bytes"),
        ConfigDef("message.timestamp.after.max.ms", LONG, "3600000", at_least(0),
                  "log.message.timestamp.after.max.ms"),
        ConfigDef("message.timestamp.before.max.ms", LONG, NEVER, at_least(0),
                  "log.message.timestamp.before.max.ms"),
        ConfigDef("message.timestamp.type", STRING, "CreateTime", one_of("CreateTime", "LogAppendTime"),
                  "log.message.timestamp.type"),
        ConfigDef("min.cleanable.dirty.ratio", DOUBLE, "0.5", between(0, 1), "log.cleaner.min.cleanable.ratio"),
        ConfigDef("min.compaction.lag.ms", LONG, "0", at_least(0), "log.cleaner.min.compaction.lag.ms"),
        ConfigDef("min.insync.replicas", INT, "1", at_least(1), "min.insync.replicas"),
        ConfigDef("preallocate", BOOLEAN, "false", None, "log.preallocate"),
        ConfigDef("remote.log.copy.disable", BOOLEAN, "false"),
        ConfigDef("remote.log.delete.on.disable", BOOLEAN, "false"),
        ConfigDef("remote.storage.enable", BOOLEAN, "false"),
        ConfigDef("retention.bytes", LONG, "-1", None, "log.retention.bytes"),
        ConfigDef("retention.ms", LONG, "604800000", at_least(-1), "log.retention.ms"),
        ConfigDef("segment.bytes", INT, "1073741824", at_least(1024 * 1024), "log.segment.bytes"),
        ConfigDef("segment.index.bytes", INT, "10485760", at_least(4), "log.index.size.max.bytes"),
        ConfigDef("segment.jitter.ms", LONG, "0", at_least(0), "log.roll.jitter.ms"),
        ConfigDef("segment.ms", LONG, "604800000", at_least(1), "log.roll.ms"),
        ConfigDef("unclean.leader.election.enable", BOOLEAN, "false", None, "unclean.leader.election.enable"),
    ]
}

# Accepted and applied, but not listed by DescribeConfigs unless set (Kafka's tests use it for small segments).
INTERNAL_TOPIC_CONFIGS: dict[str, ConfigDef] = {
    "internal.segment.bytes": ConfigDef("internal.segment.bytes", INT, ""),
}


def config_def(name: str) -> ConfigDef | None:
    return TOPIC_CONFIGS.get(name) or INTERNAL_TOPIC_CONFIGS.get(name)


def validate_topic_configs(configs: dict[str, str | None], defaults: dict[str, str] | None = None,
                           allow_null: bool = False) -> dict[str, str]:
    """Check names and values as Kafka does; return the non-null overrides. `defaults` (broker-wide topic
    defaults) take part in the checks across configs. Raises InvalidConfig naming the bad entry."""
    out: dict[str, str] = {}
    for name, value in configs.items():
        d = config_def(name)
        if d is None:
            raise InvalidConfig(f"Unknown topic config name: {name}")
        if value is None:
            if allow_null:
                continue
            raise InvalidConfig(f"Null value not supported for topic configs: {name}")
        out[name] = d.validate(value)
    merged = {**(defaults or {}), **out}

    def get(name: str) -> Any:
        d = TOPIC_CONFIGS[name]
        return parse(d.type, merged.get(name, d.default))

    if get("remote.storage.enable"):
        raise InvalidConfig(TIERED_STORAGE_DISABLED)
    low, high = get("min.compaction.lag.ms"), get("max.compaction.lag.ms")
    if low > high:
        raise InvalidConfig(f"conflict topic config setting min.compaction.lag.ms ({low}) > "
                            f"max.compaction.lag.ms ({high})")
    return out


def topic_value(name: str, overrides: dict[str, str], defaults: dict[str, str]) -> str:
    """A topic config's effective value: its override, else the broker-wide default, else Kafka's."""
    return overrides.get(name, defaults.get(name, TOPIC_CONFIGS[name].default))

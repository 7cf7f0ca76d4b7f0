"""Configs changed while the broker runs, kept as Kafka keeps them: broker configs for this broker (resource name
"<node id>") and as the cluster-wide default (resource name ""), and group configs (per-group settings of the
consumer, share and streams group protocols). They are durable in `<data dir>/dynamic-configs.json` (replaced
atomically) and laid over the static settings at start, with Kafka's precedence: this broker's, then the
cluster default, then the static setting, then Kafka's default.

Broker configs that Kafka changes dynamically and this node can apply: the broker-wide defaults of topic configs
(log.segment.bytes, log.retention.ms, message.max.bytes, ... : every topic without an override of its own follows
them at once) and the cleaner's pace (log.cleaner.backoff.ms, log.cleaner.io.max.bytes.per.second). Kafka's thread
pool sizes (num.io.threads, log.cleaner.threads, ...) are accepted and shown but change nothing here. Settings this
node cannot change while it runs are refused as Kafka refuses its static ones; listeners too, which Kafka can
reconfigure per broker (a difference, see docs/broker.md).
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

from kio.schema.errors import ErrorCode

from .config import BrokerConfig
from .errors import KafkaError
from .log.durable import write_atomically
from .topic_configs import (DOUBLE, INT, LONG, STRING, TOPIC_CONFIGS, ConfigDef, InvalidConfig, at_least, one_of,
                            parse)

FILE = "dynamic-configs.json"

# Broker config name -> topic config whose broker-wide default it sets (log.segment.bytes -> segment.bytes).
TOPIC_DEFAULT_OF = {d.synonym: name for name, d in TOPIC_CONFIGS.items() if d.synonym}

# Dynamic broker configs applied to BrokerConfig attributes (the cleaner reads them before every pass).
SETTINGS: dict[str, tuple[str, ConfigDef]] = {
    "log.cleaner.backoff.ms": ("log_cleaner_backoff_ms", ConfigDef("log.cleaner.backoff.ms", LONG, "15000",
                                                                   at_least(0))),
    "log.cleaner.io.max.bytes.per.second": ("log_cleaner_io_max_bytes_per_second",
                                            ConfigDef("log.cleaner.io.max.bytes.per.second", DOUBLE,
                                                      "1.7976931348623157E308")),
}

# Dynamic in Kafka, about thread pools and buffers this node does not have: accepted and shown, no effect.
NO_EFFECT: dict[str, ConfigDef] = {d.name: d for d in [
    ConfigDef("background.threads", INT, "10", at_least(1)),
    ConfigDef("log.cleaner.dedupe.buffer.size", LONG, "134217728"),
    ConfigDef("log.cleaner.io.buffer.load.factor", DOUBLE, "0.9"),
    ConfigDef("log.cleaner.io.buffer.size", INT, "524288", at_least(0)),
    ConfigDef("log.cleaner.threads", INT, "1", at_least(0)),
    ConfigDef("num.io.threads", INT, "8", at_least(1)),
    ConfigDef("num.network.threads", INT, "3", at_least(1)),
    ConfigDef("num.recovery.threads.per.data.dir", INT, "2", at_least(1)),
    ConfigDef("num.replica.fetchers", INT, "1"),
]}

# Kafka 4.1's defaults of the static broker settings this node describes (a setting equal to its default is shown
# with source DEFAULT_CONFIG, as Kafka shows what server.properties does not set).
STATIC_DEFAULTS = {
    "auto.create.topics.enable": "true", "broker.id": "-1", "num.partitions": "1", "authorizer.class.name": "",
    "connections.max.idle.ms": "600000", "group.consumer.heartbeat.interval.ms": "5000",
    "group.consumer.max.size": "2147483647", "group.consumer.session.timeout.ms": "45000",
    "group.initial.rebalance.delay.ms": "3000", "group.max.session.timeout.ms": "1800000",
    "group.max.size": "2147483647", "group.min.session.timeout.ms": "6000", "log.cleaner.enable": "true",
    "log.retention.check.interval.ms": "300000", "max.connections": "2147483647",
    "max.connections.per.ip": "2147483647", "max.connections.per.ip.overrides": "",
    "offset.metadata.max.bytes": "4096", "offsets.retention.check.interval.ms": "600000",
    "offsets.retention.minutes": "10080", "quota.window.num": "11", "quota.window.size.seconds": "1",
    "socket.request.max.bytes": "104857600",
}

# Kafka reconfigures these per broker only (never as a cluster default).
PER_BROKER_ONLY = {"listeners", "advertised.listeners", "listener.security.protocol.map"}


def dynamic_def(name: str) -> ConfigDef | None:
    """The definition of a broker config this node changes dynamically, or None."""
    if name in TOPIC_DEFAULT_OF:
        return TOPIC_CONFIGS[TOPIC_DEFAULT_OF[name]]
    if name in SETTINGS:
        return SETTINGS[name][1]
    return NO_EFFECT.get(name)


# ---- group configs ----------------------------------------------------------------------------------------


def _share_offset_reset(value: str) -> str | None:
    if value in ("earliest", "latest"):
        return None
    duration = r"[-+]?P(?:[-+]?[0-9]+D)?(?:T(?:[-+]?[0-9]+H)?(?:[-+]?[0-9]+M)?(?:[-+]?[0-9]+(?:[.,][0-9]{0,9})?S)?)?"
    if value.startswith("by_duration:") and re.fullmatch(duration, value[len("by_duration:"):], re.IGNORECASE) \
            and not value[len("by_duration:"):].upper().endswith(("P", "T")):
        return None
    return (f"Invalid value `{value}` for configuration share.auto.offset.reset. The value must be either "
            "'earliest', 'latest' or of the format 'by_duration:<PnDTnHnMn.nS>'.")


GROUP_CONFIGS: dict[str, ConfigDef] = {d.name: d for d in [
    ConfigDef("consumer.session.timeout.ms", INT, "45000", at_least(1)),
    ConfigDef("consumer.heartbeat.interval.ms", INT, "5000", at_least(1)),
    ConfigDef("share.session.timeout.ms", INT, "45000", at_least(1)),
    ConfigDef("share.heartbeat.interval.ms", INT, "5000", at_least(1)),
    ConfigDef("share.record.lock.duration.ms", INT, "30000", at_least(1000)),
    ConfigDef("share.auto.offset.reset", STRING, "latest", _share_offset_reset),
    ConfigDef("share.isolation.level", STRING, "read_uncommitted", one_of("read_committed", "read_uncommitted")),
    ConfigDef("streams.session.timeout.ms", INT, "45000", at_least(1)),
    ConfigDef("streams.heartbeat.interval.ms", INT, "5000", at_least(1)),
    ConfigDef("streams.num.standby.replicas", INT, "0", at_least(0)),
]}

# Group config -> the broker config that gives its default (when the broker has it).
_GROUP_DEFAULT_ATTR = {"consumer.session.timeout.ms": "group_consumer_session_timeout_ms",
                       "consumer.heartbeat.interval.ms": "group_consumer_heartbeat_interval_ms"}

# (group config, broker bound, its attribute, Kafka's default, "min" or "max"), in the order Kafka checks them.
_GROUP_BOUNDS = [
    ("consumer.heartbeat.interval.ms", "group.consumer.min.heartbeat.interval.ms", 5000, "min"),
    ("consumer.heartbeat.interval.ms", "group.consumer.max.heartbeat.interval.ms", 15000, "max"),
    ("consumer.session.timeout.ms", "group.consumer.min.session.timeout.ms", 45000, "min"),
    ("consumer.session.timeout.ms", "group.consumer.max.session.timeout.ms", 60000, "max"),
    ("share.heartbeat.interval.ms", "group.share.min.heartbeat.interval.ms", 5000, "min"),
    ("share.heartbeat.interval.ms", "group.share.max.heartbeat.interval.ms", 15000, "max"),
    ("share.session.timeout.ms", "group.share.min.session.timeout.ms", 45000, "min"),
    ("share.session.timeout.ms", "group.share.max.session.timeout.ms", 60000, "max"),
    ("share.record.lock.duration.ms", "group.share.min.record.lock.duration.ms", 15000, "min"),
    ("share.record.lock.duration.ms", "group.share.max.record.lock.duration.ms", 60000, "max"),
    ("streams.heartbeat.interval.ms", "group.streams.min.heartbeat.interval.ms", 5000, "min"),
    ("streams.heartbeat.interval.ms", "group.streams.max.heartbeat.interval.ms", 15000, "max"),
    ("streams.session.timeout.ms", "group.streams.min.session.timeout.ms", 45000, "min"),
    ("streams.session.timeout.ms", "group.streams.max.session.timeout.ms", 60000, "max"),
    ("streams.num.standby.replicas", "group.streams.max.standby.replicas", 2, "max"),
]


class DynamicConfigs:
    """This broker's dynamic broker configs, the cluster-wide defaults, and group configs; durable."""

    def __init__(self, config: BrokerConfig) -> None:
        self.config = config
        self.path = os.path.join(config.data_dir, FILE)
        self.static_topic_defaults = dict(config.topic_defaults)
        self.static_settings = {attr: getattr(config, attr) for attr, _d in SETTINGS.values()}
        self.broker: dict[str, str] = {}
        self.cluster: dict[str, str] = {}
        self.groups: dict[str, dict[str, str]] = {}

    def load(self) -> None:
        if os.path.exists(self.path):
            with open(self.path) as f:
                doc = json.load(f)
            self.broker, self.cluster, self.groups = doc.get("broker", {}), doc.get("cluster", {}), doc.get("groups", {})
        self._apply()

    def _save(self, broker: dict, cluster: dict, groups: dict) -> None:
        write_atomically(self.path, json.dumps({"broker": broker, "cluster": cluster, "groups": groups}))

    # ---- broker configs ----

    def layers(self, name: str) -> list[tuple[str, int]]:
        """(value, DescribeConfigs source) of every layer that sets the broker config `name`, highest first."""
        out = []
        if name in self.broker:
            out.append((self.broker[name], 2))  # DYNAMIC_BROKER_CONFIG
        if name in self.cluster:
            out.append((self.cluster[name], 3))  # DYNAMIC_DEFAULT_BROKER_CONFIG
        topic = TOPIC_DEFAULT_OF.get(name)
        if topic is not None and topic in self.static_topic_defaults:
            out.append((self.static_topic_defaults[topic], 4))  # STATIC_BROKER_CONFIG
        return out

    def check_broker_names(self, names: list[str], per_broker: bool, static: set[str]) -> None:
        """Refuse, as Kafka does, configs that cannot change while the broker runs (or not cluster-wide)."""
        if not per_broker:
            only = [n for n in names if n in PER_BROKER_ONLY]
            if only:
                raise KafkaError(ErrorCode.invalid_request, "Cannot update these configs at default cluster level, "
                                                            f"broker id must be specified: Set({', '.join(only)})")
        fixed = [n for n in names if dynamic_def(n) is None and (n in static or n in PER_BROKER_ONLY)]
        if fixed:
            raise KafkaError(ErrorCode.invalid_request,
                             f"Cannot update these configs dynamically: Set({', '.join(fixed)})")

    def set_broker(self, values: dict[str, str], per_broker: bool, validate_only: bool) -> None:
        """Replace this broker's (or the cluster default's) dynamic configs with `values` (checked)."""
        for name, value in values.items():
            d = dynamic_def(name)
            if d is not None:
                try:
                    d.validate(value, name)
                except InvalidConfig as exc:  # Kafka answers INVALID_REQUEST for broker resources
                    raise KafkaError(ErrorCode.invalid_request, str(exc)) from None
        if validate_only:
            return
        broker, cluster = (dict(values), self.cluster) if per_broker else (self.broker, dict(values))
        self._save(broker, cluster, self.groups)
        self.broker, self.cluster = broker, cluster
        self._apply()

    def _apply(self) -> None:
        """Lay the dynamic configs over the static ones (the caller re-applies topic log configs)."""
        merged = {**self.cluster, **self.broker}
        defaults = dict(self.static_topic_defaults)
        for name, value in merged.items():
            if name in TOPIC_DEFAULT_OF:
                defaults[TOPIC_DEFAULT_OF[name]] = value
        self.config.topic_defaults = defaults
        for name, (attr, d) in SETTINGS.items():
            value: Any = self.static_settings[attr]
            if name in merged:
                value = parse(d.type, merged[name])
            setattr(self.config, attr, value)

    # ---- group configs ----

    def group_default(self, name: str) -> str:
        attr = _GROUP_DEFAULT_ATTR.get(name)
        return str(getattr(self.config, attr)) if attr and hasattr(self.config, attr) else GROUP_CONFIGS[name].default

    def group_values(self, group: str) -> dict[str, tuple[str, bool]]:
        """Every group config of `group`: name -> (value, set for this group)."""
        own = self.groups.get(group, {})
        return {name: (own[name], True) if name in own else (self.group_default(name), False)
                for name in GROUP_CONFIGS}

    def set_group(self, group: str, values: dict[str, str], validate_only: bool) -> None:
        """Replace a group's configs with `values`, checked as Kafka's GroupConfig does (INVALID_CONFIG)."""
        for name in values:
            if name not in GROUP_CONFIGS:
                raise InvalidConfig(f"Unknown group config name: {name}")
        for name, value in values.items():
            GROUP_CONFIGS[name].validate(value)
        merged = {name: int(values[name]) if name in values else int(self.group_default(name))
                  for name, d in GROUP_CONFIGS.items() if d.type == INT}
        for name, bound, default, side in _GROUP_BOUNDS:
            limit = getattr(self.config, bound.replace(".", "_"), default)
            if side == "min" and merged[name] < limit:
                raise InvalidConfig(f"{name} must be greater than or equal to {bound}")
            if side == "max" and merged[name] > limit:
                raise InvalidConfig(f"{name} must be less than or equal to {bound}")
        for kind in ("consumer", "share", "streams"):
            if merged[f"{kind}.session.timeout.ms"] <= merged[f"{kind}.heartbeat.interval.ms"]:
                raise InvalidConfig(f"{kind}.session.timeout.ms must be greater than {kind}.heartbeat.interval.ms")
        if validate_only:
            return
        groups = {**self.groups, group: dict(values)}
        if not values:
            groups.pop(group)
        self._save(self.broker, self.cluster, groups)
        self.groups = groups

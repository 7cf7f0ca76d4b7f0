"""Broker settings with Kafka's names; topic configs live in topic_configs.py (re-exported here)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass, field

from .log.config import LogConfig
from .topic_configs import (BOOLEAN, DOUBLE, INT, LIST, LONG, SHORT, STRING, TOPIC_CONFIGS, ConfigDef,  # noqa: F401
                            InvalidConfig, config_def, parse, topic_value, validate_topic_configs)


def log_config(overrides: dict[str, str], defaults: dict[str, str]) -> LogConfig:
    """The LogConfig for a topic: its overrides over the broker's defaults over Kafka's."""

    def get(name: str):
        return parse(TOPIC_CONFIGS[name].type, topic_value(name, overrides, defaults))

    internal_segment = overrides.get("internal.segment.bytes", defaults.get("internal.segment.bytes"))
    policy = set(get("cleanup.policy"))
    return LogConfig(
        segment_bytes=int(internal_segment) if internal_segment else get("segment.bytes"),
        segment_ms=get("segment.ms"),
        index_interval_bytes=get("index.interval.bytes"),
        max_message_bytes=get("max.message.bytes"),
        flush_messages=get("flush.messages"),
        flush_ms=get("flush.ms"),
        log_append_time=get("message.timestamp.type") == "LogAppendTime",
        retention_ms=get("retention.ms"),
        retention_bytes=get("retention.bytes"),
        compact="compact" in policy,
        delete="delete" in policy,
        min_cleanable_dirty_ratio=get("min.cleanable.dirty.ratio"),
        min_compaction_lag_ms=get("min.compaction.lag.ms"),
        max_compaction_lag_ms=get("max.compaction.lag.ms"),
        delete_retention_ms=get("delete.retention.ms"),
    )


def _kafka_double(value: float) -> str:
    """A double as Kafka's DescribeConfigs prints it; unlimited is Double.MAX_VALUE."""
    return "1.7976931348623157E308" if value == float("inf") else repr(float(value))


@dataclass
class BrokerConfig:
    """Settings of one broker; names follow Kafka's broker configs where one exists."""

    data_dir: str = "./broker-data"
    host: str = "127.0.0.1"
    # None: the port this data directory's broker used last time if it is free, else any free port; 0: any.
    port: int | None = 9092
    node_id: int = 1
    cluster_id: str = ""
    auto_create_topics: bool = True  # auto.create.topics.enable
    default_partitions: int = 1  # num.partitions
    socket_request_max_bytes: int = 100 * 1024 * 1024  # socket.request.max.bytes
    # acks=-1 answers only once the batch is fsynced (group-committed). False trusts the page cache as Kafka does.
    flush_on_ack: bool = True
    # Authorization (docs/broker.md, Security): off unless enabled; then Kafka's ACL semantics (StandardAuthorizer).
    authorizer: bool = False  # authorizer.class.name set
    super_users: str | list[str] = ""  # super.users: "User:alice;User:bob" or a list
    allow_everyone_if_no_acl_found: bool = False  # allow.everyone.if.no.acl.found
    # Client quotas: the rate window (quota.window.num samples of quota.window.size.seconds), and byte rates for
    # clients no quota entity covers (None: unlimited; Kafka 4 sets defaults only through AlterClientQuotas).
    quota_window_num: int = 11
    quota_window_size_seconds: int = 1
    quota_producer_default: float | None = None
    quota_consumer_default: float | None = None
    # Connection limits (max.connections, max.connections.per.ip, max.connections.per.ip.overrides "host:n,...")
    # and connections.max.idle.ms.
    max_connections: int = 2**31 - 1
    max_connections_per_ip: int = 2**31 - 1
    max_connections_per_ip_overrides: str | dict = ""
    connections_max_idle_ms: int = 600000
    # Broker-wide defaults for topic configs, by topic config name (log.* broker names map onto these).
    topic_defaults: dict[str, str] = field(default_factory=dict)
    advertised_host: str | None = None
    # Consumer groups and committed offsets (Kafka's group.* and offsets.* broker configs).
    group_min_session_timeout_ms: int = 6000
    group_max_session_timeout_ms: int = 1800000
    group_initial_rebalance_delay_ms: int = 3000
    group_max_size: int = 2**31 - 1
    # The consumer group protocol (KIP-848): session and heartbeat interval are the broker's, not the client's.
    group_consumer_session_timeout_ms: int = 45000
    group_consumer_heartbeat_interval_ms: int = 5000
    group_consumer_max_size: int = 2**31 - 1
    group_consumer_assignors: tuple[str, ...] = ("uniform", "range")  # the first is the default
    offsets_retention_minutes: int = 10080
    offsets_retention_check_interval_ms: int = 600000
    offset_metadata_max_bytes: int = 4096
    # Retention and compaction (Kafka's log.retention.check.interval.ms, log.cleaner.backoff.ms, log.cleaner.enable).
    log_retention_check_interval_ms: int = 300000
    log_cleaner_backoff_ms: int = 15000
    log_cleaner_enable: bool = True
    # Bytes read plus written per second by the cleaner (Kafka's default: unlimited, Double.MAX_VALUE).
    log_cleaner_io_max_bytes_per_second: float = float("inf")
    # Run each cleaning pass in a child process (no GIL shared with the event loop) rather than in a thread.
    log_cleaner_subprocess: bool = True
    # Security (see docs/broker.md "Security"). listeners=None: one PLAINTEXT listener on host:port, as before.
    listeners: str | None = None  # listeners, e.g. "PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093"
    listener_security_protocol_map: str | None = None  # listener.security.protocol.map (default: name = protocol)
    advertised_listeners: str | None = None  # advertised.listeners
    ssl_keystore_location: str | None = None  # PEM: the server certificate chain, and its key unless ssl_key_location
    ssl_key_location: str | None = None  # PEM private key, when not in the keystore file
    ssl_key_password: str | None = None  # ssl.key.password: decrypts the private key
    ssl_truststore_location: str | None = None  # PEM CA certificates for client certificates
    ssl_client_auth: str = "none"  # ssl.client.auth: none | requested | required
    # ssl.principal.mapping.rules: client certificate subject -> user name, e.g. "RULE:^CN=(.*?),.*$/$1/,DEFAULT"
    ssl_principal_mapping_rules: str = "DEFAULT"
    sasl_enabled_mechanisms: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
    # SASL/PLAIN users, name -> password (Kafka's JAAS user_<name>="<password>"; see sasl.parse_jaas_users).
    sasl_plain_users: dict[str, str] = field(default_factory=dict)
    connections_max_reauth_ms: int = 0  # connections.max.reauth.ms: 0 = sessions never expire
    # connection.failed.authentication.delay.ms: a failed authentication's connection closes this much later
    # (Kafka's default 100), which slows password guessing and lets the client read the error first.
    connection_failed_authentication_delay_ms: int = 100
    # sasl.server.max.receive.size: the largest frame accepted before authentication (Kafka's default).
    sasl_server_max_receive_size: int = 524288
    # SCRAM users created (or whose password is reset) at start: name -> password, or (password, mechanism).
    scram_users: dict[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.cluster_id:
            self.cluster_id = uuid.uuid4().hex[:22]
        if self.default_partitions < 1:
            raise ValueError(f"default_partitions must be >= 1, got {self.default_partitions}")
        self._check_access_limits()
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be None or in 0..65535, got {self.port}")
        if os.path.exists(self.data_dir) and not os.path.isdir(self.data_dir):
            raise ValueError(f"data_dir {self.data_dir!r} is a file, not a directory")
        if not self.log_cleaner_io_max_bytes_per_second > 0:
            raise ValueError("log_cleaner_io_max_bytes_per_second must be > 0, "
                             f"got {self.log_cleaner_io_max_bytes_per_second}")
        if not 0 < self.group_consumer_heartbeat_interval_ms < self.group_consumer_session_timeout_ms:
            raise ValueError("group.consumer.heartbeat.interval.ms must be > 0 and less than "
                             f"group.consumer.session.timeout.ms ({self.group_consumer_heartbeat_interval_ms} >= "
                             f"{self.group_consumer_session_timeout_ms})")
        if not self.group_consumer_assignors or set(self.group_consumer_assignors) - {"uniform", "range"}:
            raise ValueError(f"group.consumer.assignors must name uniform and/or range, got "
                             f"{self.group_consumer_assignors!r}")
        self.topic_defaults = validate_topic_configs(dict(self.topic_defaults))
        self._check_security()

    def _check_security(self) -> None:
        from .security.listeners import parse_listeners
        from .security.sasl import check_mechanisms

        if isinstance(self.sasl_enabled_mechanisms, str):
            self.sasl_enabled_mechanisms = tuple(self.sasl_enabled_mechanisms.split(","))
        self.sasl_enabled_mechanisms = check_mechanisms(self.sasl_enabled_mechanisms)
        if self.connections_max_reauth_ms < 0:
            raise ValueError(f"connections_max_reauth_ms must be >= 0, got {self.connections_max_reauth_ms}")
        if self.ssl_client_auth not in ("none", "requested", "required"):
            raise ValueError(f"Invalid value {self.ssl_client_auth!r} for ssl.client.auth: expected none, "
                             "requested or required")
        from .security.tls import PrincipalMapper

        PrincipalMapper(self.ssl_principal_mapping_rules)  # ValueError for a rule Kafka would not parse
        if self.listeners is not None:
            listeners = parse_listeners(self.listeners, self.listener_security_protocol_map, self.advertised_listeners)
            if any(listener.tls for listener in listeners):  # unusable key or certificate files: say so now
                from .security.tls import server_context

                server_context(self.ssl_keystore_location, self.ssl_key_location, self.ssl_key_password,
                               self.ssl_truststore_location, self.ssl_client_auth)
        for user, spec in self.scram_users.items():
            mechanism = spec[1] if isinstance(spec, tuple) else None
            if not user or (mechanism is not None and mechanism not in ("SCRAM-SHA-256", "SCRAM-SHA-512")):
                raise ValueError(f"scram_users: bad user {user!r} or mechanism {mechanism!r} (SCRAM-SHA-256 or "
                                 "SCRAM-SHA-512)")

    def listener_list(self):
        """The listeners to open: the configured ones, or one PLAINTEXT listener on host:port."""
        from .security.listeners import Listener, parse_listeners

        if self.listeners is None:
            return [Listener("PLAINTEXT", "PLAINTEXT", self.host, self.port or 0, self.advertised_host)]
        return parse_listeners(self.listeners, self.listener_security_protocol_map, self.advertised_listeners)

    def _check_access_limits(self) -> None:
        from .acl import parse_super_users
        from .connections import parse_overrides

        self.super_users = parse_super_users(self.super_users)
        for name in ("quota_window_num", "quota_window_size_seconds", "connections_max_idle_ms"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("max_connections", "max_connections_per_ip"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("quota_producer_default", "quota_consumer_default"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ValueError(f"{name} must be > 0 bytes/s (or None: unlimited), got {value}")
        self.max_connections_per_ip_overrides = parse_overrides(self.max_connections_per_ip_overrides)

    def describe_access_limits(self) -> dict[str, tuple[str, int]]:
        """The authorizer, quota and connection-limit settings as DescribeConfigs shows them."""
        return {
            "authorizer.class.name": (
                "org.apache.kafka.metadata.authorizer.StandardAuthorizer" if self.authorizer else "", STRING),
            "super.users": (";".join(self.super_users), STRING),
            "allow.everyone.if.no.acl.found": (str(self.allow_everyone_if_no_acl_found).lower(), BOOLEAN),
            "quota.window.num": (str(self.quota_window_num), INT),
            "quota.window.size.seconds": (str(self.quota_window_size_seconds), INT),
            "max.connections": (str(self.max_connections), INT),
            "max.connections.per.ip": (str(self.max_connections_per_ip), INT),
            "max.connections.per.ip.overrides": (
                ",".join(f"{h}:{n}" for h, n in self.max_connections_per_ip_overrides.items()), STRING),
            "connections.max.idle.ms": (str(self.connections_max_idle_ms), LONG),
        }

    def describe(self) -> dict[str, tuple[str, int]]:
        """Broker configs as DescribeConfigs shows them: name -> (value, type)."""
        out = {
            "node.id": (str(self.node_id), INT),
            "broker.id": (str(self.node_id), INT),
            "auto.create.topics.enable": (str(self.auto_create_topics).lower(), BOOLEAN),
            "num.partitions": (str(self.default_partitions), INT),
            "socket.request.max.bytes": (str(self.socket_request_max_bytes), INT),
            "log.dirs": (self.data_dir, STRING),
            "message.max.bytes": (self.topic_defaults.get("max.message.bytes", "1048588"), INT),
            "group.min.session.timeout.ms": (str(self.group_min_session_timeout_ms), INT),
            "group.max.session.timeout.ms": (str(self.group_max_session_timeout_ms), INT),
            "group.initial.rebalance.delay.ms": (str(self.group_initial_rebalance_delay_ms), INT),
            "group.max.size": (str(self.group_max_size), INT),
            "group.consumer.session.timeout.ms": (str(self.group_consumer_session_timeout_ms), INT),
            "group.consumer.heartbeat.interval.ms": (str(self.group_consumer_heartbeat_interval_ms), INT),
            "group.consumer.max.size": (str(self.group_consumer_max_size), INT),
            "group.consumer.assignors": (",".join(self.group_consumer_assignors), LIST),
            "offsets.retention.minutes": (str(self.offsets_retention_minutes), INT),
            "offsets.retention.check.interval.ms": (str(self.offsets_retention_check_interval_ms), LONG),
            "offset.metadata.max.bytes": (str(self.offset_metadata_max_bytes), INT),
            "log.retention.check.interval.ms": (str(self.log_retention_check_interval_ms), LONG),
            "log.cleaner.backoff.ms": (str(self.log_cleaner_backoff_ms), LONG),
            "log.cleaner.enable": (str(self.log_cleaner_enable).lower(), BOOLEAN),
            "log.cleaner.io.max.bytes.per.second": (_kafka_double(self.log_cleaner_io_max_bytes_per_second), DOUBLE),
        }
        out.update(self.describe_access_limits())
        for name, d in TOPIC_CONFIGS.items():  # broker-wide topic defaults, by their broker names
            if d.synonym:
                out[d.synonym] = (self.topic_defaults.get(name, d.default), d.type)
        return out

"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics, the broker and groups, answered as
Kafka 4.1 answers them (broker configs changed at runtime and group configs: dynamic_configs.py)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..config import LIST, STRING, TOPIC_CONFIGS, ConfigDef, InvalidConfig, config_def
from ..dynamic_configs import GROUP_CONFIGS, NO_EFFECT, SETTINGS, STATIC_DEFAULTS, dynamic_def
from ..metadata import TopicError
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import ALTER_CONFIGS, DESCRIBE_CONFIGS, allowed, cluster_allowed
from .access import GROUP as GROUP_RESOURCE
from .access import TOPIC as TOPIC_RESOURCE
from .errors import KafkaError, error_code

TOPIC, BROKER, GROUP = 2, 4, 32
# DescribeConfigs config sources.
DYNAMIC_TOPIC, DYNAMIC_BROKER, DYNAMIC_DEFAULT_BROKER, STATIC_BROKER, DEFAULT, GROUP_CONFIG = 1, 2, 3, 4, 5, 8
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


@handles(32, 1, 4)
def describe_configs(ctx: RequestContext, req):
    r = ctx.reply
    synonyms_wanted = getattr(req, "include_synonyms", False)
    results = []
    for res in req.resources:
        code, message, entries = ErrorCode.none, "", ()  # Kafka answers "" when all is well
        try:
            _authorize(ctx, DESCRIBE_CONFIGS, res)
            if res.resource_type == TOPIC:
                values = _topic_values(ctx, res.resource_name)
            elif res.resource_type == BROKER:
                values = _broker_values(ctx, res.resource_name)
            elif res.resource_type == GROUP:
                values = _group_values(ctx, res.resource_name)
            else:
                raise KafkaError(ErrorCode.invalid_request, f"Unsupported resource type {res.resource_type}")
            keys = res.configuration_keys
            entries = tuple(
                r("DescribeConfigsResourceResult", name=name, value=layers[0][0], read_only=read_only,
                  config_source=layers[0][1], is_sensitive=False, config_type=ctype, documentation=None,
                  is_default=layers[0][1] == DEFAULT,
                  synonyms=tuple(r("DescribeConfigsSynonym", name=sname, value=svalue, source=ssource)
                                 for sname, svalue, ssource in synonyms) if synonyms_wanted else ())
                for name, (layers, ctype, read_only, synonyms) in values.items()
                if keys is None or name in keys
            )
        except KafkaError as exc:
            code, message = exc.code, str(exc)
        results.append(r("DescribeConfigsResult", error_code=code, error_message=message,
                         resource_type=res.resource_type, resource_name=res.resource_name, configs=entries))
    return r("DescribeConfigsResponse", throttle_time=ZERO_MS, results=tuple(results))


# A described config: ([(value, source), ...] highest layer first, type, read_only, [(synonym, value, source)]).


def _topic_values(ctx: RequestContext, name: str) -> dict:
    broker = ctx.broker
    topic = broker.topics.get(name)
    if topic is None:
        raise KafkaError(ErrorCode.unknown_topic_or_partition, f"Topic '{name}' does not exist.")
    dynamic = broker.topics.dynamic
    values = {}
    for cname, d in TOPIC_CONFIGS.items():
        layers = [(topic.configs[cname], DYNAMIC_TOPIC)] if cname in topic.configs else []
        synonyms = [(cname, topic.configs[cname], DYNAMIC_TOPIC)] if layers else []
        if d.synonym:
            for value, source in dynamic.layers(d.synonym):
                layers.append((value, source))
                synonyms.append((d.synonym, value, source))
        layers.append((d.default, DEFAULT))
        synonyms.append((d.synonym or cname, d.default, DEFAULT))
        values[cname] = (layers, d.type, False, synonyms)
    for cname, value in topic.configs.items():  # internal configs show only when set
        if cname not in values:
            values[cname] = ([(value, DYNAMIC_TOPIC)], config_def(cname).type, False, [(cname, value, DYNAMIC_TOPIC)])
    return values


def _broker_id(ctx: RequestContext, name: str, describing: bool) -> bool:
    """True for this broker's own resource, False for the cluster default (""); Kafka's errors otherwise."""
    node = ctx.broker.config.node_id
    if name == "":
        return False
    try:
        wanted = int(name)
    except ValueError:
        what = "Broker id" if describing else "Node id"
        raise KafkaError(ErrorCode.invalid_request, f"{what} must be an integer, but it is: {name}") from None
    if wanted != node:
        expected = f"{node} or empty string" if describing else f"{node}"
        raise KafkaError(ErrorCode.invalid_request, f"Unexpected broker id, expected {expected}, but received {name}")
    return True


def _broker_values(ctx: RequestContext, name: str) -> dict:
    dynamic = ctx.broker.topics.dynamic
    if not _broker_id(ctx, name, describing=True):  # the cluster default: only what was set dynamically there
        return {n: ([(v, DYNAMIC_DEFAULT_BROKER)], (dynamic_def(n).type if dynamic_def(n) else STRING), False,
                    [(n, v, DYNAMIC_DEFAULT_BROKER)])
                for n, v in dynamic.cluster.items()}
    # What the static settings give (beneath any dynamic layer), with Kafka's default where one is known.
    static: dict[str, tuple[str, int, str | None, bool]] = {}  # name -> (value, type, default, set explicitly)
    for n, (value, ctype) in ctx.broker.config.describe().items():
        static[n] = (value, ctype, STATIC_DEFAULTS.get(n), False)
    for n, (value, ctype) in _listener_configs(ctx).items():
        static[n] = (value, ctype, None, True)
    for n, d in TOPIC_CONFIGS.items():
        if d.synonym:
            static[d.synonym] = (dynamic.static_topic_defaults.get(n, d.default), d.type, d.default,
                                 n in dynamic.static_topic_defaults)
    for n, (attr, d) in SETTINGS.items():
        static[n] = (static[n][0] if n in static else d.default, d.type, d.default, False)
    for n, d in NO_EFFECT.items():
        static[n] = (d.default, d.type, d.default, False)
    values = {}
    for n, (value, ctype, default, explicit) in static.items():
        layers = [layer for layer in dynamic.layers(n) if layer[1] != STATIC_BROKER]
        if explicit or default is None or value != default:
            layers.append((value, STATIC_BROKER))
        if default is not None:
            layers.append((default, DEFAULT))
        values[n] = (layers, ctype, dynamic_def(n) is None, [(n, v, src) for v, src in layers])
    return values


def _listener_configs(ctx: RequestContext) -> dict:
    """listeners and advertised.listeners as this node has them (ports as bound)."""
    broker = ctx.broker
    cfg = broker.config
    endpoints = broker.endpoints or {"PLAINTEXT": (cfg.advertised_host or cfg.host, broker.advertised_port)}
    listeners = cfg.listeners or f"PLAINTEXT://{cfg.host}:{broker.advertised_port}"
    advertised = ",".join(f"{name}://{host}:{port}" for name, (host, port) in endpoints.items())
    return {"listeners": (listeners, STRING), "advertised.listeners": (advertised, STRING)}


def _group_values(ctx: RequestContext, group: str) -> dict:
    if not group:
        raise KafkaError(ErrorCode.invalid_request, "Group name must not be empty")
    out = {}
    for name, (value, own) in ctx.broker.topics.dynamic.group_values(group).items():
        source = GROUP_CONFIG if own else DEFAULT
        out[name] = ([(value, source)], GROUP_CONFIGS[name].type, False, [(name, value, source)])
    return out


def _authorize(ctx: RequestContext, operation, res) -> None:
    """DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic or group, or on the cluster for a broker's configs."""
    if res.resource_type == TOPIC and not allowed(ctx, operation, TOPIC_RESOURCE, res.resource_name):
        raise KafkaError(ErrorCode.topic_authorization_failed, "Topic authorization failed.")
    if res.resource_type == GROUP and not allowed(ctx, operation, GROUP_RESOURCE, res.resource_name):
        raise KafkaError(ErrorCode.group_authorization_failed, "Group authorization failed.")
    if res.resource_type == BROKER and not cluster_allowed(ctx, operation):
        raise KafkaError(ErrorCode.cluster_authorization_failed, "Cluster authorization failed.")


def _apply(ctx: RequestContext, res, validate_only: bool, compute) -> tuple[ErrorCode, str | None]:
    broker = ctx.broker
    try:
        _authorize(ctx, ALTER_CONFIGS, res)
        names = [c.name for c in res.configs]
        if len(names) != len(set(names)):
            raise KafkaError(ErrorCode.invalid_request, "Error due to duplicate config keys")
        if res.resource_type == TOPIC:
            topic = broker.topics.get(res.resource_name)
            if topic is None:
                raise KafkaError(ErrorCode.unknown_topic_or_partition, f"Topic '{res.resource_name}' does not exist.")
            broker.topics.set_configs(topic.name, compute(dict(topic.configs), res.configs, config_def),
                                      validate_only)
        elif res.resource_type == BROKER:
            dynamic = broker.topics.dynamic
            per_broker = _broker_id(ctx, res.resource_name, describing=False)
            dynamic.check_broker_names(names, per_broker, set(broker.config.describe()) | {"listeners"})
            current = dict(dynamic.broker if per_broker else dynamic.cluster)
            dynamic.set_broker(compute(current, res.configs, _broker_def), per_broker, validate_only)
            if not validate_only:
                broker.topics.refresh_log_configs()
        elif res.resource_type == GROUP:
            if not res.resource_name:
                raise KafkaError(ErrorCode.invalid_request, "Default group resources are not allowed.")
            dynamic = broker.topics.dynamic
            current = dict(dynamic.groups.get(res.resource_name, {}))
            dynamic.set_group(res.resource_name, compute(current, res.configs, _group_def), validate_only)
        else:
            raise KafkaError(ErrorCode.invalid_request, f"Unsupported resource type {res.resource_type}")
    except (KafkaError, TopicError, InvalidConfig, OSError) as exc:
        return error_code(exc), str(exc)
    return ErrorCode.none, None


def _group_def(name: str) -> ConfigDef:
    if name not in GROUP_CONFIGS:
        raise InvalidConfig(f"Unknown group config name: {name}")
    return GROUP_CONFIGS[name]


def _broker_def(name: str) -> ConfigDef:
    """How IncrementalAlterConfigs sees a broker config: its definition (unknown names pass, as in Kafka)."""
    return dynamic_def(name) or ConfigDef(name, STRING, "")


def _alter(ctx: RequestContext, req, compute, response: str):
    """AlterConfigs and IncrementalAlterConfigs differ only in how the new overrides are computed."""
    r = ctx.reply
    responses = tuple(
        r("AlterConfigsResourceResponse", error_code=code, error_message=message,
          resource_type=res.resource_type, resource_name=res.resource_name)
        for res in req.resources
        for code, message in [_apply(ctx, res, req.validate_only, compute)]
    )
    return r(response, throttle_time=ZERO_MS, responses=responses)


def _null(name: str) -> KafkaError:
    return KafkaError(ErrorCode.invalid_request, f"Null value not supported for : {name}")


def _replace(_current: dict[str, str], entries, _lookup) -> dict[str, str]:
    for c in entries:
        if c.value is None:
            raise _null(c.name)
    return {c.name: c.value for c in entries}


@handles(33, 0, 2)
def alter_configs(ctx: RequestContext, req):
    return _alter(ctx, req, _replace, "AlterConfigsResponse")


def _incremental(current: dict[str, str], entries, lookup) -> dict[str, str]:
    for c in entries:
        op = c.config_operation
        if op == DELETE:  # Kafka accepts deleting a name it does not know
            current.pop(c.name, None)
            continue
        d = lookup(c.name)
        if d is None:
            raise InvalidConfig(f"Unknown topic config name: {c.name}")
        if op in (SET, APPEND, SUBTRACT) and c.value is None:
            raise _null(c.name)
        if op == SET:
            current[c.name] = c.value
        elif op in (APPEND, SUBTRACT):
            if d.type != LIST:
                raise InvalidConfig(f"Can't {'APPEND' if op == APPEND else 'SUBTRACT'} to key {c.name} because "
                                    "its type is not LIST.")
            items = [v for v in current.get(c.name, d.default).split(",") if v]
            values = [v for v in (c.value or "").split(",") if v]
            if op == APPEND:
                items += [v for v in values if v not in items]
            else:
                items = [v for v in items if v not in values]
            current[c.name] = ",".join(items)
        else:
            raise KafkaError(ErrorCode.invalid_request, f"Unknown config operation {op} for {c.name}")
    return current


@handles(44, 0, 1)
def incremental_alter_configs(ctx: RequestContext, req):
    return _alter(ctx, req, _incremental, "IncrementalAlterConfigsResponse")

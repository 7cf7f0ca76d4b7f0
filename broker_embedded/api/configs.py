"""DescribeConfigs, AlterConfigs and IncrementalAlterConfigs for topics (and describing the broker)."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..config import LIST, TOPIC_CONFIGS, InvalidConfig, config_def
from ..metadata import TopicError
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import ALTER_CONFIGS, DESCRIBE_CONFIGS, allowed, cluster_allowed
from .access import TOPIC as TOPIC_RESOURCE
from .errors import KafkaError, error_code

TOPIC, BROKER = 2, 4
DYNAMIC_TOPIC, STATIC_BROKER, DEFAULT = 1, 4, 5
SET, DELETE, APPEND, SUBTRACT = 0, 1, 2, 3


@handles(32, 1, 4)
def describe_configs(ctx: RequestContext, req):
    r = ctx.reply
    broker = ctx.broker
    results = []
    for res in req.resources:
        code, message, entries = ErrorCode.none, None, ()
        try:
            _authorize(ctx, DESCRIBE_CONFIGS, res)
            if res.resource_type == TOPIC:
                topic = broker.topics.get(res.resource_name)
                if topic is None:
                    raise KafkaError(ErrorCode.unknown_topic_or_partition,
                                     f"Topic '{res.resource_name}' does not exist.")
                values = {}
                for name, d in TOPIC_CONFIGS.items():
                    if name in topic.configs:
                        values[name] = (topic.configs[name], DYNAMIC_TOPIC, d.type)
                    elif name in broker.config.topic_defaults:
                        values[name] = (broker.config.topic_defaults[name], STATIC_BROKER, d.type)
                    else:
                        values[name] = (d.default, DEFAULT, d.type)
                for name, value in topic.configs.items():  # internal configs show only when set
                    if name not in values:
                        values[name] = (value, DYNAMIC_TOPIC, config_def(name).type)
            elif res.resource_type == BROKER:
                if res.resource_name not in ("", str(broker.config.node_id)):
                    raise KafkaError(ErrorCode.invalid_request, f"Unknown broker id {res.resource_name}")
                values = {n: (v, STATIC_BROKER, t) for n, (v, t) in broker.config.describe().items()}
            else:
                raise KafkaError(ErrorCode.invalid_request, f"Unsupported resource type {res.resource_type}")
            keys = res.configuration_keys
            entries = tuple(
                r("DescribeConfigsResourceResult", name=name, value=value, read_only=res.resource_type == BROKER,
                  config_source=source, is_sensitive=False, synonyms=(), config_type=ctype, documentation=None,
                  is_default=source == DEFAULT)
                for name, (value, source, ctype) in values.items()
                if keys is None or name in keys
            )
        except KafkaError as exc:
            code, message = exc.code, str(exc)
        results.append(r("DescribeConfigsResult", error_code=code, error_message=message,
                         resource_type=res.resource_type, resource_name=res.resource_name, configs=entries))
    return r("DescribeConfigsResponse", throttle_time=ZERO_MS, results=tuple(results))


def _authorize(ctx: RequestContext, operation, res) -> None:
    """DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic, or on the cluster for a broker's configs."""
    if res.resource_type == TOPIC and not allowed(ctx, operation, TOPIC_RESOURCE, res.resource_name):
        raise KafkaError(ErrorCode.topic_authorization_failed, "Topic authorization failed.")
    if res.resource_type == BROKER and not cluster_allowed(ctx, operation):
        raise KafkaError(ErrorCode.cluster_authorization_failed, "Cluster authorization failed.")


def _apply(ctx: RequestContext, res, validate_only: bool, compute) -> tuple[ErrorCode, str | None]:
    try:
        _authorize(ctx, ALTER_CONFIGS, res)
        if res.resource_type != TOPIC:
            raise KafkaError(ErrorCode.invalid_request,
                             "Only topic configs can be altered; broker configs are set when the broker starts.")
        topic = ctx.broker.topics.get(res.resource_name)
        if topic is None:
            raise KafkaError(ErrorCode.unknown_topic_or_partition, f"Topic '{res.resource_name}' does not exist.")
        names = [c.name for c in res.configs]
        if len(names) != len(set(names)):
            raise KafkaError(ErrorCode.invalid_request, "Error due to duplicate config keys")
        ctx.broker.topics.set_configs(topic.name, compute(dict(topic.configs), res.configs), validate_only)
    except (KafkaError, TopicError, InvalidConfig, OSError) as exc:
        return error_code(exc), str(exc)
    return ErrorCode.none, None


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


def _replace(_current: dict[str, str], entries) -> dict[str, str]:
    for c in entries:
        if c.value is None:
            raise _null(c.name)
    return {c.name: c.value for c in entries}


@handles(33, 0, 2)
def alter_configs(ctx: RequestContext, req):
    return _alter(ctx, req, _replace, "AlterConfigsResponse")


def _incremental(current: dict[str, str], entries) -> dict[str, str]:
    for c in entries:
        op = c.config_operation
        if op == DELETE:  # Kafka accepts deleting a name it does not know
            current.pop(c.name, None)
            continue
        d = config_def(c.name)
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

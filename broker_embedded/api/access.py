"""What a handler asks the authorizer: may this request's principal, from its host, do this to that resource.

With no authorizer configured everything is allowed and `authorized_operations` reports every supported
operation, as Kafka does.
"""

from __future__ import annotations

from ..acl import CLUSTER_NAME, SUPPORTED_OPERATIONS, Operation, ResourceType
from . import RequestContext

TOPIC, GROUP, CLUSTER, TRANSACTIONAL_ID = (ResourceType.TOPIC, ResourceType.GROUP, ResourceType.CLUSTER,
                                          ResourceType.TRANSACTIONAL_ID)
READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE = (Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DELETE,
                                                Operation.ALTER, Operation.DESCRIBE)
DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE = (Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS,
                                                     Operation.IDEMPOTENT_WRITE)
CLUSTER_ACTION = Operation.CLUSTER_ACTION


def allowed(ctx: RequestContext, operation: Operation, resource_type: ResourceType, name: str) -> bool:
    authorizer = ctx.broker.authorizer
    return authorizer is None or authorizer.authorize(ctx.principal, ctx.client_host, operation, resource_type, name)


def cluster_allowed(ctx: RequestContext, operation: Operation) -> bool:
    return allowed(ctx, operation, CLUSTER, CLUSTER_NAME)


def allowed_any(ctx: RequestContext, operation: Operation, resource_type: ResourceType) -> bool:
    """Whether the principal may do `operation` on some resource of the type (authorizeByResourceType)."""
    authorizer = ctx.broker.authorizer
    return authorizer is None or authorizer.authorize_any(ctx.principal, ctx.client_host, operation, resource_type)


def authorized_operations(ctx: RequestContext, resource_type: ResourceType, name: str) -> int:
    """The operations bit field that Metadata, DescribeCluster and DescribeGroups report when asked."""
    authorizer = ctx.broker.authorizer
    if authorizer is None:
        bits = 0
        for op in SUPPORTED_OPERATIONS[resource_type]:
            bits |= 1 << op
        return bits
    return authorizer.authorized_operations(ctx.principal, ctx.client_host, resource_type, name)

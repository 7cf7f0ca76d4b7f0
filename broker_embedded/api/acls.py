"""DescribeAcls, CreateAcls, DeleteAcls: the ACLs of the authorizer (acl.py), with Kafka's checks and errors.

Describing needs DESCRIBE on the cluster, changing needs ALTER on it (else CLUSTER_AUTHORIZATION_FAILED); with no
authorizer configured every call answers SECURITY_DISABLED.
"""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode

from ..acl import AclBinding, AclFilter, InvalidAcl
from ..protocol import ZERO_MS
from . import RequestContext, handles
from .access import ALTER, DESCRIBE, cluster_allowed
from .errors import error_code

_CLUSTER_DENIED = "Cluster authorization failed."


def _filter(f, name_field: str = "resource_name_filter") -> AclFilter:
    return AclFilter.checked(f.resource_type_filter, getattr(f, name_field), f.pattern_type_filter,
                             f.principal_filter, f.host_filter, f.operation, f.permission_type)


@handles(29, 1, 3)
def describe_acls(ctx: RequestContext, req):
    r = ctx.reply
    authorizer = ctx.broker.authorizer

    def error(code, message):
        return r("DescribeAclsResponse", throttle_time=ZERO_MS, error_code=code, error_message=message, resources=())

    if not cluster_allowed(ctx, DESCRIBE):
        return error(ErrorCode.cluster_authorization_failed, _CLUSTER_DENIED)
    if authorizer is None:
        return error(ErrorCode.security_disabled, "No Authorizer is configured on the broker")
    try:
        flt = _filter(req)
    except InvalidAcl as exc:
        return error(ErrorCode.invalid_request, str(exc))
    by_resource: dict[tuple, list[AclBinding]] = {}
    for acl in authorizer.describe(flt):
        by_resource.setdefault((acl.resource_type, acl.name, acl.pattern_type), []).append(acl)
    resources = tuple(
        r("DescribeAclsResource", resource_type=rtype, resource_name=name, pattern_type=ptype, acls=tuple(
            r("AclDescription", principal=a.principal, host=a.host, operation=a.operation,
              permission_type=a.permission) for a in acls))
        for (rtype, name, ptype), acls in by_resource.items()
    )
    return r("DescribeAclsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none, error_message=None,
             resources=resources)


@handles(30, 1, 3)
async def create_acls(ctx: RequestContext, req):
    r = ctx.reply
    authorizer = ctx.broker.authorizer
    n = len(req.creations)

    def all_failed(code, message):
        return r("CreateAclsResponse", throttle_time=ZERO_MS,
                 results=tuple(r("AclCreationResult", error_code=code, error_message=message) for _ in range(n)))

    if not cluster_allowed(ctx, ALTER):
        return all_failed(ErrorCode.cluster_authorization_failed, _CLUSTER_DENIED)
    if authorizer is None:
        return all_failed(ErrorCode.security_disabled, "No Authorizer is configured.")
    results: list[tuple[ErrorCode, str | None]] = []
    valid: list[AclBinding] = []
    for c in req.creations:
        try:
            valid.append(AclBinding.checked(c.resource_type, c.resource_name, c.resource_pattern_type, c.principal,
                                            c.host, c.operation, c.permission_type))
            results.append((ErrorCode.none, None))
        except InvalidAcl as exc:
            results.append((ErrorCode.invalid_request, str(exc)))
    if valid:
        try:
            await asyncio.to_thread(authorizer.create, valid)
        except OSError as exc:  # nothing was added
            code = error_code(exc)
            results = [(code, str(exc)) if c == ErrorCode.none else (c, m) for c, m in results]
    return r("CreateAclsResponse", throttle_time=ZERO_MS,
             results=tuple(r("AclCreationResult", error_code=c, error_message=m) for c, m in results))


@handles(31, 1, 3)
async def delete_acls(ctx: RequestContext, req):
    r = ctx.reply
    authorizer = ctx.broker.authorizer

    def filter_result(code, message, matching=()):
        return r("DeleteAclsFilterResult", error_code=code, error_message=message, matching_acls=tuple(matching))

    if not cluster_allowed(ctx, ALTER):
        return r("DeleteAclsResponse", throttle_time=ZERO_MS, filter_results=tuple(
            filter_result(ErrorCode.cluster_authorization_failed, _CLUSTER_DENIED) for _ in req.filters))
    if authorizer is None:
        return r("DeleteAclsResponse", throttle_time=ZERO_MS, filter_results=tuple(
            filter_result(ErrorCode.security_disabled, "No Authorizer is configured.") for _ in req.filters))
    parsed: list[AclFilter | InvalidAcl] = []
    for f in req.filters:
        try:
            parsed.append(_filter(f))
        except InvalidAcl as exc:
            parsed.append(exc)
    filters = [f for f in parsed if isinstance(f, AclFilter)]
    try:
        matched = iter(await asyncio.to_thread(authorizer.delete, filters))
    except OSError as exc:  # nothing was deleted
        return r("DeleteAclsResponse", throttle_time=ZERO_MS, filter_results=tuple(
            filter_result(error_code(exc), str(exc)) for _ in req.filters))
    results = []
    for f in parsed:
        if isinstance(f, InvalidAcl):
            results.append(filter_result(ErrorCode.invalid_request, str(f)))
            continue
        results.append(filter_result(ErrorCode.none, None, (
            r("DeleteAclsMatchingAcl", error_code=ErrorCode.none, error_message=None, resource_type=a.resource_type,
              resource_name=a.name, pattern_type=a.pattern_type, principal=a.principal, host=a.host,
              operation=a.operation, permission_type=a.permission)
            for a in next(matched))))
    return r("DeleteAclsResponse", throttle_time=ZERO_MS, filter_results=tuple(results))

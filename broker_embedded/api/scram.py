"""DescribeUserScramCredentials and AlterUserScramCredentials (KIP-554), with Kafka's validation and messages."""

from __future__ import annotations

import asyncio

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from ..security.scram import BY_TYPE, MAX_ITERATIONS, MIN_ITERATIONS, credential_from_salted
from . import RequestContext, handles
from .access import ALTER, DESCRIBE, cluster_allowed

_DUPLICATE = "A user credential cannot be altered twice in the same request"


@handles(50, 0, 0)
def describe_user_scram_credentials(ctx: RequestContext, req):
    r = ctx.reply
    store = ctx.broker.scram
    if not cluster_allowed(ctx, DESCRIBE):
        return r("DescribeUserScramCredentialsResponse", throttle_time=ZERO_MS,
                 error_code=ErrorCode.cluster_authorization_failed, error_message="Cluster authorization failed.",
                 results=())
    if not req.users:
        wanted = {user: False for user in sorted(store.credentials)}
    else:
        wanted: dict[str, bool] = {}
        for u in req.users:
            wanted[u.name] = u.name in wanted  # True: asked twice
    results = []
    for user, duplicate in wanted.items():
        if duplicate:
            results.append(r("DescribeUserScramCredentialsResult", user=user, error_code=ErrorCode.duplicate_resource,
                             error_message="Cannot describe SCRAM credentials for the same user twice in a single "
                                           f"request: {user}", credential_infos=()))
            continue
        mechs = store.credentials.get(user, {})
        infos = tuple(r("CredentialInfo", mechanism=t, iterations=mechs[name].iterations)
                      for t, name in sorted(BY_TYPE.items()) if name in mechs)
        if infos:
            results.append(r("DescribeUserScramCredentialsResult", user=user, error_code=ErrorCode.none,
                             error_message=None, credential_infos=infos))
        else:
            results.append(r("DescribeUserScramCredentialsResult", user=user, error_code=ErrorCode.resource_not_found,
                             error_message=f"Attempt to describe a user credential that does not exist: {user}",
                             credential_infos=()))
    return r("DescribeUserScramCredentialsResponse", throttle_time=ZERO_MS, error_code=ErrorCode.none,
             error_message=None, results=tuple(results))


def _check_name_and_mechanism(name: str, mechanism: int):
    if not name:
        return ErrorCode.unacceptable_credential, "Username must not be empty"
    if mechanism not in BY_TYPE:
        return ErrorCode.unsupported_sasl_mechanism, "Unknown SCRAM mechanism"
    return None


@handles(51, 0, 0)
async def alter_user_scram_credentials(ctx: RequestContext, req):
    r = ctx.reply
    store = ctx.broker.scram
    deletions: dict[str, object] = {}
    upsertions: dict[str, object] = {}
    errors: dict[str, tuple[ErrorCode, str]] = {}
    if not cluster_allowed(ctx, ALTER):  # every user named gets the cluster error
        for u in (*req.deletions, *req.upsertions):
            errors[u.name] = (ErrorCode.cluster_authorization_failed, "Cluster authorization failed.")
    # Kafka's rule: one alteration per user per request (whatever the mechanism); a second one fails them all.
    for d in req.deletions:
        if d.name in errors:
            continue
        if deletions.pop(d.name, None) is not None:
            errors[d.name] = (ErrorCode.duplicate_resource, _DUPLICATE)
            continue
        problem = _check_name_and_mechanism(d.name, d.mechanism)
        if problem is None and store.get(d.name, BY_TYPE[d.mechanism]) is None:
            problem = (ErrorCode.resource_not_found, "Attempt to delete a user credential that does not exist")
        if problem:
            errors[d.name] = problem
        else:
            deletions[d.name] = d
    for u in req.upsertions:
        if u.name in errors:
            continue
        if deletions.pop(u.name, None) is not None or upsertions.pop(u.name, None) is not None:
            errors[u.name] = (ErrorCode.duplicate_resource, _DUPLICATE)
            continue
        problem = _check_name_and_mechanism(u.name, u.mechanism)
        if problem is None and u.iterations < MIN_ITERATIONS:
            problem = (ErrorCode.unacceptable_credential, "Too few iterations")
        elif problem is None and u.iterations > MAX_ITERATIONS:
            problem = (ErrorCode.unacceptable_credential, "Too many iterations")
        if problem:
            errors[u.name] = problem
        else:
            upsertions[u.name] = u
    results = []
    if deletions or upsertions:
        try:
            await asyncio.to_thread(  # written and fsynced before the answer, off the event loop
                store.apply,
                {(u.name, BY_TYPE[u.mechanism]): credential_from_salted(BY_TYPE[u.mechanism], u.salt,
                                                                        u.salted_password, u.iterations)
                 for u in upsertions.values()},
                {(d.name, BY_TYPE[d.mechanism]) for d in deletions.values()})
        except OSError as exc:  # the data directory cannot take it: nothing changed
            for name in (*deletions, *upsertions):
                errors[name] = (ErrorCode.kafka_storage_error, f"cannot store SCRAM credentials: {exc}")
            deletions, upsertions = {}, {}
    for name in (*deletions, *upsertions):
        results.append(r("AlterUserScramCredentialsResult", user=name, error_code=ErrorCode.none, error_message=None))
    for name, (code, message) in errors.items():
        results.append(r("AlterUserScramCredentialsResult", user=name, error_code=code, error_message=message))
    return r("AlterUserScramCredentialsResponse", throttle_time=ZERO_MS, results=tuple(results))

"""Feature flags (KIP-584) as ApiVersions reports them, and UpdateFeatures.

A Kafka node reports the range of each feature it supports and the level the cluster finalized. Clients act on
the finalized levels: the Java producer uses the second-generation transaction protocol (KIP-890) only when
`transaction.version` is finalized at 2 or more. This node's levels are fixed: they are the levels of a default
Kafka 4.1 node for what is implemented here, and UpdateFeatures accepts only a request that keeps them.
"""

from __future__ import annotations

from dataclasses import dataclass

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import HANDLERS, RequestContext, handles
from .access import ALTER, cluster_allowed

# The epoch of the finalized features: Kafka uses the metadata log offset that set them; here they never change.
FINALIZED_EPOCH = 1
UPGRADE, SAFE_DOWNGRADE, UNSAFE_DOWNGRADE = 1, 2, 3


@dataclass(frozen=True)
class Feature:
    name: str
    min_version: int
    max_version: int
    finalized: int  # 0: not finalized (Kafka leaves level 0 out of the finalized list)


def features() -> list[Feature]:
    """The features of this node, as (supported range, finalized level)."""
    from .txn import TRANSACTION_VERSION  # the transaction handlers decide which protocol generation they serve

    # group.version 1 enables the consumer group protocol of KIP-848: finalized only once its handler exists.
    group = 1 if 68 in HANDLERS else 0
    return [
        Feature("group.version", 0, group, group),
        # A static one-voter quorum: kraft.version 1 (dynamic quorums, KIP-853) is not supported.
        Feature("kraft.version", 0, 0, 0),
        # The metadata version of Kafka 4.1 (4.1-IV1); what this node serves is what that version serves.
        Feature("metadata.version", 7, 27, 27),
        # Share groups (KIP-932) are off on a default Kafka 4.1 node and not implemented here.
        Feature("share.version", 0, 0, 0),
        Feature("transaction.version", 0, TRANSACTION_VERSION, TRANSACTION_VERSION),
        # ELR (KIP-966): with one replica the eligible-leader set is always empty; DescribeTopicPartitions says so.
        Feature("eligible.leader.replicas.version", 0, 1, 1),
    ]


def supported_features(r, version: int) -> tuple:
    # ApiVersions v3 leaves out features whose minimum is 0: clients of that version expected a minimum of 1.
    return tuple(r("SupportedFeatureKey", name=f.name, min_version=f.min_version, max_version=f.max_version)
                 for f in features() if version >= 4 or f.min_version > 0)


def finalized_features(r) -> tuple:
    return tuple(r("FinalizedFeatureKey", name=f.name, max_version_level=f.finalized, min_version_level=f.finalized)
                 for f in features() if f.finalized)


def _check(update, by_name: dict[str, Feature], node_id: int) -> str | None:
    """Kafka's refusal for one feature update, or None if this node already runs at that level."""
    name, level = update.feature, update.max_version_level
    upgrade_type = getattr(update, "upgrade_type", SAFE_DOWNGRADE if getattr(update, "allow_downgrade", False)
                           else UPGRADE)
    f = by_name.get(name)
    if f is None:
        if level == 0:
            return None  # disabling a feature nobody has is a no-op in Kafka too
        return f"Invalid update version {level} for feature {name}. Local controller {node_id} does not support this feature."
    if not f.min_version <= level <= f.max_version:
        return (f"Invalid update version {level} for feature {name}. Local controller {node_id} only supports "
                f"versions {f.min_version}-{f.max_version}")
    if level < f.finalized and upgrade_type == UPGRADE:
        return (f"Invalid update version {level} for feature {name}. Can't downgrade the version of this feature "
                "without setting the upgrade type to either safe or unsafe downgrade.")
    if level != f.finalized:
        return (f"Invalid update version {level} for feature {name}. This single-node broker runs at fixed "
                f"feature levels ({name} is {f.finalized}).")
    return None


@handles(57, 0, 2)
def update_features(ctx: RequestContext, req):
    r = ctx.reply
    by_name = {f.name: f for f in features()}
    node_id = ctx.broker.config.node_id
    if not cluster_allowed(ctx, ALTER):
        message = "Cluster authorization failed."
        return r("UpdateFeaturesResponse", throttle_time=ZERO_MS, error_code=ErrorCode.cluster_authorization_failed,
                 error_message=message, results=tuple(
                     r("UpdatableFeatureResult", feature=u.feature, error_code=ErrorCode.cluster_authorization_failed,
                       error_message=message) for u in req.feature_updates))
    errors = {u.feature: _check(u, by_name, node_id) for u in req.feature_updates}
    if req.validate_only if hasattr(req, "validate_only") else False:
        # Kafka validates a dry run against its range only: a change it could make is fine.
        errors = {k: None if v and "fixed feature levels" in v else v for k, v in errors.items()}
    failed = next(((k, v) for k, v in errors.items() if v), None)
    if failed is None:
        code, message = ErrorCode.none, None
    else:
        code = ErrorCode.invalid_update_version
        message = f"The update failed for all features since the following feature had an error: {failed[1]}"
    # v0-1 also answer per feature; Kafka fails them all with the first error.
    results = tuple(r("UpdatableFeatureResult", feature=k, error_code=code, error_message=message if code else None)
                    for k in errors)
    return r("UpdateFeaturesResponse", throttle_time=ZERO_MS, error_code=code, error_message=message,
             results=results)

"""ApiVersions: advertise exactly the registered handlers' version ranges."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import HANDLERS, RequestContext, handles
from .features import FINALIZED_EPOCH, finalized_features, supported_features


@handles(18, 0, 4)
def api_versions(ctx: RequestContext, req):
    r = ctx.reply
    keys = tuple(
        r("ApiVersion", api_key=a.key, min_version=a.min_version, max_version=a.max_version)
        for a in sorted(HANDLERS.values(), key=lambda a: a.key)
    )
    # v3+: the features (KIP-584) in tagged fields; clients pick protocol generations from the finalized levels.
    return r("ApiVersionsResponse", error_code=ErrorCode.none, api_keys=keys, throttle_time=ZERO_MS,
             supported_features=supported_features(r, ctx.version), finalized_features_epoch=FINALIZED_EPOCH,
             finalized_features=finalized_features(r), zk_migration_ready=False)

"""ApiVersions: advertise exactly the registered handlers' version ranges."""

from __future__ import annotations

from kio.schema.errors import ErrorCode

from ..protocol import ZERO_MS
from . import HANDLERS, RequestContext, handles


@handles(18, 0, 4)
def api_versions(ctx: RequestContext, req):
    r = ctx.reply
    keys = tuple(
        r("ApiVersion", api_key=a.key, min_version=a.min_version, max_version=a.max_version)
        for a in sorted(HANDLERS.values(), key=lambda a: a.key)
    )
    return r("ApiVersionsResponse", error_code=ErrorCode.none, api_keys=keys, throttle_time=ZERO_MS)

"""SaslHandshake and SaslAuthenticate: the handlers drive the connection's SaslAuthenticator (security/sasl.py).

On a connection that is not authenticating (a PLAINTEXT or SSL listener, or a SASL one already authenticated and
not re-authenticating) both answer ILLEGAL_SASL_STATE, as Kafka's request handler does.
"""

from __future__ import annotations

import datetime

from kio.schema.errors import ErrorCode

from ..security.sasl import AuthenticationFailed
from . import RequestContext, handles


def _authenticator(ctx: RequestContext):
    session = ctx.session
    auth = getattr(session, "authenticator", None) if session is not None else None
    if auth is None or auth.state not in ("versions_or_handshake", "handshake", "authenticate"):
        return None
    return auth


@handles(17, 0, 1)
def sasl_handshake(ctx: RequestContext, req):
    r = ctx.reply
    auth = _authenticator(ctx)
    if auth is None:
        return r("SaslHandshakeResponse", error_code=ErrorCode.illegal_sasl_state, mechanisms=())
    code = auth.handshake(req.mechanism, ctx.version)
    return r("SaslHandshakeResponse", error_code=code, mechanisms=tuple(auth.mechanisms))


@handles(36, 0, 2)
def sasl_authenticate(ctx: RequestContext, req):
    r = ctx.reply
    auth = _authenticator(ctx)
    if auth is None or auth.state != "authenticate":
        return r("SaslAuthenticateResponse", error_code=ErrorCode.illegal_sasl_state,
                 error_message="SaslAuthenticate request received after successful authentication",
                 auth_bytes=b"", session_lifetime=datetime.timedelta(0))
    try:
        token, lifetime_ms = auth.authenticate(req.auth_bytes, ctx.version)
    except AuthenticationFailed as exc:
        return r("SaslAuthenticateResponse", error_code=ErrorCode.sasl_authentication_failed,
                 error_message=str(exc), auth_bytes=b"", session_lifetime=datetime.timedelta(0))
    return r("SaslAuthenticateResponse", error_code=ErrorCode.none, error_message=None, auth_bytes=token,
             session_lifetime=datetime.timedelta(milliseconds=lifetime_ms))

"""TLS for SSL and SASL_SSL listeners (Python's `ssl`), and the principal of a client certificate.

Kafka's keystore and truststore become PEM files: `ssl_keystore_location` holds the server's certificate chain
(and its private key, unless `ssl_key_location` names a separate key file; `ssl_key_password` decrypts it),
`ssl_truststore_location` the CA certificates that client certificates must chain to. `ssl_client_auth` is
"none" (the default), "requested" or "required", as Kafka's ssl.client.auth.
"""

from __future__ import annotations

import ssl

from .session import ANONYMOUS

CLIENT_AUTH = ("none", "requested", "required")


def server_context(keystore: str | None, key: str | None = None, key_password: str | None = None,
                   truststore: str | None = None, client_auth: str = "none") -> ssl.SSLContext:
    """An SSLContext for a TLS listener (TLS 1.2 and 1.3, as Kafka's ssl.enabled.protocols). Raises ValueError
    naming the setting that is missing or unusable."""
    if client_auth not in CLIENT_AUTH:
        raise ValueError(f"Invalid value {client_auth!r} for ssl.client.auth: expected one of {', '.join(CLIENT_AUTH)}")
    if not keystore:
        raise ValueError("a TLS listener (SSL or SASL_SSL) needs ssl_keystore_location: a PEM file with the "
                         "server certificate chain (and its key, or ssl_key_location)")
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(keystore, key or None, key_password)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"cannot load ssl.keystore.location {keystore}"
                         + (f" with key {key}" if key else "") + f": {exc}") from exc
    if client_auth != "none":
        if not truststore:
            raise ValueError(f"ssl.client.auth={client_auth} needs ssl_truststore_location: a PEM file with the "
                             "CA certificates that client certificates are checked against")
        try:
            ctx.load_verify_locations(cafile=truststore)
        except (OSError, ssl.SSLError) as exc:
            raise ValueError(f"cannot load ssl.truststore.location {truststore}: {exc}") from exc
        ctx.verify_mode = ssl.CERT_REQUIRED if client_auth == "required" else ssl.CERT_OPTIONAL
    return ctx


# Attribute keywords that Java's X500Principal.getName() (RFC 2253) prints by name; others print as OID=#hex.
_KEYWORDS = {"2.5.4.3": "CN", "2.5.4.6": "C", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU",
             "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID"}


def _escape(value: str) -> str:
    out = []
    for i, ch in enumerate(value):
        if ch in ',+"\\<>;' or (i == 0 and ch in "# ") or (i == len(value) - 1 and ch == " "):
            out.append("\\" + ch)
        else:
            out.append(ch)
    return "".join(out)


def _der_string(attribute) -> str:
    """#hex of the attribute value's DER encoding (RFC 2253 for attributes without a keyword)."""
    tag = getattr(getattr(attribute, "_type", None), "value", 12)  # the ASN.1 string type; UTF8String if unknown
    data = attribute.value.encode("utf-8") if isinstance(attribute.value, str) else bytes(attribute.value)
    n = len(data)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return "#" + (bytes([tag]) + length + data).hex()


def subject_dn(der_certificate: bytes) -> str:
    """The certificate's subject as Java's X500Principal.getName() gives it (RFC 2253: the most specific RDN
    first, e.g. "CN=alice,OU=eng,O=Acme,C=US"), which Kafka's default principal builder uses as the user name."""
    from cryptography import x509

    cert = x509.load_der_x509_certificate(der_certificate)
    rdns = []
    for rdn in reversed(list(cert.subject.rdns)):
        parts = []
        for attr in rdn:
            oid = attr.oid.dotted_string
            keyword = _KEYWORDS.get(oid)
            parts.append(f"{keyword}={_escape(attr.value)}" if keyword else f"{oid}={_der_string(attr)}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def peer_principal(ssl_object: ssl.SSLObject | None) -> str:
    """"User:<subject DN>" for a verified client certificate, else User:ANONYMOUS (Kafka's default builder)."""
    if ssl_object is None:
        return ANONYMOUS
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return ANONYMOUS
    return "User:" + subject_dn(der)

"""TLS for SSL and SASL_SSL listeners (Python's `ssl`), and the principal of a client certificate.

Kafka's keystore and truststore become PEM files: `ssl_keystore_location` holds the server's certificate chain
(and its private key, unless `ssl_key_location` names a separate key file; `ssl_key_password` decrypts it),
`ssl_truststore_location` the CA certificates that client certificates must chain to. `ssl_client_auth` is
"none" (the default), "requested" or "required", as Kafka's ssl.client.auth.
"""

from __future__ import annotations

import re
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


class NoMatchingRule(ValueError):
    """No ssl.principal.mapping.rules rule applies to a certificate's subject: the connection is refused."""


# Kafka's SslPrincipalMapper grammar: DEFAULT, or RULE:pattern/replacement/[LU], comma-separated.
_RULE = r"(DEFAULT)|RULE:((?:\\.|[^\\/])*)/((?:\\.|[^\\/])*)/([LU]?).*?|(.*?)"
_SPLITTER = re.compile(r"\s*(" + _RULE + r")\s*(?:,\s*|$)")
_PARSER = re.compile(_RULE)


class PrincipalMapper:
    """ssl.principal.mapping.rules: turns a certificate's subject DN into the user name, as Kafka does; the first
    rule that matches the whole DN wins. Raises ValueError for a rule Kafka would not parse."""

    def __init__(self, rules: str | None = "DEFAULT") -> None:
        self.text = rules or "DEFAULT"
        self.rules: list[tuple[re.Pattern, str, str] | None] = []  # None: DEFAULT
        for m in _SPLITTER.finditer(self.text.strip()):
            rule = m.group(1)
            p = _PARSER.match(rule)
            if p is None or p.end() != len(rule):
                raise ValueError(f"Invalid rule: `{rule}` in ssl.principal.mapping.rules")
            if p.group(1):
                self.rules.append(None)
            elif p.group(2) is not None:
                try:
                    pattern = re.compile(p.group(2))
                except re.error as exc:
                    raise ValueError(f"Invalid rule: `{rule}` in ssl.principal.mapping.rules: {exc}") from None
                self.rules.append((pattern, p.group(3), p.group(4)))

    def name(self, dn: str) -> str:
        for rule in self.rules:
            if rule is None:
                return dn
            pattern, replacement, case = rule
            m = pattern.fullmatch(dn)
            if m is None:
                continue
            name = _expand(m, replacement)
            return name.lower() if case == "L" else name.upper() if case == "U" else name
        raise NoMatchingRule(f"No rules apply to {dn}, rules {self.text}")


def _expand(m: re.Match, replacement: str) -> str:
    """A Java regex replacement: $n is group n (a number past the groups loses digits, as Kafka's mapper
    reads it, and is literal if none is left), a backslash escapes the next character."""
    out, i, groups = [], 0, m.re.groups
    while i < len(replacement):
        ch = replacement[i]
        if ch == "\\" and i + 1 < len(replacement):
            out.append(replacement[i + 1])
            i += 2
        elif ch == "$" and i + 1 < len(replacement) and replacement[i + 1].isdigit():
            j = i + 1
            while j < len(replacement) and replacement[j].isdigit():
                j += 1
            digits = replacement[i + 1:j]
            while len(digits) > 1 and int(digits) > groups:
                digits, j = digits[:-1], j - 1
            if int(digits) > groups:
                out.append("$")
                i += 1
                continue
            out.append(m.group(int(digits)) or "")
            i = j
        else:
            out.append(ch)
            i += 1
    return "".join(out)


def peer_principal(ssl_object: ssl.SSLObject | None, mapper: PrincipalMapper | None = None) -> str:
    """"User:<subject DN>" for a verified client certificate (through `mapper`, Kafka's
    ssl.principal.mapping.rules), else User:ANONYMOUS, as Kafka's default principal builder. Raises
    NoMatchingRule when no rule applies."""
    if ssl_object is None:
        return ANONYMOUS
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return ANONYMOUS
    dn = subject_dn(der)
    return "User:" + (mapper.name(dn) if mapper is not None else dn)

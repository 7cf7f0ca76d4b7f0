"""The `broker-embedded` command's security options: listeners, TLS files, SASL users."""

from __future__ import annotations

import argparse

from .scram import MECHANISMS as SCRAM_MECHANISMS
from .sasl import parse_jaas_users


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("security (see docs/broker.md, Security)")
    g.add_argument("--listeners", metavar="LIST",
                   help="Kafka's listeners, e.g. PLAINTEXT://127.0.0.1:9092,SASL_SSL://0.0.0.0:9093 "
                        "(replaces --host/--port)")
    g.add_argument("--advertised-listeners", metavar="LIST",
                   help="addresses given to clients per listener, e.g. SASL_SSL://broker.example.com:9093")
    g.add_argument("--listener-security-protocol-map", metavar="MAP",
                   help="NAME:PROTOCOL pairs for custom listener names, e.g. INTERNAL:SASL_PLAINTEXT")
    g.add_argument("--ssl-keystore", metavar="PEM",
                   help="server certificate chain (PEM), with its private key unless --ssl-key is given")
    g.add_argument("--ssl-key", metavar="PEM", help="the server's private key (PEM), if not in --ssl-keystore")
    g.add_argument("--ssl-key-password", metavar="PASSWORD", help="decrypts an encrypted private key")
    g.add_argument("--ssl-truststore", metavar="PEM", help="CA certificates that client certificates must chain to")
    g.add_argument("--ssl-client-auth", choices=["none", "requested", "required"], default="none",
                   help="ask TLS clients for a certificate (ssl.client.auth; default none)")
    g.add_argument("--ssl-principal-mapping-rules", metavar="RULES", default="DEFAULT",
                   help="client certificate subject -> user name, Kafka's ssl.principal.mapping.rules, "
                        "e.g. 'RULE:^CN=(.*?),.*$/$1/,DEFAULT'")
    g.add_argument("--sasl-mechanisms", metavar="LIST", default="PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                   help="sasl.enabled.mechanisms (default PLAIN,SCRAM-SHA-256,SCRAM-SHA-512)")
    g.add_argument("--plain-user", action="append", default=[], metavar="NAME:PASSWORD",
                   help="a SASL/PLAIN user (repeatable; prefer --plain-users-file: arguments are visible to ps)")
    g.add_argument("--plain-users-file", metavar="FILE",
                   help='SASL/PLAIN users as in a Kafka JAAS file: user_alice="alice-secret" (one or more)')
    g.add_argument("--scram-user", action="append", default=[], metavar="NAME:PASSWORD[:MECHANISM]",
                   help="create a SCRAM user (or reset its password) at start, for SCRAM-SHA-256 and -512 or the "
                        "one mechanism named; stored salted and hashed in the data dir (repeatable)")


def settings_from(args: argparse.Namespace) -> dict:
    """EmbeddedBroker settings from the parsed options; ValueError names a bad one."""
    out: dict = {}
    if args.listeners:
        out["listeners"] = args.listeners
    if args.advertised_listeners:
        out["advertised_listeners"] = args.advertised_listeners
    if args.listener_security_protocol_map:
        out["listener_security_protocol_map"] = args.listener_security_protocol_map
    for option, name in (("ssl_keystore", "ssl_keystore_location"), ("ssl_key", "ssl_key_location"),
                         ("ssl_key_password", "ssl_key_password"), ("ssl_truststore", "ssl_truststore_location")):
        if getattr(args, option):
            out[name] = getattr(args, option)
    out["ssl_client_auth"] = args.ssl_client_auth
    out["ssl_principal_mapping_rules"] = args.ssl_principal_mapping_rules
    out["sasl_enabled_mechanisms"] = tuple(m for m in args.sasl_mechanisms.split(",") if m.strip())
    users: dict[str, str] = {}
    if args.plain_users_file:
        try:
            with open(args.plain_users_file) as f:
                text = f.read()
        except OSError as exc:
            raise ValueError(f"cannot read --plain-users-file {args.plain_users_file}: {exc.strerror}") from None
        users.update(parse_jaas_users(text))
        if not users:
            raise ValueError(f'--plain-users-file {args.plain_users_file} names no user (expected user_NAME="PASSWORD")')
    for item in args.plain_user:
        name, sep, password = item.partition(":")
        if not sep or not name or not password:
            raise ValueError(f"--plain-user expects NAME:PASSWORD, got {item!r}")
        users[name] = password
    if users:
        out["sasl_plain_users"] = users
    scram: dict[str, object] = {}
    for item in args.scram_user:
        name, sep, rest = item.partition(":")
        password, mechanism = rest, None
        if rest.rsplit(":", 1)[-1].upper() in SCRAM_MECHANISMS:
            password, _, mechanism = rest.rpartition(":")
            mechanism = mechanism.upper()
        if not sep or not name or not password:
            raise ValueError(f"--scram-user expects NAME:PASSWORD[:MECHANISM], got {item!r}")
        scram[name] = (password, mechanism) if mechanism else password
    if scram:
        out["scram_users"] = scram
    return out

"""Kafka's ACL model and the authorizer that applies it (the semantics of Kafka's StandardAuthorizer).

An ACL binds a resource pattern (type, name, LITERAL or PREFIXED) to an entry (principal, host, operation,
ALLOW or DENY). A request is allowed when the principal is a super user, or some ALLOW ACL matches and no DENY
ACL does; READ, WRITE, DELETE and ALTER imply DESCRIBE, ALTER_CONFIGS implies DESCRIBE_CONFIGS (for ALLOW only);
a resource no ACL mentions at all is allowed only under `allow.everyone.if.no.acl.found`.

ACLs are durable in `<data dir>/__acls.json`, one JSON document replaced atomically on every change (the same
way as topic metadata), and loaded when the broker starts.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from enum import IntEnum
from typing import Iterable

from .log.durable import write_atomically

ACL_FILE = "__acls.json"
CLUSTER_NAME = "kafka-cluster"
WILDCARD = "*"
WILDCARD_PRINCIPAL = "User:*"
NO_AUTHORIZED_OPERATIONS = -2147483648  # the schema default: operations were not asked for


class ResourceType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    TOPIC = 2
    GROUP = 3
    CLUSTER = 4
    TRANSACTIONAL_ID = 5
    DELEGATION_TOKEN = 6
    USER = 7


class PatternType(IntEnum):
    UNKNOWN = 0
    ANY = 1
    MATCH = 2
    LITERAL = 3
    PREFIXED = 4


class Operation(IntEnum):
    UNKNOWN = 0
    ANY = 1
    ALL = 2
    READ = 3
    WRITE = 4
    CREATE = 5
    DELETE = 6
    ALTER = 7
    DESCRIBE = 8
    CLUSTER_ACTION = 9
    DESCRIBE_CONFIGS = 10
    ALTER_CONFIGS = 11
    IDEMPOTENT_WRITE = 12
    CREATE_TOKENS = 13
    DESCRIBE_TOKENS = 14
    TWO_PHASE_COMMIT = 15


class Permission(IntEnum):
    UNKNOWN = 0
    ANY = 1
    DENY = 2
    ALLOW = 3


_IMPLIES_DESCRIBE = {Operation.DESCRIBE, Operation.READ, Operation.WRITE, Operation.DELETE, Operation.ALTER}
_IMPLIES_DESCRIBE_CONFIGS = {Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS}

# The operations `authorized_operations` reports per resource type (Kafka's AclEntry.supportedOperations).
SUPPORTED_OPERATIONS: dict[ResourceType, tuple[Operation, ...]] = {
    ResourceType.TOPIC: (Operation.READ, Operation.WRITE, Operation.CREATE, Operation.DESCRIBE, Operation.DELETE,
                         Operation.ALTER, Operation.DESCRIBE_CONFIGS, Operation.ALTER_CONFIGS),
    ResourceType.GROUP: (Operation.READ, Operation.DESCRIBE, Operation.DELETE),
    ResourceType.CLUSTER: (Operation.CREATE, Operation.CLUSTER_ACTION, Operation.DESCRIBE_CONFIGS,
                           Operation.ALTER_CONFIGS, Operation.IDEMPOTENT_WRITE, Operation.ALTER, Operation.DESCRIBE),
    ResourceType.TRANSACTIONAL_ID: (Operation.DESCRIBE, Operation.WRITE, Operation.TWO_PHASE_COMMIT),
    ResourceType.DELEGATION_TOKEN: (Operation.DESCRIBE,),
    ResourceType.USER: (Operation.CREATE_TOKENS, Operation.DESCRIBE_TOKENS),
}


class InvalidAcl(ValueError):
    """An ACL or ACL filter Kafka refuses with INVALID_REQUEST; the message says what is wrong."""


def _enum(kind: type[IntEnum], value: int, what: str) -> IntEnum:
    try:
        member = kind(value)
    except ValueError:
        raise InvalidAcl(f"Invalid {what} {value}") from None
    if member == 0:
        raise InvalidAcl(f"Invalid {what} UNKNOWN")
    return member


@dataclass(frozen=True, slots=True)
class AclBinding:
    """One ACL: a resource pattern and an access control entry."""

    resource_type: ResourceType
    name: str
    pattern_type: PatternType
    principal: str
    host: str
    operation: Operation
    permission: Permission

    @classmethod
    def checked(cls, resource_type: int, name: str | None, pattern_type: int, principal: str | None,
                host: str | None, operation: int, permission: int) -> "AclBinding":
        """A new ACL as CreateAcls receives it, validated as Kafka validates it (InvalidAcl otherwise)."""
        rtype = _enum(ResourceType, resource_type, "resourceType")
        if rtype == ResourceType.ANY:
            raise InvalidAcl("Invalid resourceType ANY")
        ptype = _enum(PatternType, pattern_type, "patternType")
        if ptype not in (PatternType.LITERAL, PatternType.PREFIXED):
            raise InvalidAcl(f"Invalid patternType {ptype.name}")
        op = _enum(Operation, operation, "operation")
        if op == Operation.ANY:
            raise InvalidAcl("Invalid operation ANY")
        perm = _enum(Permission, permission, "permissionType")
        if perm == Permission.ANY:
            raise InvalidAcl("Invalid permissionType ANY")
        if not name:
            raise InvalidAcl("Resource name should not be empty")
        if rtype == ResourceType.CLUSTER and name != CLUSTER_NAME:
            raise InvalidAcl(f"The only valid name for the CLUSTER resource is {CLUSTER_NAME}")
        check_principal(principal)
        if host is None:
            raise InvalidAcl("Host should not be null")
        return cls(rtype, name, ptype, principal, host, op, perm)

    def to_json(self) -> dict:
        return {k: int(v) if isinstance(v, IntEnum) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, d: dict) -> "AclBinding":
        return cls(ResourceType(d["resource_type"]), d["name"], PatternType(d["pattern_type"]), d["principal"],
                   d["host"], Operation(d["operation"]), Permission(d["permission"]))


def check_principal(principal: str | None) -> None:
    """Principals are "Type:name" (User:alice); Kafka refuses anything else."""
    if not principal or ":" not in principal or principal.startswith(":"):
        raise InvalidAcl(f"Invalid principal: expected a string in format principalType:principalName but got "
                         f"{principal}")


@dataclass(frozen=True, slots=True)
class AclFilter:
    """What DescribeAcls and DeleteAcls select: None and ANY match everything, MATCH matches the patterns that
    would apply to a named resource."""

    resource_type: ResourceType
    name: str | None
    pattern_type: PatternType
    principal: str | None
    host: str | None
    operation: Operation
    permission: Permission

    @classmethod
    def checked(cls, resource_type: int, name: str | None, pattern_type: int, principal: str | None,
                host: str | None, operation: int, permission: int) -> "AclFilter":
        return cls(_enum(ResourceType, resource_type, "resourceType"), name,
                   _enum(PatternType, pattern_type, "patternType"), principal, host,
                   _enum(Operation, operation, "operation"), _enum(Permission, permission, "permissionType"))

    def matches(self, acl: AclBinding) -> bool:
        if self.resource_type != ResourceType.ANY and self.resource_type != acl.resource_type:
            return False
        if self.principal is not None and self.principal != acl.principal:
            return False
        if self.host is not None and self.host != acl.host:
            return False
        if self.operation != Operation.ANY and self.operation != acl.operation:
            return False
        if self.permission != Permission.ANY and self.permission != acl.permission:
            return False
        if self.pattern_type not in (PatternType.ANY, PatternType.MATCH) and self.pattern_type != acl.pattern_type:
            return False
        if self.name is None:
            return True
        if self.pattern_type in (PatternType.ANY, acl.pattern_type):
            return self.name == acl.name
        if acl.pattern_type == PatternType.LITERAL:  # MATCH: the ACLs that apply to the resource so named
            return self.name == acl.name or acl.name == WILDCARD
        return self.name.startswith(acl.name)


class Authorizer:
    """Decides whether a principal at a host may perform an operation on a resource, from the ACLs it holds."""

    def __init__(self, data_dir: str, super_users: Iterable[str] = (), allow_if_no_acl: bool = False) -> None:
        self.path = os.path.join(data_dir, ACL_FILE)
        self.super_users = frozenset(super_users)
        self.allow_if_no_acl = allow_if_no_acl
        self._acls: list[AclBinding] = []
        # Index: literal ACLs by (type, name), prefixed ACLs by type.
        self._literal: dict[tuple[ResourceType, str], list[AclBinding]] = {}
        self._prefixed: dict[ResourceType, list[AclBinding]] = {}

    # ---- durable state ----

    def load(self) -> None:
        """Read the ACLs written before; a missing file is an empty set."""
        try:
            with open(self.path) as f:
                doc = json.load(f)
            acls = [AclBinding.from_json(d) for d in doc["acls"]]
        except FileNotFoundError:
            acls = []
        except (ValueError, KeyError, TypeError) as exc:  # refuse to start rather than guess who may do what
            raise ValueError(f"cannot read the ACLs in {self.path}: {exc!r}") from exc
        self._set(acls)

    def _save(self, acls: list[AclBinding]) -> None:
        os.makedirs(os.path.dirname(self.path), exist_ok=True)
        write_atomically(self.path, json.dumps({"version": 1, "acls": [a.to_json() for a in acls]}))

    def _set(self, acls: list[AclBinding]) -> None:
        self._acls = acls
        self._literal, self._prefixed = {}, {}
        for a in acls:
            if a.pattern_type == PatternType.LITERAL:
                self._literal.setdefault((a.resource_type, a.name), []).append(a)
            else:
                self._prefixed.setdefault(a.resource_type, []).append(a)

    def create(self, acls: list[AclBinding]) -> None:
        """Add ACLs (an ACL that exists already is no change) and make them durable; OSError leaves none added."""
        current = list(self._acls)
        known = set(current)
        for a in acls:
            if a not in known:
                current.append(a)
                known.add(a)
        if len(current) != len(self._acls):
            self._save(current)
            self._set(current)

    def delete(self, filters: list[AclFilter]) -> list[list[AclBinding]]:
        """Remove the ACLs each filter matches (durably); returns what each filter matched."""
        matched = [[a for a in self._acls if f.matches(a)] for f in filters]
        gone = {a for m in matched for a in m}
        if gone:
            kept = [a for a in self._acls if a not in gone]
            self._save(kept)
            self._set(kept)
        return matched

    def describe(self, flt: AclFilter) -> list[AclBinding]:
        return [a for a in self._acls if flt.matches(a)]

    # ---- decisions ----

    def authorize(self, principal: str, host: str, operation: Operation, resource_type: ResourceType,
                  name: str) -> bool:
        if principal in self.super_users:
            return True
        acls = list(self._literal.get((resource_type, name), ()))
        acls += self._literal.get((resource_type, WILDCARD), ())
        acls += [a for a in self._prefixed.get(resource_type, ()) if name.startswith(a.name)]
        if not acls:
            return self.allow_if_no_acl
        allowed = False
        for a in acls:
            result = _result(a, principal, host, operation)
            if result is Permission.DENY:
                return False
            if result is Permission.ALLOW:
                allowed = True
        return allowed

    def authorized_operations(self, principal: str, host: str, resource_type: ResourceType, name: str) -> int:
        """The bit field of supported operations this principal may perform on the resource."""
        bits = 0
        for op in SUPPORTED_OPERATIONS[resource_type]:
            if self.authorize(principal, host, op, resource_type, name):
                bits |= 1 << op
        return bits

    def authorize_any(self, principal: str, host: str, operation: Operation, resource_type: ResourceType) -> bool:
        """Whether the principal may perform `operation` on at least one resource of the type (Kafka's
        authorizeByResourceType: an ALLOW not dominated by a DENY, or the no-ACL default)."""
        if self.authorize(principal, host, operation, resource_type, "hardcode"):
            return True
        deny_literal: set[str] = set()
        deny_prefixed: set[str] = set()
        allows: list[AclBinding] = []
        for a in self._acls:
            if a.resource_type != resource_type or a.host not in (WILDCARD, host):
                continue
            if a.principal not in (principal, WILDCARD_PRINCIPAL) or a.operation not in (operation, Operation.ALL):
                continue
            if a.permission == Permission.DENY:
                if a.pattern_type == PatternType.LITERAL:
                    if a.name == WILDCARD:
                        return False
                    deny_literal.add(a.name)
                else:
                    deny_prefixed.add(a.name)
            else:
                if a.pattern_type == PatternType.LITERAL and a.name == WILDCARD:
                    return True
                allows.append(a)
        for a in allows:
            if a.pattern_type == PatternType.LITERAL and a.name in deny_literal:
                continue
            if any(a.name[:i] in deny_prefixed for i in range(1, len(a.name) + 1)):
                continue
            return True
        return False


def _result(acl: AclBinding, principal: str, host: str, operation: Operation) -> Permission | None:
    """What this ACL says about the request: ALLOW, DENY, or None when it does not apply."""
    if acl.principal != principal and acl.principal != WILDCARD_PRINCIPAL:
        return None
    if acl.host != WILDCARD and acl.host != host:
        return None
    if acl.operation != Operation.ALL:
        if acl.permission == Permission.ALLOW:
            if operation == Operation.DESCRIBE:
                if acl.operation not in _IMPLIES_DESCRIBE:
                    return None
            elif operation == Operation.DESCRIBE_CONFIGS:
                if acl.operation not in _IMPLIES_DESCRIBE_CONFIGS:
                    return None
            elif acl.operation != operation:
                return None
        elif acl.operation != operation:
            return None
    return acl.permission


def parse_super_users(value: str | Iterable[str]) -> list[str]:
    """`super.users` as Kafka writes it ("User:alice;User:bob") or a list; each must be a principal."""
    users = [u.strip() for u in value.split(";")] if isinstance(value, str) else [str(u).strip() for u in value]
    users = [u for u in users if u]
    for u in users:
        try:
            check_principal(u)
        except InvalidAcl as exc:
            raise ValueError(f"super_users: {exc}") from None
    return users

"""Roles and what each may do. Higher roles include the lower ones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

ROLES = ("viewer", "operator", "admin")


def rank(role: str | None) -> int:
    return ROLES.index(role) + 1 if role in ROLES else 0


@dataclass(frozen=True)
class User:
    subject: str
    email: str
    name: str
    role: str
    claims: dict = field(default_factory=dict, compare=False)

    def can(self, needed: str) -> bool:
        return rank(self.role) >= rank(needed)

    @property
    def label(self) -> str:
        """How the audit log and the logs name this user."""
        return self.email or self.subject


class RoleMapping(Protocol):
    """Where the role is read from: the claim path and the group -> role map (AuthSettings)."""

    @property
    def oidc_roles_claim(self) -> str: ...

    @property
    def role_map(self) -> tuple[tuple[str, str], ...]: ...


_MISSING = object()


def claim_at_path(claims: Mapping[str, object], path: str) -> object | None:
    """The value at a dotted claim path (``realm_access.roles``), or None.

    A key that itself contains dots or colons (``cognito:groups``, ``https://x/groups``)
    is found as a whole before the path is split.
    """
    if path in claims:
        return claims[path]
    value: object = claims
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part, _MISSING)
        if value is _MISSING:
            return None
    return value


def groups_in(value: object) -> list[str]:
    """Group names from a claim value: a list of strings, or one space/comma-separated string."""
    if isinstance(value, str):
        return value.replace(",", " ").split()
    if isinstance(value, Iterable) and not isinstance(value, Mapping):
        return [item for item in value if isinstance(item, str)]
    return []


def resolve_role(
    claims: Mapping[str, object], claim_path: str, role_map: Iterable[tuple[str, str]]
) -> str | None:
    """The highest role that any group in the claim maps to; None when none maps."""
    groups = set(groups_in(claim_at_path(claims, claim_path)))
    mapped = [role for group, role in role_map if group in groups]
    return max(mapped, key=rank) if mapped else None


def user_from_claims(claims: Mapping[str, object], settings: RoleMapping) -> User:
    """The user the verified claims name, with role "" when no group maps to a role.

    The one mapping for every way in (OIDC callback, ALB header), so both grant the same role.
    """
    role = resolve_role(claims, settings.oidc_roles_claim, settings.role_map)
    return User(
        subject=str(claims.get("sub", "")),
        email=str(claims.get("email", "")),
        name=str(claims.get("name", "")),
        role=role or "",
        claims=dict(claims),
    )

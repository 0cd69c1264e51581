"""Decisions: may this principal, acting in this context, do this?

A principal is a user *as seen through one credential*: the token's scopes, project binding and
enrol-only restriction narrow what the account and its project role allow, never widen it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sanctum.access.permissions import (
    DENIAL_HINTS,
    ENROL_ONLY,
    PLATFORM_PERMISSIONS,
    ROLE_PERMISSIONS,
    Account,
    Permission,
    Role,
)
from sanctum.errors import Denied, NotFound

# What a project-bound token may do outside its project: look at itself and mint narrower tokens.
BOUND_TOKEN_PLATFORM: frozenset[Permission] = frozenset(
    {Permission.SELF_READ, Permission.TOKENS_MANAGE, Permission.PROJECTS_LIST}
)


@dataclass(frozen=True)
class Principal:
    user_id: int
    email: str
    is_admin: bool
    can_create_projects: bool
    token_id: int
    token_kind: str
    scopes: frozenset[Permission] = field(default_factory=lambda: frozenset(Permission))
    bound_project_id: int | None = None
    bound_project_name: str | None = None
    enrol_only: bool = False
    ip: str | None = None
    via_cookie: bool = False
    csrf_secret: str | None = None

    @property
    def account(self) -> Account:
        if self.is_admin:
            return Account.ADMIN
        return Account.CREATOR if self.can_create_projects else Account.USER


def platform_allows(principal: Principal, permission: Permission) -> bool:
    allowed = PLATFORM_PERMISSIONS[principal.account] & principal.scopes
    if principal.enrol_only:
        allowed &= ENROL_ONLY
    if principal.bound_project_id is not None:
        allowed &= BOUND_TOKEN_PLATFORM
    return permission in allowed


def authorize_platform(principal: Principal, permission: Permission) -> None:
    if not platform_allows(principal, permission):
        if principal.enrol_only:
            raise Denied("enrol two-factor authentication first (POST /api/v1/me/totp)", code="enrol_2fa")
        raise Denied(f"this credential may not {permission.value}")


def check_binding(principal: Principal, project_name: str) -> None:
    """A project-bound token names its project; any other project is refused before it is looked up."""
    if principal.enrol_only:
        raise Denied("enrol two-factor authentication first (POST /api/v1/me/totp)", code="enrol_2fa")
    if principal.bound_project_name is not None and principal.bound_project_name != project_name:
        raise Denied("this token is bound to another project", code="token_project_mismatch")


def role_allows(role: Role | None, permission: Permission, scopes: frozenset[Permission]) -> bool:
    return role is not None and permission in (ROLE_PERMISSIONS[role] & scopes)


def authorize_project(principal: Principal, role: Role | None, permission: Permission) -> None:
    """``role`` is the principal's role in the project, None when not a member.

    A non-member gets NotFound, as if the project did not exist; admins are not members.
    """
    if role is None:
        raise NotFound("project not found")
    if not role_allows(role, permission, principal.scopes):
        if permission in ROLE_PERMISSIONS[role]:
            raise Denied(f"this token's scopes do not include {permission.value}", code="scope")
        hint = DENIAL_HINTS.get(permission)
        raise Denied(f"your role {role.value} may not {permission.value}" + (f": {hint}" if hint else ""))

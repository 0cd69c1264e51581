"""Creating and finding users."""

from __future__ import annotations

from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.access.permissions import Role
from sanctum.audit import AuditContext, record
from sanctum.config import TwoFactorPolicy
from sanctum.db.models import Membership, User
from sanctum.errors import Conflict, InvalidInput
from sanctum.security import passwords


def create_user(
    session: Session,
    ctx: AuditContext,
    email: str,
    password: str,
    *,
    admin: bool = False,
    can_create_projects: bool = True,
) -> User:
    address = names.email(email)
    try:
        passwords.check_policy(password, email=address)
    except passwords.WeakPasswordError as exc:
        raise InvalidInput(str(exc), code="weak_password") from exc
    if session.scalar(select(User.id).where(User.email == address)) is not None:
        raise Conflict("a user with this e-mail address already exists", code="user_exists")
    user = User(
        email=address,
        password_hash=passwords.hash_password(password),
        is_admin=admin,
        can_create_projects=can_create_projects,
        is_active=True,
        totp_enabled=False,
    )
    session.add(user)
    session.flush()
    record(
        session,
        ctx,
        "admin.user.create",
        target=address,
        details={"admin": admin, "can_create_projects": can_create_projects},
    )
    return user


def by_email(session: Session, email: str) -> User | None:
    return session.scalar(select(User).where(User.email == email.strip().lower()))


def must_have_2fa(session: Session, policy: TwoFactorPolicy, user: User) -> bool:
    """Whether this account needs a second factor before it may do anything but enrol."""
    return requires_2fa(session, policy, user.id, is_admin=user.is_admin)


def requires_2fa(session: Session, policy: TwoFactorPolicy, user_id: int, *, is_admin: bool) -> bool:
    if policy is TwoFactorPolicy.OFF:
        return False
    if policy is TwoFactorPolicy.ALL or is_admin:
        return True
    owns = exists().where(Membership.user_id == user_id, Membership.role == Role.DATA_OWNER.value)
    return bool(session.scalar(select(owns)))

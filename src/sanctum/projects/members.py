"""Project membership: who is in a project and with which role. Owners manage it."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.access.permissions import Role
from sanctum.db.models import Membership, User
from sanctum.errors import Conflict, InvalidInput, NotFound
from sanctum.projects.service import ProjectContext


def parse_role(value: str) -> Role:
    try:
        return Role(value)
    except ValueError:
        allowed = ", ".join(r.value for r in Role)
        raise InvalidInput(f"unknown role {value!r}; use one of {allowed}", code="invalid_role") from None


def list_members(session: Session, ctx: ProjectContext) -> list[tuple[Membership, User]]:
    query = (
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == ctx.project.id)
        .order_by(User.email)
    )
    return [(m, u) for m, u in session.execute(query).all()]


def _membership(session: Session, ctx: ProjectContext, email: str) -> tuple[Membership, User]:
    row = session.execute(
        select(Membership, User)
        .join(User, User.id == Membership.user_id)
        .where(Membership.project_id == ctx.project.id, User.email == names.email(email))
    ).first()
    if row is None:
        raise NotFound("no member with this e-mail address in this project", code="member_not_found")
    return row.Membership, row.User


def _owners(session: Session, ctx: ProjectContext) -> int:
    return (
        session.scalar(
            select(func.count())
            .select_from(Membership)
            .where(Membership.project_id == ctx.project.id, Membership.role == Role.DATA_OWNER.value)
        )
        or 0
    )


def add(session: Session, ctx: ProjectContext, email: str, role: Role) -> tuple[Membership, User]:
    address = names.email(email)
    user = session.scalar(select(User).where(User.email == address, User.is_active.is_(True)))
    if user is None:
        raise NotFound(
            "no active user with this e-mail address; ask an administrator to create it",
            code="user_not_found",
        )
    exists = session.scalar(
        select(Membership.id).where(Membership.project_id == ctx.project.id, Membership.user_id == user.id)
    )
    if exists is not None:
        raise Conflict("this user is already a member; change the role instead", code="already_member")
    membership = Membership(project_id=ctx.project.id, user_id=user.id, role=role.value)
    session.add(membership)
    session.flush()
    ctx.record(session, "member.add", target=address, details={"role": role.value})
    return membership, user


def set_role(session: Session, ctx: ProjectContext, email: str, role: Role) -> tuple[Membership, User]:
    membership, user = _membership(session, ctx, email)
    old = Role(membership.role)
    if old is role:
        return membership, user
    if old is Role.DATA_OWNER and _owners(session, ctx) <= 1:
        raise Conflict(
            "the last data owner cannot be demoted; make someone else owner first", code="last_owner"
        )
    membership.role = role.value
    ctx.record(session, "member.set_role", target=user.email, details={"from": old.value, "to": role.value})
    return membership, user


def remove(session: Session, ctx: ProjectContext, email: str) -> None:
    membership, user = _membership(session, ctx, email)
    if membership.role == Role.DATA_OWNER.value and _owners(session, ctx) <= 1:
        raise Conflict(
            "the last data owner cannot be removed; make someone else owner first", code="last_owner"
        )
    session.delete(membership)
    ctx.record(session, "member.remove", target=user.email, details={"role": membership.role})

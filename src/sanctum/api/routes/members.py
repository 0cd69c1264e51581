"""Project members. Every member may see who else is in the project; owners manage it."""

from __future__ import annotations

from fastapi import APIRouter

from sanctum.api.deps import DbSession, MembersManager, MembersReader
from sanctum.db.models import Membership, User
from sanctum.projects import members
from sanctum.schemas.projects import MemberCreate, MemberPublic, MemberUpdate

router = APIRouter(prefix="/api/v1/projects/{project}/members", tags=["members"])


def member_public(membership: Membership, user: User) -> MemberPublic:
    return MemberPublic(email=user.email, role=membership.role, added_at=membership.created_at)


@router.get("")
def list_members(db: DbSession, ctx: MembersReader) -> list[MemberPublic]:
    return [member_public(m, u) for m, u in members.list_members(db, ctx)]


@router.post("", status_code=201)
def add_member(body: MemberCreate, db: DbSession, ctx: MembersManager) -> MemberPublic:
    result = members.add(db, ctx, body.email, members.parse_role(body.role))
    db.commit()
    return member_public(*result)


@router.patch("/{email}")
def set_member_role(email: str, body: MemberUpdate, db: DbSession, ctx: MembersManager) -> MemberPublic:
    result = members.set_role(db, ctx, email, members.parse_role(body.role))
    db.commit()
    return member_public(*result)


@router.delete("/{email}", status_code=204)
def remove_member(email: str, db: DbSession, ctx: MembersManager) -> None:
    members.remove(db, ctx, email)
    db.commit()

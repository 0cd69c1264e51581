"""Platform administration: accounts. Admins manage users; they see no project content."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import select

from sanctum.accounts.users import create_user
from sanctum.api.deps import DbSession, UserAdmin
from sanctum.db.models import User
from sanctum.projects.service import audit_context
from sanctum.schemas.admin import UserCreate, UserPublic

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.post("/users", status_code=201)
def create(body: UserCreate, db: DbSession, principal: UserAdmin) -> UserPublic:
    user = create_user(
        db,
        audit_context(principal),
        body.email,
        body.password,
        admin=body.admin,
        can_create_projects=body.can_create_projects,
    )
    db.commit()
    return UserPublic.model_validate(user)


@router.get("/users")
def list_users(db: DbSession, _: UserAdmin) -> list[UserPublic]:
    return [UserPublic.model_validate(u) for u in db.scalars(select(User).order_by(User.email)).all()]

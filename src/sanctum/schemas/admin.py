"""Platform administration."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel


class UserCreate(Model):
    email: str = Field(max_length=320)
    password: str = Field(max_length=1024)
    admin: bool = False
    can_create_projects: bool = True


class UserPublic(PublicModel):
    id: int
    email: str
    is_admin: bool
    can_create_projects: bool
    is_active: bool
    totp_enabled: bool
    created_at: datetime

"""API tokens."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel


class TokenCreate(Model):
    name: str = Field(max_length=100)
    scopes: list[str] | None = Field(default=None, max_length=50, description="omit for all your permissions")
    project: str | None = Field(default=None, max_length=64, description="bind the token to one project")
    expires_in_days: int | None = Field(default=None, description="default 30, at most 365")


class TokenPublic(PublicModel):
    id: int
    name: str
    kind: str
    prefix: str
    scopes: list[str] | None
    project: str | None
    created_at: datetime
    expires_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


class TokenCreated(TokenPublic):
    token: str = Field(description="the secret; shown only once")

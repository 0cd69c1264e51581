"""Projects and members."""

from __future__ import annotations

from datetime import datetime

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel


class ProjectCreate(Model):
    name: str = Field(max_length=200)
    title: str = Field(default="", max_length=1000)
    description: str = Field(default="", max_length=10000)


class ProjectPublic(PublicModel):
    name: str
    title: str
    description: str
    created_at: datetime
    role: str = Field(description="your role in this project")
    query_row_limit: int = Field(default=1000, description="most rows a query returns to Data Scientists")
    artifact_download: str = Field(
        default="allowed", description="'airlock': only data owners download experiment artifacts"
    )
    export_approvals: int = Field(default=2, description="independent approvals an export request needs")


class MemberCreate(Model):
    email: str = Field(max_length=320)
    role: str = Field(max_length=64)


class MemberUpdate(Model):
    role: str = Field(max_length=64)


class MemberPublic(PublicModel):
    email: str
    role: str
    added_at: datetime

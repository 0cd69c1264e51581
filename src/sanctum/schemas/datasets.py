"""Datasets, versions, files, shares and queries on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel


class DatasetCreate(Model):
    name: str = Field(max_length=200)
    kind: str = Field(default="files", max_length=16, description="files | table")
    description: str = Field(default="", max_length=10000)


class DatasetPublic(PublicModel):
    name: str = Field(
        description="how this project addresses it: <name>, or <source project>.<name> if shared"
    )
    kind: str
    description: str
    created_at: datetime
    project: str = Field(description="the project that owns the dataset")
    access: str = Field(description="owner, or the share's access: read | write")
    latest_version: int | None
    latest_size: int | None
    latest_files: int | None


class VersionPublic(PublicModel):
    number: int
    state: str
    created_at: datetime
    committed_at: datetime | None
    file_count: int
    total_size: int
    manifest_sha256: str | None
    table_schema: list[dict[str, Any]] | None = None
    row_count: int | None = None


class FilePublic(PublicModel):
    path: str
    size: int
    sha256: str


class ShareCreate(Model):
    project: str = Field(max_length=64, description="the project to share with")
    access: str = Field(default="read", max_length=8, description="read | write")


class SharePublic(PublicModel):
    id: int
    dataset: str
    source_project: str
    target_project: str
    access: str
    state: str
    created_at: datetime
    decided_at: datetime | None
    revoked_at: datetime | None


class QueryRequest(Model):
    sql: str = Field(max_length=100_000)
    max_rows: int | None = Field(default=None, ge=1, description="at most the project's limit for your role")


class QueryResponse(PublicModel):
    columns: list[str]
    types: list[str]
    rows: list[list[Any]]
    row_count: int
    truncated: bool
    row_limit: int


class ProjectSettingsUpdate(Model):
    query_row_limit: int | None = Field(default=None, ge=1, le=1_000_000)
    artifact_download: Literal["allowed", "airlock"] | None = Field(
        default=None, description="'airlock': only data owners download experiment artifacts"
    )
    export_approvals: int | None = Field(
        default=None, ge=1, le=2, description="independent approvals an export request needs (1 or 2)"
    )

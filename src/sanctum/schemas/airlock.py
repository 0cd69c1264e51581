"""The airlock on the wire: export requests (files, checks, reviews, release history) and imports."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel

ReasonText = Field(default="", max_length=10_000)


class ExportCreate(Model):
    title: str = Field(default="", max_length=200)
    justification: str = Field(default="", max_length=10_000, description="why these outputs must leave")


class ExportUpdate(Model):
    title: str | None = Field(default=None, max_length=200)
    justification: str | None = Field(default=None, max_length=10_000)


class ExportFileAdd(Model):
    dataset: str = Field(max_length=200, description="an output dataset of this project")
    version: int = Field(ge=1, description="a committed version produced by a job")
    path: str = Field(max_length=1024, description="the file's path in that version")
    name: str | None = Field(
        default=None,
        max_length=1024,
        description="its name in the export (default: its path); same name replaces",
    )


class ReviewCreate(Model):
    verdict: Literal["approve", "reject"]
    comment: str = Field(default="", max_length=10_000, description="required when rejecting")


class ReasonBody(Model):
    reason: str = ReasonText


class OverrideCreate(Model):
    name: str = Field(max_length=1024, description="the export file whose failed checks are overridden")
    reason: str = Field(max_length=10_000)


class Finding(PublicModel):
    rule: str
    verdict: str = Field(description="pass | review | fail")
    message: str


class ExportFilePublic(PublicModel):
    name: str
    dataset: str
    version: int
    path: str
    size: int
    sha256: str = Field(description="of the bytes reviewed and released")
    job: int = Field(description="the job (number in this project) that produced the version")
    job_manifest_sha256: str
    check_verdict: str = Field(description="pass | review | fail, from the automatic checks")
    findings: list[Finding]
    columns: list[str] | None = None
    row_count: int | None = None
    override_reason: str | None = None
    override_by: str | None = None
    override_at: datetime | None = None
    blocks_release: bool = Field(description="failed its checks and no data owner has overridden them")


class ReviewPublic(PublicModel):
    reviewer: str
    file: str
    verdict: str
    comment: str
    created_at: datetime


class ExportPublic(PublicModel):
    number: int
    project: str
    title: str
    state: str
    state_reason: str
    requested_by: str | None
    created_at: datetime
    submitted_at: datetime | None
    decided_at: datetime | None
    released_at: datetime | None
    released_by: str | None
    required_approvals: int
    reviewers_so_far: int = Field(description="how many people have voted (not what they decided)")
    dmp_version: int | None = None


class ExportDetail(ExportPublic):
    justification: str
    files: list[ExportFilePublic]
    reviews: list[ReviewPublic] = Field(
        description="every verdict once the decision is made; until then only your own"
    )
    verdicts_hidden: bool
    your_pending_files: list[str] = Field(default_factory=list, description="files you have not judged yet")


class ReleasedFilePublic(PublicModel):
    export: int
    name: str
    dataset: str
    version: int
    path: str
    sha256: str
    size: int
    columns: list[str] | None
    row_count: int | None
    job: int
    job_manifest_sha256: str
    released_at: datetime | None


class ExportPreview(PublicModel):
    name: str
    check_verdict: str
    findings: list[Finding]
    kind: str = Field(description="table | text | none (not shown: a figure, binary or too large)")
    columns: list[str] = Field(default_factory=list)
    rows: list[list[Any]] = Field(default_factory=list)
    row_count: int | None = None
    text: str | None = None
    truncated: bool = False


class ImportCreate(Model):
    dataset: str = Field(max_length=200, description="the dataset it lands in (created if new)")
    filename: str = Field(max_length=1024)
    justification: str = Field(max_length=10_000)


class ImportPublic(PublicModel):
    number: int
    project: str
    dataset: str
    original_name: str
    justification: str
    state: str
    state_reason: str
    requested_by: str | None
    decided_by: str | None
    size: int | None
    sha256: str | None
    created_at: datetime
    uploaded_at: datetime | None
    decided_at: datetime | None
    version: int | None = Field(default=None, description="the dataset version it became, once approved")

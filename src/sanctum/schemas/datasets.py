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


class ClassSizeBucketPublic(PublicModel):
    label: str = Field(description="class sizes in this bucket: 1, 2, 3-4, 5-9, 10-19, 20+")
    classes: int
    records: int


class SensitiveDiversityPublic(PublicModel):
    column: str
    distinct_l: int | None = Field(description="fewest distinct sensitive values in any class")
    entropy_l: float | None = Field(description="exp of the smallest Shannon entropy of any class")


class AnonymityFigures(PublicModel):
    """``sanctum.deid.metrics.AnonymityReport``: counts and ratios, never a value of the table."""

    rows: int
    quasi_identifiers: list[str]
    k_threshold: int
    k: int | None = Field(description="size of the smallest equivalence class (none: empty table)")
    equivalence_classes: int
    records_in_small_classes: int
    small_class_share: float
    class_size_histogram: list[ClassSizeBucketPublic]
    sensitive: list[SensitiveDiversityPublic]
    prosecutor_risk_max: float
    prosecutor_risk_average: float
    journalist_risk_max: float
    journalist_risk_average: float
    journalist_basis: str = Field(description="population | sample (then equal to prosecutor risk)")
    population_rows: int | None = None
    population_unmatched_classes: int | None = None
    notes: list[str] = Field(default_factory=list)


class VersionAnonymityPublic(PublicModel):
    """The anonymity report stored with a table version when it was committed."""

    dataset: str
    version: int
    source: str = Field(description="policy (the column policy's QIs) | dicom_metadata (the fixed set)")
    unit: str = Field(description="what one report row counts: record, or patient (DICOM metadata)")
    k_threshold: int
    quasi_identifiers: list[str]
    sensitive: list[str]
    computed_at: datetime
    report: AnonymityFigures

"""Ingest sessions, batches and reports on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel

OUTCOMES = ("stored", "quarantined", "error", "duplicate")


class SafePrivate(Model):
    creator: str = Field(min_length=1, max_length=64, description="private creator, e.g. SIEMENS CSA HEADER")
    element: int = Field(ge=0, le=0xFF, description="the element byte under that creator")


class IngestOptions(Model):
    """How DICOM (and EDF) files are de-identified: the Basic Profile plus these PS3.15 options."""

    dates: Literal["shift", "keep", "remove"] = Field(
        default="shift",
        description="shift: per-patient offset (intervals kept); keep: Retain Longitudinal Full Dates; "
        "remove: the Basic Profile. EDF start dates are shifted under 'keep' too.",
    )
    retain_uids: bool = False
    retain_device_identity: bool = False
    retain_institution_identity: bool = False
    retain_patient_characteristics: bool = False
    clean_descriptors: bool = False
    clean_structured_content: bool = False
    clean_graphics: bool = False
    safe_private: list[SafePrivate] = Field(default_factory=list, max_length=1000)
    safe_values: list[str] = Field(default_factory=list, max_length=10_000)


class IngestCreate(Model):
    dataset: str = Field(max_length=200)
    kind: Literal["files", "table"] = Field(
        default="files", description="the kind of dataset to create when it does not exist"
    )
    create: bool = Field(default=True, description="create the dataset if it does not exist")
    options: IngestOptions = Field(default_factory=IngestOptions)
    policy: dict[str, Any] | None = Field(
        default=None,
        description="the column policy for tables (docs/deid-tables.md); stored with the dataset",
    )
    dask: bool = Field(default=False, description="de-identify on the administrator's Dask cluster")


class IngestLimits(PublicModel):
    max_file_bytes: int
    max_batch_bytes: int
    max_ratio: int


class IngestPublic(PublicModel):
    id: int
    dataset: str
    version: int | None
    state: str = Field(description="open | finished | cancelled")
    dask: bool
    options: dict[str, Any]
    counts: dict[str, int]
    created_by: str | None
    created_at: datetime
    finished_at: datetime | None
    limits: IngestLimits


class SourceOutcome(PublicModel):
    path: str
    kind: str = Field(description="dicom | edf | table | unknown")
    outcome: str = Field(description="stored | quarantined | error | duplicate | skipped (already recorded)")
    reasons: list[str]
    stored_path: str | None = None


class BatchResult(PublicModel):
    outcomes: list[SourceOutcome]
    counts: dict[str, int] = Field(description="the session's running totals after this batch")


class LookupRequest(Model):
    paths: list[str] = Field(max_length=5000)


class LookupResult(PublicModel):
    done: list[str] = Field(description="the paths this session has already recorded, whatever their outcome")


class RefusedEntry(Model):
    path: str = Field(max_length=4096)
    reason: str = Field(max_length=300)


class RefusedRequest(Model):
    entries: list[RefusedEntry] = Field(max_length=5000)


class QuarantineDecision(PublicModel):
    """What the owner decided: released (into ``version`` at ``stored_path``) or discarded."""

    decision: str = Field(description="released | discarded")
    masks: list[list[int]] = Field(description="[x, y, width, height] of each rectangle burned in")
    version: int | None = None
    stored_path: str | None = None
    decided_by: str | None = None
    decided_at: datetime | None = None


class ReportFile(PublicModel):
    path: str = Field(description="the source path, as the uploader named it")
    kind: str
    reasons: list[str]
    stored_path: str | None = None
    review: QuarantineDecision | None = Field(
        default=None, description="a quarantined file's review: released (with its masks) or discarded"
    )


class MetadataTable(PublicModel):
    dataset: str
    version: int
    rows: int


class IngestReport(PublicModel):
    """What an ingest did. Counts, attribute names and reasons only: no value from any file."""

    ingest: int
    project: str
    dataset: str
    version: int | None
    state: str
    counts: dict[str, int]
    actions: dict[str, int] = Field(description="how often each action was applied, per file kind")
    attributes: dict[str, int] = Field(description="<kind>:<attribute>:<action> → count")
    quarantined: list[ReportFile]
    errors: list[ReportFile]
    metadata_table: MetadataTable | None = None
    table_edition: str | None = Field(default=None, description="the PS3.15 Table E.1-1 edition applied")


# --------------------------------------------------------------------------- quarantine review


class MaskCreate(Model):
    """A rectangle to black out, in pixel coordinates from the image's top-left corner."""

    x: int = Field(description="left edge, in pixels (0 = first column)")
    y: int = Field(description="top edge, in pixels (0 = first row)")
    width: int = Field(description="in pixels, at least 1")
    height: int = Field(description="in pixels, at least 1")


class QuarantinedFile(PublicModel):
    """A quarantined source of an ingest. Reasons name rules and attributes, never a value."""

    id: int = Field(description="the source's number, used in the review routes")
    path: str = Field(description="the source path, as the uploader named it")
    kind: str
    reasons: list[str]
    held: bool = Field(
        description="the de-identified output is kept for review (false: the byte scan found an "
        "original value and nothing was kept, or a decision was taken)"
    )
    masks: list[list[int]] = Field(description="[x, y, width, height] of each rectangle drawn so far")
    rows: int | None = None
    columns: int | None = None
    frames: int | None = None
    preview_error: str | None = Field(default=None, description="why no preview can be shown")
    decision: QuarantineDecision | None = None

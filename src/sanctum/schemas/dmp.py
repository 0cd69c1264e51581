"""The data management plan and the compliance report on the wire."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel


class DmpSet(Model):
    """A new DMP version: the whole RDA DMP Common Standard file (``{"dmp": {...}}``)."""

    document: dict[str, Any] = Field(description="the DMP file: a JSON object with a top-level 'dmp'")
    standard: Literal["1.1", "1.2"] | None = Field(
        default=None,
        description="the standard version to validate against (default: from $schema, else 1.2 then 1.1)",
    )
    confirm_shred: bool = Field(
        default=False,
        description="accept that datasets whose retention date has passed are crypto-shredded at the next "
        "lifecycle run",
    )


class DmpProblem(PublicModel):
    path: str
    message: str


class DmpVersionPublic(PublicModel):
    number: int
    standard: str
    title: str
    sha256: str
    set_by: str
    set_at: datetime
    confirm_shred: bool


class DatasetRulesPublic(PublicModel):
    name: str
    described_as: list[str]
    personal_data: str
    sensitive_data: str
    data_access: str | None
    available_until: str | None
    locations: list[str] | None = Field(description="allowed compute countries; null: any")
    deidentification_required: bool


class DmpSummary(PublicModel):
    """What the plan means here: the rules of each governed dataset and the extension's controls."""

    datasets: list[DatasetRulesPublic]
    described_but_absent: list[str] = Field(description="DMP datasets that match no dataset of the project")
    controls: dict[str, Any] = Field(description="the 'sanctum' extension (only what it sets)")


class DmpPublic(DmpVersionPublic):
    document: dict[str, Any]
    summary: DmpSummary
    in_force: bool


class DmpSetResult(DmpVersionPublic):
    shred_at_next_run: list[str]
    shares_revoked: int


class RetentionItem(PublicModel):
    dataset: str
    available_until: str
    days_left: int


class DmpStatus(PublicModel):
    version: int | None
    executor_location: str = Field(description="this server's 'location' setting (the local executor)")
    expiring_soon: list[RetentionItem] = Field(description="retention dates within 30 days")
    overdue: list[RetentionItem] = Field(description="shredded at the next lifecycle run")
    summary: DmpSummary | None


class DmpValidation(PublicModel):
    valid: bool
    standard: str
    sha256: str | None = None
    problems: list[DmpProblem] = Field(default_factory=list)
    summary: DmpSummary | None = None

"""DICOM receiver routes on the wire: which sending AE title goes into which dataset."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from sanctum.schemas.common import Model, PublicModel
from sanctum.schemas.ingest import IngestOptions


class DicomRouteSet(Model):
    """``PUT …/dicom-routes/{ae_title}``: where that sender's instances go, and how they are
    de-identified (the same options as ``sanctum ingest``)."""

    dataset: str = Field(
        max_length=63, description="a files dataset of this project; created on the first reception"
    )
    options: IngestOptions = Field(default_factory=IngestOptions)


class DicomRoutePublic(PublicModel):
    ae_title: str = Field(description="the sender's calling AE title")
    project: str
    dataset: str
    options: dict[str, Any]
    set_by: str | None = Field(description="the data owner the receiver acts for")
    active: bool = Field(
        description="false while set_by is no longer an active data owner here: nothing is accepted"
    )
    created_at: datetime
    updated_at: datetime

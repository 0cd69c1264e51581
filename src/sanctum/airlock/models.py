"""The airlock's tables: export requests with their files and reviews, and import requests.

Why an export file keeps its own copy of path, size, SHA-256, version and job: the request is the
record of what was reviewed and released. It must still say so after the dataset is shredded (its
manifest rows are deleted then) and it must not silently follow a change to the catalog: what is
released is compared, byte for byte, with the SHA-256 recorded here when the file was added.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, BigInteger, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.db.models import Base
from sanctum.db.types import UTCDateTime, utcnow


class ExportRequest(Base):
    __tablename__ = "export_requests"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_export_requests_project_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    title: Mapped[str] = mapped_column(String(200), default="")
    justification: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="draft", index=True)
    state_reason: Mapped[str] = mapped_column(Text, default="")  # why the last transition happened
    requested_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    # The rule in force when the request was (last) submitted: goalposts do not move mid-review.
    required_approvals: Mapped[int] = mapped_column(Integer, default=2)
    dmp_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    submitted_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    released_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class ExportFile(Base):
    """One output file named in a request, with what the automatic checks said about it."""

    __tablename__ = "export_files"
    __table_args__ = (UniqueConstraint("request_id", "name", name="uq_export_files_request_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(1024))  # the file's name in the export (default: its path)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    dataset_name: Mapped[str] = mapped_column(String(100))
    version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL"), index=True
    )
    version_number: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(String(1024))
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))  # of the bytes reviewed (and, later, released)
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    job_number: Mapped[int] = mapped_column(Integer)
    job_manifest_sha256: Mapped[str] = mapped_column(String(64))
    check_verdict: Mapped[str] = mapped_column(String(8))  # pass | review | fail
    check_reasons: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    columns: Mapped[list[str] | None] = mapped_column(JSON, nullable=True)  # tables: for release history
    row_count: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    override_reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    override_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    override_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    added_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ExportReview(Base):
    """One reviewer's verdict on one file; a changed file loses its reviews (its rows are deleted)."""

    __tablename__ = "export_reviews"
    __table_args__ = (UniqueConstraint("file_id", "reviewer_id", name="uq_export_reviews_file_reviewer"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("export_requests.id", ondelete="CASCADE"), index=True)
    file_id: Mapped[int] = mapped_column(ForeignKey("export_files.id", ondelete="CASCADE"))
    reviewer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    verdict: Mapped[str] = mapped_column(String(8))  # approve | reject
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ImportRequest(Base):
    """A file from outside held encrypted under its own key (wrapped by the project key) until a data
    owner decides; approved, it becomes a dataset version; rejected, its bytes and key are destroyed."""

    __tablename__ = "import_requests"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_import_requests_project_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    dataset_name: Mapped[str] = mapped_column(String(100))
    original_name: Mapped[str] = mapped_column(String(255))
    justification: Mapped[str] = mapped_column(Text, default="")
    state: Mapped[str] = mapped_column(String(16), default="draft")
    state_reason: Mapped[str] = mapped_column(Text, default="")
    requested_by_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    sha256: Mapped[str | None] = mapped_column(String(64), nullable=True)
    blob_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    uploaded_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

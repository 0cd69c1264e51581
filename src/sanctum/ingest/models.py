"""The catalog's ingest tables: sessions, one row per source file, table policies, project secrets.

What is deliberately *not* in plaintext here: a source file's path (folder names in hospital exports
often carry patient names) and the per-instance DICOM metadata. Paths are kept as a keyed HMAC (for
the "already ingested?" check) plus the path sealed under a key derived from the dataset's data key
(for the owner's report); the metadata row is sealed the same way. Shredding the dataset therefore
makes them unreadable too. Content is identified by a keyed HMAC, never a plain hash: a plain hash of
a small patient file confirms a guess of its content.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.db.models import Base
from sanctum.db.types import UTCDateTime, utcnow


class ProjectSecret(Base):
    """A random per-project secret (e.g. the pseudonymisation key), wrapped by the project key.

    Why a stored random secret rather than one derived from the project key: rotating the project
    key re-wraps this row and leaves every pseudonym unchanged, and destroying the project key
    (crypto-shredding) destroys the secret with it.
    """

    __tablename__ = "project_secrets"
    __table_args__ = (UniqueConstraint("project_id", "purpose", name="uq_project_secrets_project_purpose"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    purpose: Mapped[str] = mapped_column(String(32))
    wrapped: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DatasetPolicy(Base):
    """The column policy (``sanctum.deid.table_policy`` JSON) tables of a dataset are ingested under."""

    __tablename__ = "dataset_policies"

    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), primary_key=True)
    policy: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))


class IngestSession(Base):
    """One ingest into one draft version: open → finished (committed) or cancelled (discarded)."""

    __tablename__ = "ingest_sessions"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_ingest_sessions_project_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    dataset_id: Mapped[int] = mapped_column(ForeignKey("datasets.id", ondelete="CASCADE"), index=True)
    version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id", ondelete="SET NULL"))
    version_number: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), default="open")
    options: Mapped[dict[str, object]] = mapped_column(JSON)
    use_dask: Mapped[bool] = mapped_column(Boolean, default=False)
    # Running totals, updated by each batch in its own transaction (so a report needs no scan).
    counts: Mapped[dict[str, int]] = mapped_column(JSON)
    actions: Mapped[dict[str, int]] = mapped_column(JSON)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    metadata_dataset_id: Mapped[int | None] = mapped_column(
        ForeignKey("datasets.id", ondelete="SET NULL"), nullable=True
    )
    metadata_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metadata_rows: Mapped[int | None] = mapped_column(Integer, nullable=True)


class IngestSource(Base):
    """One source file of a session and what became of it: stored, quarantined, error or duplicate."""

    __tablename__ = "ingest_sources"
    __table_args__ = (
        UniqueConstraint("session_id", "path_hmac", name="uq_ingest_sources_session_path"),
        Index("ix_ingest_sources_session_content", "session_id", "content_hmac"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    session_id: Mapped[int] = mapped_column(ForeignKey("ingest_sessions.id", ondelete="CASCADE"))
    path_hmac: Mapped[str] = mapped_column(String(64))
    path_sealed: Mapped[bytes] = mapped_column(LargeBinary)
    content_hmac: Mapped[str | None] = mapped_column(String(64), nullable=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    kind: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text, default="")
    stored_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    # A quarantined output waiting for an owner's decision: encrypted under the dataset key, in no
    # version. ``sanctum fsck`` counts it as referenced.
    blob_id: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    meta_sealed: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class QuarantineReview(Base):
    """An owner's review of one quarantined source: the rectangle masks drawn so far and the decision.

    One row per reviewed source, made when the first mask is added or the decision is taken. The
    masks are numbers only (pixel rectangles). ``decision`` is set once: released (the masked file
    went into a new version, named by ``version_number`` and ``stored_path``) or discarded (the
    held blob was deleted); a second decision is a conflict.
    """

    __tablename__ = "quarantine_reviews"

    source_id: Mapped[int] = mapped_column(
        ForeignKey("ingest_sources.id", ondelete="CASCADE"), primary_key=True
    )
    masks: Mapped[list[list[int]]] = mapped_column(JSON)
    decision: Mapped[str | None] = mapped_column(String(16), nullable=True)
    version_number: Mapped[int | None] = mapped_column(Integer, nullable=True)
    stored_path: Mapped[str | None] = mapped_column(String(1024), nullable=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    decided_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))

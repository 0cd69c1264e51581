"""The catalog's DMP table: every version a project's data owners ever set, newest in force.

Why versions are rows that never change: jobs and exports record the number of the plan they ran
under, and the compliance report must be able to show that exact document later. The document is
kept as RFC 8785 canonical JSON, so its SHA-256 names the content whatever the whitespace or key
order it was sent with.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.db.models import Base
from sanctum.db.types import UTCDateTime, utcnow


class DmpVersion(Base):
    __tablename__ = "dmp_versions"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_dmp_versions_project_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    standard: Mapped[str] = mapped_column(String(8))  # the RDA DMP Common Standard version: 1.1 | 1.2
    title: Mapped[str] = mapped_column(String(500), default="")
    document: Mapped[str] = mapped_column(Text)  # canonical JSON (RFC 8785) of the whole file
    sha256: Mapped[str] = mapped_column(String(64))
    # A retention date already past was accepted knowingly: those datasets go at the next run.
    confirm_shred: Mapped[bool] = mapped_column(Boolean, default=False)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_by_email: Mapped[str] = mapped_column(String(254), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

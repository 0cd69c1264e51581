"""The catalog's DICOM tables: routes (calling AE title → project and dataset) and receptions.

Why a reception row per association: an association is an ingest session that only a release may
commit. If the receiver dies in the middle, nothing would ever close that session; the row says
which receiver opened it (``listener``), so the next start of that receiver cancels what the dead
one left open, and cancels nothing a live receiver elsewhere is still filling.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import JSON, ForeignKey, Index, Integer, String
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.db.models import Base
from sanctum.db.types import UTCDateTime, utcnow


class DicomRoute(Base):
    """One calling AE title, platform-wide unique, sending into one dataset of one project.

    The receiver acts for ``set_by`` (the owner who last set the route): while that person is no
    longer an active data owner of the project, the route accepts nothing.
    """

    __tablename__ = "dicom_routes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    ae_title: Mapped[str] = mapped_column(String(16), unique=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    dataset: Mapped[str] = mapped_column(String(100))
    options: Mapped[dict[str, object]] = mapped_column(JSON)
    set_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class DicomReception(Base):
    """One association that carried data: its ingest session and how it ended."""

    __tablename__ = "dicom_receptions"
    __table_args__ = (Index("ix_dicom_receptions_listener_state", "listener", "state"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    ingest_id: Mapped[int] = mapped_column(ForeignKey("ingest_sessions.id", ondelete="CASCADE"))
    ae_title: Mapped[str] = mapped_column(String(16))
    listener: Mapped[str] = mapped_column(String(300))
    peer: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16), default="open")  # open | committed | cancelled
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)

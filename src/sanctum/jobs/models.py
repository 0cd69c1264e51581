"""The catalog's job tables: signing keys, jobs with their inputs, compute nodes and key grants.

A job row keeps the canonical manifest bytes and the signature exactly as submitted, so anyone can
verify it again later; the code bundle and the logs are blobs encrypted under the job's own key,
wrapped by the project key. The lineage of an output version is the job that produced it.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from sanctum.db.models import Base
from sanctum.db.types import UTCDateTime, utcnow


class SigningKey(Base):
    """A user's Ed25519 public key; the private half never leaves the user's machine."""

    __tablename__ = "signing_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(64))
    public_key: Mapped[bytes] = mapped_column(LargeBinary)
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Node(Base):
    """A compute node allowed to receive data keys (Slurm executor)."""

    __tablename__ = "compute_nodes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    public_key: Mapped[bytes] = mapped_column(LargeBinary)  # Ed25519: the node's requests are signed
    sealing_key: Mapped[bytes] = mapped_column(LargeBinary)  # X25519: data keys are sealed to it
    addresses: Mapped[str] = mapped_column(Text, default="")  # allow-listed source addresses, comma-separated
    location: Mapped[str] = mapped_column(String(64), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    registered_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    retired_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_jobs_project_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    manifest: Mapped[str] = mapped_column(Text)  # canonical JSON (RFC 8785), as signed
    manifest_sha256: Mapped[str] = mapped_column(String(64), unique=True)  # a replayed manifest collides
    signature: Mapped[str] = mapped_column(String(128))
    signing_key_id: Mapped[int | None] = mapped_column(ForeignKey("signing_keys.id", ondelete="SET NULL"))
    signer_fingerprint: Mapped[str] = mapped_column(String(64))
    submitted_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    executor: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    reason: Mapped[str] = mapped_column(Text, default="")
    wrapped_key: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    bundle_blob_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    bundle_sha256: Mapped[str] = mapped_column(String(64))
    bundle_size: Mapped[int] = mapped_column(BigInteger)
    stdout_blob_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stderr_blob_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    output_name: Mapped[str] = mapped_column(String(64))
    output_dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    output_version_id: Mapped[int | None] = mapped_column(
        ForeignKey("dataset_versions.id", ondelete="SET NULL"), index=True
    )
    dmp_version: Mapped[int | None] = mapped_column(Integer, nullable=True)
    metrics: Mapped[str | None] = mapped_column(Text, nullable=True)  # JSON from /output/metrics.json
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    slurm_job_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    node_id: Mapped[int | None] = mapped_column(ForeignKey("compute_nodes.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime, nullable=True)


class JobInput(Base):
    """One input dataset version of a job, pinned at submit time."""

    __tablename__ = "job_inputs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    address: Mapped[str] = mapped_column(String(200))  # as the manifest names it
    dataset_id: Mapped[int | None] = mapped_column(ForeignKey("datasets.id", ondelete="SET NULL"))
    version_id: Mapped[int | None] = mapped_column(ForeignKey("dataset_versions.id", ondelete="SET NULL"))
    version_number: Mapped[int] = mapped_column(Integer)
    version_manifest_sha256: Mapped[str] = mapped_column(String(64))


class NodeKeyGrant(Base):
    """A job's data keys were sealed to a node: at most once per job (a replayed request fails)."""

    __tablename__ = "node_key_grants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), unique=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("compute_nodes.id", ondelete="CASCADE"))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

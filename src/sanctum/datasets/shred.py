"""Crypto-shredding: erasure by destroying keys (a GDPR Article 17 request, or retention expiry).

Destroying a dataset's wrapped data key makes every copy of its blobs — on this disk, in backups
of the blob store, anywhere — undecryptable. The blob files are deleted too, as housekeeping; the
erasure does not depend on it. The manifests go as well (file paths can name people, and a
plaintext SHA-256 confirms a guess of a small file); the version records stay with their counts.
"""

from __future__ import annotations

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from sanctum.datasets import sharing
from sanctum.datasets.catalog import DatasetRef
from sanctum.db.models import Dataset, DatasetVersion, Project, VersionFile
from sanctum.db.types import utcnow
from sanctum.errors import InvalidInput
from sanctum.projects.service import ProjectContext


def blob_ids(session: Session, dataset_ids: list[int]) -> list[str]:
    return list(
        session.scalars(
            select(VersionFile.blob_id)
            .join(DatasetVersion, DatasetVersion.id == VersionFile.version_id)
            .where(DatasetVersion.dataset_id.in_(dataset_ids))
        ).all()
    )


def shred_dataset(session: Session, ctx: ProjectContext, ref: DatasetRef, *, confirm: str) -> list[str]:
    """Destroy the dataset's key; return the blob ids whose files can now be deleted."""
    if ref.share is not None:
        raise InvalidInput("only the project that owns a dataset can shred it", code="not_owner")
    if confirm != ref.dataset.name:
        raise InvalidInput("to shred, confirm with the dataset's exact name", code="confirm")
    dataset = ref.dataset
    blobs = blob_ids(session, [dataset.id])
    size = session.scalar(
        select(func.coalesce(func.sum(VersionFile.size), 0))
        .join(DatasetVersion, DatasetVersion.id == VersionFile.version_id)
        .where(DatasetVersion.dataset_id == dataset.id)
    )
    revoked = sharing.revoke_all(session, ctx, dataset.id)
    name = dataset.name
    dataset.wrapped_key = None
    dataset.shredded_at = utcnow()
    dataset.name = f"shredded-{dataset.id}"  # frees the name, which may itself identify someone
    dataset.description = ""
    _forget_manifests(session, [dataset.id])
    ctx.record(
        session,
        "dataset.shred",
        target=name,
        details={"blobs": len(blobs), "bytes": int(size or 0), "shares_revoked": revoked},
    )
    return blobs


def _forget_manifests(session: Session, dataset_ids: list[int]) -> None:
    version_ids = select(DatasetVersion.id).where(DatasetVersion.dataset_id.in_(dataset_ids))
    session.execute(delete(VersionFile).where(VersionFile.version_id.in_(version_ids)))
    session.execute(
        update(DatasetVersion).where(DatasetVersion.dataset_id.in_(dataset_ids)).values(table_schema=None)
    )


def shred_project(session: Session, ctx: ProjectContext, *, confirm: str) -> list[str]:
    """Destroy the project key (and so every dataset key under it) and the project itself."""
    project = ctx.project
    if confirm != project.name:
        raise InvalidInput("to delete a project, confirm with its exact name", code="confirm")
    datasets = session.scalars(select(Dataset).where(Dataset.project_id == project.id)).all()
    blobs = blob_ids(session, [d.id for d in datasets])
    for dataset in datasets:
        sharing.revoke_all(session, ctx, dataset.id)
        dataset.wrapped_key = None
        dataset.shredded_at = dataset.shredded_at or utcnow()
    project.wrapped_key = None
    ctx.record(
        session,
        "project.delete",
        target=project.name,
        details={"datasets": len(datasets), "blobs": len(blobs)},
    )
    session.flush()
    session.delete(session.get(Project, project.id))
    return blobs

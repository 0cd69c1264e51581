"""Datasets and versions: create, list, commit, shred. Bytes move in routes/files.py."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sanctum.api.deps import (
    DataImporter,
    DatasetsManager,
    DatasetsReader,
    DbSession,
    RuntimeDep,
    Shredder,
    record_outside,
)
from sanctum.datasets import anonymity, catalog, shred
from sanctum.datasets.catalog import DatasetRef
from sanctum.db.models import DatasetVersion, VersionFile
from sanctum.errors import NotFound
from sanctum.schemas.datasets import (
    AnonymityFigures,
    DatasetCreate,
    DatasetPublic,
    FilePublic,
    VersionAnonymityPublic,
    VersionPublic,
)

router = APIRouter(prefix="/api/v1/projects/{project}/datasets", tags=["datasets"])


def dataset_public(ref: DatasetRef, latest: DatasetVersion | None) -> DatasetPublic:
    return DatasetPublic(
        name=ref.address,
        kind=ref.dataset.kind,
        description=ref.dataset.description,
        created_at=ref.dataset.created_at,
        project=ref.owner.name,
        access="owner" if ref.share is None else ref.share.access,
        latest_version=latest.number if latest else None,
        latest_size=latest.total_size if latest else None,
        latest_files=latest.file_count if latest else None,
    )


def version_public(version: DatasetVersion) -> VersionPublic:
    return VersionPublic.model_validate(version)


def file_public(entry: VersionFile) -> FilePublic:
    return FilePublic(path=entry.path, size=entry.size, sha256=entry.sha256)


@router.get("")
def list_datasets(ctx: DatasetsReader, db: DbSession) -> list[DatasetPublic]:
    refs = catalog.list_for(db, ctx)
    latest = catalog.latest_versions(db, [r.dataset.id for r in refs])
    return [dataset_public(r, latest.get(r.dataset.id)) for r in refs]


@router.post("", status_code=201)
def create_dataset(
    body: DatasetCreate, ctx: DatasetsManager, db: DbSession, runtime: RuntimeDep
) -> DatasetPublic:
    ref = catalog.create(
        db, ctx, runtime.keyring, name=body.name, kind=body.kind, description=body.description
    )
    db.commit()
    return dataset_public(ref, None)


@router.get("/{dataset}")
def get_dataset(dataset: str, ctx: DatasetsReader, db: DbSession) -> DatasetPublic:
    ref = catalog.resolve(db, ctx, dataset)
    return dataset_public(ref, catalog.latest_versions(db, [ref.dataset.id]).get(ref.dataset.id))


@router.delete("/{dataset}", status_code=204)
def shred_dataset(
    dataset: str,
    ctx: Shredder,
    db: DbSession,
    runtime: RuntimeDep,
    confirm: Annotated[str, Query(max_length=200, description="the dataset's name, to confirm")] = "",
) -> None:
    """Crypto-shred: destroy the dataset's key (every copy of its blobs becomes unreadable)."""
    ref = catalog.resolve(db, ctx, dataset, for_update=True)
    blobs = shred.shred_dataset(db, ctx, ref, confirm=confirm)
    db.commit()
    for blob_id in blobs:  # housekeeping only: without the key these files are noise already
        runtime.store.delete(blob_id)


@router.get("/{dataset}/versions")
def list_versions(
    dataset: str, ctx: DatasetsReader, db: DbSession, drafts: bool = False
) -> list[VersionPublic]:
    ref = catalog.resolve(db, ctx, dataset)
    return [version_public(v) for v in catalog.versions(db, ref, include_drafts=drafts)]


@router.post("/{dataset}/versions", status_code=201)
def create_version(dataset: str, ctx: DataImporter, db: DbSession) -> VersionPublic:
    """A draft: upload its files with PUT …/files/{path}, then commit it."""
    ref = catalog.resolve(db, ctx, dataset)
    draft = catalog.new_version(db, ctx, ref)
    db.commit()
    return version_public(draft)


@router.get("/{dataset}/versions/{version}")
def get_version(dataset: str, version: int, ctx: DatasetsReader, db: DbSession) -> VersionPublic:
    ref = catalog.resolve(db, ctx, dataset)
    return version_public(catalog.version(db, ref, version, committed=False))


@router.delete("/{dataset}/versions/{version}", status_code=204)
def discard_draft(dataset: str, version: int, ctx: DataImporter, db: DbSession, runtime: RuntimeDep) -> None:
    """Give up on a draft: it and its uploaded files go. Committed versions are immutable (409)."""
    ref = catalog.resolve(db, ctx, dataset)
    blobs = catalog.discard_draft(db, ctx, ref, version)
    db.commit()
    for blob_id in blobs:
        runtime.store.delete(blob_id)


@router.post("/{dataset}/versions/{version}/commit")
def commit_version(
    dataset: str, version: int, ctx: DataImporter, db: DbSession, runtime: RuntimeDep
) -> VersionPublic:
    """Make the draft visible; from now on it never changes. A table version's anonymity report is
    computed and stored with it (a report that is due but fails refuses the commit)."""
    ref = catalog.resolve(db, ctx, dataset)
    committed = catalog.commit(db, ctx, ref, version, keyring=runtime.keyring, store=runtime.store)
    db.commit()
    return version_public(committed)


@router.get("/{dataset}/versions/{version}/anonymity")
def get_anonymity(dataset: str, version: int, ctx: DatasetsReader, db: DbSession) -> VersionAnonymityPublic:
    """The anonymity report stored with a committed table version (counts and ratios only, so
    every member who may see the dataset may read it). 404 when the version has none."""
    ref = catalog.resolve(db, ctx, dataset)
    found = catalog.version(db, ref, version)
    stored = anonymity.load(db, found)
    if stored is None:
        raise NotFound(
            "this version has no anonymity report: its dataset declares no quasi-identifiers "
            "(or it was committed before reports were stored)",
            code="no_anonymity_report",
        )
    return anonymity_public(ref, found, stored)


def anonymity_public(
    ref: DatasetRef, version: DatasetVersion, stored: anonymity.VersionAnonymity
) -> VersionAnonymityPublic:
    return VersionAnonymityPublic(
        dataset=ref.address,
        version=version.number,
        source=stored.source,
        unit=stored.unit,
        k_threshold=stored.k_threshold,
        quasi_identifiers=stored.quasi_identifiers,
        sensitive=stored.sensitive,
        computed_at=stored.computed_at,
        report=AnonymityFigures.model_validate(stored.report),
    )


@router.get("/{dataset}/versions/{version}/files")
def list_files(
    dataset: str, version: int, ctx: DatasetsReader, db: DbSession, runtime: RuntimeDep
) -> list[FilePublic]:
    """The manifest: paths, sizes and SHA-256 of the plaintext (drafts too, for their uploaders)."""
    ref = catalog.resolve(db, ctx, dataset)
    found = catalog.version(db, ref, version, committed=False)
    entries = catalog.files(db, found)
    record_outside(
        runtime, ctx, "dataset.list_files", target=f"{ref.address}@{version}", details={"files": len(entries)}
    )
    return [file_public(e) for e in entries]

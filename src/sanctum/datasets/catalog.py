"""Datasets and their versions in a project's context: create, resolve, list, commit.

A project sees its own datasets by name and datasets shared into it (accepted, not revoked) as
``<source project>.<dataset>``. Everything is loaded through ``resolve``, which filters in SQL by
the project context, so another project's dataset is simply not found.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from enum import StrEnum

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, DatasetVersion, Project, Share, VersionFile
from sanctum.db.types import utcnow
from sanctum.errors import Conflict, Denied, InvalidInput, NotFound
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobStore


class Kind(StrEnum):
    FILES = "files"
    TABLE = "table"


class VersionState(StrEnum):
    DRAFT = "draft"
    COMMITTED = "committed"


@dataclass(frozen=True)
class DatasetRef:
    """A dataset as one project reaches it: its own, or through an accepted share."""

    dataset: Dataset
    owner: Project
    share: Share | None = None

    @property
    def address(self) -> str:
        return self.dataset.name if self.share is None else f"{self.owner.name}.{self.dataset.name}"

    @property
    def writable(self) -> bool:
        return self.share is None or self.share.access == "write"


DATASET_NAME_HELP = (
    "1-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit"
)


def dataset_name(value: str) -> str:
    """Dataset names appear in URLs, SQL table names and job paths; single hyphens only, so that
    ``a-b`` (SQL ``a_b``) never collides with a table shared in as ``<project>__<dataset>``."""
    if len(value) > 63 or not names.DATASET_NAME.fullmatch(value):
        raise InvalidInput(f"invalid dataset name: use {DATASET_NAME_HELP}", code="invalid_name")
    return value


def create(
    session: Session, ctx: ProjectContext, keyring: Keyring, *, name: str, kind: str, description: str = ""
) -> DatasetRef:
    name = dataset_name(name)
    try:
        kind_ = Kind(kind)
    except ValueError:
        raise InvalidInput("kind must be 'files' or 'table'", code="invalid_kind") from None
    description = names.label(description, field="description", max_length=5000)
    exists = session.scalar(
        select(Dataset.id).where(Dataset.project_id == ctx.project.id, Dataset.name == name)
    )
    if exists is not None:
        raise Conflict("a dataset with this name already exists in this project", code="dataset_exists")
    dataset = Dataset(
        project_id=ctx.project.id,
        name=name,
        kind=kind_.value,
        description=description,
        created_by_id=ctx.principal.user_id,
    )
    session.add(dataset)
    session.flush()
    keyring.new_dataset_key(session, ctx.project, dataset)
    ctx.record(session, "dataset.create", target=name, details={"kind": kind_.value})
    return DatasetRef(dataset, ctx.project)


def resolve(session: Session, ctx: ProjectContext, address: str, *, for_update: bool = False) -> DatasetRef:
    """The dataset ``address`` names in this project's context, or NotFound."""
    source, dot, name = address.partition(".")
    if not dot:
        query = select(Dataset).where(
            Dataset.project_id == ctx.project.id, Dataset.name == address, Dataset.shredded_at.is_(None)
        )
        if for_update:
            query = query.with_for_update()
        dataset = session.scalar(query)
        if dataset is None:
            raise NotFound("dataset not found")
        return DatasetRef(dataset, ctx.project)
    row = session.execute(
        select(Dataset, Project, Share)
        .join(Project, Project.id == Dataset.project_id)
        .join(Share, Share.dataset_id == Dataset.id)
        .where(
            Share.target_project_id == ctx.project.id,
            Share.state == "accepted",
            Project.name == source,
            Dataset.name == name,
            Dataset.shredded_at.is_(None),
        )
    ).first()
    if row is None:
        raise NotFound("dataset not found")
    return DatasetRef(row.Dataset, row.Project, row.Share)


def list_for(session: Session, ctx: ProjectContext) -> list[DatasetRef]:
    """Own datasets and accepted shares, each filtered in SQL."""
    own = session.scalars(
        select(Dataset)
        .where(Dataset.project_id == ctx.project.id, Dataset.shredded_at.is_(None))
        .order_by(Dataset.name)
    ).all()
    shared = session.execute(
        select(Dataset, Project, Share)
        .join(Share, Share.dataset_id == Dataset.id)
        .join(Project, Project.id == Dataset.project_id)
        .where(
            Share.target_project_id == ctx.project.id,
            Share.state == "accepted",
            Dataset.shredded_at.is_(None),
        )
        .order_by(Project.name, Dataset.name)
    ).all()
    return [DatasetRef(d, ctx.project) for d in own] + [DatasetRef(d, p, s) for d, p, s in shared]


def latest_versions(session: Session, dataset_ids: list[int]) -> dict[int, DatasetVersion]:
    if not dataset_ids:
        return {}
    newest = (
        select(DatasetVersion.dataset_id, func.max(DatasetVersion.number).label("number"))
        .where(DatasetVersion.dataset_id.in_(dataset_ids), DatasetVersion.state == VersionState.COMMITTED)
        .group_by(DatasetVersion.dataset_id)
        .subquery()
    )
    rows = session.scalars(
        select(DatasetVersion).join(
            newest,
            (DatasetVersion.dataset_id == newest.c.dataset_id) & (DatasetVersion.number == newest.c.number),
        )
    ).all()
    return {v.dataset_id: v for v in rows}


def new_version(session: Session, ctx: ProjectContext, ref: DatasetRef) -> DatasetVersion:
    if not ref.writable:
        raise Denied("this dataset is shared with this project read-only", code="read_only_share")
    # Two writers (e.g. two jobs finishing into one output dataset) must not pick the same number:
    # lock the dataset row first (a no-op on SQLite, whose one writer already serialises this).
    session.execute(select(Dataset.id).where(Dataset.id == ref.dataset.id).with_for_update())
    number = (
        session.scalar(
            select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == ref.dataset.id)
        )
        or 0
    ) + 1
    version = DatasetVersion(
        dataset_id=ref.dataset.id,
        number=number,
        state=VersionState.DRAFT,
        created_by_id=ctx.principal.user_id,
    )
    session.add(version)
    session.flush()
    ctx.record(session, "dataset.version.create", target=f"{ref.address}@{number}")
    return version


def version(session: Session, ref: DatasetRef, number: int, *, committed: bool = True) -> DatasetVersion:
    """A committed version (or, for writers, a draft); anything else is not found."""
    query = select(DatasetVersion).where(
        DatasetVersion.dataset_id == ref.dataset.id, DatasetVersion.number == number
    )
    if committed:
        query = query.where(DatasetVersion.state == VersionState.COMMITTED)
    found = session.scalar(query)
    if found is None:
        raise NotFound("version not found")
    return found


def draft(session: Session, ref: DatasetRef, number: int) -> DatasetVersion:
    found = version(session, ref, number, committed=False)
    if found.state != VersionState.DRAFT:
        raise Conflict("this version is committed and immutable; create a new version", code="immutable")
    if not ref.writable:
        raise Denied("this dataset is shared with this project read-only", code="read_only_share")
    return found


def versions(session: Session, ref: DatasetRef, *, include_drafts: bool = False) -> list[DatasetVersion]:
    query = select(DatasetVersion).where(DatasetVersion.dataset_id == ref.dataset.id)
    if not include_drafts:
        query = query.where(DatasetVersion.state == VersionState.COMMITTED)
    return list(session.scalars(query.order_by(DatasetVersion.number)).all())


def files(session: Session, version_: DatasetVersion) -> list[VersionFile]:
    return list(
        session.scalars(
            select(VersionFile).where(VersionFile.version_id == version_.id).order_by(VersionFile.path)
        ).all()
    )


def file(session: Session, version_: DatasetVersion, path: str) -> VersionFile:
    found = session.scalar(
        select(VersionFile).where(VersionFile.version_id == version_.id, VersionFile.path == path)
    )
    if found is None:
        raise NotFound("no such file in this version")
    return found


def discard_draft(session: Session, ctx: ProjectContext, ref: DatasetRef, number: int) -> list[str]:
    """Drop an uncommitted draft (an upload given up on); return the blob ids to delete."""
    found = draft(session, ref, number)
    blob_ids = [f.blob_id for f in files(session, found)]
    session.delete(found)  # its file rows go with it (ON DELETE CASCADE)
    ctx.record(
        session, "dataset.version.discard", target=f"{ref.address}@{number}", details={"files": len(blob_ids)}
    )
    return blob_ids


def manifest_digest(entries: list[VersionFile]) -> str:
    manifest = [
        {"path": f.path, "size": f.size, "sha256": f.sha256} for f in sorted(entries, key=lambda f: f.path)
    ]
    return hashlib.sha256(json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def commit(
    session: Session,
    ctx: ProjectContext,
    ref: DatasetRef,
    number: int,
    *,
    keyring: Keyring | None = None,
    store: BlobStore | None = None,
) -> DatasetVersion:
    """Make a draft visible. From here on its manifest never changes.

    A table version gets its anonymity report here, in this transaction (``anonymity.on_commit``),
    read from the stored blob: so every way a table version is made carries one, and a version whose
    report is due but fails is not committed. Committing a table therefore needs ``keyring`` and
    ``store``; files datasets do not.
    """
    found = draft(session, ref, number)
    entries = files(session, found)
    if not entries:
        raise InvalidInput(
            "a version needs at least one file before it can be committed", code="empty_version"
        )
    if ref.dataset.kind == Kind.TABLE:
        from sanctum.datasets import anonymity  # pyarrow/DuckDB load with the first table

        anonymity.on_commit(session, ctx, ref, found, entries, keyring, store)
    found.state = VersionState.COMMITTED
    found.committed_at = utcnow()
    found.file_count = len(entries)
    found.total_size = sum(f.size for f in entries)
    found.manifest_sha256 = manifest_digest(entries)
    ctx.record(
        session,
        "dataset.version.commit",
        target=f"{ref.address}@{number}",
        details={"files": found.file_count, "bytes": found.total_size, "manifest": found.manifest_sha256},
    )
    return found

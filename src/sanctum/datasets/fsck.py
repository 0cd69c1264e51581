"""``sanctum fsck``: proof that the blob store and the catalog agree.

Checks that every file of every version has its blob, that each blob's size matches the manifest,
and (``deep``) that each blob decrypts under its dataset key to bytes with the recorded SHA-256.
Blobs that no version references are orphans: the remains of an upload whose process died between
writing the blob and recording it. ``cleanup_orphans`` removes those older than an hour (younger
ones may belong to an upload still in flight in another worker).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, DatasetVersion, Project, VersionFile
from sanctum.errors import SanctumError
from sanctum.store import BlobNotFound, LocalBlobStore, StoreError

ORPHAN_MIN_AGE_S = 3600


@dataclass
class Problem:
    kind: str  # missing_blob | size_mismatch | integrity | hash_mismatch | orphan_blob | key_unavailable
    blob_id: str
    detail: str


@dataclass
class Report:
    files: int = 0
    blobs: int = 0
    checked_bytes: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _entries(session: Session) -> Iterator[tuple[VersionFile, Dataset, Project, DatasetVersion]]:
    rows = session.execute(
        select(VersionFile, Dataset, Project, DatasetVersion)
        .join(DatasetVersion, DatasetVersion.id == VersionFile.version_id)
        .join(Dataset, Dataset.id == DatasetVersion.dataset_id)
        .join(Project, Project.id == Dataset.project_id)
        .where(Dataset.shredded_at.is_(None))
        .order_by(VersionFile.id)
    )
    for row in rows:
        yield tuple(row)  # type: ignore[misc]


def check(session: Session, store: LocalBlobStore, keyring: Keyring, *, deep: bool = False) -> Report:
    report = Report()
    referenced: set[str] = set()
    for entry, dataset, project, version in _entries(session):
        report.files += 1
        referenced.add(entry.blob_id)
        where = f"{project.name}/{dataset.name}@{version.number}:{entry.path}"
        try:
            size = store.size(entry.blob_id)
        except BlobNotFound:
            report.problems.append(Problem("missing_blob", entry.blob_id, f"{where}: blob is missing"))
            continue
        except StoreError as exc:
            report.problems.append(Problem("integrity", entry.blob_id, f"{where}: {exc}"))
            continue
        if size != entry.size:
            report.problems.append(
                Problem(
                    "size_mismatch",
                    entry.blob_id,
                    f"{where}: blob holds {size} bytes, manifest says {entry.size}",
                )
            )
            continue
        if deep:
            _deep(report, store, keyring, session, dataset, entry, where)
    referenced |= other_references(session)
    for blob_id in store.iter_blob_ids():
        report.blobs += 1
        if blob_id not in referenced:
            report.problems.append(Problem("orphan_blob", blob_id, "no version references this blob"))
    return report


def _deep(
    report: Report,
    store: LocalBlobStore,
    keyring: Keyring,
    session: Session,
    dataset: Dataset,
    entry: VersionFile,
    where: str,
) -> None:
    try:
        key = keyring.dataset_key(session, dataset)
    except SanctumError as exc:
        report.problems.append(Problem("key_unavailable", entry.blob_id, f"{where}: {exc.message}"))
        return
    digest = hashlib.sha256()
    try:
        for piece in store.open_range(entry.blob_id, key):
            digest.update(piece)
            report.checked_bytes += len(piece)
    except StoreError as exc:
        report.problems.append(Problem("integrity", entry.blob_id, f"{where}: {exc}"))
        return
    if digest.hexdigest() != entry.sha256:
        report.problems.append(
            Problem("hash_mismatch", entry.blob_id, f"{where}: decrypted SHA-256 differs from the manifest")
        )


def other_references(session: Session) -> set[str]:
    """Blobs that are not dataset files but still belong to someone: job bundles and logs,
    experiment artifacts, quarantined ingest outputs awaiting an owner's decision, and files held
    by import requests."""
    from sanctum.airlock.models import ImportRequest
    from sanctum.ingest.models import IngestSource
    from sanctum.jobs.models import Job
    from sanctum.tracking.artifacts import blob_ids as artifact_blob_ids

    found: set[str] = set(artifact_blob_ids(session))
    held = (IngestSource.blob_id, ImportRequest.blob_id)
    for column in (Job.bundle_blob_id, Job.stdout_blob_id, Job.stderr_blob_id, *held):
        found.update(b for b in session.scalars(select(column).where(column.is_not(None))).all() if b)
    return found


def cleanup_orphans(session: Session, store: LocalBlobStore, *, min_age_s: int = ORPHAN_MIN_AGE_S) -> int:
    """Delete unreferenced blobs older than ``min_age_s``; return how many."""
    referenced = set(session.scalars(select(VersionFile.blob_id)).all()) | other_references(session)
    now = time.time()
    removed = 0
    for blob_id in list(store.iter_blob_ids()):
        if blob_id in referenced:
            continue
        try:
            age = now - store.path(blob_id).stat().st_mtime
        except FileNotFoundError:
            continue
        if age >= min_age_s and store.delete(blob_id):
            removed += 1
    return removed

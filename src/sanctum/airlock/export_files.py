"""The files of an export request: which may be named, their automatic checks, changing them, and
noticing when their bytes are no longer the ones reviewed.

Only a committed version produced by a job of this project may be exported (a version with
lineage): imported data, shared-in datasets and drafts are refused with the reason. Checking a
file decrypts it, so ``prepare`` only reads (the API runs it before its short write); ``attach``
records the result.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sanctum.airlock import acro, checks, content
from sanctum.airlock.models import ExportFile, ExportRequest, ExportReview
from sanctum.airlock.rules import ExportRules
from sanctum.datasets import catalog, paths
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import DatasetVersion
from sanctum.db.types import utcnow
from sanctum.errors import Conflict, InvalidInput, NotFound, SanctumError
from sanctum.jobs.models import Job
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobStore, StoreError


@dataclass(frozen=True)
class Prepared:
    """A job output that may be exported, with its checks done; nothing recorded yet."""

    dataset_id: int
    dataset_name: str
    version_id: int
    version_number: int
    path: str
    size: int
    sha256: str
    job_id: int
    job_number: int
    job_manifest_sha256: str
    result: checks.CheckResult


def parse_source(text: str) -> tuple[str, int, str]:
    """``DATASET@VERSION:PATH`` (how people name a job output) → (dataset, version, path)."""
    address, colon, path = text.strip().partition(":")
    dataset, at, version = address.partition("@")
    if not (colon and at and version.isdigit() and dataset and path):
        raise InvalidInput(
            f"{text[:200]!r}: name a file as DATASET@VERSION:PATH, e.g. job-outputs@3:tables/t1.csv",
            code="invalid_source",
        )
    return dataset, int(version), path


def producing_job(session: Session, ctx: ProjectContext, version: DatasetVersion) -> Job | None:
    return session.scalar(
        select(Job).where(Job.output_version_id == version.id, Job.project_id == ctx.project.id)
    )


def _acro_outputs(
    session: Session, store: BlobStore, key: bytes, version: DatasetVersion, path: str
) -> list[acro.AcroOutput] | None:
    """ACRO's verdicts when the output carries a ``results.json`` beside the file (or at its root)."""
    folder = path.rsplit("/", 1)[0] + "/" if "/" in path else ""
    for candidate in dict.fromkeys((folder + acro.RESULTS_NAME, acro.RESULTS_NAME)):
        if candidate == path:
            continue
        try:
            entry = catalog.file(session, version, candidate)
        except NotFound:
            continue
        if entry.size <= acro.MAX_RESULTS_BYTES:
            return acro.parse(b"".join(store.open_range(entry.blob_id, key)))
    return None


def prepare(
    session: Session,
    ctx: ProjectContext,
    keyring: Keyring,
    store: BlobStore,
    rules: ExportRules,
    *,
    dataset: str,
    version: int,
    path: str,
) -> Prepared:
    ref = catalog.resolve(session, ctx, dataset)
    if ref.share is not None:
        raise InvalidInput(
            f"{ref.address} is shared in from another project: only this project's own job outputs "
            "can be exported (its owners export their data themselves)",
            code="not_an_output",
        )
    found = catalog.version(session, ref, version)
    job = producing_job(session, ctx, found)
    if job is None:
        raise InvalidInput(
            f"{ref.address}@{version} was not produced by a job: only job outputs, with their lineage, "
            "can be exported",
            code="not_an_output",
        )
    entry = catalog.file(session, found, paths.file_path(path))
    key = keyring.dataset_key(session, ref.dataset)
    if entry.size > rules.max_file_bytes:
        result = checks.CheckResult(
            "fail",
            [
                {
                    "rule": "size",
                    "verdict": "fail",
                    "message": f"{entry.size} bytes, more than the limit of {rules.max_file_bytes}",
                }
            ],
        )
    else:
        data = b"".join(store.open_range(entry.blob_id, key))
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise Conflict(
                "the stored file does not match its manifest; an administrator should run 'sanctum fsck'",
                code="integrity_error",
            )
        outputs = _acro_outputs(session, store, key, found, entry.path)
        result = checks.check_file(entry.path, data, rules, acro_outputs=outputs)
    return Prepared(
        dataset_id=ref.dataset.id,
        dataset_name=ref.dataset.name,
        version_id=found.id,
        version_number=found.number,
        path=entry.path,
        size=entry.size,
        sha256=entry.sha256,
        job_id=job.id,
        job_number=job.number,
        job_manifest_sha256=job.manifest_sha256,
        result=result,
    )


def files_of(session: Session, request: ExportRequest) -> list[ExportFile]:
    return list(
        session.scalars(
            select(ExportFile).where(ExportFile.request_id == request.id).order_by(ExportFile.name)
        ).all()
    )


def file_named(session: Session, request: ExportRequest, name: str) -> ExportFile:
    found = session.scalar(
        select(ExportFile).where(ExportFile.request_id == request.id, ExportFile.name == name)
    )
    if found is None:
        raise NotFound("no such file in this export request")
    return found


def reset_reviews(session: Session, file: ExportFile) -> int:
    """Forget every verdict on ``file``: it changed, so what was reviewed is gone."""
    result = session.execute(delete(ExportReview).where(ExportReview.file_id == file.id))
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


def _apply(file: ExportFile, prepared: Prepared) -> None:
    for field in (
        "dataset_id",
        "dataset_name",
        "version_id",
        "version_number",
        "path",
        "size",
        "sha256",
        "job_id",
        "job_number",
        "job_manifest_sha256",
    ):
        setattr(file, field, getattr(prepared, field))
    record_checks(file, prepared.result)
    file.override_reason = file.override_by_id = file.override_at = None
    file.added_at = utcnow()


def record_checks(file: ExportFile, result: checks.CheckResult) -> None:
    file.check_verdict = result.verdict
    file.check_reasons = result.findings
    file.columns, file.row_count = result.columns, result.rows


def attach(
    session: Session, ctx: ProjectContext, request: ExportRequest, prepared: Prepared, name: str | None
) -> ExportFile:
    """Add the file, or replace the one of the same name (which resets that file's reviews)."""
    name = paths.file_path(name or prepared.path)
    address = f"{prepared.dataset_name}@{prepared.version_number}:{prepared.path}"
    existing = session.scalar(
        select(ExportFile).where(ExportFile.request_id == request.id, ExportFile.name == name)
    )
    if existing is None:
        file = ExportFile(request_id=request.id, name=name)
        _apply(file, prepared)
        session.add(file)
        session.flush()
        ctx.record(
            session,
            "export.file.add",
            target=f"export:{request.number}",
            details={"name": name, "source": address, "sha256": prepared.sha256, "check": file.check_verdict},
        )
        return file
    unchanged = existing.version_id == prepared.version_id and existing.path == prepared.path
    if unchanged and existing.sha256 == prepared.sha256:
        return existing
    before = existing.sha256
    reset = reset_reviews(session, existing)
    _apply(existing, prepared)
    ctx.record(
        session,
        "export.file.replace",
        target=f"export:{request.number}",
        details={
            "name": name,
            "source": address,
            "sha256": {"from": before, "to": prepared.sha256},
            "reviews_reset": reset,
            "check": existing.check_verdict,
        },
    )
    return existing


def remove(session: Session, ctx: ProjectContext, request: ExportRequest, name: str) -> None:
    file = file_named(session, request, name)
    session.delete(file)  # its reviews go with it (ON DELETE CASCADE)
    ctx.record(session, "export.file.remove", target=f"export:{request.number}", details={"name": name})


@dataclass(frozen=True)
class Changed:
    """A file whose stored bytes are not the reviewed ones (``observed`` None: unreadable)."""

    file: ExportFile
    observed: str | None
    data: bytes | None


def changed_files(
    session: Session, keyring: Keyring, store: BlobStore, files: list[ExportFile]
) -> list[Changed]:
    """Re-hash every file's stored bytes; the ones that are not what was reviewed."""
    found = []
    for file in files:
        try:
            src = content.source(session, keyring, file)
        except NotFound:
            found.append(Changed(file, None, None))
            continue
        data: bytes | None
        try:
            data = content.read_all(store, src)
        except (StoreError, SanctumError, OSError):  # damaged or missing: not what was reviewed
            data = None
        observed = hashlib.sha256(data).hexdigest() if data is not None else None
        if observed != file.sha256:
            found.append(Changed(file, observed, data))
    return found


def reset_changed(
    session: Session, ctx: ProjectContext, request: ExportRequest, changed: list[Changed], rules: ExportRules
) -> None:
    """Record each changed file: its reviews go, its checks are run again on what is there now."""
    for item in changed:
        file = item.file
        reset = reset_reviews(session, file)
        ctx.record(
            session,
            "export.file.changed",
            outcome="denied",
            target=f"export:{request.number}",
            details={
                "name": file.name,
                "reviewed_sha256": file.sha256,
                "found_sha256": item.observed or "unreadable",
                "reviews_reset": reset,
            },
        )
        if item.data is not None and item.observed is not None:
            file.sha256, file.size = item.observed, len(item.data)
            record_checks(file, checks.check_file(file.path, item.data, rules))
        else:
            file.check_verdict = "fail"
            file.check_reasons = [
                {"rule": "integrity", "verdict": "fail", "message": "the stored file can no longer be read"}
            ]
        file.override_reason = file.override_by_id = file.override_at = None

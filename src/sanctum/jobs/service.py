"""Submitting, listing and cancelling jobs in a project's context.

Why every check happens before anything is stored: a job that would be refused must leave no
bundle, no dataset and no queue entry behind, only the audit record of the refusal. The checks
here are repeated by the executor before the job runs (``verify``), because a job can wait in a
queue while its signer leaves the project or its manifest expires.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import role_allows
from sanctum.datasets import catalog
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, DatasetVersion
from sanctum.dmp import enforce as dmp_enforce
from sanctum.dmp import service as dmp_service
from sanctum.errors import Conflict, Denied, InvalidInput, NotFound
from sanctum.jobs import bundle as bundles
from sanctum.jobs import manifest as manifests
from sanctum.jobs.models import Job, JobInput
from sanctum.jobs.states import ACTIVE, JobState
from sanctum.jobs.verify import check_signer, signature_holds
from sanctum.projects.service import ProjectContext
from sanctum.security import signing
from sanctum.store import LocalBlobStore
from sanctum.store import keys as wrapping

CLOCK_SKEW = timedelta(minutes=5)


@dataclass(frozen=True)
class Submission:
    document: dict[str, object]
    signature: str
    bundle: bytes


def _refuse(message: str, code: str) -> Denied:
    """A refused submission: the reason goes to the caller and, persisted, to the audit trail."""
    return Denied(message, code=code, persist=True)


def check_submission(
    session: Session, ctx: ProjectContext, sub: Submission, *, max_bundle_bytes: int
) -> tuple[manifests.Manifest, bytes, int]:
    """Everything that must hold before a job is accepted. Returns (manifest, canonical, key id)."""
    canonical = signing.canonical(sub.document)
    manifest = manifests.parse(sub.document)
    if manifest.project != ctx.project.name:
        raise InvalidInput(
            f"the manifest is for project {manifest.project!r}, not this one", code="wrong_project"
        )
    signature = signing.decode_signature(sub.signature)
    key = check_signer(session, ctx.project.id, manifest.signer, submitter_id=ctx.principal.user_id)
    if not signature_holds(key, canonical, signature):
        raise _refuse("the signature does not match the manifest and the signer's key", "bad_signature")
    now = datetime.now(UTC)
    if manifest.expires_at <= now:
        raise _refuse("the manifest has expired; sign a fresh one", "expired")
    if manifest.expires_at > now + manifests.MAX_VALIDITY + CLOCK_SKEW:
        raise InvalidInput("a manifest may be valid for at most 7 days", code="invalid_manifest")
    digest = signing_digest(canonical)
    earlier = session.scalar(select(Job.number).where(Job.manifest_sha256 == digest))
    if earlier is not None:
        raise Conflict(
            f"this signed manifest was already submitted (job {earlier}); sign a new one to run again",
            code="replayed",
            persist=True,
        )
    if len(sub.bundle) != manifest.bundle_size or _sha256(sub.bundle) != manifest.bundle_sha256:
        raise _refuse("the code bundle is not the one the manifest was signed for", "bundle_mismatch")
    names = bundles.check(sub.bundle, max_bytes=max_bundle_bytes)
    script = bundles.entry_script(manifest.entrypoint)
    if script is not None and script not in names:
        raise InvalidInput(f"the entry point {script!r} is not in the code bundle", code="no_entrypoint")
    catalog.dataset_name(manifest.output)
    return manifest, canonical, key.id


def signing_digest(canonical: bytes) -> str:
    return _sha256(canonical)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _pin_inputs(session: Session, ctx: ProjectContext, manifest: manifests.Manifest) -> list[JobInput]:
    pinned: list[JobInput] = []
    mounts: set[str] = set()
    for ref in manifest.inputs:
        if ref.mount_name in mounts:
            raise InvalidInput(f"input {ref.dataset} is named twice", code="duplicate_input")
        mounts.add(ref.mount_name)
        found = catalog.resolve(session, ctx, ref.dataset)
        version = catalog.version(session, found, ref.version)
        pinned.append(
            JobInput(
                address=ref.dataset,
                dataset_id=found.dataset.id,
                version_id=version.id,
                version_number=version.number,
                version_manifest_sha256=version.manifest_sha256 or "",
            )
        )
    return pinned


def _output_dataset(session: Session, ctx: ProjectContext, keyring: Keyring, name: str) -> Dataset:
    """The job's output dataset: created on first use; an existing one must hold only job outputs."""
    existing = session.scalar(
        select(Dataset).where(
            Dataset.project_id == ctx.project.id, Dataset.name == name, Dataset.shredded_at.is_(None)
        )
    )
    if existing is None:
        return catalog.create(
            session, ctx, keyring, name=name, kind="files", description="outputs of jobs"
        ).dataset
    produced = session.scalar(select(Job.id).where(Job.output_dataset_id == existing.id).limit(1))
    if produced is None or existing.kind != "files":
        raise Conflict(
            f"dataset {name} holds imported data, not job outputs; choose another output name",
            code="not_an_output_dataset",
        )
    return existing


@dataclass(frozen=True)
class Prepared:
    """A submission that passed every check; nothing has been written yet."""

    manifest: manifests.Manifest
    canonical: bytes
    key_id: int
    inputs: list[JobInput]
    signature: str
    bundle: bytes


def prepare(
    session: Session,
    ctx: ProjectContext,
    sub: Submission,
    *,
    max_bundle_bytes: int,
    slurm_enabled: bool,
    location: str = "",
) -> Prepared:
    """All checks, no writes: a refusal here leaves nothing behind but its audit record.
    ``location``: where the local executor runs, checked against the DMPs that govern the job."""
    manifest, canonical, key_id = check_submission(session, ctx, sub, max_bundle_bytes=max_bundle_bytes)
    if manifest.executor == "slurm" and not slurm_enabled:
        raise InvalidInput("this platform has no Slurm executor configured", code="no_executor")
    inputs = _pin_inputs(session, ctx, manifest)
    dmp_enforce.check_submission(session, ctx, manifest, inputs, local_location=location)
    return Prepared(manifest, canonical, key_id, inputs, sub.signature.strip(), sub.bundle)


def create(
    session: Session, ctx: ProjectContext, keyring: Keyring, store: LocalBlobStore, prepared: Prepared
) -> Job:
    manifest = prepared.manifest
    output = _output_dataset(session, ctx, keyring, manifest.output)
    number = (session.scalar(select(func.max(Job.number)).where(Job.project_id == ctx.project.id)) or 0) + 1
    job = Job(
        project_id=ctx.project.id,
        number=number,
        manifest=prepared.canonical.decode(),
        manifest_sha256=signing_digest(prepared.canonical),
        signature=prepared.signature,
        signing_key_id=prepared.key_id,
        signer_fingerprint=manifest.signer,
        submitted_by_id=ctx.principal.user_id,
        executor=manifest.executor,
        state=JobState.QUEUED,
        bundle_sha256=manifest.bundle_sha256,
        bundle_size=manifest.bundle_size,
        output_name=manifest.output,
        output_dataset_id=output.id,
        dmp_version=dmp_service.version_in_force(session, ctx.project.id),  # equal to a declared one
    )
    session.add(job)
    session.flush()
    job_key_ = wrapping.new_data_key()
    job.wrapped_key = wrapping.wrap(keyring.project_key(session, ctx.project), job_key_, f"job:{job.id}")
    job.bundle_blob_id = store.put_stream([prepared.bundle], job_key_).blob_id
    for pinned in prepared.inputs:
        pinned.job_id = job.id
        session.add(pinned)
    ctx.record(
        session,
        "job.submit",
        target=f"job:{number}",
        details={
            "manifest": job.manifest_sha256,
            "code": manifest.bundle_sha256,
            "signer": manifest.signer,
            "executor": manifest.executor,
            "inputs": [f"{i.address}@{i.version_number}" for i in prepared.inputs],
            "output": manifest.output,
        },
    )
    return job


def job_key(session: Session, keyring: Keyring, job: Job, project: object) -> bytes:
    if job.wrapped_key is None:
        raise NotFound("this job's keys were destroyed", code="shredded")
    return wrapping.unwrap(keyring.project_key(session, project), job.wrapped_key, f"job:{job.id}")  # type: ignore[arg-type]


def load(session: Session, ctx: ProjectContext, number: int, *, for_update: bool = False) -> Job:
    query = select(Job).where(Job.project_id == ctx.project.id, Job.number == number)
    if for_update:
        query = query.with_for_update()
    job = session.scalar(query)
    if job is None:
        raise NotFound("job not found")
    return job


def list_for(
    session: Session, ctx: ProjectContext, *, state: str | None = None, limit: int = 200
) -> list[Job]:
    query = select(Job).where(Job.project_id == ctx.project.id)
    if state is not None:
        query = query.where(Job.state == JobState(state).value)
    return list(session.scalars(query.order_by(Job.number.desc()).limit(limit)).all())


def inputs_of(session: Session, job: Job) -> list[JobInput]:
    return list(
        session.scalars(select(JobInput).where(JobInput.job_id == job.id).order_by(JobInput.id)).all()
    )


def output_version(session: Session, job: Job) -> DatasetVersion | None:
    return session.get(DatasetVersion, job.output_version_id) if job.output_version_id else None


def cancel(session: Session, ctx: ProjectContext, number: int) -> Job:
    """Queued jobs end at once; running ones are stopped by their executor within a second or two."""
    job = load(session, ctx, number, for_update=True)
    own = job.submitted_by_id == ctx.principal.user_id
    if not own and not role_allows(ctx.role, Permission.JOBS_MANAGE, ctx.principal.scopes):
        raise Denied("only the job's submitter or a data owner may cancel it", code="forbidden")
    if job.state not in ACTIVE:
        raise Conflict(f"the job has already ended ({job.state})", code="job_ended")
    job.cancel_requested = True
    if job.state == JobState.QUEUED:
        job.state = JobState.CANCELLED
        job.reason = "cancelled before it started"
        job.ended_at = datetime.now(UTC)
    ctx.record(session, "job.cancel", target=f"job:{number}", details={"state": job.state})
    return job


def manifest_document(job: Job) -> dict[str, object]:
    return json.loads(job.manifest)

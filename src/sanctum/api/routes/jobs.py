"""Jobs of a project: submit signed code, follow it, read its logs, cancel it; lineage of outputs."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlalchemy.orm import Session

from sanctum.api.deps import DbSession, JobsReader, JobSubmitter, RuntimeDep
from sanctum.api.runtime import Runtime
from sanctum.db.models import Dataset, User
from sanctum.errors import InvalidInput, SanctumError
from sanctum.jobs import lineage, outputs, service, staging
from sanctum.jobs.models import Job, SigningKey
from sanctum.jobs.states import JobState
from sanctum.projects.service import ProjectContext
from sanctum.schemas.jobs import InputPublic, JobDetail, JobLogs, JobPublic, JobSubmit, Lineage, OutputRef
from sanctum.security import signing

router = APIRouter(prefix="/api/v1/projects/{project}", tags=["jobs"])


def submit_body_limit(max_bundle_bytes: int) -> Callable[[str, str], int | None]:
    """A job submission carries its bundle in base64: a larger, still bounded, body on one route."""
    limit = max_bundle_bytes * 4 // 3 + 4 * 1024 * 1024

    def larger(method: str, path: str) -> int | None:
        if method == "POST" and path.startswith("/api/v1/projects/") and path.rstrip("/").endswith("/jobs"):
            return limit
        return None

    return larger


def job_public(session: Session, job: Job, project: str, *, detail: bool = False) -> JobPublic | JobDetail:
    manifest = service.manifest_document(job)
    submitter = session.get(User, job.submitted_by_id) if job.submitted_by_id else None
    dataset = session.get(Dataset, job.output_dataset_id) if job.output_dataset_id else None
    version = service.output_version(session, job)
    output = OutputRef(dataset=dataset.name, version=version.number) if dataset and version else None
    runtime = (job.ended_at - job.started_at).total_seconds() if job.started_at and job.ended_at else None
    fields = {
        "id": job.number,
        "project": project,
        "state": job.state,
        "reason": job.reason,
        "executor": job.executor,
        "submitted_by": submitter.email if submitter else None,
        "signer": job.signer_fingerprint,
        "entrypoint": manifest.get("entrypoint", []),
        "inputs": [
            InputPublic(
                dataset=i.address, version=i.version_number, manifest_sha256=i.version_manifest_sha256
            )
            for i in service.inputs_of(session, job)
        ],
        "output": output,
        "output_dataset": job.output_name,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "ended_at": job.ended_at,
        "runtime_seconds": runtime,
        "manifest_sha256": job.manifest_sha256,
        "code_sha256": job.bundle_sha256,
    }
    if not detail:
        return JobPublic(**fields)
    key = session.get(SigningKey, job.signing_key_id) if job.signing_key_id else None
    valid = bool(key) and signing.verify(
        key.public_key, job.manifest.encode(), signing.decode_signature(job.signature)
    )
    metrics = json.loads(job.metrics) if job.metrics else None
    return JobDetail(
        **fields, manifest=manifest, signature=job.signature, signature_valid=valid, metrics=metrics
    )


def _decode_bundle(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidInput("bundle must be base64", code="invalid_bundle") from None


def submit_job(db: Session, ctx: ProjectContext, runtime: Runtime, body: JobSubmit) -> Job:
    """Shared by the API and the web page's re-run form."""
    settings = runtime.settings
    try:
        bundle = _bundle_of(db, ctx, runtime, body)
        sub = service.Submission(body.manifest, body.signature, bundle)
        prepared = service.prepare(
            db,
            ctx,
            sub,
            max_bundle_bytes=settings.max_bundle_bytes,
            slurm_enabled=settings.slurm_partition is not None,
            location=settings.location,
        )
    except SanctumError as exc:
        ctx.record(
            db,
            "job.submit",
            outcome="denied",
            target=f"manifest:{_digest_or_none(body.manifest)}",
            details={"code": exc.code, "reason": exc.message[:300]},
        )
        exc.persist = True  # nothing was written but the refusal's record
        raise
    job = service.create(db, ctx, runtime.keyring, runtime.store, prepared)
    return job


def _bundle_of(db: Session, ctx: ProjectContext, runtime: Runtime, body: JobSubmit) -> bytes:
    """The bundle sent, or (re-running a job) the one stored with an earlier job of this project."""
    if (body.bundle is None) == (body.bundle_from_job is None):
        raise InvalidInput("send either bundle or bundle_from_job", code="invalid_bundle")
    if body.bundle is not None:
        return _decode_bundle(body.bundle)
    earlier = service.load(db, ctx, body.bundle_from_job or 0)
    key = service.job_key(db, runtime.keyring, earlier, ctx.project)
    return b"".join(runtime.store.open_range(earlier.bundle_blob_id or "", key))


def _digest_or_none(document: dict[str, object]) -> str:
    try:
        return service.signing_digest(signing.canonical(document))[:16]
    except SanctumError:
        return "invalid"


@router.post("/jobs", status_code=201)
def create_job(body: JobSubmit, ctx: JobSubmitter, db: DbSession, runtime: RuntimeDep) -> JobPublic:
    job = submit_job(db, ctx, runtime, body)
    db.commit()
    if runtime.jobs is not None:
        runtime.jobs.wake()
    return job_public(db, job, ctx.project.name)


@router.get("/jobs")
def list_jobs(
    ctx: JobsReader,
    db: DbSession,
    state: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[JobPublic]:
    try:
        jobs = service.list_for(db, ctx, state=state, limit=limit)
    except ValueError:
        raise InvalidInput("unknown job state", code="invalid_state") from None
    return [job_public(db, j, ctx.project.name) for j in jobs]


@router.get("/jobs/{number}")
def get_job(number: int, ctx: JobsReader, db: DbSession) -> JobDetail:
    job = service.load(db, ctx, number)
    return job_public(db, job, ctx.project.name, detail=True)  # type: ignore[return-value]


@router.get("/jobs/{number}/logs")
def get_logs(number: int, ctx: JobsReader, db: DbSession, runtime: RuntimeDep) -> JobLogs:
    job = service.load(db, ctx, number)
    return JobLogs(**read_logs(db, runtime, ctx, job))


def read_logs(db: Session, runtime: Runtime, ctx: ProjectContext, job: Job) -> dict[str, Any]:
    """Stored logs once the job ended; while a local job runs, the tail written so far.

    Why live logs: a researcher watching a long job, and a hyperparameter search pruning a trial
    that is going badly, need progress before the end. The same members may read either.
    """
    if job.state == JobState.RUNNING and job.executor == "local" and job.stdout_blob_id is None:
        folder = staging.job_dir(runtime.settings.data_dir, job.id) / "logs"
        return {
            name: outputs.read_log(folder / f"{name}.log", outputs.LIVE_LOG_CAP).decode("utf-8", "replace")
            for name in ("stdout", "stderr")
        } | {"live": True}
    key = service.job_key(db, runtime.keyring, job, ctx.project)
    out: dict[str, Any] = {"live": False}
    for name, blob in (("stdout", job.stdout_blob_id), ("stderr", job.stderr_blob_id)):
        out[name] = b"".join(runtime.store.open_range(blob, key)).decode("utf-8", "replace") if blob else ""
    return out


@router.post("/jobs/{number}/cancel")
def cancel_job(number: int, ctx: JobSubmitter, db: DbSession) -> JobPublic:
    job = service.cancel(db, ctx, number)
    return job_public(db, job, ctx.project.name)


@router.get("/lineage/{dataset}/{version}")
def get_lineage(dataset: str, version: int, ctx: JobsReader, db: DbSession) -> Lineage:
    return Lineage(**lineage.lineage_for(db, ctx, dataset, version))


@router.get("/lineage/{dataset}/{version}/ro-crate")
def get_ro_crate(dataset: str, version: int, ctx: JobsReader, db: DbSession) -> dict[str, object]:
    """``ro-crate-metadata.json`` for the output version (Workflow Run Crate profile)."""
    return lineage.ro_crate(lineage.lineage_for(db, ctx, dataset, version))

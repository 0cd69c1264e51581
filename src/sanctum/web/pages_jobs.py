"""A project's jobs in the browser: the list, one job (manifest, signature, lineage graph, logs,
cancel) and the re-run form.

The pages call the jobs API's own functions (``job_public``, ``read_logs``, ``submit_job``) and the
job service, so a browser sees what the CLI sees and leaves the same audit trail.

Why re-running needs a signature pasted in: the server may not sign for anyone (the private key
stays on the researcher's machine), and the page has no JavaScript. So the form shows a fresh
manifest (the old job's code, inputs, resources and output, with a new nonce and expiry), the
researcher signs it with ``sanctum job sign`` and pastes the signature back. The code bundle is
not uploaded again: the server re-uses the one stored with the earlier job, by hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.api.deps import DbSession, RuntimeDep
from sanctum.api.routes import jobs as jobs_api
from sanctum.api.runtime import Runtime
from sanctum.db.models import User
from sanctum.errors import InvalidInput, SanctumError
from sanctum.jobs import manifest as manifests
from sanctum.jobs import service
from sanctum.jobs.models import Job, SigningKey
from sanctum.jobs.states import ACTIVE, JobState
from sanctum.projects.service import ProjectContext
from sanctum.schemas.jobs import JobDetail, JobSubmit
from sanctum.security import signing
from sanctum.web.pages_datasets import _allows
from sanctum.web.pages_datasets import _page as project_page
from sanctum.web.session import ProjectPage, end_failed, redirect

router = APIRouter(include_in_schema=False)

Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.JOBS_READ))]
RerunViewer = Annotated[ProjectContext, Depends(ProjectPage(Permission.JOBS_SUBMIT))]
Submitter = Annotated[ProjectContext, Depends(ProjectPage(Permission.JOBS_SUBMIT, for_update=True))]

ManifestField = Annotated[str, Form(max_length=100_000)]
SignatureField = Annotated[str, Form(max_length=1000)]

NOTICES = {
    "job_submitted": "Job submitted. It runs when the executor picks it up; reload to follow it.",
    "job_cancelled": "Cancel requested: a queued job ends at once, a running one within a second or two.",
}
STATES = [s.value for s in JobState]
LIST_LIMIT = 200

# Lineage graph geometry (SVG user units): inputs in a column, then the job, then the output.
BOX_W, BOX_H, GAP, COL_GAP, PAD = 200, 40, 14, 60, 8
LABEL_CHARS = 26


def _page(request: Request, name: str, ctx: ProjectContext, *, status: int = 200, **context: Any) -> Response:
    """A project data page (shared layout and sub-navigation) that can format run times."""
    return project_page(request, name, ctx, status=status, duration=duration, **context)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min"


# --------------------------------------------------------------------------- the list


@router.get("/projects/{project}/jobs")
def jobs_page(
    request: Request,
    db: DbSession,
    ctx: Reader,
    state: Annotated[str, Query(max_length=16)] = "",
    done: str = "",
) -> Response:
    error, status = None, 200
    try:
        jobs = service.list_for(db, ctx, state=state or None, limit=LIST_LIMIT)
    except ValueError:
        error, status, state = "unknown job state", 400, ""
        jobs = service.list_for(db, ctx, limit=LIST_LIMIT)
    return _page(
        request,
        "jobs.html",
        ctx,
        status=status,
        jobs=[jobs_api.job_public(db, job, ctx.project.name) for job in jobs],
        states=STATES,
        state=state,
        limit=LIST_LIMIT,
        error=error,
        notice=NOTICES.get(done),
    )


# --------------------------------------------------------------------------- one job


@dataclass(frozen=True)
class Box:
    """One node of the lineage graph."""

    x: int
    y: int
    label: str
    title: str
    href: str | None
    kind: str  # "input", "job", "output" or "pending" (no output version yet)

    @property
    def mid_y(self) -> int:
        return self.y + BOX_H // 2


@dataclass(frozen=True)
class Graph:
    """A lineage graph laid out on the server: drawn as inline SVG, so no script is needed."""

    width: int
    height: int
    inputs: list[Box]
    job: Box
    output: Box
    box_w: int = BOX_W
    box_h: int = BOX_H


def _short(text: str) -> str:
    return text if len(text) <= LABEL_CHARS else text[: LABEL_CHARS - 1] + "…"


def lineage_graph(project: str, detail: JobDetail) -> Graph:
    """Input dataset@version boxes → the job's box → the output dataset@version box."""
    base = f"/projects/{project}/datasets"
    rows = max(len(detail.inputs), 1)
    height = PAD * 2 + rows * BOX_H + (rows - 1) * GAP
    centre = height // 2 - BOX_H // 2
    inputs = [
        Box(
            PAD,
            PAD + i * (BOX_H + GAP),
            _short(f"{item.dataset}@{item.version}"),
            f"input {item.dataset} version {item.version}",
            f"{base}/{item.dataset}?version={item.version}",
            "input",
        )
        for i, item in enumerate(detail.inputs)
    ]
    job_x = PAD + BOX_W + COL_GAP
    job = Box(job_x, centre, f"job {detail.id}", f"job {detail.id} ({detail.state})", None, "job")
    out_x = job_x + BOX_W + COL_GAP
    if detail.output is not None:
        name = f"{detail.output.dataset}@{detail.output.version}"
        href = f"{base}/{detail.output.dataset}?version={detail.output.version}"
        output = Box(out_x, centre, _short(name), f"output {name}", href, "output")
    else:
        name = f"{detail.output_dataset} (no version)"
        output = Box(out_x, centre, _short(name), f"output {name}", None, "pending")
    return Graph(out_x + BOX_W + PAD, height, inputs, job, output)


def _signer_email(db: Session, job: Job) -> str | None:
    key = db.get(SigningKey, job.signing_key_id) if job.signing_key_id else None
    user = db.get(User, key.user_id) if key else None
    return user.email if user else None


def _logs(db: Session, runtime: Runtime, ctx: ProjectContext, job: Job) -> dict[str, Any] | None:
    try:
        return jobs_api.read_logs(db, runtime, ctx, job)
    except SanctumError:  # the job's keys were destroyed with its project's data
        return None


def _may_cancel(ctx: ProjectContext, job: Job) -> bool:
    """What ``service.cancel`` allows: one's own active job, or anyone's for a data owner."""
    if job.state not in ACTIVE or not _allows(ctx, Permission.JOBS_SUBMIT):
        return False
    return job.submitted_by_id == ctx.principal.user_id or _allows(ctx, Permission.JOBS_MANAGE)


def _job(
    request: Request,
    db: Session,
    runtime: Runtime,
    ctx: ProjectContext,
    number: int,
    *,
    status: int = 200,
    error: str | None = None,
    done: str = "",
) -> Response:
    job = service.load(db, ctx, number)
    detail = jobs_api.job_public(db, job, ctx.project.name, detail=True)
    assert isinstance(detail, JobDetail)
    api = f"/api/v1/projects/{ctx.project.name}"
    crate = (
        f"{api}/lineage/{detail.output.dataset}/{detail.output.version}/ro-crate" if detail.output else None
    )
    return _page(
        request,
        "job.html",
        ctx,
        status=status,
        job=detail,
        manifest_json=json.dumps(detail.manifest, indent=2, sort_keys=True, ensure_ascii=False),
        signer_email=_signer_email(db, job),
        graph=lineage_graph(ctx.project.name, detail),
        logs=_logs(db, runtime, ctx, job),
        crate_url=crate,
        api_url=f"{api}/jobs/{job.number}",
        can_cancel=_may_cancel(ctx, job),
        can_rerun=_allows(ctx, Permission.JOBS_SUBMIT),
        error=error,
        notice=NOTICES.get(done),
    )


@router.get("/projects/{project}/jobs/{number}")
def job_page(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Reader, number: int, done: str = ""
) -> Response:
    return _job(request, db, runtime, ctx, number, done=done)


@router.post("/projects/{project}/jobs/{number}/cancel")
def cancel_job(request: Request, db: DbSession, runtime: RuntimeDep, ctx: Submitter, number: int) -> Response:
    """The API's cancel; a refusal (someone else's job, already ended) is shown on the job page."""
    try:
        service.cancel(db, ctx, number)
    except SanctumError as exc:
        if exc.status == 404:
            raise
        end_failed(db, exc)
        return _job(request, db, runtime, ctx, number, status=exc.status, error=exc.message)
    db.commit()
    return redirect(f"/projects/{ctx.project.name}/jobs/{number}?done=job_cancelled")


# --------------------------------------------------------------------------- re-run


def _own_keys(db: Session, ctx: ProjectContext) -> list[SigningKey]:
    query = select(SigningKey).where(
        SigningKey.user_id == ctx.principal.user_id, SigningKey.revoked_at.is_(None)
    )
    return list(db.scalars(query.order_by(SigningKey.id.desc())).all())


def _pick_key(keys: list[SigningKey], wanted: str, old_signer: str) -> SigningKey | None:
    """The key asked for, else the one that signed the old job (if it is the caller's), else the newest."""
    by_fp = {k.fingerprint: k for k in keys}
    return by_fp.get(wanted) or by_fp.get(old_signer) or (keys[0] if keys else None)


def fresh_manifest(job: Job, project: str, signer: str) -> dict[str, Any]:
    """The old job's manifest with a new nonce and expiry, for ``signer`` to sign."""
    old = manifests.parse(service.manifest_document(job))
    return manifests.new(
        project=project,
        bundle_sha256=old.bundle_sha256,
        bundle_size=old.bundle_size,
        entrypoint=old.entrypoint,
        signer=signer,
        inputs=old.inputs,
        parameters=old.parameters,
        output=old.output,
        resources=old.resources,
        executor=old.executor,
        dmp_version=old.dmp_version,
    ).document()


def _posted_document(text: str) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except ValueError:
        raise InvalidInput(
            "the manifest is not JSON; start again from the job page", code="invalid_manifest"
        ) from None
    if not isinstance(document, dict):
        raise InvalidInput("the manifest must be a JSON object", code="invalid_manifest")
    return document


def _canonical_or_none(document: dict[str, Any] | None) -> str | None:
    """What is signed (RFC 8785); a posted document that cannot be canonical is replaced by a fresh one."""
    if document is None:
        return None
    try:
        return signing.canonical(document).decode()
    except SanctumError:
        return None


def _rerun(
    request: Request,
    db: Session,
    ctx: ProjectContext,
    number: int,
    *,
    key: str = "",
    document: dict[str, Any] | None = None,
    status: int = 200,
    error: str | None = None,
) -> Response:
    job = service.load(db, ctx, number)
    keys = _own_keys(db, ctx)
    chosen = _pick_key(keys, key, job.signer_fingerprint)
    canonical = _canonical_or_none(document)
    if canonical is None and chosen is not None:
        document = fresh_manifest(job, ctx.project.name, chosen.fingerprint)
        canonical = _canonical_or_none(document)
    return _page(
        request,
        "job_rerun.html",
        ctx,
        status=status,
        number=number,
        keys=keys,
        chosen=chosen,
        canonical=canonical,
        expires_at=(document or {}).get("expires_at"),
        error=error,
    )


@router.get("/projects/{project}/jobs/{number}/rerun")
def rerun_page(
    request: Request,
    db: DbSession,
    ctx: RerunViewer,
    number: int,
    key: Annotated[str, Query(max_length=100)] = "",
) -> Response:
    return _rerun(request, db, ctx, number, key=key)


@router.post("/projects/{project}/jobs/{number}/rerun")
def rerun_job(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Submitter,
    number: int,
    manifest: ManifestField = "",
    signature: SignatureField = "",
) -> Response:
    """The API's submission with the earlier job's stored bundle; a refusal keeps the manifest on
    the form, with the reason, and stores nothing but its audit record."""
    service.load(db, ctx, number)  # another project's or a missing job is 404, not a form error
    document: dict[str, Any] | None = None
    try:
        document = _posted_document(manifest)
        try:
            body = JobSubmit(manifest=document, signature=signature.strip(), bundle_from_job=number)
        except ValidationError:
            raise InvalidInput(
                "the signature is not one `sanctum job sign` prints", code="bad_signature"
            ) from None
        job = jobs_api.submit_job(db, ctx, runtime, body)
    except SanctumError as exc:
        end_failed(db, exc)
        return _rerun(request, db, ctx, number, document=document, status=exc.status, error=exc.message)
    db.commit()
    if runtime.jobs is not None:
        runtime.jobs.wake()
    return redirect(f"/projects/{ctx.project.name}/jobs/{job.number}?done=job_submitted")

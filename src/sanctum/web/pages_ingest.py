"""Ingest from the browser (data owners): upload, the list of ingests, a report, the quarantine review.

The upload runs the same server-side pipeline as the API and the CLI (``service.start``,
``batches.ingest_files``, ``service.finish``): a .zip or .tar goes through the archive checks, loose
files are sources named after their file names. It is bounded like an API batch (the body limit
is the batch limit). Every page needs ``data:import``, like the API routes it mirrors; the review
forms call the same ``sanctum.ingest.quarantine`` functions, so a browser and a script leave the
same audit trail. The preview PNG is served by a GET route guarded like the page, not cached.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.api.deps import DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.api.routes import ingest as ingest_api
from sanctum.api.routes.ingest_review import preview_response
from sanctum.api.runtime import Runtime
from sanctum.config import Settings
from sanctum.datasets import catalog
from sanctum.errors import InvalidInput, NotFound, SanctumError
from sanctum.ingest import archive, oneshot, quarantine, service
from sanctum.ingest import report as ingest_report
from sanctum.ingest.preview import Mask
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import IngestCreate, IngestOptions
from sanctum.web.pages_datasets import human_size
from sanctum.web.render import render
from sanctum.web.session import ProjectPage, end_failed, redirect

router = APIRouter(include_in_schema=False)

Importer = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATA_IMPORT))]
Field = Annotated[str, Form(max_length=200)]
Number = Annotated[str, Form(max_length=12)]
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b")
UPLOAD_PATH = re.compile(r"^/projects/[^/]+/ingests/?$")
NOTICES = {
    "masked": "Rectangle added. Check the preview, then release or discard the file.",
    "cleared": "Rectangles removed.",
    "released": "Released: the masked file is a new version of the dataset.",
    "discarded": "Discarded: the held file is deleted.",
}


def upload_body_limit(settings: Settings) -> Callable[[str, str], int | None]:
    """For the app's body-size middleware: a browser upload is bounded like an API batch."""
    limit = ingest_api.batch_limit(settings)

    def larger(method: str, path: str) -> int | None:
        return limit if method == "POST" and UPLOAD_PATH.match(path) else None

    return larger


def _page(request: Request, name: str, ctx: ProjectContext, *, status: int = 200, **context: Any) -> Response:
    return render(
        request,
        name,
        status=status,
        section="projects",
        project=ctx.project,
        role=ctx.role,
        can_query=True,
        can_import=True,
        size=human_size,
        **context,
    )


# --------------------------------------------------------------------------- list and upload


def _ingests(
    request: Request,
    db: Session,
    runtime: Runtime,
    ctx: ProjectContext,
    *,
    status: int = 200,
    error: str | None = None,
    form: dict[str, str] | None = None,
) -> Response:
    targets = [r.dataset.name for r in catalog.list_for(db, ctx) if r.share is None]
    return _page(
        request,
        "ingests.html",
        ctx,
        status=status,
        ingests=[ingest_report.public(db, i, runtime.settings) for i in service.list_for(db, ctx)],
        datasets=targets,
        limit=ingest_api.batch_limit(runtime.settings),
        form=form or {},
        error=error,
    )


@router.get("/projects/{project}/ingests")
def ingests_page(request: Request, db: DbSession, runtime: RuntimeDep, ctx: Importer) -> Response:
    return _ingests(request, db, runtime, ctx)


async def _sources(uploads: list[UploadFile], limits: archive.Limits) -> tuple[list[tuple[str, bytes]], list]:
    """The uploaded files as (name, bytes); an archive is opened with the pipeline's checks."""
    files: list[tuple[str, bytes]] = []
    refused: list[archive.Refusal] = []
    total = 0
    for upload in uploads:
        if not upload.filename:
            continue
        data = await upload.read(limits.max_total_bytes + 1)
        total += len(data)
        if total > limits.max_total_bytes:
            raise InvalidInput("the upload is larger than the ingest limit; use the CLI", code="too_large")
        if data.startswith(ARCHIVE_MAGIC) or upload.filename.lower().endswith((".zip", ".tar", ".tgz")):
            inner, refusals = await anyio.to_thread.run_sync(archive.read_batch, data, limits)
            files += inner
            refused += refusals
        else:
            files.append((upload.filename.replace("\\", "/").rsplit("/", 1)[-1], data))
    if not files and not refused:
        raise InvalidInput("choose one or more files, or a .zip or .tar archive", code="no_files")
    return files, refused


@router.post("/projects/{project}/ingests")
@writes_in_own_sessions
async def upload(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Importer,
    files: Annotated[list[UploadFile], File()],
    dataset: Field = "",
    kind: Field = "files",
    dates: Field = "shift",
) -> Response:
    """De-identify and store the uploaded files as a new version of ``dataset`` (created if new)."""
    form = {"dataset": dataset, "kind": kind, "dates": dates}
    try:
        body = IngestCreate(
            dataset=dataset.strip(),
            kind="table" if kind == "table" else "files",
            options=IngestOptions(dates=dates if dates in ("shift", "keep", "remove") else "shift"),
        )
        if not body.dataset:
            raise InvalidInput("name the dataset to ingest into", code="invalid_name")
        limits = ingest_api._limits(runtime.settings)
        sources, refused = await _sources(files, limits)
        number = await anyio.to_thread.run_sync(oneshot.run, runtime, ctx, body, sources, refused)
    except SanctumError as exc:
        return _ingests(request, db, runtime, ctx, status=exc.status, error=exc.message, form=form)
    return redirect(f"/projects/{ctx.project.name}/ingests/{number}")


# --------------------------------------------------------------------------- report


@router.get("/projects/{project}/ingests/{number}")
def ingest_page(request: Request, db: DbSession, runtime: RuntimeDep, ctx: Importer, number: int) -> Response:
    """The de-identification report: counts, actions, attributes, quarantined files and errors."""
    built = ingest_report.build(db, ctx, runtime.keyring, service.load(db, ctx, number))
    record_outside(
        runtime, ctx, "ingest.report", target=f"{built.dataset}@{built.version}", details={"ingest": number}
    )
    return _page(request, "ingest.html", ctx, r=built, number=number)


# --------------------------------------------------------------------------- quarantine review


def _review(
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
    ingest = service.load(db, ctx, number)
    return _page(
        request,
        "quarantine.html",
        ctx,
        status=status,
        number=number,
        ingest=ingest,
        items=quarantine.listing(runtime, db, ctx, number),
        error=error,
        notice=NOTICES.get(done),
    )


@router.get("/projects/{project}/ingests/{number}/quarantine")
def review_page(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Importer, number: int, done: str = ""
) -> Response:
    return _review(request, db, runtime, ctx, number, done=done)


@router.get("/projects/{project}/ingests/{number}/quarantine/{source}/preview.png")
@writes_in_own_sessions
def preview_png(runtime: RuntimeDep, ctx: Importer, number: int, source: int) -> Response:
    """The masked preview (audited, ``Cache-Control: no-store``), as the API serves it."""
    return preview_response(runtime, ctx, number, source)


def _decide(
    request: Request,
    db: Session,
    runtime: Runtime,
    ctx: ProjectContext,
    number: int,
    change: Callable[[], object],
    done: str,
) -> Response:
    try:
        change()
    except SanctumError as exc:
        if isinstance(exc, NotFound):
            raise
        end_failed(db, exc)
        return _review(request, db, runtime, ctx, number, status=exc.status, error=exc.message)
    db.commit()
    return redirect(f"/projects/{ctx.project.name}/ingests/{number}/quarantine?done={done}")


def _int(value: str, name: str) -> int:
    try:
        return int(value.strip())
    except ValueError:
        raise InvalidInput(f"{name} must be a whole number of pixels", code="invalid_mask") from None


@router.post("/projects/{project}/ingests/{number}/quarantine/{source}/masks")
def add_mask(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Importer,
    number: int,
    source: int,
    x: Number = "",
    y: Number = "",
    width: Number = "",
    height: Number = "",
) -> Response:
    def change() -> None:
        mask = Mask(_int(x, "x"), _int(y, "y"), _int(width, "width"), _int(height, "height"))
        quarantine.add_mask(runtime, db, ctx, number, source, mask)

    return _decide(request, db, runtime, ctx, number, change, "masked")


@router.post("/projects/{project}/ingests/{number}/quarantine/{source}/masks/clear")
def clear_masks(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Importer, number: int, source: int
) -> Response:
    change = lambda: quarantine.clear_masks(runtime, db, ctx, number, source)  # noqa: E731
    return _decide(request, db, runtime, ctx, number, change, "cleared")


@router.post("/projects/{project}/ingests/{number}/quarantine/{source}/release")
@writes_in_own_sessions
def release(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Importer, number: int, source: int
) -> Response:
    change = lambda: quarantine.release(runtime, ctx, number, source)  # noqa: E731
    return _decide(request, db, runtime, ctx, number, change, "released")


@router.post("/projects/{project}/ingests/{number}/quarantine/{source}/discard")
@writes_in_own_sessions
def discard(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Importer, number: int, source: int
) -> Response:
    change = lambda: quarantine.discard(runtime, ctx, number, source)  # noqa: E731
    return _decide(request, db, runtime, ctx, number, change, "discarded")

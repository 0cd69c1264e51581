"""Ingest from the browser (data owners): upload, the list of ingests, a report, the quarantine review.

The upload runs the same server-side pipeline as the API and the CLI (``service.start``,
``batches.ingest_files``, ``service.finish``): a .zip or .tar goes through the archive checks, loose
files are sources named after their file names. It is bounded like an API batch (the body limit
is the batch limit). Every page needs ``data:import``, like the API routes it mirrors; the review
forms call the same ``sanctum.ingest.quarantine`` functions, so a browser and a script leave the
same audit trail. The preview PNG is served by a GET route guarded like the page, not cached.

The upload's body is raw, identifiable patient files, so it is never parsed by Starlette's
``request.form()`` (which spools every file over 1 MiB to a temporary file on disk, in plaintext).
``streamed_form`` reads the fields first; the guard (``IngestUploadPage``) checks the CSRF token and
the role on them; only then are the files read, into memory, the body counted against the batch
limit as it arrives (and refused by its Content-Length before any file byte is read).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Callable
from functools import partial
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.api.deps import DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.api.routes import ingest as ingest_api
from sanctum.api.routes.ingest_review import preview_response
from sanctum.api.runtime import Runtime
from sanctum.config import Settings
from sanctum.datasets import catalog, transfer
from sanctum.errors import InvalidInput, NotFound, SanctumError
from sanctum.ingest import archive, oneshot, quarantine, service
from sanctum.ingest import report as ingest_report
from sanctum.ingest.preview import Mask
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import IngestCreate, IngestOptions
from sanctum.web.pages_datasets import human_size
from sanctum.web.render import render
from sanctum.web.session import STREAMED_FIELDS, ProjectPage, WebPrincipal, end_failed, redirect
from sanctum.web.streamed_form import StreamedForm, handler_bounded

router = APIRouter(include_in_schema=False)

Importer = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATA_IMPORT))]
Number = Annotated[str, Form(max_length=12)]
ARCHIVE_MAGIC = (b"PK\x03\x04", b"PK\x05\x06", b"\x1f\x8b")
UPLOAD_PATH = re.compile(r"^/projects/[^/]+/ingests/?$")
FIELDS_LIMIT = 16 * 1024  # the CSRF token, dataset, kind and dates together
FIELD_LENGTH = 200  # one typed field, as the Form(max_length=200) parameters allowed before
MAX_FILES = 1000  # file parts in one post: Starlette's own default, which the page had before
TOO_LARGE = "the upload is larger than the ingest limit; use the CLI"
TYPED = ("dataset", "kind", "dates")
NOTICES = {
    "masked": "Rectangle added. Check the preview, then release or discard the file.",
    "cleared": "Rectangles removed.",
    "released": "Released: the masked file is a new version of the dataset.",
    "discarded": "Discarded: the held file is deleted.",
}


def upload_body_limit(settings: Settings) -> Callable[[str, str], int | None]:
    """For the app's body-size middleware: the upload's handler bounds its body itself.

    A browser upload is bounded like an API batch (``ingest_api.batch_limit``), by the form
    reader as bytes arrive and by the Content-Length before any file is read, so that a refusal
    is the page with its reason (the middleware could only answer JSON). The middleware keeps a
    far ceiling only, as for the import form.
    """
    del settings
    return handler_bounded(UPLOAD_PATH)


# --------------------------------------------------------------------------- the upload's guard


async def upload_form(request: Request, runtime: RuntimeDep) -> StreamedForm:
    """The upload's fields, read before its files (bounded), and left where the CSRF check looks."""
    limit = ingest_api.batch_limit(runtime.settings)
    form = StreamedForm(request, fields_limit=FIELDS_LIMIT, max_files=MAX_FILES, body_limit=limit)
    await form.read_fields()
    request.scope[STREAMED_FIELDS] = form.fields
    return form


UploadForm = Annotated[StreamedForm, Depends(upload_form)]


class IngestUploadPage(ProjectPage):
    """``ProjectPage`` for the upload: the fields are read first, so the CSRF token and the role
    are checked before any byte of a file is read (``pages_imports.UploadPage``'s twin)."""

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        project: str,
        form: UploadForm,
        principal: WebPrincipal,
        db: DbSession,
        runtime: RuntimeDep,
    ) -> ProjectContext:
        del form
        return await super().__call__(request, project, principal, db, runtime)


Uploader = Annotated[ProjectContext, Depends(IngestUploadPage(Permission.DATA_IMPORT))]


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


async def _read(request: Request, form: StreamedForm, limit: int) -> list[tuple[str, bytes]]:
    """The uploaded files, in memory: refused by the body's declared length before any is read,
    then counted as they arrive (a body without a length, or one that lies)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise InvalidInput(TOO_LARGE, code="too_large")
    try:
        return await form.read_files()
    except transfer.TooLarge:
        raise InvalidInput(TOO_LARGE, code="too_large") from None


async def _sources(
    uploads: list[tuple[str, bytes]], limits: archive.Limits
) -> tuple[list[tuple[str, bytes]], list]:
    """The uploaded files as (name, bytes); an archive is opened with the pipeline's checks."""
    files: list[tuple[str, bytes]] = []
    refused: list[archive.Refusal] = []
    total = 0
    for filename, data in uploads:
        if not filename:
            continue
        total += len(data)
        if total > limits.max_total_bytes:
            raise InvalidInput(TOO_LARGE, code="too_large")
        if data.startswith(ARCHIVE_MAGIC) or filename.lower().endswith((".zip", ".tar", ".tgz")):
            inner, refusals = await anyio.to_thread.run_sync(archive.read_batch, data, limits)
            files += inner
            refused += refusals
        else:
            files.append((filename.replace("\\", "/").rsplit("/", 1)[-1], data))
    if not files and not refused:
        raise InvalidInput("choose one or more files, or a .zip or .tar archive", code="no_files")
    return files, refused


@router.post("/projects/{project}/ingests")
@writes_in_own_sessions
async def upload(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Uploader, form: UploadForm
) -> Response:
    """De-identify and store the uploaded files as a new version of ``dataset`` (created if new)."""
    typed = {"kind": "files", "dates": "shift"} | {k: form.fields[k] for k in TYPED if k in form.fields}
    limits = ingest_api._limits(runtime.settings)
    await anyio.to_thread.run_sync(db.commit)  # no transaction stays open while the files arrive
    try:
        if any(len(value) > FIELD_LENGTH for value in typed.values()):
            raise InvalidInput(f"a field is longer than {FIELD_LENGTH} characters", code="invalid_input")
        dates = typed["dates"] if typed["dates"] in ("shift", "keep", "remove") else "shift"
        body = IngestCreate(
            dataset=typed.get("dataset", "").strip(),
            kind="table" if typed["kind"] == "table" else "files",
            options=IngestOptions(dates=dates),
        )
        if not body.dataset:
            raise InvalidInput("name the dataset to ingest into", code="invalid_name")
        sources, refused = await _sources(await _read(request, form, limits.max_total_bytes), limits)
        number = await anyio.to_thread.run_sync(oneshot.run, runtime, ctx, body, sources, refused)
    except SanctumError as exc:
        # Read the rest of a body of a size we accept, so that the browser shows the answer.
        with contextlib.suppress(SanctumError):
            await form.discard(limits.max_total_bytes)
        page = partial(_ingests, request, db, runtime, ctx, status=exc.status, error=exc.message, form=typed)
        return await anyio.to_thread.run_sync(page)
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

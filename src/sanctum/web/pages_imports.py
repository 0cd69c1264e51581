"""Import requests in the browser (airlock in): the list, the form a data scientist asks with, the
requester's withdrawal and the data owners' decisions.

The form does in one post what the REST API does in two calls, with the same service functions:
``imports.create`` (the draft: dataset name, file name, justification, target checked),
``imports.upload_key``, the bytes streamed into the store under that key (``transfer.counted``
with the project's import limit, ``transfer.store_blob``), then ``imports.attach`` (the file's
kind checked, the request pending) through the REST route's own ``_record_upload``. The file is
not spooled: ``streamed_form`` reads the fields, the guard checks the CSRF token and the role, and
only then do the file's bytes flow (its first 64 KiB held in memory to check it is not empty),
encrypted as they arrive, with no transaction open meanwhile.

A refused form shows the page again with the reason and what was typed, and stores nothing:
- a missing or empty file, or one larger than the limit (its size follows from the Content-Length
  of a browser's form, where the file comes last), is refused before the draft is made;
- a bad dataset or file name, or an empty justification, is refused by ``imports.create`` (rolled
  back);
- a failure after the draft was made (a DICOM file, a body cut short, a full store) deletes any
  blob and withdraws the draft through ``imports.withdraw``, with the reason: the attempt stays
  in the audit trail, as through the API (which leaves the draft).
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from itertools import chain
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from sqlalchemy import exists, select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.airlock import imports
from sanctum.airlock.rules import import_rules
from sanctum.api.deps import DbSession, RuntimeDep, writes_in_own_sessions
from sanctum.api.routes import imports as imports_api
from sanctum.api.routes.files import _blocking_chunks, _declared_length
from sanctum.api.runtime import Runtime
from sanctum.config import Settings
from sanctum.datasets import transfer
from sanctum.db.models import Dataset, Project
from sanctum.errors import InvalidInput, NotFound, SanctumError
from sanctum.jobs.models import Job
from sanctum.projects.service import ProjectContext
from sanctum.web.pages_datasets import _allows, _page, human_size
from sanctum.web.session import STREAMED_FIELDS, ProjectPage, WebPrincipal, end_failed, redirect
from sanctum.web.streamed_form import StreamedForm, handler_bounded

log = logging.getLogger("sanctum.airlock")
router = APIRouter(include_in_schema=False)

FIELDS_LIMIT = 64 * 1024  # the text fields together: a justification is at most 10,000 characters
FORM_OVERHEAD = 16 * 1024  # multipart boundaries and part headers around the file
UPLOAD_PATH = re.compile(r"^/projects/[^/]+/imports/?$")
TYPED = ("dataset", "name", "justification")
DATASET_CHOICES = 500

NOTICES = {
    "import_requested": "Import requested: the file waits, encrypted, until a data owner decides.",
    "import_withdrawn": "Import request withdrawn: the held file was destroyed.",
    "import_approved": "Approved: the file is now the newest version of its dataset.",
    "import_rejected": "Rejected: the held file was destroyed.",
}


def upload_body_limit(settings: Settings) -> Callable[[str, str], int | None]:
    """For the app's body-size middleware: the import form's handler bounds its body itself.

    It refuses a body whose Content-Length exceeds the project's import limit before reading the
    file, with the page and the typed reason (the middleware could only answer JSON), and counts
    the text fields and the file's bytes as they stream (a body without a length). The middleware
    keeps only a far ceiling here, as the REST upload it mirrors is exempt from it altogether.
    """
    del settings
    return handler_bounded(UPLOAD_PATH)


# --------------------------------------------------------------------------- guards


async def streamed_form(request: Request) -> StreamedForm:
    """The form's fields, read before the file (bounded), and left where the CSRF check looks."""
    form = StreamedForm(request, fields_limit=FIELDS_LIMIT)
    await form.read_fields()
    request.scope[STREAMED_FIELDS] = form.fields
    return form


StreamedFormDep = Annotated[StreamedForm, Depends(streamed_form)]


class UploadPage(ProjectPage):
    """``ProjectPage`` for a form that streams a file: its fields are read first, so the CSRF
    check finds its token without the file being read; the role is checked before any byte of
    the file is."""

    async def __call__(  # type: ignore[override]
        self,
        request: Request,
        project: str,
        form: StreamedFormDep,
        principal: WebPrincipal,
        db: DbSession,
        runtime: RuntimeDep,
    ) -> ProjectContext:
        del form
        return await super().__call__(request, project, principal, db, runtime)


Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.AIRLOCK_READ))]
Requester = Annotated[ProjectContext, Depends(ProjectPage(Permission.IMPORTS_REQUEST))]
Uploader = Annotated[ProjectContext, Depends(UploadPage(Permission.IMPORTS_REQUEST))]
Approver = Annotated[ProjectContext, Depends(ProjectPage(Permission.IMPORTS_APPROVE))]
TextField = Annotated[str, Form(max_length=10_000)]


# --------------------------------------------------------------------------- the list


def _targets(db: Session, ctx: ProjectContext) -> list[str]:
    """The project's own datasets an import may land in (not shredded, not job outputs)."""
    outputs = exists().where(Job.output_dataset_id == Dataset.id)
    return list(
        db.scalars(
            select(Dataset.name)
            .where(Dataset.project_id == ctx.project.id, Dataset.shredded_at.is_(None), ~outputs)
            .order_by(Dataset.name)
            .limit(DATASET_CHOICES)
        ).all()
    )


def _imports(
    request: Request, db: Session, ctx: ProjectContext, *, status: int = 200, **context: Any
) -> Response:
    can_request = _allows(ctx, Permission.IMPORTS_REQUEST)
    return _page(
        request,
        "imports.html",
        ctx,
        status=status,
        imports=[imports_api.import_public(db, ctx, r) for r in imports.list_for(db, ctx)],
        can_decide=_allows(ctx, Permission.IMPORTS_APPROVE),
        can_request=can_request,
        datasets=_targets(db, ctx) if can_request else [],
        limit=import_rules(db, ctx.project).max_bytes,
        me=ctx.principal.email,
        **{"form": {}, **context},
    )


@router.get("/projects/{project}/imports")
def imports_page(request: Request, db: DbSession, ctx: Reader, done: str = "") -> Response:
    return _imports(request, db, ctx, notice=NOTICES.get(done))


# --------------------------------------------------------------------------- the request form


def _create(runtime: Runtime, ctx: ProjectContext, typed: dict[str, str], name: str) -> tuple[int, bytes]:
    """The draft and its upload key, committed in a short session of its own (the project is
    loaded in it: a project's key is made only in the session that holds the project)."""
    with runtime.db.session() as session:
        project = session.get(Project, ctx.project.id)
        if project is None:
            raise NotFound("project not found")
        local = replace(ctx, project=project)
        draft = imports.create(
            session,
            local,
            runtime.keyring,
            dataset=typed["dataset"].strip(),
            filename=name,
            justification=typed["justification"],
        )
        key = imports.upload_key(session, local, runtime.keyring, draft)
        number = draft.number
    return number, key


def _withdraw(runtime: Runtime, ctx: ProjectContext, number: int, why: str) -> None:
    """The upload failed after its draft was made: withdraw the draft, saying why (audited)."""
    try:
        with runtime.db.session() as session:
            found = imports.load(session, ctx, number, for_update=True)
            discard = imports.withdraw(session, ctx, found, f"the upload did not complete: {why}"[:1000])
        for blob_id in discard:
            runtime.store.delete(blob_id)
    except Exception:  # the draft stays; its requester can withdraw it from the page
        log.exception("could not withdraw import %s of %s after a failed upload", number, ctx.project.name)


def _file_name(typed: dict[str, str], uploaded: str) -> str:
    """The name in the dataset: the one typed, else the uploaded file's own (without folders)."""
    return typed["name"].strip() or uploaded.replace("\\", "/").rsplit("/", 1)[-1]


async def _receive(
    request: Request, runtime: Runtime, ctx: ProjectContext, form: StreamedForm, limit: int
) -> None:
    """The form's checks, then the service's: nothing is stored until the draft is made."""
    declared = _declared_length(request)
    if declared is not None and declared > limit + FIELDS_LIMIT + FORM_OVERHEAD:
        raise transfer.TooLarge(f"the file is larger than the import limit of {human_size(limit)}")
    if form.file is None or not form.file.filename:
        raise InvalidInput("choose the file to bring in", code="no_file")
    head = await form.read_file_head(imports.SNIFF_BYTES)
    if not head:
        raise InvalidInput("the file is empty", code="empty_file")
    if (size := form.declared_file_size()) is not None and size > limit:
        raise transfer.TooLarge(f"the file is larger than the import limit of {human_size(limit)}")
    typed = {k: form.fields.get(k, "") for k in TYPED}
    name = _file_name(typed, form.file.filename)
    number, key = await anyio.to_thread.run_sync(_create, runtime, ctx, typed, name)
    try:
        chunks = chain([head], _blocking_chunks(form.file_chunks()))
        sniffed = imports.Sniffed(transfer.counted(chunks, limit=limit, declared=None))
        info = await anyio.to_thread.run_sync(transfer.store_blob, runtime.store, sniffed, key)
        await anyio.to_thread.run_sync(imports_api._record_upload, runtime, ctx, number, info, sniffed.head)
    except SanctumError as exc:
        await anyio.to_thread.run_sync(_withdraw, runtime, ctx, number, exc.message)
        raise
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_withdraw, runtime, ctx, number, "the server stopped it")
        raise


@router.post("/projects/{project}/imports")
@writes_in_own_sessions
async def request_import(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Uploader, form: StreamedFormDep
) -> Response:
    """Ask for the file to enter the project: it is held, encrypted, for the data owners."""
    limit = await anyio.to_thread.run_sync(lambda: import_rules(db, ctx.project).max_bytes)
    await anyio.to_thread.run_sync(db.commit)  # no transaction stays open while bytes flow
    try:
        await _receive(request, runtime, ctx, form, limit)
    except SanctumError as exc:
        # Read the rest of a body of a size we accept, so that the browser shows the answer.
        with contextlib.suppress(SanctumError):
            await form.discard(limit + FIELDS_LIMIT + FORM_OVERHEAD)
        typed = {k: form.fields.get(k, "") for k in TYPED}
        page = partial(_imports, request, db, ctx, status=exc.status, error=exc.message, form=typed)
        return await anyio.to_thread.run_sync(page)
    return redirect(f"/projects/{ctx.project.name}/imports?done=import_requested")


# --------------------------------------------------------------------------- withdraw and decide


def _decide(
    request: Request, db: Session, runtime: Runtime, ctx: ProjectContext, number: int, act: Any, done: str
) -> Response:
    try:
        discard, cleanup = act(imports.load(db, ctx, number, for_update=True))
    except SanctumError as exc:
        if exc.status == 404 and exc.message == "import request not found":
            raise
        end_failed(db, exc)
        return _imports(request, db, ctx, status=exc.status, error=exc.message)
    try:
        db.commit()
    except BaseException:  # the landed version's blob is referenced by nothing: delete it now
        for blob_id in cleanup:
            runtime.store.delete(blob_id)
        raise
    for blob_id in discard:
        runtime.store.delete(blob_id)
    return redirect(f"/projects/{ctx.project.name}/imports?done={done}")


@router.post("/projects/{project}/imports/{number}/withdraw")
def withdraw_import(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Requester, number: int, reason: TextField = ""
) -> Response:
    act = lambda found: (imports.withdraw(db, ctx, found, reason), [])  # noqa: E731
    return _decide(request, db, runtime, ctx, number, act, "import_withdrawn")


@router.post("/projects/{project}/imports/{number}/approve")
def approve_import(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Approver, number: int, reason: TextField = ""
) -> Response:
    def act(found: Any) -> tuple[list[str], list[str]]:
        landed = imports.approve(
            db, ctx, runtime.keyring, runtime.store, found, reason=reason,
            max_table_bytes=runtime.settings.max_table_bytes,
        )  # fmt: skip
        return landed.discard, landed.cleanup

    return _decide(request, db, runtime, ctx, number, act, "import_approved")


@router.post("/projects/{project}/imports/{number}/reject")
def reject_import(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Approver, number: int, reason: TextField = ""
) -> Response:
    act = lambda found: (imports.reject(db, ctx, found, reason), [])  # noqa: E731
    return _decide(request, db, runtime, ctx, number, act, "import_rejected")

"""Export requests (airlock out): create, name files, submit, review, return, withdraw, override a
failed check, release, and — for the requester only, once released — download.

Adding a file decrypts and checks it, so that route reads in the request's session and records in
a short write of its own (no write lock is held while a large table is checked).
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.airlock import content, export_files, exports, preview, reviews
from sanctum.airlock.export_files import Prepared
from sanctum.airlock.models import ExportFile, ExportRequest
from sanctum.airlock.rules import export_rules
from sanctum.airlock.states import UNDER_REVIEW
from sanctum.api.deps import (
    AirlockReader,
    DbSession,
    ExportReleaser,
    ExportRequester,
    ExportReviewer,
    RuntimeDep,
    record_outside,
    writes_in_own_sessions,
)
from sanctum.api.runtime import Runtime
from sanctum.db.models import User
from sanctum.errors import Conflict
from sanctum.projects.service import ProjectContext
from sanctum.schemas.airlock import (
    ExportCreate,
    ExportDetail,
    ExportFileAdd,
    ExportFilePublic,
    ExportPreview,
    ExportPublic,
    ExportUpdate,
    Finding,
    OverrideCreate,
    ReasonBody,
    ReleasedFilePublic,
    ReviewCreate,
    ReviewPublic,
)

router = APIRouter(prefix="/api/v1/projects/{project}/exports", tags=["exports"])


def emails(session: Session, ids: set[int | None]) -> dict[int, str]:
    wanted = {i for i in ids if i is not None}
    if not wanted:
        return {}
    return dict(session.execute(select(User.id, User.email).where(User.id.in_(wanted))).all())


def file_public(file: ExportFile, who: dict[int, str]) -> ExportFilePublic:
    return ExportFilePublic(
        name=file.name,
        dataset=file.dataset_name,
        version=file.version_number,
        path=file.path,
        size=file.size,
        sha256=file.sha256,
        job=file.job_number,
        job_manifest_sha256=file.job_manifest_sha256,
        check_verdict=file.check_verdict,
        findings=[Finding(**f) for f in file.check_reasons],
        columns=file.columns,
        row_count=file.row_count,
        override_reason=file.override_reason,
        override_by=who.get(file.override_by_id) if file.override_by_id else None,
        override_at=file.override_at,
        blocks_release=file.check_verdict == "fail" and not file.override_reason,
    )


def export_public(
    session: Session, ctx: ProjectContext, request: ExportRequest, *, detail: bool = False
) -> ExportPublic | ExportDetail:
    files = export_files.files_of(session, request) if detail else []
    who = emails(
        session, {request.requested_by_id, request.released_by_id, *(f.override_by_id for f in files)}
    )
    fields = {
        "number": request.number,
        "project": ctx.project.name,
        "title": request.title,
        "state": request.state,
        "state_reason": request.state_reason,
        "requested_by": who.get(request.requested_by_id or 0),
        "created_at": request.created_at,
        "submitted_at": request.submitted_at,
        "decided_at": request.decided_at,
        "released_at": request.released_at,
        "released_by": who.get(request.released_by_id or 0),
        "required_approvals": request.required_approvals,
        "reviewers_so_far": reviews.reviewers_so_far(session, request),
        "dmp_version": request.dmp_version,
    }
    if not detail:
        return ExportPublic(**fields)
    shown, hidden = reviews.visible(session, ctx, request)
    return ExportDetail(
        **fields,
        justification=request.justification,
        files=[file_public(f, who) for f in files],
        reviews=[
            ReviewPublic(
                reviewer=r.reviewer,
                file=r.file,
                verdict=r.verdict,
                comment=r.comment,
                created_at=r.created_at,
            )
            for r in shown
        ],
        verdicts_hidden=hidden,
        your_pending_files=reviews.pending_for(session, ctx, request)
        if request.state in UNDER_REVIEW
        else [],
    )


def _detail(session: Session, ctx: ProjectContext, request: ExportRequest) -> ExportDetail:
    return export_public(session, ctx, request, detail=True)  # type: ignore[return-value]


@router.post("", status_code=201)
def create_export(body: ExportCreate, ctx: ExportRequester, db: DbSession) -> ExportDetail:
    request = exports.create(db, ctx, title=body.title, justification=body.justification)
    db.commit()
    return _detail(db, ctx, request)


@router.get("")
def list_exports(
    ctx: AirlockReader,
    db: DbSession,
    state: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
) -> list[ExportPublic]:
    """Your own requests; reviewers, owners and auditors see every request past draft."""
    return [export_public(db, ctx, r) for r in exports.list_for(db, ctx, state=state, limit=limit)]  # type: ignore[misc]


@router.get("/history")
def release_history(
    ctx: AirlockReader, db: DbSession, limit: Annotated[int, Query(ge=1, le=5000)] = 500
) -> list[ReleasedFilePublic]:
    """Every file released from this project (that you may see), newest first: compare before you
    approve, to spot differencing across releases."""
    return [
        ReleasedFilePublic(**{**r.__dict__, "row_count": r.rows})
        for r in exports.history(db, ctx, limit=limit)
    ]


@router.get("/{number}")
def get_export(number: int, ctx: AirlockReader, db: DbSession) -> ExportDetail:
    return _detail(db, ctx, exports.load(db, ctx, number))


@router.patch("/{number}")
def update_export(number: int, body: ExportUpdate, ctx: ExportRequester, db: DbSession) -> ExportDetail:
    request = exports.load(db, ctx, number, for_update=True)
    exports.update(db, ctx, request, title=body.title, justification=body.justification)
    db.commit()
    return _detail(db, ctx, request)


def _prepare(
    runtime: Runtime, db: Session, ctx: ProjectContext, number: int, body: ExportFileAdd
) -> Prepared:
    request = exports.load(db, ctx, number)
    exports.require_editable(ctx, request)
    rules = export_rules(db, ctx.project)
    return export_files.prepare(
        db,
        ctx,
        runtime.keyring,
        runtime.store,
        rules,
        dataset=body.dataset,
        version=body.version,
        path=body.path,
    )


def _attach(
    runtime: Runtime, ctx: ProjectContext, number: int, prepared: Prepared, name: str | None
) -> ExportDetail:
    with runtime.db.session() as session:
        request = exports.load(session, ctx, number, for_update=True)
        exports.require_editable(ctx, request)  # still editable? a submit may have raced us
        export_files.attach(session, ctx, request, prepared, name)
        session.flush()
        return _detail(session, ctx, request)


@router.post("/{number}/files", status_code=201)
@writes_in_own_sessions
async def add_file(
    number: int, body: ExportFileAdd, ctx: ExportRequester, db: DbSession, runtime: RuntimeDep
) -> ExportDetail:
    """Name a job output; it is checked at once and the verdict is part of the answer."""
    prepared = await anyio.to_thread.run_sync(_prepare, runtime, db, ctx, number, body)
    await anyio.to_thread.run_sync(db.commit)
    return await anyio.to_thread.run_sync(_attach, runtime, ctx, number, prepared, body.name)


@router.delete("/{number}/files/{name:path}")
def remove_file(number: int, name: str, ctx: ExportRequester, db: DbSession) -> ExportDetail:
    request = exports.load(db, ctx, number, for_update=True)
    exports.require_editable(ctx, request)
    export_files.remove(db, ctx, request, name)
    db.commit()
    return _detail(db, ctx, request)


@router.post("/{number}/submit")
def submit_export(number: int, ctx: ExportRequester, db: DbSession) -> ExportDetail:
    request = exports.load(db, ctx, number, for_update=True)
    exports.submit(db, ctx, request)
    db.commit()
    return _detail(db, ctx, request)


@router.post("/{number}/reviews", status_code=201)
def review_export(number: int, body: ReviewCreate, ctx: ExportReviewer, db: DbSession) -> ExportDetail:
    """Your verdict on every file you have not judged yet; others' stay hidden until all are in."""
    request = exports.load(db, ctx, number, for_update=True)
    reviews.vote(db, ctx, request, body.verdict, body.comment)
    db.commit()
    return _detail(db, ctx, request)


@router.post("/{number}/return")
def return_export(number: int, body: ReasonBody, ctx: ExportReviewer, db: DbSession) -> ExportDetail:
    request = exports.load(db, ctx, number, for_update=True)
    exports.return_for_changes(db, ctx, request, body.reason)
    db.commit()
    return _detail(db, ctx, request)


@router.post("/{number}/withdraw")
def withdraw_export(number: int, body: ReasonBody, ctx: ExportRequester, db: DbSession) -> ExportDetail:
    request = exports.load(db, ctx, number, for_update=True)
    exports.withdraw(db, ctx, request, body.reason)
    db.commit()
    return _detail(db, ctx, request)


@router.post("/{number}/override")
def override_check(number: int, body: OverrideCreate, ctx: ExportReleaser, db: DbSession) -> ExportDetail:
    """A data owner who did not make the request lets a file that failed its checks be released."""
    request = exports.load(db, ctx, number, for_update=True)
    exports.override(db, ctx, request, body.name, body.reason)
    db.commit()
    return _detail(db, ctx, request)


@router.post("/{number}/release")
def release_export(number: int, ctx: ExportReleaser, db: DbSession, runtime: RuntimeDep) -> ExportDetail:
    """Approved → released (data owners). Every file is re-hashed first: changed bytes reset their
    reviews and the release is refused."""
    request = exports.load(db, ctx, number, for_update=True)
    exports.release(db, ctx, runtime.keyring, runtime.store, request)
    db.commit()
    return _detail(db, ctx, request)


@router.get("/{number}/preview/{name:path}")
def preview_file(
    number: int, name: str, ctx: ExportReviewer, db: DbSession, runtime: RuntimeDep
) -> ExportPreview:
    """The first rows of a small table (or the start of a text file), for reviewers; audited."""
    request = exports.load(db, ctx, number)
    file = export_files.file_named(db, request, name)
    shown = preview.of(db, ctx, runtime.keyring, runtime.store, request, file)
    record_outside(runtime, ctx, "export.preview", target=f"export:{number}", details={"name": name})
    return shown


def _reset_changed(runtime: Runtime, ctx: ProjectContext, number: int, name: str) -> None:
    """A download found changed bytes: record it (reviews reset, back in review) in a write of its own."""
    with runtime.db.session() as session:
        request = exports.load(session, ctx, number, for_update=True)
        file = export_files.file_named(session, request, name)
        changed = export_files.changed_files(session, runtime.keyring, runtime.store, [file])
        if changed:
            exports.reset(session, ctx, request, changed)


@router.get("/{number}/files/{name:path}")
def download_file(
    number: int, name: str, ctx: ExportRequester, db: DbSession, runtime: RuntimeDep
) -> StreamingResponse:
    """A released file, for the person who requested it; re-hashed before a byte is sent."""
    export = exports.load(db, ctx, number)
    exports.download_check(db, ctx, export)
    file = export_files.file_named(db, export, name)
    if export_files.changed_files(db, runtime.keyring, runtime.store, [file]):
        _reset_changed(runtime, ctx, number, name)
        raise Conflict(
            f"{name} changed after it was reviewed: it was not sent, its reviews were reset and the request "
            "is back in review",
            code="files_changed",
        )
    src = content.source(db, runtime.keyring, file)
    record_outside(
        runtime,
        ctx,
        "export.download",
        target=f"export:{number}",
        details={"name": name, "sha256": file.sha256, "job": file.job_number},
    )
    headers = {
        "Content-Length": str(file.size),
        "ETag": f'"{file.sha256}"',
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(name.rsplit('/', 1)[-1])}",
    }
    return StreamingResponse(
        content.stream(runtime.store, src), headers=headers, media_type="application/octet-stream"
    )

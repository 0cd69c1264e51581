"""Import requests (airlock in): ask, upload the file to the holding area, and a data owner approves
(it lands as a dataset version with its provenance) or rejects (the held bytes are destroyed).

The upload streams like a dataset upload: checked in a short read, encrypted straight into the
store, recorded in one short write; a failure leaves at most an unreferenced blob, which start-up
cleanup removes.
"""

from __future__ import annotations

from urllib.parse import quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from sanctum.airlock import imports
from sanctum.airlock.models import ImportRequest
from sanctum.airlock.rules import import_rules
from sanctum.api.deps import (
    AirlockReader,
    DbSession,
    ImportApprover,
    ImportRequester,
    RuntimeDep,
    record_outside,
    writes_in_own_sessions,
)
from sanctum.api.routes.exports import emails
from sanctum.api.routes.files import _blocking_chunks, _declared_length
from sanctum.api.runtime import Runtime
from sanctum.datasets import transfer
from sanctum.db.models import DatasetVersion
from sanctum.errors import InvalidInput
from sanctum.projects.service import ProjectContext
from sanctum.schemas.airlock import ImportCreate, ImportPublic, ReasonBody
from sanctum.store import BlobInfo

router = APIRouter(prefix="/api/v1/projects/{project}/imports", tags=["imports"])


def upload_path(path: str) -> bool:
    """The held file streams past the JSON body limit and enforces the import limit itself."""
    return path.startswith("/api/v1/projects/") and "/imports/" in path and path.endswith("/file")


def import_public(session: Session, ctx: ProjectContext, request: ImportRequest) -> ImportPublic:
    who = emails(session, {request.requested_by_id, request.decided_by_id})
    version = session.get(DatasetVersion, request.version_id) if request.version_id else None
    return ImportPublic(
        number=request.number,
        project=ctx.project.name,
        dataset=request.dataset_name,
        original_name=request.original_name,
        justification=request.justification,
        state=request.state,
        state_reason=request.state_reason,
        requested_by=who.get(request.requested_by_id or 0),
        decided_by=who.get(request.decided_by_id or 0),
        size=request.size,
        sha256=request.sha256,
        created_at=request.created_at,
        uploaded_at=request.uploaded_at,
        decided_at=request.decided_at,
        version=version.number if version else None,
    )


@router.post("", status_code=201)
def create_import(
    body: ImportCreate, ctx: ImportRequester, db: DbSession, runtime: RuntimeDep
) -> ImportPublic:
    """Say what comes in, where it lands and why; then PUT the bytes to …/imports/{number}/file."""
    request = imports.create(
        db,
        ctx,
        runtime.keyring,
        dataset=body.dataset,
        filename=body.filename,
        justification=body.justification,
    )
    db.commit()
    return import_public(db, ctx, request)


@router.get("")
def list_imports(ctx: AirlockReader, db: DbSession) -> list[ImportPublic]:
    """Your own requests; data owners and auditors see every request that has its file."""
    return [import_public(db, ctx, r) for r in imports.list_for(db, ctx)]


@router.get("/{number}")
def get_import(number: int, ctx: AirlockReader, db: DbSession) -> ImportPublic:
    return import_public(db, ctx, imports.load(db, ctx, number))


def _record_upload(
    runtime: Runtime, ctx: ProjectContext, number: int, info: BlobInfo, head: bytes
) -> ImportPublic:
    try:
        with runtime.db.session() as session:
            request = imports.load(session, ctx, number, for_update=True)
            imports.attach(session, ctx, request, info, head)
            session.flush()
            return import_public(session, ctx, request)
    except BaseException:
        runtime.store.delete(info.blob_id)
        raise


@router.put("/{number}/file", status_code=201)
@writes_in_own_sessions
async def upload_import(
    request: Request, number: int, ctx: ImportRequester, db: DbSession, runtime: RuntimeDep
) -> ImportPublic:
    """The raw body is the file; at most the project's import limit."""
    declared = _declared_length(request)
    held = await anyio.to_thread.run_sync(imports.load, db, ctx, number)
    key = await anyio.to_thread.run_sync(imports.upload_key, db, ctx, runtime.keyring, held)
    limit = import_rules(db, ctx.project).max_bytes
    await anyio.to_thread.run_sync(db.commit)  # no transaction stays open while bytes flow
    sniffed = imports.Sniffed(
        transfer.counted(_blocking_chunks(request.stream()), limit=limit, declared=declared)
    )
    try:
        info = await anyio.to_thread.run_sync(transfer.store_blob, runtime.store, sniffed, key)
    except ClientDisconnect:
        raise InvalidInput("the upload was interrupted; nothing was stored", code="interrupted") from None
    if info.size == 0:
        runtime.store.delete(info.blob_id)
        raise InvalidInput("the file is empty", code="empty_file")
    return await anyio.to_thread.run_sync(_record_upload, runtime, ctx, number, info, sniffed.head)


@router.get("/{number}/file")
def held_file(number: int, ctx: ImportApprover, db: DbSession, runtime: RuntimeDep) -> Response:
    """The held bytes, for the data owners who decide (checked against the uploaded SHA-256)."""
    request = imports.load(db, ctx, number)
    data = imports.read_held(db, runtime.keyring, runtime.store, ctx.project, request)
    record_outside(
        runtime, ctx, "import.inspect", target=f"import:{number}", details={"sha256": request.sha256}
    )
    name = quote(request.original_name.rsplit("/", 1)[-1])
    return Response(
        data,
        media_type="application/octet-stream",
        headers={
            "Content-Disposition": f"attachment; filename*=UTF-8''{name}",
            "ETag": f'"{request.sha256}"',
        },
    )


@router.post("/{number}/approve")
def approve_import(
    number: int, body: ReasonBody, ctx: ImportApprover, db: DbSession, runtime: RuntimeDep
) -> ImportPublic:
    """The held file becomes the next version of its dataset; the held copy is destroyed."""
    request = imports.load(db, ctx, number, for_update=True)
    landed = imports.approve(
        db,
        ctx,
        runtime.keyring,
        runtime.store,
        request,
        reason=body.reason,
        max_table_bytes=runtime.settings.max_table_bytes,
    )
    try:
        db.commit()
    except BaseException:
        for blob_id in landed.cleanup:
            runtime.store.delete(blob_id)
        raise
    for blob_id in landed.discard:
        runtime.store.delete(blob_id)
    return import_public(db, ctx, request)


@router.post("/{number}/reject")
def reject_import(
    number: int, body: ReasonBody, ctx: ImportApprover, db: DbSession, runtime: RuntimeDep
) -> ImportPublic:
    request = imports.load(db, ctx, number, for_update=True)
    discard = imports.reject(db, ctx, request, body.reason)
    db.commit()
    for blob_id in discard:  # the key is gone already; this is housekeeping
        runtime.store.delete(blob_id)
    return import_public(db, ctx, request)


@router.post("/{number}/withdraw")
def withdraw_import(
    number: int, body: ReasonBody, ctx: ImportRequester, db: DbSession, runtime: RuntimeDep
) -> ImportPublic:
    request = imports.load(db, ctx, number, for_update=True)
    discard = imports.withdraw(db, ctx, request, body.reason)
    db.commit()
    for blob_id in discard:
        runtime.store.delete(blob_id)
    return import_public(db, ctx, request)

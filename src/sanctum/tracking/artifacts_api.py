"""MLflow's artifact proxy (``/api/2.0/mlflow-artifacts/artifacts``) over the encrypted store.

Runs report ``mlflow-artifacts:/<experiment>/<run>/artifacts`` as their artifact URI, so the stock
client sends every upload and download through here, with the same project resolution, role
check and MLflow error shape as the rest of the tracking API.

Uploads stream: the request session only reads (no write lock while bytes flow), the body is
encrypted straight into the blob store, and one short write then records the file with its audit
event; a failure leaves at most an unreferenced blob, never a half-recorded artifact.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session
from starlette.requests import ClientDisconnect

from sanctum.api.deps import DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.api.routes.files import _blocking_chunks, _checked
from sanctum.api.runtime import Runtime
from sanctum.datasets import transfer
from sanctum.projects.service import ProjectContext
from sanctum.store import BlobInfo
from sanctum.tracking import MlflowError
from sanctum.tracking import artifacts as store
from sanctum.tracking import service as svc
from sanctum.tracking.api import Body, Reader, Writer

A = "/api/2.0/mlflow-artifacts/artifacts"
router = APIRouter(tags=["mlflow"])


def upload_path(path: str) -> bool:
    """Artifact uploads stream past the JSON body limit; they enforce ``max_upload_bytes`` per file."""
    return path.startswith(f"{A}/")


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise svc.invalid("invalid Content-Length header") from None


def _plan(db: Session, runtime: Runtime, ctx: ProjectContext, path: str) -> tuple[store.Location, bytes]:
    where = store.locate(db, ctx, path)
    store.check_writable(db, where)
    key = store.existing_key(db, runtime.keyring, ctx.project, where.experiment_id)
    db.commit()  # no transaction stays open while bytes flow
    if key is None:
        with runtime.db.session() as session:
            key = store.create_key(session, runtime.keyring, ctx.project.id, where.experiment_id)
    return where, key


def _attach(runtime: Runtime, ctx: ProjectContext, where: store.Location, info: BlobInfo) -> None:
    try:
        with runtime.db.session() as session:
            replaced = store.attach(session, ctx, where, info)
    except BaseException:
        runtime.store.delete(info.blob_id)
        raise
    if replaced and replaced != info.blob_id:
        runtime.store.delete(replaced)


@router.put(f"{A}/{{path:path}}")
@writes_in_own_sessions
async def upload_artifact(
    request: Request, path: str, ctx: Writer, db: DbSession, runtime: RuntimeDep
) -> dict[str, Any]:
    declared = _declared_length(request)
    limit = runtime.settings.max_upload_bytes
    if declared is not None and declared > limit:
        raise transfer.TooLarge(f"artifact is larger than the limit of {limit} bytes; nothing was stored")
    where, key = await anyio.to_thread.run_sync(_plan, db, runtime, ctx, path)
    chunks = transfer.counted(_blocking_chunks(request.stream()), limit=limit, declared=declared)
    try:
        info = await anyio.to_thread.run_sync(transfer.store_blob, runtime.store, chunks, key)
    except ClientDisconnect:
        raise svc.invalid("the upload was interrupted; nothing was stored") from None
    await anyio.to_thread.run_sync(_attach, runtime, ctx, where, info)
    return {}


@router.get(A)
def list_artifacts(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    path = body.get("path") or ""
    if not path.strip("/"):
        return {"files": []}  # the root spans projects: nothing to list at it
    return {"files": store.listing(db, store.locate(db, ctx, path))}


@router.get(f"{A}/{{path:path}}")
def download_artifact(path: str, ctx: Reader, db: DbSession, runtime: RuntimeDep) -> StreamingResponse:
    """The plaintext of one artifact, decrypted as it streams; every download is audited."""
    where = store.locate(db, ctx, path)
    entry = store.find(db, where)
    details = {"path": where.path, "size": entry.size, "sha256": entry.sha256}
    if not store.may_download(ctx):
        record_outside(
            runtime, ctx, "artifact.download", target=where.target, details=details, outcome="denied"
        )
        raise MlflowError("PERMISSION_DENIED", store.AIRLOCK_MESSAGE)
    key = store.existing_key(db, runtime.keyring, ctx.project, where.experiment_id)
    if key is None:
        raise svc.missing(f"no artifact at {where.path!r}")
    record_outside(runtime, ctx, "artifact.download", target=where.target, details=details)
    headers = {
        "Content-Length": str(entry.size),
        "ETag": f'"{entry.sha256}"',
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(where.path.rsplit('/', 1)[-1])}",
    }
    body = (
        _checked(lambda: runtime.store.open_range(entry.blob_id, key, 0, entry.size))
        if entry.size
        else iter(())
    )
    return StreamingResponse(body, headers=headers, media_type="application/octet-stream")


@router.get("/api/2.0/mlflow/artifacts/list")
def list_run_artifacts(ctx: Reader, db: DbSession, body: Body) -> dict[str, Any]:
    """The tracking API's own listing (the UI's): paths relative to the run's artifact root."""
    run = svc.get_run(db, ctx, body.get("run_id") or body.get("run_uuid"))
    sub = body.get("path") or ""
    raw = f"{run.experiment_id}/{run.id}/artifacts" + (f"/{store.clean_path(sub)}" if sub else "")
    files = store.listing(db, store.locate(db, ctx, raw))
    for f in files:
        f["path"] = f"{sub.rstrip('/')}/{f['path']}" if sub else f["path"]
    return {"root_uri": f"mlflow-artifacts:/{run.experiment_id}/{run.id}/artifacts", "files": files}

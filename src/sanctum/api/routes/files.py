"""File bytes in and out of dataset versions: streamed, encrypted on the way in, Range on the way out."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterator
from urllib.parse import quote

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from starlette.requests import ClientDisconnect

from sanctum.api.deps import (
    DataDownloader,
    DataImporter,
    DbSession,
    RuntimeDep,
    record_outside,
    writes_in_own_sessions,
)
from sanctum.api.routes.datasets import file_public
from sanctum.datasets import catalog, paths, transfer
from sanctum.datasets.catalog import Kind
from sanctum.dmp import enforce
from sanctum.errors import Denied, InvalidInput, SanctumError
from sanctum.schemas.datasets import FilePublic
from sanctum.store import BlobInfo, BlobNotFound, IntegrityError

log = logging.getLogger("sanctum.datasets")
router = APIRouter(
    prefix="/api/v1/projects/{project}/datasets/{dataset}/versions/{version}/files", tags=["files"]
)


def upload_path_prefix(path: str) -> bool:
    """Uploads stream past the JSON body limit; they enforce ``max_upload_bytes`` themselves."""
    return "/datasets/" in path and "/versions/" in path and "/files/" in path


def _blocking_chunks(stream: AsyncIterator[bytes]) -> Iterator[bytes]:
    """Pull the request body from the event loop into a worker thread, chunk by chunk."""

    async def next_chunk() -> bytes | None:
        try:
            return await stream.__anext__()
        except StopAsyncIteration:
            return None

    while True:
        chunk = anyio.from_thread.run(next_chunk)
        if chunk is None:
            return
        if chunk:
            yield chunk


def _declared_length(request: Request) -> int | None:
    value = request.headers.get("content-length")
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise InvalidInput("invalid Content-Length header") from None


@router.put("/{path:path}", status_code=201)
@writes_in_own_sessions
async def upload_file(
    request: Request,
    dataset: str,
    version: int,
    path: str,
    ctx: DataImporter,
    db: DbSession,
    runtime: RuntimeDep,
) -> FilePublic:
    """Stream the raw body into the draft as ``path``. Table datasets take one CSV or Parquet file."""
    path = paths.file_path(path)
    declared = _declared_length(request)
    ref = await anyio.to_thread.run_sync(catalog.resolve, db, ctx, dataset)
    await anyio.to_thread.run_sync(_dmp_allows_raw_upload, runtime, db, ctx, ref, version, path)
    plan = await anyio.to_thread.run_sync(transfer.plan, db, runtime.keyring, ref, version)
    await anyio.to_thread.run_sync(db.commit)  # no transaction stays open while bytes flow
    settings = runtime.settings
    table = None
    try:
        if plan.kind is Kind.TABLE:
            body = b"".join(
                transfer.counted(
                    [c async for c in _limited(request, settings.max_table_bytes)],
                    limit=settings.max_table_bytes,
                    declared=declared,
                )
            )
            info, schema, rows = await anyio.to_thread.run_sync(
                lambda: transfer.table_blob(
                    runtime.store, body, path, plan.key, max_bytes=settings.max_table_bytes
                )
            )
            table, stored_path = (schema, rows), transfer.TABLE_FILE
        else:
            chunks = transfer.counted(
                _blocking_chunks(request.stream()), limit=settings.max_upload_bytes, declared=declared
            )
            info = await anyio.to_thread.run_sync(transfer.store_blob, runtime.store, chunks, plan.key)
            stored_path = path
    except ClientDisconnect:
        raise InvalidInput("the upload was interrupted; nothing was stored", code="interrupted") from None
    return await anyio.to_thread.run_sync(_attach, runtime, ctx, dataset, version, stored_path, info, table)


def _dmp_allows_raw_upload(runtime, db, ctx, ref, version: int, path: str) -> None:  # noqa: ANN001
    """A dataset the DMP marks personal or sensitive takes data only through de-identifying ingest."""
    try:
        enforce.refuse_raw_upload(db, ref.owner.id, ref.dataset)
    except Denied as exc:
        record_outside(
            runtime,
            ctx,
            "dataset.import",
            outcome="denied",
            target=f"{ref.address}@{version}",
            details={"path": path, "code": exc.code},
        )
        raise


async def _limited(request: Request, limit: int) -> AsyncIterator[bytes]:
    seen = 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > limit:
            raise transfer.TooLarge(f"table file is larger than the limit of {limit} bytes")
        yield chunk


def _attach(runtime, ctx, dataset: str, version: int, path: str, info: BlobInfo, table) -> FilePublic:  # noqa: ANN001
    """One short write: the file joins the draft with its audit event, or the blob is removed."""
    try:
        with runtime.db.session() as session:
            ref = catalog.resolve(session, ctx, dataset)
            entry = transfer.attach(session, ctx, ref, version, path, info, table=table)
            public = file_public(entry)
    except BaseException:
        runtime.store.delete(info.blob_id)
        raise
    return public


class DataIntegrityError(SanctumError):
    """The stored bytes are not what was written: corruption or tampering on the server's disk."""

    status = 500
    code = "integrity_error"


def _checked(open_pieces: Callable[[], Iterator[bytes]]) -> Iterator[bytes]:
    """Decrypt the first piece before the response starts, so a blob that fails authentication at
    its start gets a clear error instead of a 200 that breaks off; later segments that fail end
    the stream (the client sees a short body that does not match the ETag's SHA-256)."""
    try:
        pieces = open_pieces()
        first = next(pieces, b"")
    except IntegrityError as exc:
        log.error("integrity check failed: %s", exc)
        raise DataIntegrityError(
            "this file failed its integrity check on the server and was not sent; an administrator "
            "should run 'sanctum fsck'"
        ) from exc
    except BlobNotFound as exc:
        log.error("blob missing: %s", exc)
        raise DataIntegrityError(
            "this file is missing from the data store; an administrator should run 'sanctum fsck'"
        ) from exc

    def rest() -> Iterator[bytes]:
        if first:
            yield first
        yield from pieces

    return rest()


@router.get("/{path:path}")
def download_file(
    request: Request,
    dataset: str,
    version: int,
    path: str,
    ctx: DataDownloader,
    db: DbSession,
    runtime: RuntimeDep,
) -> StreamingResponse:
    """The plaintext of one file (owners only), decrypted as it streams; one byte range supported."""
    path = paths.file_path(path)
    ref = catalog.resolve(db, ctx, dataset)
    _, entry, key = transfer.download_plan(db, runtime.keyring, ref, version, path)
    byte_range = transfer.parse_range(request.headers.get("range"), entry.size)
    start, end = byte_range or (0, entry.size)
    record_outside(
        runtime,
        ctx,
        "dataset.download",
        also_for=ref.owner if ref.share else None,
        target=f"{ref.address}@{version}",
        details={"path": path, "range": [start, end] if byte_range else None, "sha256": entry.sha256},
    )
    headers = {
        "Accept-Ranges": "bytes",
        "Content-Length": str(end - start),
        "ETag": f'"{entry.sha256}"',
        "Content-Disposition": f"attachment; filename*=UTF-8''{quote(path.rsplit('/', 1)[-1])}",
    }
    if byte_range:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{entry.size}"
    body = (
        _checked(lambda: runtime.store.open_range(entry.blob_id, key, start, end))
        if end > start
        else iter(())
    )
    return StreamingResponse(
        body, status_code=206 if byte_range else 200, headers=headers, media_type="application/octet-stream"
    )

"""Ingest sessions: start, feed batches of raw files, look up what is done, finish, cancel, report.

Every route needs ``data:import`` (data owners): raw, identifying files pass through them. A
batch is a tar (or zip) archive body; the server opens it with the same per-entry checks the
client ran (links, unsafe names, size and decompression-bomb limits) before de-identifying.
"""

from __future__ import annotations

from collections.abc import Callable

import anyio
from fastapi import APIRouter, Request
from starlette.requests import ClientDisconnect

from sanctum.api.deps import DataImporter, DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.api.runtime import Runtime
from sanctum.config import Settings
from sanctum.errors import InvalidInput
from sanctum.ingest import archive, batches, report, service
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import (
    BatchResult,
    IngestCreate,
    IngestPublic,
    IngestReport,
    LookupRequest,
    LookupResult,
    RefusedRequest,
    SourceOutcome,
)

router = APIRouter(prefix="/api/v1/projects/{project}/ingests", tags=["ingest"])


def batch_limit(settings: Settings) -> int:
    """A batch body's cap: the batch size, or one file of the largest size, plus tar headers."""
    return max(settings.ingest_max_batch_bytes, settings.ingest_max_file_bytes) + 1024 * 1024


def batch_body_limit(settings: Settings) -> Callable[[str, str], int | None]:
    """For the app's body-size middleware: batch bodies are larger than JSON, and still bounded."""
    limit = batch_limit(settings)

    def larger(method: str, path: str) -> int | None:
        if (
            method == "POST"
            and path.startswith("/api/v1/projects/")
            and path.rstrip("/").endswith("/batches")
        ):
            return limit if "/ingests/" in path else None
        return None

    return larger


def _limits(settings: Settings) -> archive.Limits:
    return archive.Limits(
        max_file_bytes=settings.ingest_max_file_bytes,
        max_total_bytes=batch_limit(settings),
        max_ratio=settings.ingest_max_ratio,
    )


@router.post("", status_code=201)
def start_ingest(body: IngestCreate, ctx: DataImporter, db: DbSession, runtime: RuntimeDep) -> IngestPublic:
    """Open a session on a new draft version of the dataset (created if missing, with ``create``)."""
    ingest = service.start(db, ctx, runtime.keyring, body)
    db.commit()
    return report.public(db, ingest, runtime.settings)


@router.get("")
def list_ingests(ctx: DataImporter, db: DbSession, runtime: RuntimeDep) -> list[IngestPublic]:
    return [report.public(db, i, runtime.settings) for i in service.list_for(db, ctx)]


@router.get("/{ingest}")
def get_ingest(ingest: int, ctx: DataImporter, db: DbSession, runtime: RuntimeDep) -> IngestPublic:
    return report.public(db, service.load(db, ctx, ingest), runtime.settings)


def _result(runtime: Runtime, ctx: ProjectContext, number: int, outcomes: list[SourceOutcome]) -> BatchResult:
    with runtime.db.session(write=False) as session:
        counts = service.load(session, ctx, number).counts
    return BatchResult(outcomes=outcomes, counts=counts)


@router.post("/{ingest}/batches")
@writes_in_own_sessions
async def add_batch(request: Request, ingest: int, ctx: DataImporter, runtime: RuntimeDep) -> BatchResult:
    """A tar, tar.gz or zip of raw source files; one outcome per file (and per refused entry)."""
    try:
        body = await request.body()
    except ClientDisconnect:
        raise InvalidInput("the batch was interrupted; nothing was stored", code="interrupted") from None
    limits = _limits(runtime.settings)
    files, refused = await anyio.to_thread.run_sync(archive.read_batch, body, limits)
    del body
    outcomes = await anyio.to_thread.run_sync(
        lambda: batches.ingest_files(runtime, ctx, None, ingest, files, refused)
    )
    return await anyio.to_thread.run_sync(_result, runtime, ctx, ingest, outcomes)


@router.post("/{ingest}/refused")
@writes_in_own_sessions
def add_refused(ingest: int, body: RefusedRequest, ctx: DataImporter, runtime: RuntimeDep) -> BatchResult:
    """Record entries the client refused without reading them (links, unsafe names, bombs)."""
    refused = [
        archive.Refusal(e.path, "refused by the client: " + " ".join(e.reason.split())) for e in body.entries
    ]
    outcomes = batches.ingest_files(runtime, ctx, None, ingest, [], refused)
    return _result(runtime, ctx, ingest, outcomes)


@router.post("/{ingest}/lookup")
@writes_in_own_sessions
def lookup_sources(
    ingest: int, body: LookupRequest, ctx: DataImporter, db: DbSession, runtime: RuntimeDep
) -> LookupResult:
    """Which of these source paths the session already recorded: a resumed client skips them."""
    return LookupResult(done=service.lookup(db, ctx, runtime.keyring, ingest, body.paths))


@router.post("/{ingest}/finish")
@writes_in_own_sessions
def finish_ingest(ingest: int, ctx: DataImporter, runtime: RuntimeDep) -> IngestReport:
    """Commit the version, write the DICOM metadata table, return the report (again if finished)."""
    service.finish(runtime, ctx, ingest)
    return _report(runtime, ctx, ingest)


@router.delete("/{ingest}", status_code=204)
@writes_in_own_sessions
def cancel_ingest(ingest: int, ctx: DataImporter, runtime: RuntimeDep) -> None:
    """Give up: the draft and quarantined outputs are removed; the record of the session stays."""
    service.cancel(runtime, ctx, ingest)


def _report(runtime: Runtime, ctx: ProjectContext, number: int) -> IngestReport:
    with runtime.db.session(write=False) as session:
        return report.build(session, ctx, runtime.keyring, service.load(session, ctx, number))


@router.get("/{ingest}/report")
def ingest_report(ingest: int, ctx: DataImporter, runtime: RuntimeDep) -> IngestReport:
    """Counts per outcome, kind, action and attribute; quarantined and failed files with reasons."""
    result = _report(runtime, ctx, ingest)
    record_outside(
        runtime, ctx, "ingest.report", target=f"{result.dataset}@{result.version}", details={"ingest": ingest}
    )
    return result

"""The quarantine review of an ingest: list, masked PNG preview, rectangle masks, release, discard.

Like every ingest route these need ``data:import`` (data owners): quarantined files are images
that may still show a patient's name burned into the pixels. A scientist gets 403 (the project's
policy), a non-member 404, and another project's ingest or file is 404. The preview is a read of
image data and is audited; it is sent with ``Cache-Control: no-store``.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from sanctum.api.deps import DataImporter, DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.api.runtime import Runtime
from sanctum.ingest import quarantine
from sanctum.ingest.preview import Mask
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import MaskCreate, QuarantineDecision, QuarantinedFile

router = APIRouter(prefix="/api/v1/projects/{project}/ingests/{ingest}/quarantine", tags=["ingest"])

PNG_HEADERS = {"Cache-Control": "no-store", "Content-Disposition": "inline"}


@router.get("")
def list_quarantined(
    ingest: int, ctx: DataImporter, db: DbSession, runtime: RuntimeDep
) -> list[QuarantinedFile]:
    """The ingest's quarantined files with reasons, image size, masks so far and any decision."""
    return quarantine.listing(runtime, db, ctx, ingest)


@router.get("/{source}")
def get_quarantined(
    ingest: int, source: int, ctx: DataImporter, db: DbSession, runtime: RuntimeDep
) -> QuarantinedFile:
    found, row = quarantine.load_source(db, ctx, ingest, source)
    return quarantine.describe(runtime, db, ctx, found, row)


def preview_response(runtime: Runtime, ctx: ProjectContext, ingest: int, source: int) -> Response:
    """The masked PNG (shared with the web page's route, which is guarded the same way)."""
    with runtime.db.session(write=False) as session:
        png = quarantine.preview_png(runtime, session, ctx, ingest, source)
    record_outside(
        runtime, ctx, "ingest.quarantine.preview", target=f"ingest:{ingest}", details={"source": source}
    )
    return Response(png, media_type="image/png", headers=PNG_HEADERS)


@router.get("/{source}/preview.png", response_class=Response)
@writes_in_own_sessions
def preview(ingest: int, source: int, ctx: DataImporter, runtime: RuntimeDep) -> Response:
    """The first frame, scaled to 8 bits, with the current masks drawn as black rectangles."""
    return preview_response(runtime, ctx, ingest, source)


@router.post("/{source}/masks")
def add_mask(
    ingest: int, source: int, body: MaskCreate, ctx: DataImporter, db: DbSession, runtime: RuntimeDep
) -> QuarantinedFile:
    """Add a rectangle (pixels; inside Rows × Columns, at least 1 × 1); 409 once decided."""
    mask = Mask(body.x, body.y, body.width, body.height)
    result = quarantine.add_mask(runtime, db, ctx, ingest, source, mask)
    db.commit()
    return result


@router.delete("/{source}/masks")
def clear_masks(
    ingest: int, source: int, ctx: DataImporter, db: DbSession, runtime: RuntimeDep
) -> QuarantinedFile:
    result = quarantine.clear_masks(runtime, db, ctx, ingest, source)
    db.commit()
    return result


@router.post("/{source}/release")
@writes_in_own_sessions
def release(ingest: int, source: int, ctx: DataImporter, runtime: RuntimeDep) -> QuarantineDecision:
    """Burn the masks into a new file, committed as a new version of the dataset; 409 if decided."""
    return quarantine.release(runtime, ctx, ingest, source)


@router.post("/{source}/discard")
@writes_in_own_sessions
def discard(ingest: int, source: int, ctx: DataImporter, runtime: RuntimeDep) -> QuarantineDecision:
    """Delete the held file; 409 if already decided."""
    return quarantine.discard(runtime, ctx, ingest, source)

"""The owner's review of an ingest's quarantined files: list, preview, masks, release or discard.

A DICOM image likely to carry burned-in text is de-identified and held, encrypted under the
dataset key, outside any version (``IngestSource.blob_id``). Its owner looks at a masked preview,
draws rectangles over any text, and decides once:

- **release**: the rectangles are burned into the pixel data of a *new* file (every frame,
  BurnedInAnnotation = NO), which becomes a new version of the dataset on its own, and a row of
  the DICOM metadata table; the held blob is deleted.
- **discard**: the held blob is deleted.

Decisions need a finished ingest (the session's own version is committed first) and follow the
upload rule: the bytes are masked and written with no transaction open; one short transaction then
records the version, the decision and the audit event (with the rectangles: numbers only), and the
new blobs are deleted again if it fails. A second decision is a 409.

The pipeline's byte scan cannot be re-run at release: it searches for the *original* identifying
values, which the pipeline deliberately does not keep. What is checked instead
(``preview.unchanged_outside_pixels``) is that the released file equals the scanned output in every
attribute except the pixel data, the Image Pixel attributes and BurnedInAnnotation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.datasets import catalog, tables, transfer
from sanctum.datasets.catalog import DatasetRef
from sanctum.db.models import User
from sanctum.db.types import utcnow
from sanctum.errors import Conflict, InvalidInput, NotFound
from sanctum.ingest import keys, metadata, preview, service
from sanctum.ingest.models import IngestSession, IngestSource, QuarantineReview
from sanctum.ingest.preview import Mask
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import QuarantineDecision, QuarantinedFile
from sanctum.store import BlobInfo

if TYPE_CHECKING:
    from sanctum.api.runtime import Runtime

RELEASED, DISCARDED = "released", "discarded"


@dataclass
class _Held:
    """What a decision reads before any write: the source, its dataset and the held bytes."""

    source_id: int
    blob_id: str
    ref: DatasetRef
    key: bytes
    data: bytes
    masks: list[Mask]
    stored_path: str


def load_source(
    session: Session, ctx: ProjectContext, number: int, source_id: int, *, for_update: bool = False
) -> tuple[IngestSession, IngestSource]:
    """A quarantined source of the project's ingest ``number``; anything else is not found."""
    ingest = service.load(session, ctx, number)
    query = select(IngestSource).where(
        IngestSource.id == source_id,
        IngestSource.session_id == ingest.id,
        IngestSource.outcome == "quarantined",
    )
    if for_update:
        query = query.with_for_update()
    source = session.scalar(query)
    if source is None:
        raise NotFound("quarantined file not found")
    return ingest, source


def _review(session: Session, source: IngestSource) -> QuarantineReview | None:
    return session.get(QuarantineReview, source.id)


def _decision(session: Session, review: QuarantineReview | None) -> QuarantineDecision | None:
    if review is None or review.decision is None:
        return None
    user = session.get(User, review.decided_by_id) if review.decided_by_id else None
    return QuarantineDecision(
        decision=review.decision,
        masks=review.masks,
        version=review.version_number,
        stored_path=review.stored_path,
        decided_by=user.email if user else None,
        decided_at=review.decided_at,
    )


def decisions(session: Session, source_ids: list[int]) -> dict[int, QuarantineDecision]:
    """The decisions taken on these sources (for the ingest report)."""
    reviews = session.scalars(
        select(QuarantineReview).where(
            QuarantineReview.source_id.in_(source_ids), QuarantineReview.decision.is_not(None)
        )
    ).all()
    out = {}
    for review in reviews:
        decided = _decision(session, review)
        if decided is not None:
            out[review.source_id] = decided
    return out


def held_bytes(
    runtime: Runtime, session: Session, ctx: ProjectContext, ingest: IngestSession, source: IngestSource
) -> bytes:
    """The de-identified output held for review, decrypted (a 409 once decided or never kept)."""
    if source.blob_id is None:
        raise Conflict(_gone(session, source), code="not_held")
    ref = service.dataset_of(session, ctx, ingest)
    key = runtime.keyring.dataset_key(session, ref.dataset)
    return b"".join(runtime.store.open_range(source.blob_id, key))


def _gone(session: Session, source: IngestSource) -> str:
    review = _review(session, source)
    if review is not None and review.decision is not None:
        return f"this file was already {review.decision}"
    return "nothing was kept of this file: the byte scan found an original value in it"


def describe(
    runtime: Runtime, session: Session, ctx: ProjectContext, ingest: IngestSession, source: IngestSource
) -> QuarantinedFile:
    box = keys.RecordBox(
        runtime.keyring.dataset_key(session, service.dataset_of(session, ctx, ingest).dataset)
    )
    review = _review(session, source)
    item = QuarantinedFile(
        id=source.id,
        path=box.open_path(ingest.id, source.path_hmac, source.path_sealed),
        kind=source.kind,
        reasons=[r for r in source.reason.split("; ") if r],
        held=source.blob_id is not None,
        masks=review.masks if review else [],
        decision=_decision(session, review),
    )
    if source.blob_id is not None and source.kind == "dicom":
        try:
            image = preview.info(held_bytes(runtime, session, ctx, ingest, source))
        except InvalidInput as exc:
            item.preview_error = exc.message
        else:
            item.rows, item.columns, item.frames = image.rows, image.columns, image.frames
            item.preview_error = preview.decoder_problem(image)
    elif source.blob_id is not None:
        item.preview_error = "only DICOM images have a preview"
    return item


def listing(runtime: Runtime, session: Session, ctx: ProjectContext, number: int) -> list[QuarantinedFile]:
    """Every quarantined source of the ingest, held or not, decided or not, in upload order."""
    ingest = service.load(session, ctx, number)
    sources = session.scalars(
        select(IngestSource)
        .where(IngestSource.session_id == ingest.id, IngestSource.outcome == "quarantined")
        .order_by(IngestSource.id)
    ).all()
    return [describe(runtime, session, ctx, ingest, s) for s in sources]


def preview_png(
    runtime: Runtime, session: Session, ctx: ProjectContext, number: int, source_id: int
) -> bytes:
    """The held image's first frame with the current masks drawn in black."""
    ingest, source = load_source(session, ctx, number, source_id)
    review = _review(session, source)
    data = held_bytes(runtime, session, ctx, ingest, source)
    return preview.preview_png(data, [Mask.of(m) for m in (review.masks if review else [])])


def _undecided(session: Session, source: IngestSource) -> QuarantineReview:
    review = _review(session, source)
    if (review is not None and review.decision is not None) or source.blob_id is None:
        raise Conflict(_gone(session, source), code="already_decided")
    if review is None:
        review = QuarantineReview(source_id=source.id, masks=[])
        session.add(review)
    return review


def add_mask(
    runtime: Runtime, session: Session, ctx: ProjectContext, number: int, source_id: int, mask: Mask
) -> QuarantinedFile:
    """Add one rectangle (checked against Rows/Columns) to the file's masks; audited."""
    ingest, source = load_source(session, ctx, number, source_id, for_update=True)
    review = _undecided(session, source)
    if len(review.masks) >= preview.MAX_MASKS:
        raise InvalidInput(f"at most {preview.MAX_MASKS} rectangles per file", code="invalid_mask")
    preview.check_mask(mask, preview.info(held_bytes(runtime, session, ctx, ingest, source)))
    review.masks = [*review.masks, mask.as_list()]
    review.updated_at = utcnow()
    _record(session, ctx, ingest, source, "ingest.quarantine.mask", {"mask": mask.as_list()})
    session.flush()
    return describe(runtime, session, ctx, ingest, source)


def clear_masks(
    runtime: Runtime, session: Session, ctx: ProjectContext, number: int, source_id: int
) -> QuarantinedFile:
    ingest, source = load_source(session, ctx, number, source_id, for_update=True)
    review = _undecided(session, source)
    removed = len(review.masks)
    review.masks, review.updated_at = [], utcnow()
    _record(session, ctx, ingest, source, "ingest.quarantine.unmask", {"removed": removed})
    session.flush()
    return describe(runtime, session, ctx, ingest, source)


def _record(
    session: Session,
    ctx: ProjectContext,
    ingest: IngestSession,
    source: IngestSource,
    action: str,
    details: dict[str, object],
) -> None:
    ref = service.dataset_of(session, ctx, ingest)
    ctx.record(
        session,
        action,
        target=f"{ref.address}@{ingest.version_number}",
        details={"ingest": ingest.number, "source": source.id, "stored_path": source.stored_path, **details},
    )


# --------------------------------------------------------------------------- decisions


def _held(runtime: Runtime, ctx: ProjectContext, number: int, source_id: int) -> _Held:
    with runtime.db.session(write=False) as session:
        ingest, source = load_source(session, ctx, number, source_id)
        _check_decidable(session, ingest, source)
        ref = service.dataset_of(session, ctx, ingest)
        review = _review(session, source)
        return _Held(
            source.id,
            source.blob_id or "",
            ref,
            runtime.keyring.dataset_key(session, ref.dataset),
            held_bytes(runtime, session, ctx, ingest, source),
            [Mask.of(m) for m in (review.masks if review else [])],
            source.stored_path or f"dicom/released/{source.id}.dcm",
        )


def _check_decidable(session: Session, ingest: IngestSession, source: IngestSource) -> None:
    if ingest.state != service.FINISHED:
        raise Conflict(
            f"this ingest is {ingest.state}; finish it before deciding on its quarantined files",
            code="ingest_open" if ingest.state == service.OPEN else "ingest_closed",
        )
    _undecided(session, source)


def _decide(
    session: Session, ctx: ProjectContext, number: int, held: _Held, decision: str
) -> QuarantineReview:
    """Lock the source, check it is still undecided and unchanged, and take the decision."""
    ingest, source = load_source(session, ctx, number, held.source_id, for_update=True)
    _check_decidable(session, ingest, source)
    review = _undecided(session, source)
    if source.blob_id != held.blob_id or [Mask.of(m) for m in review.masks] != held.masks:
        raise Conflict("this file's masks changed while it was being released; try again", code="changed")
    review.decision, review.decided_at, review.decided_by_id = decision, utcnow(), ctx.principal.user_id
    source.blob_id = None
    ingest.counts = {**ingest.counts, decision: ingest.counts.get(decision, 0) + 1}
    return review


def release(runtime: Runtime, ctx: ProjectContext, number: int, source_id: int) -> QuarantineDecision:
    """Burn the masks into a new file and commit it as a new version of the dataset."""
    held = _held(runtime, ctx, number, source_id)
    released = preview.burn_masks(held.data, held.masks)
    row = metadata.row(released, None)  # the original (and its Manufacturer) is not kept
    blobs: list[BlobInfo] = [transfer.store_blob(runtime.store, [released], held.key)]
    try:
        meta = _metadata_blob(runtime, ctx, held.ref, row, held.stored_path, blobs)
        with runtime.db.session() as session:
            review = _decide(session, ctx, number, held, RELEASED)
            ref = catalog.resolve(session, ctx, held.ref.dataset.name, for_update=True)
            version = catalog.new_version(session, ctx, ref)
            transfer.attach(session, ctx, ref, version.number, held.stored_path, blobs[0])
            catalog.commit(session, ctx, ref, version.number)
            if meta is not None:
                meta_ref, info, (schema, rows), expected = meta
                if version.number != expected:  # its rows name the version: another one landed
                    raise Conflict(
                        "a new version of the dataset arrived meanwhile; try again", code="changed"
                    )
                meta_ref = catalog.resolve(session, ctx, meta_ref.dataset.name)
                meta_version = catalog.new_version(session, ctx, meta_ref)
                transfer.attach(
                    session,
                    ctx,
                    meta_ref,
                    meta_version.number,
                    transfer.TABLE_FILE,
                    info,
                    table=(schema, rows),
                )
                catalog.commit(
                    session,
                    ctx,
                    meta_ref,
                    meta_version.number,
                    keyring=runtime.keyring,
                    store=runtime.store,
                )
            review.version_number, review.stored_path = version.number, held.stored_path
            ingest = service.load(session, ctx, number)
            ctx.record(
                session,
                "ingest.quarantine.release",
                target=f"{ref.address}@{version.number}",
                details={
                    "ingest": number,
                    "source": source_id,
                    "stored_path": held.stored_path,
                    "masks": review.masks,
                    "sha256": blobs[0].sha256,
                    "from_version": ingest.version_number,
                },
            )
            session.flush()
            decided = _decision(session, review)
    except BaseException:
        for info in blobs:
            runtime.store.delete(info.blob_id)
        raise
    runtime.store.delete(held.blob_id)  # no longer referenced: housekeeping after the commit
    assert decided is not None
    return decided


def _metadata_blob(
    runtime: Runtime,
    ctx: ProjectContext,
    ref: DatasetRef,
    row: dict[str, object],
    path: str,
    blobs: list[BlobInfo],
) -> tuple[DatasetRef, BlobInfo, tuple[list[dict[str, object]], int], int] | None:
    """The metadata table's next version (previous rows + this instance), stored; None for a
    table dataset. The blob is appended to ``blobs`` so a failed commit removes it."""
    if ref.dataset.kind != catalog.Kind.FILES:
        return None
    meta_ref = service._metadata_dataset(runtime, ctx, metadata.metadata_name(ref.dataset.name))
    with runtime.db.session(write=False) as session:
        previous = service._previous_table(runtime, session, meta_ref)
        key = runtime.keyring.dataset_key(session, meta_ref.dataset)
        next_number = _next_version(session, ref)
    table = metadata.table([{"dataset_version": next_number, "path": path, **row}], previous)
    info = transfer.store_blob(runtime.store, [tables.to_parquet_bytes(table)], key)
    blobs.append(info)
    return meta_ref, info, (tables.schema_json(table), table.num_rows), next_number


def _next_version(session: Session, ref: DatasetRef) -> int:
    from sqlalchemy import func

    from sanctum.db.models import DatasetVersion

    latest = session.scalar(
        select(func.max(DatasetVersion.number)).where(DatasetVersion.dataset_id == ref.dataset.id)
    )
    return (latest or 0) + 1


def discard(runtime: Runtime, ctx: ProjectContext, number: int, source_id: int) -> QuarantineDecision:
    """Delete the held output; the record of the source (and this decision) stays."""
    with runtime.db.session(write=False) as session:
        ingest, source = load_source(session, ctx, number, source_id)
        _check_decidable(session, ingest, source)
        review = _review(session, source)
        held = _Held(
            source.id,
            source.blob_id or "",
            service.dataset_of(session, ctx, ingest),
            b"",
            b"",
            [Mask.of(m) for m in (review.masks if review else [])],
            source.stored_path or "",
        )
    with runtime.db.session() as session:
        review = _decide(session, ctx, number, held, DISCARDED)
        _record(
            session,
            ctx,
            service.load(session, ctx, number),
            session.get(IngestSource, source_id),
            "ingest.quarantine.discard",
            {"masks": review.masks},
        )
        session.flush()
        decided = _decision(session, review)
    runtime.store.delete(held.blob_id)
    assert decided is not None
    return decided

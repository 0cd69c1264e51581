"""Feeding an open ingest session: a batch of source files in, one outcome per file out.

``ingest_files`` is the server-side entry point for every source of files: the REST batch route
(the CLI, the SDK, a browser upload) and, later, the DICOM C-STORE receiver. A batch is
all-or-nothing in the catalog:

1. a short read loads the session, the dataset key and the project's pseudonym secret, and which
   sources the session already holds (by keyed HMAC of path and of content);
2. the new files are de-identified in the worker pool (or on Dask), with no transaction open;
3. their outputs are encrypted into the blob store as one ``BlobBatch``: written without a
   per-blob fsync, then made durable together (``sync``) before anything references them;
4. one write transaction (the session row locked) adds every version file, every source record
   and the audit events; if the sync or the transaction fails, the blobs written in 3 are
   deleted. A crash between 3 and 4 leaves only unreferenced blobs, which start-up cleanup
   (``cleanup_orphans``) removes.

So a source is never half-stored, and never stored twice: a path the session already holds is
skipped, and the same content under another path is recorded as a ``duplicate``.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from sanctum.datasets import catalog, transfer
from sanctum.datasets.transfer import storage_errors
from sanctum.db.models import DatasetVersion, VersionFile
from sanctum.db.types import utcnow
from sanctum.errors import NotFound
from sanctum.ingest import archive, keys, service
from sanctum.ingest.archive import Refusal
from sanctum.ingest.models import IngestSource
from sanctum.ingest.pipeline import Processor, WorkItem, WorkResult, WorkSettings
from sanctum.ingest.workers import workers_for
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import IngestOptions, SourceOutcome
from sanctum.store import BlobBatch, BlobInfo

if TYPE_CHECKING:
    from sanctum.api.runtime import Runtime

SKIPPED, PENDING = "skipped", "pending"
# Threads that encrypt and write a batch's outputs: one per ``WORKERS_PER_STORE_THREAD`` workers,
# at most ``STORE_THREADS``. Writing a small blob (no fsync in a batch) costs about a third of
# de-identifying it, and writers in one store contend in the kernel (the directories' locks; on
# the 2-core test VM two threads spent more system time than one for the same files).
STORE_THREADS = 4
WORKERS_PER_STORE_THREAD = 3
log = logging.getLogger("sanctum.ingest")


@dataclass
class _Plan:
    ingest_id: int
    number: int
    version_number: int
    address: str
    table_dataset: bool
    dataset_key: bytes
    secret: bytes
    settings: WorkSettings
    use_dask: bool


@dataclass
class _Source:
    """One file of the batch on its way to a record."""

    path: str
    path_digest: str
    size: int
    content_digest: str | None = None
    kind: str = "unknown"
    outcome: str = PENDING
    reasons: tuple[str, ...] = ()
    result: WorkResult | None = None
    blob: BlobInfo | None = None


def _store(blobs: BlobBatch, key: bytes, source: _Source) -> None:
    """Encrypt and write one output; the plaintext is dropped as soon as it is in the store."""
    assert source.result is not None and source.result.output is not None
    with storage_errors("ingest batch", "the files"):
        source.blob = blobs.put_stream([source.result.output], key)
    source.result.output = None


def _plan(runtime: Runtime, ctx: ProjectContext, dataset: str | None, number: int) -> _Plan:
    with runtime.db.session(write=False) as session:
        ingest = service.load_open(session, ctx, number)
        ref = service.dataset_of(session, ctx, ingest)
        if dataset is not None and ref.dataset.name != dataset:
            raise NotFound("ingest not found")
        catalog.draft(session, ref, ingest.version_number)
        secret = keys.pseudonym_secret(session, runtime.keyring, ctx.project)
        options = IngestOptions.model_validate(ingest.options)
        settings = WorkSettings(
            secret=secret,
            options=service.deid_options(options),
            edf_dates="anonymous" if options.dates == "remove" else "shift",
            policy=service.policy_of(session, ref.dataset.id),
            table_dataset=ref.dataset.kind == catalog.Kind.TABLE,
            max_table_bytes=runtime.settings.max_table_bytes,
        )
        return _Plan(
            ingest.id,
            number,
            ingest.version_number,
            ref.address,
            settings.table_dataset,
            runtime.keyring.dataset_key(session, ref.dataset),
            secret,
            settings,
            ingest.use_dask,
        )


def _known(session: Session, ingest_id: int, sources: Sequence[_Source]) -> tuple[set[str], set[str]]:
    """Path and content digests among ``sources`` that the session already holds."""
    paths = set(
        session.scalars(
            select(IngestSource.path_hmac).where(
                IngestSource.session_id == ingest_id,
                IngestSource.path_hmac.in_([s.path_digest for s in sources]),
            )
        ).all()
    )
    digests = [s.content_digest for s in sources if s.content_digest]
    contents = set(
        session.scalars(
            select(IngestSource.content_hmac).where(
                IngestSource.session_id == ingest_id, IngestSource.content_hmac.in_(digests)
            )
        ).all()
    )
    return paths, {c for c in contents if c}


def _classify(sources: list[_Source], known_paths: set[str], known_contents: set[str]) -> None:
    """Mark what is already recorded (skipped) and what repeats a content (duplicate)."""
    contents = set(known_contents)
    paths: set[str] = set()
    for source in sources:
        if source.path_digest in known_paths:
            source.outcome, source.reasons = SKIPPED, ("already recorded in this ingest",)
            continue
        if source.path_digest in paths:
            source.outcome, source.reasons = SKIPPED, ("the same path appears twice in this batch",)
            continue
        paths.add(source.path_digest)
        if source.outcome != PENDING:
            continue
        if source.content_digest in contents:
            source.outcome, source.reasons = "duplicate", ("the same content as another file of this ingest",)
        elif source.content_digest:
            contents.add(source.content_digest)


def ingest_files(
    runtime: Runtime,
    ctx: ProjectContext,
    dataset: str | None,
    number: int,
    files: Sequence[tuple[str, bytes]],
    refused: Sequence[Refusal] = (),
) -> list[SourceOutcome]:
    """De-identify and store ``files`` (name, raw bytes) in the open ingest ``number`` of ``dataset``
    (``None``: whichever dataset the session is for).

    For the DICOM receiver and any other server-side source: open a session with
    ``service.start`` (one per association, say), call this once per batch of received files, then
    ``service.finish`` to commit the version and write the metadata table (``service.cancel`` to
    give up). ``refused`` are entries a caller turned away before reading them (unsafe names,
    links, bombs); they are recorded as errors with their reasons.

    Returns one outcome per file, then per refusal, in order: ``stored``, ``quarantined`` (with
    reasons: burned-in text likely, or an original value found by the byte scan), ``error`` (with
    a reason naming no value), ``duplicate`` (same content as a file already in this ingest) or
    ``skipped`` (this path was already recorded by the session; nothing changes). Raises
    ``NotFound``/``Conflict`` when the session is not open, and store or database errors with
    nothing recorded and no blob left behind.
    """
    plan = _plan(runtime, ctx, dataset, number)
    sources: list[_Source] = []
    data: list[bytes] = []
    for name, raw in files:
        path = archive.source_path(name)
        source = _Source(path or name, keys.path_hmac(plan.secret, path or name), len(raw))
        if path is None:
            source.outcome = "error"
            source.reasons = ("unsafe name (absolute, '..', backslash or control characters): refused",)
        else:
            source.content_digest = keys.content_hmac(plan.secret, [raw])
        sources.append(source)
        data.append(raw)
    for refusal in refused:
        source = _Source(refusal.path, keys.path_hmac(plan.secret, refusal.path), 0)
        source.outcome, source.reasons = "error", (refusal.reason,)
        sources.append(source)
    with runtime.db.session(write=False) as session:
        known_paths, known_contents = _known(session, plan.ingest_id, sources)
    _classify(sources, known_paths, known_contents)
    todo = [i for i, s in enumerate(sources[: len(data)]) if s.outcome == PENDING]
    items = [WorkItem(i, sources[i].path, data[i], sources[i].content_digest or "") for i in todo]
    del data
    # Leaving this block by an exception (a failed write, sync or transaction) deletes every blob
    # the batch wrote; the catalog commits only after the batch's blobs are durable.
    with runtime.store.batch() as blobs:
        # Each output is encrypted and written as soon as its worker returns it, by a few threads:
        # storing overlaps the de-identification of the next files.
        workers = workers_for(runtime)
        threads = min(STORE_THREADS, max(1, -(-workers.size // WORKERS_PER_STORE_THREAD)))
        with ThreadPoolExecutor(max_workers=threads) as writers:
            pending = []
            for result in workers.run(Processor(plan.settings), items, dask=plan.use_dask):
                source = sources[result.index]
                source.kind, source.outcome, source.reasons = (
                    result.kind,
                    result.outcome,
                    tuple(result.reasons),
                )
                source.result = result
                if result.output is not None:
                    pending.append(writers.submit(_store, blobs, plan.dataset_key, source))
            for future in pending:
                future.result()
        for source in sources:
            if source.outcome == PENDING:  # every worker result was consumed; this is only a guard
                source.outcome, source.reasons = "error", ("not processed",)
        with storage_errors("ingest batch", "the files"):
            blobs.sync()
        with runtime.db.session() as session:
            _commit(session, ctx, plan, sources)
    for source in sources:  # recorded by a racing batch, or refused at commit: not referenced
        if source.blob is not None and source.outcome not in ("stored", "quarantined"):
            runtime.store.delete(source.blob.blob_id)
    return [
        SourceOutcome(
            path=s.path,
            kind=s.kind,
            outcome=s.outcome,
            reasons=list(s.reasons),
            stored_path=s.result.stored_path if s.result and s.outcome in ("stored", "quarantined") else None,
        )
        for s in sources
    ]


def _commit(session: Session, ctx: ProjectContext, plan: _Plan, sources: list[_Source]) -> None:
    """One transaction: version files, source records, running totals and audit events."""
    ingest = service.load_open(session, ctx, plan.number, for_update=True)
    ref = service.dataset_of(session, ctx, ingest)
    draft = catalog.draft(session, ref, plan.version_number)
    known_paths, known_contents = _known(session, ingest.id, [s for s in sources if s.outcome != SKIPPED])
    for source in sources:  # a batch that raced this one may have recorded the same files
        if source.outcome == SKIPPED:
            continue
        if source.path_digest in known_paths:
            source.outcome, source.reasons = SKIPPED, ("already recorded in this ingest",)
        elif source.content_digest in known_contents and source.outcome != "duplicate":
            source.outcome, source.reasons = "duplicate", ("the same content as another file of this ingest",)
    _place(session, draft, plan, sources)
    box = keys.RecordBox(plan.dataset_key)
    counts, actions = Counter(ingest.counts), Counter(ingest.actions)
    # The rows go in with one multi-row INSERT per table (executemany), not one ORM object each:
    # building, tracking and flushing ORM objects was most of this transaction's CPU per file.
    now = utcnow()
    files: list[dict[str, object]] = []
    records: list[dict[str, object]] = []
    for source in sources:
        if source.outcome == SKIPPED:
            continue
        result = source.result
        stored_path = result.stored_path if result and source.outcome in ("stored", "quarantined") else None
        record: dict[str, object] = {
            "session_id": ingest.id,
            "path_hmac": source.path_digest,
            "path_sealed": box.seal_path(ingest.id, source.path_digest, source.path),
            "content_hmac": source.content_digest,
            "size": source.size,
            "kind": source.kind,
            "outcome": source.outcome,
            "reason": "; ".join(source.reasons)[:2000],
            "stored_path": stored_path,
            "blob_id": None,
            "meta_sealed": None,
            "created_at": now,
        }
        if result is not None and source.outcome == "stored" and source.blob is not None:
            files.append(
                {
                    "version_id": draft.id,
                    "path": stored_path,
                    "size": source.blob.size,
                    "sha256": source.blob.sha256,
                    "blob_id": source.blob.blob_id,
                    "created_at": now,
                }
            )
            draft.file_count += 1
            draft.total_size += source.blob.size
            counts["bytes_stored"] += source.blob.size
            if result.metadata is not None:
                record["meta_sealed"] = box.seal_meta(ingest.id, source.path_digest, result.metadata)
            if result.table is not None and plan.table_dataset:
                draft.table_schema, draft.row_count = result.table
        elif source.outcome == "quarantined" and source.blob is not None:
            record["blob_id"] = source.blob.blob_id
        records.append(record)
        counts.update({"files": 1, source.outcome: 1, source.kind: 1, "bytes_in": source.size})
        if result is not None and source.outcome != "error":
            actions.update(result.actions)
        if source.outcome == "quarantined":
            ctx.record(
                session,
                "ingest.quarantine",
                target=f"{plan.address}@{plan.version_number}",
                details={
                    "ingest": ingest.number,
                    "kind": source.kind,
                    "stored_path": stored_path,
                    "reasons": list(source.reasons),
                },
            )
    if files:
        session.execute(insert(VersionFile.__table__), files)
    if records:
        session.execute(insert(IngestSource.__table__), records)
    session.flush()
    ingest.counts, ingest.actions = dict(counts), dict(actions)
    batch = Counter(s.outcome for s in sources)
    ctx.record(
        session,
        "ingest.batch",
        target=f"{plan.address}@{plan.version_number}",
        details={"ingest": ingest.number, **dict(batch)},
    )


def _place(session: Session, draft: DatasetVersion, plan: _Plan, sources: list[_Source]) -> None:
    """Refuse outputs whose place in the version is taken (the same DICOM instance sent twice with
    different bytes; a second table for a table dataset)."""
    wanted = [s for s in sources if s.outcome == "stored" and s.result and s.result.stored_path]
    taken = set(
        session.scalars(
            select(VersionFile.path).where(
                VersionFile.version_id == draft.id,
                VersionFile.path.in_([s.result.stored_path for s in wanted if s.result]),
            )
        ).all()
    )
    if plan.table_dataset and session.scalar(
        select(VersionFile.id).where(VersionFile.version_id == draft.id)
    ):
        taken.add(transfer.TABLE_FILE)
    for source in wanted:
        path = source.result.stored_path if source.result else None
        if path in taken:
            source.outcome = "error"
            source.reasons = (
                ("a table dataset holds one table per version; this one already has it",)
                if plan.table_dataset
                else ("another file of this ingest is the same DICOM instance (same SOP Instance UID)",)
            )
            if source.result is not None:
                source.result.metadata = None
        taken.add(path or "")

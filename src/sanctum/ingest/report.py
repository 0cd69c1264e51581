"""The de-identification report of an ingest, and a session as the API shows it.

The report is made of counts (per outcome, per file kind, per action and per attribute) and, for
files that were quarantined or failed, the source path the uploader gave and the reasons. Reasons
name attributes, columns, rows and stages, never a value from a file; the running totals are kept
on the session row by each batch, so a report of a million files does not re-read them all.

Source paths are the uploader's own names and can be identifying (export folders named after
patients): they are sealed in the catalog and opened here only for the owner's report.
"""

from __future__ import annotations

from collections import Counter

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.config import Settings
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset
from sanctum.deid.profile import TABLE_EDITION
from sanctum.ingest import keys, quarantine, service
from sanctum.ingest.models import IngestSession, IngestSource
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import (
    IngestLimits,
    IngestPublic,
    IngestReport,
    MetadataTable,
    ReportFile,
)


def limits(settings: Settings) -> IngestLimits:
    return IngestLimits(
        max_file_bytes=settings.ingest_max_file_bytes,
        max_batch_bytes=settings.ingest_max_batch_bytes,
        max_ratio=settings.ingest_max_ratio,
    )


def public(session: Session, ingest: IngestSession, settings: Settings) -> IngestPublic:
    dataset = session.get(Dataset, ingest.dataset_id)
    return IngestPublic(
        id=ingest.number,
        dataset=dataset.name if dataset else "",
        version=ingest.version_number if ingest.version_id is not None else None,
        state=ingest.state,
        dask=ingest.use_dask,
        options=ingest.options,
        counts=ingest.counts,
        created_by=service.creator(session, ingest),
        created_at=ingest.created_at,
        finished_at=ingest.finished_at,
        limits=limits(settings),
    )


def action_counts(attributes: dict[str, int]) -> dict[str, int]:
    """``dicom:PatientName:Z`` → ``dicom:Z``: how often each action ran, per file kind."""
    totals: Counter[str] = Counter()
    for key, count in attributes.items():
        kind, _, rest = key.partition(":")
        totals[f"{kind}:{rest.rsplit(':', 1)[-1]}"] += count
    return dict(sorted(totals.items()))


def build(session: Session, ctx: ProjectContext, keyring: Keyring, ingest: IngestSession) -> IngestReport:
    dataset = session.get(Dataset, ingest.dataset_id)
    quarantined: list[ReportFile] = []
    errors: list[ReportFile] = []
    if dataset is not None and dataset.wrapped_key is not None:
        box = keys.RecordBox(keyring.dataset_key(session, dataset))
        rows = session.scalars(
            select(IngestSource)
            .where(IngestSource.session_id == ingest.id, IngestSource.outcome.in_(("quarantined", "error")))
            .order_by(IngestSource.id)
        ).all()
        for row in rows:
            item = ReportFile(
                path=box.open_path(ingest.id, row.path_hmac, row.path_sealed),
                kind=row.kind,
                reasons=[r for r in row.reason.split("; ") if r],
                stored_path=row.stored_path,
            )
            (quarantined if row.outcome == "quarantined" else errors).append(item)
        reviews = quarantine.decisions(session, [r.id for r in rows if r.outcome == "quarantined"])
        for row, item in zip((r for r in rows if r.outcome == "quarantined"), quarantined, strict=True):
            item.review = reviews.get(row.id)
    meta = None
    if ingest.metadata_version is not None and ingest.metadata_dataset_id is not None:
        meta_dataset = session.get(Dataset, ingest.metadata_dataset_id)
        if meta_dataset is not None:
            meta = MetadataTable(
                dataset=meta_dataset.name, version=ingest.metadata_version, rows=ingest.metadata_rows or 0
            )
    counts = {key: ingest.counts.get(key, 0) for key in service.COUNTERS}
    counts.update({k: v for k, v in ingest.counts.items() if k not in counts})
    return IngestReport(
        ingest=ingest.number,
        project=ctx.project.name,
        dataset=dataset.name if dataset else "",
        version=ingest.version_number if ingest.version_id is not None else None,
        state=ingest.state,
        counts=counts,
        actions=action_counts(ingest.actions),
        attributes=dict(sorted(ingest.actions.items())),
        quarantined=quarantined,
        errors=errors,
        metadata_table=meta,
        table_edition=TABLE_EDITION if any(k.startswith("dicom:") for k in ingest.actions) else None,
    )

"""Ingest sessions in a project's context: start, look up, finish (commit + metadata table), cancel.

A session is one draft version of one of the project's own datasets. Everything is loaded through
``load``, which filters by the project in SQL, so another project's session is simply not found.
Batches of files are fed with ``sanctum.ingest.batches.ingest_files``.

Finishing writes bytes (the metadata table) and so follows the upload rule: no transaction is held
while bytes are encrypted and written; the blob goes first, then one short transaction commits the
version, the metadata table's new version and the session state with its audit event. A crash in
between leaves an unreferenced blob, which start-up cleanup removes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pyarrow as pa
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import role_allows
from sanctum.datasets import catalog, tables, transfer
from sanctum.datasets.catalog import DatasetRef, Kind
from sanctum.datasets.keyring import Keyring
from sanctum.db.models import Dataset, DatasetVersion, Project, User
from sanctum.db.types import utcnow
from sanctum.deid.profile import Options
from sanctum.deid.table_policy import dump_policy, load_policy
from sanctum.errors import Conflict, Denied, InvalidInput, NotFound
from sanctum.ingest import keys, metadata
from sanctum.ingest.models import DatasetPolicy, IngestSession, IngestSource
from sanctum.projects.service import ProjectContext
from sanctum.schemas.ingest import IngestCreate, IngestOptions
from sanctum.store import BlobInfo

if TYPE_CHECKING:
    from sanctum.api.runtime import Runtime

OPEN, FINISHED, CANCELLED = "open", "finished", "cancelled"
COUNTERS = ("files", "stored", "quarantined", "error", "duplicate", "bytes_in", "bytes_stored")


def deid_options(options: IngestOptions) -> Options:
    """The wire options as ``sanctum.deid`` options (dates: shift → Modified Dates, keep → Full)."""
    return Options(
        retain_uids=options.retain_uids,
        retain_device_identity=options.retain_device_identity,
        retain_institution_identity=options.retain_institution_identity,
        retain_patient_characteristics=options.retain_patient_characteristics,
        longitudinal={"shift": "modified", "keep": "full", "remove": "none"}[options.dates],
        retain_safe_private=bool(options.safe_private),
        safe_private=frozenset((p.creator, p.element) for p in options.safe_private),
        clean_descriptors=options.clean_descriptors,
        clean_structured_content=options.clean_structured_content,
        clean_graphics=options.clean_graphics,
        safe_values=frozenset(options.safe_values),
    )


def load(session: Session, ctx: ProjectContext, number: int, *, for_update: bool = False) -> IngestSession:
    """The project's session ``number``; another project's is not found."""
    query = select(IngestSession).where(
        IngestSession.project_id == ctx.project.id, IngestSession.number == number
    )
    if for_update:
        query = query.with_for_update()
    found = session.scalar(query)
    if found is None:
        raise NotFound("ingest not found")
    return found


def load_open(
    session: Session, ctx: ProjectContext, number: int, *, for_update: bool = False
) -> IngestSession:
    found = load(session, ctx, number, for_update=for_update)
    if found.state != OPEN:
        raise Conflict(f"this ingest is {found.state}; start a new one", code="ingest_closed")
    return found


def dataset_of(session: Session, ctx: ProjectContext, ingest: IngestSession) -> DatasetRef:
    dataset = session.scalar(
        select(Dataset).where(
            Dataset.id == ingest.dataset_id,
            Dataset.project_id == ctx.project.id,
            Dataset.shredded_at.is_(None),
        )
    )
    if dataset is None:
        raise NotFound("this ingest's dataset was shredded", code="shredded")
    return DatasetRef(dataset, ctx.project)


def policy_of(session: Session, dataset_id: int) -> str | None:
    return session.scalar(select(DatasetPolicy.policy).where(DatasetPolicy.dataset_id == dataset_id))


def set_policy(session: Session, ctx: ProjectContext, ref: DatasetRef, document: dict[str, object]) -> None:
    """Validate and store the dataset's column policy (fail closed: an invalid one is a 422)."""
    text = dump_policy(load_policy(document))
    row = session.get(DatasetPolicy, ref.dataset.id)
    if row is None:
        session.add(
            DatasetPolicy(dataset_id=ref.dataset.id, policy=text, updated_by_id=ctx.principal.user_id)
        )
    elif row.policy != text:
        row.policy, row.updated_at, row.updated_by_id = text, utcnow(), ctx.principal.user_id
    else:
        return
    columns = document.get("columns")
    count = len(columns) if isinstance(columns, dict) else 0
    ctx.record(session, "dataset.policy.set", target=ref.address, details={"columns": count})


def _target(session: Session, ctx: ProjectContext, keyring: Keyring, body: IngestCreate) -> DatasetRef:
    if "." in body.dataset:
        raise InvalidInput(
            "ingest into a dataset of this project; a shared dataset is ingested by its own project",
            code="shared_dataset",
        )
    try:
        return catalog.resolve(session, ctx, body.dataset, for_update=True)
    except NotFound:
        if not body.create:
            raise
    if not role_allows(ctx.role, Permission.DATASETS_MANAGE, ctx.principal.scopes):
        raise Denied("creating the dataset needs datasets:manage; create it first or ask an owner")
    return catalog.create(session, ctx, keyring, name=body.dataset, kind=body.kind)


def _check_metadata_name(session: Session, ctx: ProjectContext, ref: DatasetRef) -> None:
    """The dataset's DICOM metadata table will be ``<name>-metadata``: that name must be free for it."""
    name = metadata.metadata_name(ref.dataset.name)
    if len(name) > 63:
        raise InvalidInput(
            "the dataset name is too long for its metadata table (<name>-metadata): at most 54 characters",
            code="invalid_name",
        )
    taken = session.scalar(
        select(Dataset.kind).where(Dataset.project_id == ctx.project.id, Dataset.name == name)
    )
    if taken is not None and taken != Kind.TABLE:
        raise Conflict(
            f"a files dataset named {name} exists; the DICOM metadata table needs that name",
            code="dataset_exists",
        )


def start(session: Session, ctx: ProjectContext, keyring: Keyring, body: IngestCreate) -> IngestSession:
    """A new session with its draft version; the project's pseudonym secret is made on first use."""
    session.execute(select(Project.id).where(Project.id == ctx.project.id).with_for_update())
    ref = _target(session, ctx, keyring, body)
    if ref.dataset.kind == Kind.FILES:
        _check_metadata_name(session, ctx, ref)
    if body.policy is not None:
        set_policy(session, ctx, ref, body.policy)
    keys.pseudonym_secret(session, keyring, ctx.project, create=True)
    version = catalog.new_version(session, ctx, ref)
    number = (
        session.scalar(
            select(func.max(IngestSession.number)).where(IngestSession.project_id == ctx.project.id)
        )
        or 0
    ) + 1
    options = body.options.model_dump(mode="json")
    ingest = IngestSession(
        project_id=ctx.project.id,
        number=number,
        dataset_id=ref.dataset.id,
        version_id=version.id,
        version_number=version.number,
        state=OPEN,
        options=options,
        use_dask=body.dask,
        counts=dict.fromkeys(COUNTERS, 0),
        actions={},
        created_by_id=ctx.principal.user_id,
    )
    session.add(ingest)
    session.flush()
    ctx.record(
        session,
        "ingest.start",
        target=f"{ref.address}@{version.number}",
        details={"ingest": number, "options": options, "dask": body.dask},
    )
    return ingest


def creator(session: Session, ingest: IngestSession) -> str | None:
    user = session.get(User, ingest.created_by_id) if ingest.created_by_id else None
    return user.email if user else None


def list_for(session: Session, ctx: ProjectContext) -> list[IngestSession]:
    return list(
        session.scalars(
            select(IngestSession)
            .where(IngestSession.project_id == ctx.project.id)
            .order_by(IngestSession.number.desc())
        ).all()
    )


def lookup(
    session: Session, ctx: ProjectContext, keyring: Keyring, number: int, paths: list[str]
) -> list[str]:
    """Which of ``paths`` the session has recorded (any outcome): a resumed client skips them."""
    ingest = load(session, ctx, number)
    secret = keys.pseudonym_secret(session, keyring, ctx.project)
    digests = {keys.path_hmac(secret, p): p for p in paths}
    found = session.scalars(
        select(IngestSource.path_hmac).where(
            IngestSource.session_id == ingest.id, IngestSource.path_hmac.in_(list(digests))
        )
    ).all()
    return sorted(digests[d] for d in found)


# --------------------------------------------------------------------------- finishing


def _metadata_rows(session: Session, ingest: IngestSession, box: keys.RecordBox) -> list[dict[str, object]]:
    rows = []
    sources = session.execute(
        select(IngestSource.path_hmac, IngestSource.meta_sealed, IngestSource.stored_path)
        .where(
            IngestSource.session_id == ingest.id,
            IngestSource.outcome == "stored",
            IngestSource.meta_sealed.is_not(None),
        )
        .order_by(IngestSource.stored_path)
    ).all()
    for digest, sealed, stored_path in sources:
        row = box.open_meta(ingest.id, digest, sealed)
        rows.append({"dataset_version": ingest.version_number, "path": stored_path, **row})
    return rows


def _metadata_dataset(runtime: Runtime, ctx: ProjectContext, name: str) -> DatasetRef:
    """The ``<dataset>-metadata`` table dataset, created (in its own short write) when missing."""
    with runtime.db.session() as session:
        try:
            found = catalog.resolve(session, ctx, name)
        except NotFound:
            return catalog.create(
                session,
                ctx,
                runtime.keyring,
                name=name,
                kind=Kind.TABLE,
                description="DICOM metadata of the instances ingested into the dataset without -metadata",
            )
        if found.dataset.kind != Kind.TABLE:
            raise Conflict(f"{name} is not a table dataset; it cannot hold the metadata table")
        return found


def _previous_table(runtime: Runtime, session: Session, ref: DatasetRef) -> pa.Table | None:
    latest = catalog.latest_versions(session, [ref.dataset.id]).get(ref.dataset.id)
    if latest is None:
        return None
    (entry,) = catalog.files(session, latest)
    key = runtime.keyring.dataset_key(session, ref.dataset)
    return tables.from_parquet_bytes(b"".join(runtime.store.open_range(entry.blob_id, key)))


def finish(runtime: Runtime, ctx: ProjectContext, number: int) -> IngestSession:
    """Commit the session's version and write the metadata table; idempotent once finished."""
    db, store = runtime.db, runtime.store
    with db.session(write=False) as session:
        ingest = load(session, ctx, number)
        if ingest.state != OPEN:
            if ingest.state == FINISHED:
                return ingest
            raise Conflict(f"this ingest is {ingest.state}", code="ingest_closed")
        ref = dataset_of(session, ctx, ingest)
        box = keys.RecordBox(runtime.keyring.dataset_key(session, ref.dataset))
        rows = _metadata_rows(session, ingest, box)
    blob = None
    meta_ref = None
    if rows:
        meta_ref = _metadata_dataset(runtime, ctx, metadata.metadata_name(ref.dataset.name))
        with db.session(write=False) as session:
            previous = _previous_table(runtime, session, meta_ref)
            key = runtime.keyring.dataset_key(session, meta_ref.dataset)
        table = metadata.table(rows, previous)
        info = transfer.store_blob(store, [tables.to_parquet_bytes(table)], key)
        blob = (info, tables.schema_json(table), table.num_rows)
    try:
        with db.session() as session:
            return _commit(session, runtime, ctx, number, meta_ref, blob, len(rows))
    except BaseException:
        if blob is not None:
            store.delete(blob[0].blob_id)
        raise


def _commit(
    session: Session,
    runtime: Runtime,
    ctx: ProjectContext,
    number: int,
    meta_ref: DatasetRef | None,
    blob: tuple[BlobInfo, list[dict[str, object]], int] | None,
    instances: int,
) -> IngestSession:
    ingest = load_open(session, ctx, number, for_update=True)
    ref = dataset_of(session, ctx, ingest)
    now = session.scalar(
        select(func.count())
        .select_from(IngestSource)
        .where(
            IngestSource.session_id == ingest.id,
            IngestSource.outcome == "stored",
            IngestSource.meta_sealed.is_not(None),
        )
    )
    if now != instances:  # a batch landed after the metadata was read: its rows would be missing
        raise Conflict("files are still arriving in this ingest; finish it again", code="ingest_busy")
    draft = session.get(DatasetVersion, ingest.version_id) if ingest.version_id else None
    if draft is not None and draft.file_count > 0:
        catalog.commit(session, ctx, ref, ingest.version_number, keyring=runtime.keyring, store=runtime.store)
    elif draft is not None:  # nothing was stored: no empty version stays behind
        catalog.discard_draft(session, ctx, ref, ingest.version_number)
        ingest.version_id = None
    if blob is not None and meta_ref is not None:
        meta_ref = catalog.resolve(session, ctx, meta_ref.dataset.name)
        version = catalog.new_version(session, ctx, meta_ref)
        info, schema, rows = blob
        transfer.attach(
            session, ctx, meta_ref, version.number, transfer.TABLE_FILE, info, table=(schema, rows)
        )
        catalog.commit(session, ctx, meta_ref, version.number, keyring=runtime.keyring, store=runtime.store)
        ingest.metadata_dataset_id, ingest.metadata_version = meta_ref.dataset.id, version.number
        ingest.metadata_rows = rows
    ingest.state, ingest.finished_at = FINISHED, utcnow()
    ctx.record(
        session,
        "ingest.finish",
        target=f"{ref.address}@{ingest.version_number}",
        details={"ingest": ingest.number, "committed": ingest.version_id is not None, **ingest.counts},
    )
    return ingest


def cancel(runtime: Runtime, ctx: ProjectContext, number: int) -> None:
    """Give up on an open session: its draft and quarantined outputs go; its record stays."""
    with runtime.db.session() as session:
        ingest = load_open(session, ctx, number, for_update=True)
        ref = dataset_of(session, ctx, ingest)
        blobs: list[str] = []
        if ingest.version_id is not None:
            blobs += catalog.discard_draft(session, ctx, ref, ingest.version_number)
            ingest.version_id = None
        quarantined = session.scalars(
            select(IngestSource).where(
                IngestSource.session_id == ingest.id, IngestSource.blob_id.is_not(None)
            )
        ).all()
        for source in quarantined:
            blobs.append(source.blob_id or "")
            source.blob_id = None
        ingest.state, ingest.finished_at = CANCELLED, utcnow()
        ctx.record(
            session,
            "ingest.cancel",
            target=f"{ref.address}@{ingest.version_number}",
            details={"ingest": ingest.number, **ingest.counts},
        )
    for blob_id in blobs:  # housekeeping after the commit: unreferenced now either way
        runtime.store.delete(blob_id)

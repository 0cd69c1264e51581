"""Views of ingested tables: the anonymity report of a table version (stored: every member who
sees the dataset; on demand: owners) and the DICOM metadata table of a files dataset, paged
(whoever may query).

The anonymity report (``sanctum.deid.metrics``) holds counts and ratios, never values. Each table
version carries the one computed when it was committed (``sanctum.datasets.anonymity``); reading it
decrypts nothing, so it is not audited as a data read. On the owner's page, without a choice of
columns (or with the stored report's own), the stored report is shown; other columns are computed
from the table on demand, which reads the whole table and so is audited as a read
(``dataset.anonymity_report``) with the columns used.

The metadata table is read through the query route (the SQL sandbox, the role's row cap and its
audit), one page at a time, so the page shows exactly what a query would.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from sanctum.access.permissions import Permission
from sanctum.access.policy import role_allows
from sanctum.api.deps import DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.api.routes import query as query_api
from sanctum.datasets import anonymity, catalog, tables
from sanctum.datasets.catalog import DatasetRef, Kind
from sanctum.db.models import DatasetVersion
from sanctum.deid.table_policy import load_policy
from sanctum.errors import InvalidInput, NotFound, SanctumError
from sanctum.ingest import metadata, service
from sanctum.projects.service import ProjectContext
from sanctum.schemas.datasets import QueryRequest
from sanctum.web.render import render
from sanctum.web.session import ProjectPage

router = APIRouter(include_in_schema=False)

Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATASETS_READ))]
Importer = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATA_IMPORT))]
Querier = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATA_QUERY))]
Columns = Annotated[list[str], Query(max_length=200)]
PAGE_ROWS = 50


def _page(request: Request, name: str, ctx: ProjectContext, *, status: int = 200, **context: Any) -> Response:
    return render(
        request,
        name,
        status=status,
        section="projects",
        project=ctx.project,
        role=ctx.role,
        can_query=role_allows(ctx.role, Permission.DATA_QUERY, ctx.principal.scopes),
        can_import=role_allows(ctx.role, Permission.DATA_IMPORT, ctx.principal.scopes),
        **context,
    )


@dataclass(frozen=True)
class StoredAnonymity:
    """What the dataset page says about a version's stored report (``anonymity_summary``)."""

    report: anonymity.VersionAnonymity | None
    declared: bool  # the dataset's column policy declares quasi-identifiers


def anonymity_summary(db: Any, ref: DatasetRef, version: DatasetVersion | None) -> StoredAnonymity | None:
    """For the dataset page: the selected table version's stored report, or why there is none."""
    if version is None or ref.dataset.kind != Kind.TABLE:
        return None
    return StoredAnonymity(anonymity.load(db, version), bool(_declared(db, ref.dataset.id)[0]))


@router.get("/projects/{project}/datasets/{dataset}/versions/{version}/anonymity")
def stored_anonymity_page(
    request: Request, db: DbSession, ctx: Reader, dataset: str, version: int
) -> Response:
    """The full report stored with a table version: shown to every member who sees the dataset."""
    ref = catalog.resolve(db, ctx, dataset)
    if ref.dataset.kind != Kind.TABLE:
        raise NotFound("the anonymity report is for table datasets")
    selected = catalog.version(db, ref, version)
    return _page(
        request,
        "anonymity_version.html",
        ctx,
        ref=ref,
        selected=selected,
        stored=anonymity.load(db, selected),
        declared=_declared(db, ref.dataset.id),
    )


@router.get("/projects/{project}/datasets/{dataset}/anonymity")
@writes_in_own_sessions
def anonymity_page(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Importer,
    dataset: str,
    version: Annotated[int | None, Query(ge=1)] = None,
    qi: Columns = [],  # noqa: B006 - FastAPI copies defaults
    sensitive: Columns = [],  # noqa: B006
    k: Annotated[int, Query(ge=1, le=1000)] = 5,
) -> Response:
    """The k-anonymity, l-diversity and risk of a table version over the chosen columns."""
    from sanctum.deid.metrics import anonymity_report

    ref = catalog.resolve(db, ctx, dataset)
    if ref.dataset.kind != Kind.TABLE:
        raise NotFound("the anonymity report is for table datasets")
    versions = catalog.versions(db, ref)
    if not versions:
        raise NotFound("this table has no committed version yet")
    selected = catalog.version(db, ref, version) if version is not None else versions[-1]
    columns = [str(c["name"]) for c in selected.table_schema or []]
    declared = _declared(db, ref.dataset.id)
    stored = anonymity.load(db, selected)
    if stored is not None and not _same_choice(stored, qi, sensitive, k):
        stored = None
    chosen_qi, chosen_sensitive = (qi, sensitive) if qi else declared
    result, error, status = None, None, 200
    if stored is not None:  # the report committed with the version: nothing to decrypt
        result, k = stored.report, stored.k_threshold
        chosen_qi, chosen_sensitive = list(stored.quasi_identifiers), list(stored.sensitive)
    elif chosen_qi:
        (entry,) = catalog.files(db, selected)
        key = runtime.keyring.dataset_key(db, ref.dataset)
        table = tables.from_parquet_bytes(b"".join(runtime.store.open_range(entry.blob_id, key)))
        try:
            result = anonymity_report(table, chosen_qi, chosen_sensitive, k_threshold=k).to_dict()
        except ValueError as exc:
            error, status = str(exc), 422
        else:
            record_outside(
                runtime,
                ctx,
                "dataset.anonymity_report",
                target=f"{ref.address}@{selected.number}",
                details={"quasi_identifiers": chosen_qi, "sensitive": chosen_sensitive, "k": k},
            )
    return _page(
        request,
        "anonymity.html",
        ctx,
        status=status,
        ref=ref,
        versions=versions,
        selected=selected,
        columns=columns,
        qi=chosen_qi,
        sensitive=chosen_sensitive,
        declared=declared,
        k=k,
        r=result,
        stored=stored,
        error=error,
    )


def _same_choice(stored: anonymity.VersionAnonymity, qi: list[str], sensitive: list[str], k: int) -> bool:
    """No choice made, or exactly the stored report's: then the stored report is the answer."""
    if not qi:
        return True
    return stored.source == "policy" and (qi, sensitive, k) == (
        stored.quasi_identifiers,
        stored.sensitive,
        stored.k_threshold,
    )


def _declared(db: Any, dataset_id: int) -> tuple[list[str], list[str]]:
    """The quasi-identifiers and sensitive columns the dataset's column policy declares."""
    text = service.policy_of(db, dataset_id)
    if text is None:
        return [], []
    try:
        policy = load_policy(text)
    except InvalidInput:
        return [], []
    return list(policy.quasi_identifiers), list(policy.sensitive)


@router.get("/projects/{project}/datasets/{dataset}/metadata")
@writes_in_own_sessions
def metadata_page(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Querier,
    dataset: str,
    page: Annotated[int, Query(ge=1, le=1_000_000)] = 1,
) -> Response:
    """The ``<dataset>-metadata`` table, ``PAGE_ROWS`` rows a page, newest versions last."""
    ref = catalog.resolve(db, ctx, dataset)
    name = metadata.metadata_name(ref.dataset.name) if ref.share is None else None
    meta_ref = None
    if name is not None:
        try:
            meta_ref = catalog.resolve(db, ctx, name)
        except NotFound:
            meta_ref = None
    result, total, error, sql_name = None, 0, None, None
    if meta_ref is not None and catalog.versions(db, meta_ref):
        sql_name = tables.sql_name(meta_ref.dataset.name)
        offset = (page - 1) * PAGE_ROWS
        sql = f"SELECT * FROM {sql_name} ORDER BY dataset_version, path LIMIT {PAGE_ROWS} OFFSET {offset}"  # noqa: S608
        try:
            count = query_api.query(QueryRequest(sql=f"SELECT count(*) FROM {sql_name}"), ctx, db, runtime)  # noqa: S608
            total = int(count.rows[0][0])
            result = query_api.query(QueryRequest(sql=sql), ctx, db, runtime)
        except SanctumError as exc:
            error = exc.message
    pages = max(1, -(-total // PAGE_ROWS))
    return _page(
        request,
        "metadata.html",
        ctx,
        ref=ref,
        meta_ref=meta_ref,
        sql_name=sql_name,
        r=result,
        total=total,
        page=page,
        pages=pages,
        per_page=PAGE_ROWS,
        error=error,
        cells=[["" if v is None else str(v) for v in row] for row in result.rows] if result else [],
    )

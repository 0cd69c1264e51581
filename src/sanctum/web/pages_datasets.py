"""A project's datasets: the list, one dataset (versions, files, sizes, hashes, shares), file
downloads for owners, sharing between projects, crypto-shredding, and the SQL query page.

Everything is done by the dataset services; where the API route adds something of its own (the
audit of a query or a download, removing shredded blobs), the page calls that route's function, so
a browser and a script leave the same trail. Controls are shown by the same permission table that
guards the routes: a scientist sees no download link, and the download route refuses them anyway.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response, StreamingResponse
from sqlalchemy.orm import Session

from sanctum.access.permissions import DENIAL_HINTS, Permission
from sanctum.access.policy import role_allows
from sanctum.api.deps import DbSession, RuntimeDep, record_outside, writes_in_own_sessions
from sanctum.api.routes import datasets as datasets_api
from sanctum.api.routes import files as files_api
from sanctum.api.routes import query as query_api
from sanctum.api.runtime import Runtime
from sanctum.datasets import catalog, sharing
from sanctum.datasets.catalog import DatasetRef, Kind
from sanctum.db.models import Dataset, Project, Share
from sanctum.errors import SanctumError
from sanctum.projects.service import ProjectContext
from sanctum.schemas.datasets import QueryRequest, QueryResponse
from sanctum.web.pages_ingest_tables import anonymity_summary
from sanctum.web.render import render
from sanctum.web.session import ProjectPage, end_failed, redirect

router = APIRouter(include_in_schema=False)

TextField = Annotated[str, Form(max_length=10000)]
SqlField = Annotated[str, Form(max_length=100_000)]

Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATASETS_READ))]
Manager = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATASETS_MANAGE))]
Downloader = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATA_DOWNLOAD))]
Querier = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATA_QUERY))]
Sharer = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATASETS_SHARE))]
Shredder = Annotated[ProjectContext, Depends(ProjectPage(Permission.DATASETS_SHRED))]

# Fixed messages chosen by a code in the query string after a form (nothing from the URL is shown).
NOTICES = {
    "dataset_created": "Dataset created. Add versions with the API, the Python SDK or the command line.",
    "share_offered": "Share offered. The other project's data owners can now accept or decline it.",
    "share_accepted": "Share accepted: the dataset is now visible in this project.",
    "share_declined": "Share declined.",
    "share_revoked": "Share ended: the dataset is no longer reachable through it.",
    "dataset_shredded": "Dataset shredded: its key is destroyed and its data can no longer be read.",
}
SAMPLE_SQL = "SELECT * FROM {table} LIMIT 20"
NUMERIC_TYPES = (
    *("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT"),
    *("UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT"),
    *("FLOAT", "DOUBLE", "REAL", "DECIMAL"),
)


def human_size(size: int | None) -> str:
    if size is None:
        return "—"
    if size < 1024:
        return "1 byte" if size == 1 else f"{size} bytes"
    value, units = size / 1024, ["KiB", "MiB", "GiB", "TiB"]
    while value >= 1024 and len(units) > 1:
        value, units = value / 1024, units[1:]
    return f"{value:.1f} {units[0]}"


def _exact(size: int) -> str:
    return f"{size:,}"


def _allows(ctx: ProjectContext, permission: Permission) -> bool:
    return role_allows(ctx.role, permission, ctx.principal.scopes)


def _notice(done: str) -> str | None:
    return NOTICES.get(done)


def _page(request: Request, name: str, ctx: ProjectContext, *, status: int = 200, **context: Any) -> Response:
    """Every dataset page knows its project, the caller's role and which sub-pages it may open."""
    return render(
        request,
        name,
        status=status,
        section="projects",
        project=ctx.project,
        role=ctx.role,
        can_query=_allows(ctx, Permission.DATA_QUERY),
        can_import=_allows(ctx, Permission.DATA_IMPORT),
        size=human_size,
        exact=_exact,
        **context,
    )


def _record_read(runtime: Runtime, db: Session, ctx: ProjectContext, action: str, **kwargs: Any) -> None:
    """Audit a read. A GET reads in its own session, so the event goes to a short write session;
    a form that failed and shows the page again already holds the write lock (SQLite), so the
    event goes into the request's unit of work, which is committed when the page is sent."""
    if db.info.get("write"):
        ctx.record(db, action, **kwargs)
    else:
        record_outside(runtime, ctx, action, **kwargs)


def _sql_name(ref: DatasetRef) -> str:
    from sanctum.datasets import tables  # pyarrow loads with the first table, not at server start

    return tables.sql_name(ref.dataset.name, ref.owner.name if ref.share else None)


# --------------------------------------------------------------------------- datasets


def _datasets(
    request: Request,
    db: Session,
    ctx: ProjectContext,
    *,
    status: int = 200,
    error: str | None = None,
    done: str = "",
    form: dict[str, str] | None = None,
) -> Response:
    refs = catalog.list_for(db, ctx)
    latest = catalog.latest_versions(db, [r.dataset.id for r in refs])
    waiting = [
        share
        for share, _, _, target in sharing.listing(db, ctx)
        if target.id == ctx.project.id and share.state == "pending"
    ]
    return _page(
        request,
        "datasets.html",
        ctx,
        status=status,
        rows=[(ref, latest.get(ref.dataset.id)) for ref in refs],
        can_create=_allows(ctx, Permission.DATASETS_MANAGE),
        pending_shares=len(waiting),
        kinds=[k.value for k in Kind],
        form=form or {},
        error=error,
        notice=_notice(done),
    )


@router.get("/projects/{project}/datasets")
def datasets_page(request: Request, db: DbSession, ctx: Reader, done: str = "") -> Response:
    return _datasets(request, db, ctx, done=done)


@router.post("/projects/{project}/datasets")
def create_dataset(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Manager,
    name: TextField = "",
    kind: TextField = "",
    description: TextField = "",
) -> Response:
    try:
        ref = catalog.create(
            db, ctx, runtime.keyring, name=name.strip(), kind=kind.strip(), description=description
        )
    except SanctumError as exc:
        end_failed(db, exc)
        form = {"name": name, "kind": kind, "description": description}
        return _datasets(request, db, ctx, status=exc.status, error=exc.message, form=form)
    db.commit()
    return redirect(f"/projects/{ctx.project.name}/datasets/{ref.address}?done=dataset_created")


# --------------------------------------------------------------------------- one dataset


@dataclass(frozen=True)
class ShareRow:
    """A share of this project's dataset with another project, as the dataset page lists it."""

    share: Share
    target: Project


def _dataset(
    request: Request,
    db: Session,
    runtime: Runtime,
    ctx: ProjectContext,
    address: str,
    *,
    number: int | None = None,
    status: int = 200,
    error: str | None = None,
    done: str = "",
    form: dict[str, str] | None = None,
) -> Response:
    ref = catalog.resolve(db, ctx, address)
    versions = catalog.versions(db, ref)
    selected = catalog.version(db, ref, number) if number is not None else (versions or [None])[-1]
    entries = catalog.files(db, selected) if selected else []
    if selected is not None:  # the manifest is what the API's file listing shows, audited alike
        _record_read(
            runtime,
            db,
            ctx,
            "dataset.list_files",
            target=f"{ref.address}@{selected.number}",
            details={"files": len(entries)},
        )
    owns = ref.share is None
    shared_with = (
        [
            ShareRow(share, target)
            for share, dataset, _, target in sharing.listing(db, ctx)
            if dataset.id == ref.dataset.id and share.state in ("pending", "accepted")
        ]
        if owns
        else []
    )
    can_download = _allows(ctx, Permission.DATA_DOWNLOAD)
    return _page(
        request,
        "dataset.html",
        ctx,
        status=status,
        ref=ref,
        dataset=ref.dataset,
        versions=versions,
        selected=selected,
        files=entries,
        sql_name=_sql_name(ref) if ref.dataset.kind == Kind.TABLE else None,
        anonymity=anonymity_summary(db, ref, selected),
        shared_with=shared_with,
        can_download=can_download,
        download_hint=None if can_download else DENIAL_HINTS[Permission.DATA_DOWNLOAD],
        can_share=owns and _allows(ctx, Permission.DATASETS_SHARE),
        can_shred=owns and _allows(ctx, Permission.DATASETS_SHRED),
        access=sharing.ACCESS,
        form=form or {},
        error=error,
        notice=_notice(done),
    )


@router.get("/projects/{project}/datasets/{dataset}")
def dataset_page(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Reader,
    dataset: str,
    version: Annotated[
        int | None, Query(ge=1, description="the version to show; the latest by default")
    ] = None,
    done: str = "",
) -> Response:
    return _dataset(request, db, runtime, ctx, dataset, number=version, done=done)


@router.get("/projects/{project}/datasets/{dataset}/versions/{version}/files/{path:path}")
def download_file(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Downloader,
    dataset: str,
    version: int,
    path: str,
) -> StreamingResponse:
    """The API's download (audited, streamed, decrypted as it goes, Range supported), sent as an
    attachment so the browser saves it instead of showing it."""
    return files_api.download_file(request, dataset, version, path, ctx, db, runtime)


@router.post("/projects/{project}/datasets/{dataset}/shares")
def offer_share(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Sharer,
    dataset: str,
    target: TextField = "",
    access: TextField = "read",
) -> Response:
    ref = catalog.resolve(db, ctx, dataset)
    try:
        sharing.offer(db, ctx, ref, target.strip().lower(), access.strip())
    except SanctumError as exc:
        end_failed(db, exc)
        form = {"target": target, "access": access}
        return _dataset(request, db, runtime, ctx, dataset, status=exc.status, error=exc.message, form=form)
    db.commit()
    return redirect(f"/projects/{ctx.project.name}/shares?done=share_offered")


@router.post("/projects/{project}/datasets/{dataset}/shred")
def shred_dataset(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Shredder,
    dataset: str,
    confirm: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    """The API's shred: the key is destroyed in this transaction, the blob files removed after."""
    try:
        datasets_api.shred_dataset(dataset, ctx, db, runtime, confirm=confirm.strip())
    except SanctumError as exc:
        if exc.status == 404:
            raise
        end_failed(db, exc)
        return _dataset(request, db, runtime, ctx, dataset, status=exc.status, error=exc.message)
    return redirect(f"/projects/{ctx.project.name}/datasets?done=dataset_shredded")


# --------------------------------------------------------------------------- shares


@dataclass(frozen=True)
class ShareView:
    share: Share
    dataset: Dataset
    source: Project
    target: Project
    incoming: bool

    @property
    def address(self) -> str:
        """How this project reaches the dataset (for a link while the share is accepted)."""
        return f"{self.source.name}.{self.dataset.name}" if self.incoming else self.dataset.name


def _shares(
    request: Request,
    db: Session,
    ctx: ProjectContext,
    *,
    status: int = 200,
    error: str | None = None,
    done: str = "",
) -> Response:
    views = [
        ShareView(share, dataset, source, target, incoming=target.id == ctx.project.id)
        for share, dataset, source, target in sharing.listing(db, ctx)
    ]
    active = ("pending", "accepted")
    return _page(
        request,
        "shares.html",
        ctx,
        status=status,
        incoming=[v for v in views if v.incoming and v.share.state in active],
        outgoing=[v for v in views if not v.incoming and v.share.state in active],
        history=[v for v in reversed(views) if v.share.state not in active],
        can_decide=_allows(ctx, Permission.DATASETS_SHARE),
        error=error,
        notice=_notice(done),
    )


@router.get("/projects/{project}/shares")
def shares_page(request: Request, db: DbSession, ctx: Reader, done: str = "") -> Response:
    return _shares(request, db, ctx, done=done)


def _share_change(
    request: Request, db: Session, ctx: ProjectContext, change: Callable[[], object], done: str
) -> Response:
    try:
        change()
    except SanctumError as exc:
        end_failed(db, exc)
        return _shares(request, db, ctx, status=exc.status, error=exc.message)
    db.commit()
    return redirect(f"/projects/{ctx.project.name}/shares?done={done}")


@router.post("/projects/{project}/shares/{share_id}/accept")
def accept_share(request: Request, db: DbSession, ctx: Sharer, share_id: int) -> Response:
    return _share_change(
        request, db, ctx, lambda: sharing.decide(db, ctx, share_id, accept=True), "share_accepted"
    )


@router.post("/projects/{project}/shares/{share_id}/decline")
def decline_share(request: Request, db: DbSession, ctx: Sharer, share_id: int) -> Response:
    return _share_change(
        request, db, ctx, lambda: sharing.decide(db, ctx, share_id, accept=False), "share_declined"
    )


@router.post("/projects/{project}/shares/{share_id}/revoke")
def revoke_share(request: Request, db: DbSession, ctx: Sharer, share_id: int) -> Response:
    return _share_change(request, db, ctx, lambda: sharing.revoke(db, ctx, share_id), "share_revoked")


# --------------------------------------------------------------------------- query


@dataclass(frozen=True)
class TableHint:
    """A table the project's SQL can name, with the columns of its newest version."""

    name: str
    ref: DatasetRef
    schema: list[dict[str, Any]]
    rows: int | None


def _table_hints(db: Session, ctx: ProjectContext) -> list[TableHint]:
    refs = [r for r in catalog.list_for(db, ctx) if r.dataset.kind == Kind.TABLE]
    latest = catalog.latest_versions(db, [r.dataset.id for r in refs])
    hints = []
    for ref in refs:
        version = latest.get(ref.dataset.id)
        if version is not None:
            hints.append(TableHint(_sql_name(ref), ref, version.table_schema or [], version.row_count))
    return hints


def _cell(value: object) -> str | None:
    """Query values are JSON-safe already; None stays None (shown as NULL)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    return str(value)


def _numeric(type_name: str) -> bool:
    upper = type_name.upper()
    return upper.startswith(NUMERIC_TYPES) and not upper.endswith("]")  # not lists of numbers


def _query(
    request: Request,
    db: Session,
    ctx: ProjectContext,
    *,
    sql: str = "",
    result: QueryResponse | None = None,
    status: int = 200,
    error: str | None = None,
) -> Response:
    from sanctum.datasets import querying  # DuckDB loads with the query page, not at server start

    hints = _table_hints(db, ctx)
    return _page(
        request,
        "query.html",
        ctx,
        status=status,
        tables=hints,
        sql=sql or (SAMPLE_SQL.format(table=hints[0].name) if hints else ""),
        row_limit=querying.row_limit(ctx, None),
        result=result,
        numeric=[_numeric(t) for t in result.types] if result else [],
        cells=[[_cell(v) for v in row] for row in result.rows] if result else [],
        error=error,
    )


@router.get("/projects/{project}/query")
def query_page(request: Request, db: DbSession, ctx: Querier) -> Response:
    return _query(request, db, ctx)


@router.post("/projects/{project}/query")
@writes_in_own_sessions
def run_query(
    request: Request, db: DbSession, runtime: RuntimeDep, ctx: Querier, sql: SqlField = ""
) -> Response:
    """The API's query (the sandbox, the role's row cap, the audit of both outcomes); a refused or
    failing statement is shown on the page with the SQL kept in the form."""
    try:
        result = query_api.query(QueryRequest(sql=sql), ctx, db, runtime)
    except SanctumError as exc:
        return _query(request, db, ctx, sql=sql, status=exc.status, error=exc.message)
    return _query(request, db, ctx, sql=sql, result=result)

"""A project's data management plan: the version in force, its history, its status; owners set it.

A refused version (not the standard, a problem in the ``sanctum`` extension, a retention date
already passed without ``confirm_shred``) stores nothing but its audit event. An invalid one is
answered 422 in the usual error shape plus ``errors``: every problem with its JSON path.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from sanctum.api.deps import DbSession, DmpManager, ProjectReader, RuntimeDep
from sanctum.dmp import service, views
from sanctum.dmp.models import DmpVersion
from sanctum.errors import Conflict, NotFound
from sanctum.projects.service import ProjectContext
from sanctum.schemas.dmp import DmpPublic, DmpSet, DmpSetResult, DmpStatus, DmpVersionPublic

router = APIRouter(prefix="/api/v1/projects/{project}/dmp", tags=["dmp"])


def dmp_public(db: Session, ctx: ProjectContext, row: DmpVersion, *, in_force: bool) -> DmpPublic:
    names = [d.name for d in service.live_datasets(db, ctx.project.id)]
    return DmpPublic(
        **views.version_public(row).model_dump(),
        document=service.document_of(row),
        summary=views.summary(service.plan_of(row), names),
        in_force=in_force,
    )


def invalid_response(exc: service.DmpInvalid) -> JSONResponse:
    problems = [{"path": p.path, "message": p.message} for p in exc.problems]
    return JSONResponse(
        {"error": {"code": exc.code, "message": exc.message, "standard": exc.standard, "errors": problems}},
        status_code=422,
    )


def set_plan(
    db: Session,
    ctx: ProjectContext,
    document: Any,
    *,
    standard: str | None = None,
    confirm_shred: bool = False,
) -> service.SetResult:
    """Shared by the API and the DMP page: a refusal is audited and persisted, nothing else."""
    try:
        return service.set_version(db, ctx, document, standard_version=standard, confirm_shred=confirm_shred)
    except (service.DmpInvalid, Conflict) as exc:  # raised before anything was written
        service.record_refusal(db, ctx, exc)
        exc.persist = True
        raise


@router.get("")
def get_dmp(ctx: ProjectReader, db: DbSession) -> DmpPublic:
    """The DMP in force, with what it means for each dataset of the project."""
    row = service.current(db, ctx.project.id)
    if row is None:
        raise NotFound("this project has no data management plan yet", code="no_dmp")
    return dmp_public(db, ctx, row, in_force=True)


@router.put(
    "", status_code=201, response_model=DmpSetResult, responses={422: {"description": "not a valid DMP"}}
)
def put_dmp(body: DmpSet, ctx: DmpManager, db: DbSession) -> Any:
    """Store a new version (data owners). Every member sees it at once; jobs and exports record it."""
    try:
        result = set_plan(db, ctx, body.document, standard=body.standard, confirm_shred=body.confirm_shred)
    except service.DmpInvalid as exc:
        db.commit()  # the refusal's audit event
        return invalid_response(exc)
    db.commit()
    return DmpSetResult(
        **views.version_public(result.row).model_dump(),
        shred_at_next_run=result.overdue,
        shares_revoked=len(result.revoked_shares),
    )


@router.get("/history")
def list_history(ctx: ProjectReader, db: DbSession) -> list[DmpVersionPublic]:
    """Every version, newest first: who set it, when, its SHA-256."""
    return [views.version_public(row) for row in service.history(db, ctx.project.id)]


@router.get("/history/{number}")
def get_version(number: int, ctx: ProjectReader, db: DbSession) -> DmpPublic:
    row = service.load(db, ctx.project.id, number)
    return dmp_public(db, ctx, row, in_force=row.number == service.version_in_force(db, ctx.project.id))


@router.get("/status")
def get_status(ctx: ProjectReader, db: DbSession, runtime: RuntimeDep) -> DmpStatus:
    """Retention dates coming within 30 days, those already passed, and this server's location."""
    return status_of(db, ctx, runtime.settings.location)


def status_of(db: Session, ctx: ProjectContext, location: str) -> DmpStatus:
    row = service.current(db, ctx.project.id)
    plan = service.plan_of(row)
    pairs = service.governed(db, ctx.project.id, plan)
    on = service.today()
    soon = [(d.name, u) for d, u in service.due(pairs, on, within_days=service.WARN_DAYS) if u > on]
    overdue = [(d.name, u) for d, u in service.due(pairs, on)]
    return DmpStatus(
        version=row.number if row else None,
        executor_location=location,
        expiring_soon=views.retention_items(soon, on),
        overdue=views.retention_items(overdue, on),
        summary=views.summary(plan, [d.name for d in service.live_datasets(db, ctx.project.id)])
        if row
        else None,
    )

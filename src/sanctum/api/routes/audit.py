"""Audit trails: a project's for its owners and auditors, the whole platform's for admins."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select

from sanctum.api.deps import AuditAdmin, AuditReader, DbSession
from sanctum.audit import query, verify
from sanctum.db.models import Project
from sanctum.errors import NotFound
from sanctum.schemas.audit import AuditPage, AuditVerifyPublic

router = APIRouter(tags=["audit"])

After = Annotated[int, Query(ge=0, description="return events after this sequence number")]
Limit = Annotated[int, Query(ge=1, le=query.MAX_PAGE)]
Action = Annotated[str | None, Query(max_length=64, description="action prefix, e.g. 'member.'")]


@router.get("/api/v1/projects/{project}/audit")
def project_audit(
    ctx: AuditReader, db: DbSession, after: After = 0, limit: Limit = 100, action: Action = None
) -> AuditPage:
    return query.page(db, project_id=ctx.project.id, after=after, limit=limit, action=action)


@router.get("/api/v1/audit")
def platform_audit(
    _: AuditAdmin,
    db: DbSession,
    after: After = 0,
    limit: Limit = 100,
    action: Action = None,
    project: Annotated[str | None, Query(max_length=64)] = None,
) -> AuditPage:
    project_id = None
    if project is not None:
        project_id = db.scalar(select(Project.id).where(Project.name == project))
        if project_id is None:
            raise NotFound("project not found")
    return query.page(db, project_id=project_id, after=after, limit=limit, action=action)


@router.get("/api/v1/audit/verify")
def verify_chain(_: AuditAdmin, db: DbSession) -> AuditVerifyPublic:
    report = verify(db)
    return AuditVerifyPublic(**report.__dict__)

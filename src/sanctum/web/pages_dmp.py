"""The data management plan pages (the plan in force, its history, one version's JSON; owners
upload a new version) and the compliance report page.

The pages call the API's own functions (``set_plan``, ``status_of``, ``report.build``), so a
browser and a script are refused the same way and leave the same audit trail.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Depends, File, Form, Request, UploadFile
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import role_allows
from sanctum.airlock.rules import export_rules
from sanctum.api.deps import DbSession, RuntimeDep
from sanctum.api.routes import dmp as dmp_api
from sanctum.api.runtime import Runtime
from sanctum.dmp import report, service, standard, views
from sanctum.errors import Conflict, InvalidInput, SanctumError
from sanctum.projects.service import ProjectContext
from sanctum.web.pages_datasets import _record_read
from sanctum.web.render import render
from sanctum.web.session import ProjectPage, end_failed, redirect

router = APIRouter(include_in_schema=False)

Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.PROJECT_READ))]
Manager = Annotated[ProjectContext, Depends(ProjectPage(Permission.DMP_MANAGE, for_update=True))]
Auditor = Annotated[ProjectContext, Depends(ProjectPage(Permission.AUDIT_READ))]
MAX_FILE = 1024 * 1024 - 64 * 1024  # the request body limit, less the form around the file

NOTICES = {"dmp_set": "New DMP version in force. Jobs and exports from now on record it."}


def _allows(ctx: ProjectContext, permission: Permission) -> bool:
    return role_allows(ctx.role, permission, ctx.principal.scopes)


def _plan_page(
    request: Request, db: Session, runtime: Runtime, ctx: ProjectContext, *, status: int = 200, **context: Any
) -> Response:
    row = service.current(db, ctx.project.id)
    return render(
        request,
        "dmp.html",
        status=status,
        section="projects",
        project=ctx.project,
        role=ctx.role,
        row=row,
        plan=views.summary(service.plan_of(row), [d.name for d in service.live_datasets(db, ctx.project.id)]),
        state=dmp_api.status_of(db, ctx, runtime.settings.location),
        rules=export_rules(db, ctx.project).as_dict(),
        versions=service.history(db, ctx.project.id),
        can_manage=_allows(ctx, Permission.DMP_MANAGE),
        can_report=_allows(ctx, Permission.AUDIT_READ),
        **({"notice": None, "problems": [], "confirm_needed": False} | context),
    )


@router.get("/projects/{project}/dmp")
def plan_page(request: Request, db: DbSession, runtime: RuntimeDep, ctx: Reader, done: str = "") -> Response:
    return _plan_page(request, db, runtime, ctx, notice=NOTICES.get(done))


@router.get("/projects/{project}/dmp/versions/{number}")
def version_page(request: Request, db: DbSession, ctx: Reader, number: int) -> Response:
    row = service.load(db, ctx.project.id, number)
    return render(
        request,
        "dmp_version.html",
        section="projects",
        project=ctx.project,
        row=row,
        in_force=row.number == service.version_in_force(db, ctx.project.id),
        document=json.dumps(service.document_of(row), indent=2, ensure_ascii=False),
        plan=views.summary(service.plan_of(row), [d.name for d in service.live_datasets(db, ctx.project.id)]),
    )


async def _read_upload(upload: UploadFile | None, text: str) -> str:
    if upload is not None and upload.filename:
        data = await upload.read(MAX_FILE + 1)
        if len(data) > MAX_FILE:
            raise InvalidInput("the DMP file is larger than 1 MiB", code="payload_too_large")
        return data.decode("utf-8", "replace")
    return text


@router.post("/projects/{project}/dmp")
async def upload_version(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: Manager,
    file: Annotated[UploadFile | None, File()] = None,
    document: Annotated[str, Form(max_length=MAX_FILE)] = "",
    confirm_shred: Annotated[bool, Form()] = False,
) -> Response:
    """A new version from a file (or pasted JSON); refused ones show every problem with its path."""
    try:
        text = await _read_upload(file, document)
        if not text.strip():
            raise InvalidInput("choose a DMP file (JSON) or paste one", code="invalid_input")
        try:
            parsed = standard.parse_json(text)
        except standard.NotAStandardDmp as exc:
            invalid = service.DmpInvalid(exc)
            service.record_refusal(db, ctx, invalid)
            invalid.persist = True
            raise invalid from None
        dmp_api.set_plan(db, ctx, parsed, confirm_shred=confirm_shred)
    except SanctumError as exc:
        end_failed(db, exc)
        problems = exc.problems if isinstance(exc, service.DmpInvalid) else []
        return _plan_page(
            request,
            db,
            runtime,
            ctx,
            status=exc.status,
            error=exc.message,
            problems=problems,
            confirm_needed=isinstance(exc, Conflict) and exc.code == "retention_passed",
        )
    db.commit()
    return redirect(f"/projects/{ctx.project.name}/dmp?done=dmp_set")


@router.get("/projects/{project}/report")
def report_page(request: Request, db: DbSession, runtime: RuntimeDep, ctx: Auditor) -> Response:
    """The compliance report for owners and auditors; reading it is audited as for the API."""
    body = report.build(db, ctx.project, generated_by=ctx.principal.email)
    _record_read(runtime, db, ctx, "report.gdpr", target=ctx.project.name, details={"format": "html"})
    return render(request, "report.html", section="projects", project=ctx.project, r=body)

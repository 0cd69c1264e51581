"""My projects, one project's page with its members (owners manage them), its audit trail."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission, Role
from sanctum.access.policy import Principal, platform_allows, role_allows
from sanctum.api.deps import DbSession
from sanctum.audit import query
from sanctum.errors import SanctumError
from sanctum.projects import members
from sanctum.projects import service as projects
from sanctum.projects.service import ProjectContext
from sanctum.web.render import notice, render
from sanctum.web.session import Page, ProjectPage, end_failed, redirect

router = APIRouter(include_in_schema=False)

AUDIT_PAGE = 50
TextField = Annotated[str, Form(max_length=10000)]

Lister = Annotated[Principal, Depends(Page(Permission.PROJECTS_LIST))]
Creator = Annotated[Principal, Depends(Page(Permission.PROJECT_CREATE))]
Reader = Annotated[ProjectContext, Depends(ProjectPage(Permission.PROJECT_READ))]
Manager = Annotated[ProjectContext, Depends(ProjectPage(Permission.MEMBERS_MANAGE, for_update=True))]
AuditReader = Annotated[ProjectContext, Depends(ProjectPage(Permission.AUDIT_READ))]


def _home(
    request: Request,
    db: Session,
    principal: Principal,
    *,
    status: int = 200,
    error: str | None = None,
    done: str = "",
    form: dict[str, str] | None = None,
) -> Response:
    return render(
        request,
        "home.html",
        status=status,
        section="projects",
        projects=projects.list_for(db, principal),
        can_create=platform_allows(principal, Permission.PROJECT_CREATE),
        form=form or {},
        error=error,
        notice=notice(done),
    )


@router.get("/")
def home(request: Request, db: DbSession, principal: Lister, done: str = "") -> Response:
    return _home(request, db, principal, done=done)


@router.post("/projects")
def create_project(
    request: Request,
    db: DbSession,
    principal: Creator,
    name: TextField = "",
    title: TextField = "",
    description: TextField = "",
) -> Response:
    try:
        ctx = projects.create(db, principal, name=name.strip(), title=title, description=description)
    except SanctumError as exc:
        end_failed(db, exc)
        form = {"name": name, "title": title, "description": description}
        return _home(request, db, principal, status=exc.status, error=exc.message, form=form)
    db.commit()
    return redirect(f"/projects/{ctx.project.name}?done=project_created")


def _project(
    request: Request,
    db: Session,
    ctx: ProjectContext,
    *,
    status: int = 200,
    error: str | None = None,
    done: str = "",
    form: dict[str, str] | None = None,
) -> Response:
    scopes = ctx.principal.scopes
    can_see_members = role_allows(ctx.role, Permission.MEMBERS_READ, scopes)
    return render(
        request,
        "project.html",
        status=status,
        section="projects",
        project=ctx.project,
        role=ctx.role,
        members=members.list_members(db, ctx) if can_see_members else [],
        can_see_members=can_see_members,
        can_manage=role_allows(ctx.role, Permission.MEMBERS_MANAGE, scopes),
        can_audit=role_allows(ctx.role, Permission.AUDIT_READ, scopes),
        roles=list(Role),
        form=form or {},
        error=error,
        notice=notice(done),
    )


@router.get("/projects/{project}")
def project_page(request: Request, db: DbSession, ctx: Reader, done: str = "") -> Response:
    return _project(request, db, ctx, done=done)


def _change(
    request: Request,
    db: Session,
    ctx: ProjectContext,
    change: Callable[[], object],
    done: str,
    *,
    form: dict[str, str] | None = None,
    leaving: bool = False,
) -> Response:
    """Run one membership change; on refusal show the project page again with the reason."""
    try:
        change()
    except SanctumError as exc:
        end_failed(db, exc)
        return _project(request, db, ctx, status=exc.status, error=exc.message, form=form)
    db.commit()
    if leaving:  # owners may remove themselves (while another owner remains): the page is gone
        return redirect(f"/?done={done}")
    return redirect(f"/projects/{ctx.project.name}?done={done}")


@router.post("/projects/{project}/members")
def add_member(
    request: Request, db: DbSession, ctx: Manager, email: TextField = "", role: TextField = ""
) -> Response:
    return _change(
        request,
        db,
        ctx,
        lambda: members.add(db, ctx, email, members.parse_role(role)),
        "member_added",
        form={"email": email, "role": role},
    )


@router.post("/projects/{project}/members/role")
def set_member_role(
    request: Request, db: DbSession, ctx: Manager, email: TextField = "", role: TextField = ""
) -> Response:
    return _change(
        request, db, ctx, lambda: members.set_role(db, ctx, email, members.parse_role(role)), "role_changed"
    )


@router.post("/projects/{project}/members/remove")
def remove_member(request: Request, db: DbSession, ctx: Manager, email: TextField = "") -> Response:
    leaving = email.strip().lower() == ctx.principal.email
    return _change(
        request, db, ctx, lambda: members.remove(db, ctx, email), "member_removed", leaving=leaving
    )


@router.get("/projects/{project}/audit")
def audit_page(
    request: Request,
    db: DbSession,
    ctx: AuditReader,
    before: Annotated[int, Query(ge=0, description="show events before this sequence number")] = 0,
) -> Response:
    page = query.page(db, project_id=ctx.project.id, after=before, limit=AUDIT_PAGE, newest_first=True)
    return render(
        request,
        "audit.html",
        section="projects",
        project=ctx.project,
        role=ctx.role,
        events=page.events,
        next_before=page.next_after,
        first_page=before == 0,
    )

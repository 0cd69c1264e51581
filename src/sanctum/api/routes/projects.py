"""Projects: the caller's list, creation, and one project's page."""

from __future__ import annotations

from fastapi import APIRouter

from sanctum.access.permissions import Role
from sanctum.api.deps import DbSession, ProjectCreator, ProjectLister, ProjectReader
from sanctum.db.models import Project
from sanctum.projects import service as projects
from sanctum.schemas.projects import ProjectCreate, ProjectPublic

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


def project_public(project: Project, role: Role) -> ProjectPublic:
    return ProjectPublic(
        name=project.name,
        title=project.title,
        description=project.description,
        created_at=project.created_at,
        role=role.value,
    )


@router.get("")
def list_projects(db: DbSession, principal: ProjectLister) -> list[ProjectPublic]:
    return [project_public(p, role) for p, role in projects.list_for(db, principal)]


@router.post("", status_code=201)
def create_project(body: ProjectCreate, db: DbSession, principal: ProjectCreator) -> ProjectPublic:
    ctx = projects.create(db, principal, name=body.name, title=body.title, description=body.description)
    db.commit()
    return project_public(ctx.project, ctx.role)


@router.get("/{project}")
def get_project(ctx: ProjectReader) -> ProjectPublic:
    return project_public(ctx.project, ctx.role)

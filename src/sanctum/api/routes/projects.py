"""Projects: the caller's list, creation, and one project's page."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from sanctum.access.permissions import Role
from sanctum.api.deps import (
    DatasetsManager,
    DbSession,
    ProjectCreator,
    ProjectDeleter,
    ProjectLister,
    ProjectReader,
    RuntimeDep,
)
from sanctum.datasets import shred
from sanctum.db.models import Project
from sanctum.projects import service as projects
from sanctum.schemas.datasets import ProjectSettingsUpdate
from sanctum.schemas.projects import ProjectCreate, ProjectPublic

router = APIRouter(prefix="/api/v1/projects", tags=["projects"])


def project_public(project: Project, role: Role) -> ProjectPublic:
    return ProjectPublic(
        name=project.name,
        title=project.title,
        description=project.description,
        created_at=project.created_at,
        role=role.value,
        query_row_limit=project.query_row_limit,
        artifact_download=project.artifact_download,
        export_approvals=project.export_approvals,
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
async def get_project(ctx: ProjectReader) -> ProjectPublic:
    return project_public(ctx.project, ctx.role)


@router.patch("/{project}/settings")
def update_settings(body: ProjectSettingsUpdate, ctx: DatasetsManager, db: DbSession) -> ProjectPublic:
    """Owners set how many rows a query returns to Data Scientists, whether experiment artifacts
    may be downloaded by everyone who reads them or only through the airlock, and how many
    independent approvals an export request needs."""
    changes: dict[str, dict[str, object]] = {}
    for field in ("query_row_limit", "artifact_download", "export_approvals"):
        new, old = getattr(body, field), getattr(ctx.project, field)
        if new is not None:
            setattr(ctx.project, field, new)
            changes[field] = {"from": old, "to": new}
    ctx.record(db, "project.settings", target=ctx.project.name, details=changes)
    db.commit()
    return project_public(ctx.project, ctx.role)


@router.delete("/{project}", status_code=204)
def delete_project(
    ctx: ProjectDeleter,
    db: DbSession,
    runtime: RuntimeDep,
    confirm: Annotated[str, Query(max_length=200, description="the project's name, to confirm")] = "",
) -> None:
    """Delete the project and crypto-shred all of its data by destroying the project key."""
    blobs = shred.shred_project(db, ctx, confirm=confirm)
    db.commit()
    for blob_id in blobs:
        runtime.store.delete(blob_id)

"""Creating, listing and loading projects in a principal's context."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.access.permissions import Permission, Role
from sanctum.access.policy import Principal, authorize_platform, authorize_project, check_binding
from sanctum.audit import AuditContext, record
from sanctum.db.models import Membership, Project
from sanctum.errors import Conflict


@dataclass(frozen=True)
class ProjectContext:
    """A principal acting in one project: everything project-scoped is done through this."""

    project: Project
    role: Role
    principal: Principal
    audit: AuditContext

    def record(self, session: Session, action: str, **kwargs: object) -> None:
        record(
            session, self.audit, action, project_id=self.project.id, project_name=self.project.name, **kwargs
        )  # type: ignore[arg-type]


def audit_context(principal: Principal) -> AuditContext:
    return AuditContext(actor_id=principal.user_id, actor_email=principal.email, ip=principal.ip)


def load(
    session: Session, principal: Principal, name: str, permission: Permission, *, for_update: bool = False
) -> ProjectContext:
    """The tenant-scoped loader: a project the principal is not a member of does not exist."""
    check_binding(principal, name)
    query = (
        select(Project, Membership.role)
        .join(Membership, (Membership.project_id == Project.id) & (Membership.user_id == principal.user_id))
        .where(Project.name == name)
    )
    if for_update:
        # FOR NO KEY UPDATE: serialises writers of the project like FOR UPDATE, but does not block
        # the FOR KEY SHARE lock that inserts and updates of rows referencing the project take (a
        # job finishing while another is submitted would otherwise deadlock on PostgreSQL).
        query = query.with_for_update(of=Project, key_share=True)
    row = session.execute(query).first()
    role = Role(row.role) if row else None
    authorize_project(principal, role, permission)
    assert row is not None and role is not None
    return ProjectContext(row.Project, role, principal, audit_context(principal))


def create(
    session: Session, principal: Principal, *, name: str, title: str = "", description: str = ""
) -> ProjectContext:
    authorize_platform(principal, Permission.PROJECT_CREATE)
    name = names.project_name(name)
    title = names.label(title, field="title") or name
    description = names.label(description, field="description", max_length=5000)
    if session.scalar(select(Project.id).where(Project.name == name)) is not None:
        raise Conflict("a project with this name already exists", code="project_exists")
    project = Project(name=name, title=title, description=description, created_by_id=principal.user_id)
    session.add(project)
    session.flush()
    session.add(Membership(project_id=project.id, user_id=principal.user_id, role=Role.DATA_OWNER.value))
    ctx = ProjectContext(project, Role.DATA_OWNER, principal, audit_context(principal))
    ctx.record(session, "project.create", target=name, details={"title": title})
    return ctx


def list_for(session: Session, principal: Principal) -> list[tuple[Project, Role]]:
    """The principal's projects, filtered in SQL (a bound token sees only its project)."""
    query = (
        select(Project, Membership.role)
        .join(Membership, Membership.project_id == Project.id)
        .where(Membership.user_id == principal.user_id)
        .order_by(Project.name)
    )
    if principal.bound_project_id is not None:
        query = query.where(Project.id == principal.bound_project_id)
    return [(project, Role(role)) for project, role in session.execute(query).all()]

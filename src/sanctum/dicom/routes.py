"""Routes: a data owner maps a sending PACS (its calling AE title) to one dataset of the project.

An AE title belongs to at most one project on the whole platform (a unique column): the receiver
must know, from the association request alone, where the data goes. A second project claiming it
gets 409, without learning which project holds it.

Whose authority the receiver uses: the owner who last set the route (``set_by``). Audit events of a
reception carry that person, and the route is dormant (associations rejected) while they are no
longer an active data owner of the project, so removing an owner also stops the PACS they routed.
Another owner takes a route over by setting it again.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission, Role
from sanctum.access.policy import Principal, role_allows
from sanctum.audit import AuditContext
from sanctum.datasets import catalog
from sanctum.datasets.catalog import Kind
from sanctum.db.models import Dataset, Membership, Project, User
from sanctum.db.types import utcnow
from sanctum.dicom.models import DicomRoute
from sanctum.errors import Conflict, Denied, InvalidInput, NotFound
from sanctum.ingest import metadata
from sanctum.projects.service import ProjectContext
from sanctum.schemas.dicom import DicomRoutePublic, DicomRouteSet
from sanctum.schemas.ingest import IngestOptions

# DICOM allows any default-repertoire character but backslash; routes are URL path segments and
# appear in PACS configuration screens, so they keep to what every PACS accepts.
AE_TITLE = re.compile(r"[A-Za-z0-9._-](?:[A-Za-z0-9 ._-]{0,14}[A-Za-z0-9._-])?")
AE_TITLE_HELP = "1-16 letters, digits, spaces, '.', '_' or '-', not starting or ending with a space"


def ae_title(value: str) -> str:
    """A valid AE title as stored (DICOM ignores leading and trailing spaces; they are dropped)."""
    title = value.strip(" ")
    if not AE_TITLE.fullmatch(title):
        raise InvalidInput(f"invalid AE title: use {AE_TITLE_HELP}", code="invalid_ae_title")
    return title


def printable(value: str) -> str:
    """An AE title received from the network, safe to log and audit (it may be anything)."""
    return "".join(c if " " <= c <= "~" else "?" for c in value.strip(" "))[:16]


def _check_dataset(session: Session, ctx: ProjectContext, name: str) -> None:
    """The route's dataset: a files dataset of this project, or a name one can be created under."""
    if "." in name:
        raise InvalidInput(
            "a route sends into a dataset of this project, not a shared one", code="shared_dataset"
        )
    catalog.dataset_name(name)
    if len(metadata.metadata_name(name)) > 63:
        raise InvalidInput(
            "the dataset name is too long for its metadata table (<name>-metadata): at most 54 characters",
            code="invalid_name",
        )
    kind = session.scalar(
        select(Dataset.kind).where(
            Dataset.project_id == ctx.project.id, Dataset.name == name, Dataset.shredded_at.is_(None)
        )
    )
    if kind is None and not role_allows(ctx.role, Permission.DATASETS_MANAGE, ctx.principal.scopes):
        raise Denied("the dataset does not exist, and creating it needs datasets:manage")
    if kind is not None and kind != Kind.FILES:
        raise InvalidInput("DICOM instances go into a files dataset, not a table", code="invalid_kind")


def _load(session: Session, ctx: ProjectContext, title: str) -> DicomRoute:
    """The project's route for ``title``; another project's route is not found, like no route."""
    route = session.scalar(
        select(DicomRoute).where(
            DicomRoute.ae_title == ae_title(title), DicomRoute.project_id == ctx.project.id
        )
    )
    if route is None:
        raise NotFound("no route for this AE title in this project", code="route_not_found")
    return route


def set_route(
    session: Session, ctx: ProjectContext, title: str, body: DicomRouteSet
) -> tuple[DicomRoute, bool]:
    """Create or change the project's route for ``title``; True when it was created."""
    title = ae_title(title)
    # The receiver imports data on the setter's behalf: a token that cannot import cannot route.
    if not role_allows(ctx.role, Permission.DATA_IMPORT, ctx.principal.scopes):
        raise Denied(
            "setting a route needs data:import too: the receiver imports on your behalf", code="scope"
        )
    _check_dataset(session, ctx, body.dataset)
    route = session.scalar(select(DicomRoute).where(DicomRoute.ae_title == title))
    if route is not None and route.project_id != ctx.project.id:
        raise Conflict(
            "this AE title is routed to another project; AE titles are unique", code="ae_title_taken"
        )
    options = body.options.model_dump(mode="json")
    created = route is None
    if route is None:
        route = DicomRoute(ae_title=title, project_id=ctx.project.id)
        session.add(route)
    route.dataset, route.options = body.dataset, options
    route.set_by_id, route.updated_at = ctx.principal.user_id, utcnow()
    try:
        session.flush()
    except IntegrityError:  # another project claimed it at the same moment
        raise Conflict(
            "this AE title is routed to another project; AE titles are unique", code="ae_title_taken"
        ) from None
    ctx.record(
        session,
        "dicom.route.set",
        target=f"ae:{title}",
        details={"dataset": body.dataset, "created": created, "options": options},
    )
    return route, created


def get_route(session: Session, ctx: ProjectContext, title: str) -> DicomRoute:
    return _load(session, ctx, title)


def list_routes(session: Session, ctx: ProjectContext) -> list[DicomRoute]:
    return list(
        session.scalars(
            select(DicomRoute).where(DicomRoute.project_id == ctx.project.id).order_by(DicomRoute.ae_title)
        ).all()
    )


def delete_route(session: Session, ctx: ProjectContext, title: str) -> None:
    """From now on that AE title is rejected; an association already open finishes as it began."""
    route = _load(session, ctx, title)
    session.delete(route)
    ctx.record(
        session, "dicom.route.delete", target=f"ae:{route.ae_title}", details={"dataset": route.dataset}
    )


def _setter_role(session: Session, route: DicomRoute) -> tuple[User | None, Role | None]:
    row = session.execute(
        select(User, Membership.role)
        .join(Membership, Membership.user_id == User.id)
        .where(User.id == route.set_by_id, Membership.project_id == route.project_id)
    ).first()
    if row is None:
        return None, None
    return row.User, Role(row.role)


def _active(user: User | None, role: Role | None) -> bool:
    return (
        user is not None
        and user.is_active
        and role_allows(role, Permission.DATA_IMPORT, frozenset(Permission))
    )


def public(session: Session, route: DicomRoute, project: str) -> DicomRoutePublic:
    user, role = _setter_role(session, route)
    setter = user or (session.get(User, route.set_by_id) if route.set_by_id else None)
    return DicomRoutePublic(
        ae_title=route.ae_title,
        project=project,
        dataset=route.dataset,
        options=route.options,
        set_by=setter.email if setter else None,
        active=_active(user, role),
        created_at=route.created_at,
        updated_at=route.updated_at,
    )


# --------------------------------------------------------------------------- the receiver's side


def acting_context(project: Project, user: User, role: Role, peer: str | None) -> ProjectContext:
    """The receiver acting for ``user`` (with their role, all scopes) from the sender's address."""
    principal = Principal(
        user_id=user.id,
        email=user.email,
        is_admin=False,
        can_create_projects=False,
        token_id=0,
        token_kind="dicom",  # noqa: S106 - a kind of principal, not a secret
        ip=peer,
    )
    return ProjectContext(
        project, role, principal, AuditContext(actor_id=user.id, actor_email=user.email, ip=peer)
    )


@dataclass(frozen=True)
class Accepted:
    """An association request whose calling AE title has an active route."""

    ae_title: str
    dataset: str
    options: IngestOptions
    ctx: ProjectContext


@dataclass(frozen=True)
class Refused:
    reason: str
    project: Project | None = None  # a dormant route's project: its owners see the refusal


def for_association(session: Session, calling_ae: str, peer: str | None) -> Accepted | Refused:
    """Where an association from ``calling_ae`` goes, or why it is refused."""
    title = calling_ae.strip(" ")
    route = session.scalar(select(DicomRoute).where(DicomRoute.ae_title == title)) if title else None
    if route is None:
        return Refused("calling AE title not recognised")
    project = session.get(Project, route.project_id)
    user, role = _setter_role(session, route)
    if project is None or user is None or role is None or not _active(user, role):
        return Refused(
            "the owner who set this route is no longer an active data owner of the project", project
        )
    options = IngestOptions.model_validate(route.options)
    return Accepted(route.ae_title, route.dataset, options, acting_context(project, user, role, peer))

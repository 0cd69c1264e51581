"""Closing what a receiver that died left open, at the next start of that receiver.

An ``open`` reception was never released: its session is cancelled (its stored instances and
quarantined outputs deleted), as an abort would have done. A ``released`` one died while
committing: its session is committed now. Each acts for whoever the session was opened for (the
route's owner then) while still a member; an open session with nobody left is cancelled by the
receiver as itself (cancelling names no user in any row), a released one is left for an owner.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from sqlalchemy import select

from sanctum.access.permissions import Role
from sanctum.access.policy import Principal
from sanctum.audit import AuditContext
from sanctum.db.models import Membership, Project, User
from sanctum.db.types import utcnow
from sanctum.dicom.models import DicomReception
from sanctum.dicom.reception import CANCELLED, COMMITTED, OPEN, RECEIVER, RELEASED, why
from sanctum.dicom.routes import acting_context
from sanctum.errors import Conflict, NotFound
from sanctum.ingest import service
from sanctum.ingest.models import IngestSession
from sanctum.projects.service import ProjectContext

if TYPE_CHECKING:
    from sanctum.api.runtime import Runtime

log = logging.getLogger("sanctum.dicom")


def _system_context(project: Project) -> ProjectContext:
    """The receiver as itself, for cancelling only (that writes no row naming a user)."""
    principal = Principal(
        user_id=0,
        email=RECEIVER,
        is_admin=False,
        can_create_projects=False,
        token_id=0,
        token_kind="dicom",  # noqa: S106 - a kind of principal, not a secret
    )
    return ProjectContext(project, Role.DATA_OWNER, principal, AuditContext(actor_email=RECEIVER))


def _contexts(runtime: Runtime, row: DicomReception) -> tuple[IngestSession | None, ProjectContext | None]:
    """The row's ingest session, and a context acting for whoever it was opened for (the route's
    owner at the time) while they are still a member of the project."""
    with runtime.db.session(write=False) as session:
        ingest = session.get(IngestSession, row.ingest_id)
        found = session.execute(
            select(Project, User, Membership.role)
            .join(IngestSession, IngestSession.project_id == Project.id)
            .join(User, User.id == IngestSession.created_by_id)
            .join(Membership, (Membership.user_id == User.id) & (Membership.project_id == Project.id))
            .where(IngestSession.id == row.ingest_id)
        ).first()
    if found is None:
        return ingest, None
    return ingest, acting_context(found.Project, found.User, Role(found.role), None)


def _reconcile(runtime: Runtime, row: DicomReception) -> tuple[str, ProjectContext | None]:
    """Close one left-over session: commit a released one, cancel an open one. Returns the row's
    new state (``open``: left for an owner) and the context that acted."""
    ingest, ctx = _contexts(runtime, row)
    if ingest is None or ingest.state == service.CANCELLED:
        return CANCELLED, ctx
    if ingest.state == service.FINISHED:
        return COMMITTED, ctx
    if row.state == RELEASED:
        if ctx is None:  # nobody to commit it for: an owner finishes (or cancels) it by hand
            return OPEN, None
        service.finish(runtime, ctx, ingest.number)
        return COMMITTED, ctx
    if ctx is None:
        with runtime.db.session(write=False) as session:
            project = session.get(Project, ingest.project_id)
        assert project is not None
        ctx = _system_context(project)
    service.cancel(runtime, ctx, ingest.number)
    return CANCELLED, ctx


def recover(runtime: Runtime, listener: str) -> dict[str, int]:
    """Close the sessions a previous run of this receiver (same host, address and port) left open.

    Only this listener's rows: the port was free when this run bound it, so no live receiver is
    still filling them.
    """
    with runtime.db.session(write=False) as session:
        rows = session.scalars(
            select(DicomReception).where(
                DicomReception.listener == listener, DicomReception.state.in_([OPEN, RELEASED])
            )
        ).all()
    done = {COMMITTED: 0, CANCELLED: 0, OPEN: 0}
    for row in rows:
        try:
            try:
                state, ctx = _reconcile(runtime, row)
            except (Conflict, NotFound):  # closed meanwhile: take what the session became
                state, ctx = _reconcile(runtime, row)
        except NotFound as exc:  # its dataset was shredded: nothing of it can be read or kept
            if exc.code != "shredded":
                log.error("DICOM recovery of reception %s failed (%s)", row.id, why(exc))
                continue
            state, ctx = CANCELLED, None
        except Exception as exc:
            log.error("DICOM recovery of reception %s failed (%s)", row.id, why(exc))
            continue
        done[state] += 1
        if state == OPEN:
            log.warning("DICOM reception %s: its owner left the project; its ingest stays open", row.id)
            continue
        with runtime.db.session() as session:
            fresh = session.get(DicomReception, row.id)
            if fresh is None:
                continue
            fresh.state, fresh.ended_at = state, utcnow()
            if ctx is not None:
                ctx.record(
                    session,
                    "dicom.association.recovered",
                    target=f"ae:{row.ae_title}",
                    details={"reception": row.id, "state": state, "listener": listener},
                )
    return done

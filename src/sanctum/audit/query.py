"""Reading the audit trail: pages filtered in SQL, oldest first, resumable by sequence number."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.db.models import AuditEvent
from sanctum.schemas.audit import AuditEventPublic, AuditPage

MAX_PAGE = 1000


def page(
    session: Session,
    *,
    project_id: int | None = None,
    after: int = 0,
    limit: int = 100,
    action: str | None = None,
    newest_first: bool = False,
) -> AuditPage:
    limit = max(1, min(limit, MAX_PAGE))
    query = select(AuditEvent)
    if project_id is not None:
        query = query.where(AuditEvent.project_id == project_id)
    if action:
        query = query.where(AuditEvent.action.startswith(action, autoescape=True))
    if newest_first:
        if after:
            query = query.where(AuditEvent.seq < after)
        query = query.order_by(AuditEvent.seq.desc())
    else:
        query = query.where(AuditEvent.seq > after).order_by(AuditEvent.seq)
    rows = session.scalars(query.limit(limit + 1)).all()
    events = [public(e) for e in rows[:limit]]
    return AuditPage(events=events, next_after=events[-1].seq if len(rows) > limit else None)


def public(event: AuditEvent) -> AuditEventPublic:
    return AuditEventPublic(
        seq=event.seq,
        occurred_at=event.occurred_at,
        actor=event.actor_email,
        action=event.action,
        project=event.project_name,
        target=event.target,
        ip=event.ip,
        outcome=event.outcome,
        details=json.loads(event.details),
        hash=event.hash,
    )

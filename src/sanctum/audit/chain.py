"""The audit hash chain.

Each event stores the hash of the one before it; its own hash covers a canonical JSON of all its
fields and that previous hash. Editing, deleting or reordering any event breaks every link after
it, and ``verify`` names the first broken one.

Appends are serialised so the chain stays a line: on PostgreSQL by a transaction-scoped advisory
lock, on SQLite by the write lock every writing transaction takes at BEGIN IMMEDIATE.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from sanctum.db.models import AuditEvent

GENESIS = "0" * 64
_ADVISORY_LOCK_KEY = 0x53414E43  # "SANC"


@dataclass(frozen=True)
class AuditContext:
    """Who is acting and from where; built once per request and passed to services."""

    actor_id: int | None = None
    actor_email: str | None = None
    ip: str | None = None


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _payload(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "occurred_at": event.occurred_at,
        "actor_id": event.actor_id,
        "actor_email": event.actor_email,
        "action": event.action,
        "project_id": event.project_id,
        "project_name": event.project_name,
        "target": event.target,
        "ip": event.ip,
        "outcome": event.outcome,
        "details": json.loads(event.details),
        "prev_hash": event.prev_hash,
    }


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical(_payload(event)).encode()).hexdigest()


def _lock(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _ADVISORY_LOCK_KEY})


def record(
    session: Session,
    ctx: AuditContext,
    action: str,
    *,
    outcome: str = "ok",
    project_id: int | None = None,
    project_name: str | None = None,
    target: str | None = None,
    details: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event in the caller's transaction: it commits or rolls back with the change."""
    _lock(session)
    last = session.execute(
        select(AuditEvent.seq, AuditEvent.hash).order_by(AuditEvent.seq.desc()).limit(1)
    ).first()
    event = AuditEvent(
        seq=(last.seq + 1) if last else 1,
        occurred_at=datetime.now(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z"),
        actor_id=ctx.actor_id,
        actor_email=ctx.actor_email,
        action=action,
        project_id=project_id,
        project_name=project_name,
        target=target[:300] if target else target,
        ip=ctx.ip,
        outcome=outcome,
        details=canonical(details or {}),
        prev_hash=last.hash if last else GENESIS,
    )
    event.hash = compute_hash(event)
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class VerifyReport:
    ok: bool
    events: int
    head_hash: str
    first_broken_seq: int | None = None
    reason: str | None = None


def _events(session: Session, batch: int = 5000) -> Iterator[AuditEvent]:
    after = 0
    while True:
        rows = session.scalars(
            select(AuditEvent).where(AuditEvent.seq > after).order_by(AuditEvent.seq).limit(batch)
        ).all()
        if not rows:
            return
        yield from rows
        after = rows[-1].seq
        session.expunge_all()


def verify(session: Session) -> VerifyReport:
    """Recompute the chain from the first event; stop at the first event that does not hold."""
    prev_hash = GENESIS
    expected_seq = 1
    count = 0
    for event in _events(session):
        if event.seq != expected_seq:
            return VerifyReport(False, count, prev_hash, expected_seq, f"event {expected_seq} is missing")
        if event.prev_hash != prev_hash:
            return VerifyReport(
                False, count, prev_hash, event.seq, "its previous-hash does not match the event before it"
            )
        try:
            actual = compute_hash(event)
        except (ValueError, TypeError):
            return VerifyReport(False, count, prev_hash, event.seq, "its details are not valid JSON")
        if actual != event.hash:
            return VerifyReport(False, count, prev_hash, event.seq, "its content does not match its hash")
        prev_hash = event.hash
        expected_seq += 1
        count += 1
    return VerifyReport(True, count, prev_hash)

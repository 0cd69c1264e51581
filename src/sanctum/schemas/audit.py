"""Audit events as people and tools read them."""

from __future__ import annotations

from typing import Any

from sanctum.schemas.common import PublicModel


class AuditEventPublic(PublicModel):
    seq: int
    occurred_at: str
    actor: str | None
    action: str
    project: str | None
    target: str | None
    ip: str | None
    outcome: str
    details: dict[str, Any]
    hash: str


class AuditPage(PublicModel):
    events: list[AuditEventPublic]
    next_after: int | None


class AuditVerifyPublic(PublicModel):
    ok: bool
    events: int
    head_hash: str
    first_broken_seq: int | None
    reason: str | None

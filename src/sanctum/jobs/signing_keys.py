"""Users' registered public keys: the server learns who may sign, never how."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.access.permissions import Permission
from sanctum.access.policy import Principal, authorize_platform
from sanctum.audit import AuditContext, record
from sanctum.db.types import utcnow
from sanctum.errors import Conflict, NotFound
from sanctum.jobs.models import SigningKey
from sanctum.security import signing

MAX_KEYS_PER_USER = 20


def _audit(principal: Principal) -> AuditContext:
    return AuditContext(actor_id=principal.user_id, actor_email=principal.email, ip=principal.ip)


def register(session: Session, principal: Principal, *, name: str, public_key: str) -> SigningKey:
    authorize_platform(principal, Permission.SELF_MANAGE)
    name = names.label(name, field="name", max_length=64) or "key"
    raw = signing.decode_public_key(public_key)
    fp = signing.fingerprint(raw)
    if session.scalar(select(SigningKey.id).where(SigningKey.fingerprint == fp)) is not None:
        raise Conflict("this public key is already registered", code="key_exists")
    active = session.scalars(
        select(SigningKey.id).where(SigningKey.user_id == principal.user_id, SigningKey.revoked_at.is_(None))
    ).all()
    if len(active) >= MAX_KEYS_PER_USER:
        raise Conflict(f"at most {MAX_KEYS_PER_USER} active keys; revoke one first", code="too_many_keys")
    key = SigningKey(user_id=principal.user_id, name=name, public_key=raw, fingerprint=fp)
    session.add(key)
    session.flush()
    record(session, _audit(principal), "key.register", target=fp, details={"name": name})
    return key


def list_for(session: Session, principal: Principal) -> list[SigningKey]:
    authorize_platform(principal, Permission.SELF_READ)
    return list(
        session.scalars(
            select(SigningKey).where(SigningKey.user_id == principal.user_id).order_by(SigningKey.id)
        ).all()
    )


def revoke(session: Session, principal: Principal, fingerprint: str) -> SigningKey:
    """A revoked key signs nothing new, and queued jobs it signed are refused when they start."""
    authorize_platform(principal, Permission.SELF_MANAGE)
    key = session.scalar(
        select(SigningKey).where(
            SigningKey.user_id == principal.user_id, SigningKey.fingerprint == fingerprint
        )
    )
    if key is None:
        raise NotFound("no such key")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        record(session, _audit(principal), "key.revoke", target=fingerprint)
    return key


def active_key(session: Session, fingerprint: str) -> SigningKey | None:
    return session.scalar(
        select(SigningKey).where(SigningKey.fingerprint == fingerprint, SigningKey.revoked_at.is_(None))
    )

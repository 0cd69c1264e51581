"""Password login with throttling and the second factor.

Failures are counted per e-mail address, whether or not an account exists, so the lockout itself
reveals nothing. After ``login_max_failures`` consecutive failures the address is locked, and each
further failure doubles the lock up to ``login_lock_max_seconds``. Every outcome is audited.

Failures are audited and counted in the caller's transaction and raised as errors marked
``persist``, so the unit of work commits the record before answering.
"""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.accounts import twofactor
from sanctum.accounts.tokens import Issued, TokenKind, issue
from sanctum.accounts.users import by_email, must_have_2fa
from sanctum.audit import AuditContext, record
from sanctum.config import Settings
from sanctum.db.models import LoginThrottle, User
from sanctum.db.types import utcnow
from sanctum.errors import TooManyRequests, Unauthenticated
from sanctum.security import passwords
from sanctum.security.keys import SecretBox


class LoginFailed(Unauthenticated):
    """Raised after the failure has been counted and audited in the same transaction."""

    persist = True


class LoginLocked(TooManyRequests):
    persist = True


def _key(email: str) -> str:
    return email.strip().lower()[:254]


def _audit_email(email: str) -> str:
    """Never write what someone typed into the e-mail field verbatim unless it is an address
    (people type passwords there)."""
    return _key(email) if names.looks_like_email(email) else "<not an e-mail address>"


def _lock_seconds(settings: Settings, failures: int) -> int:
    over = failures - settings.login_max_failures
    if over < 0:
        return 0
    return min(settings.login_lock_base_seconds * (2 ** min(over, 20)), settings.login_lock_max_seconds)


def _register_failure(session: Session, settings: Settings, key: str) -> None:
    now = utcnow()
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(LoginThrottle).values(email=key, failures=1, last_failure_at=now)
    stmt = stmt.on_conflict_do_update(
        index_elements=[LoginThrottle.email],
        set_={"failures": LoginThrottle.failures + 1, "last_failure_at": now},
    )
    session.execute(stmt)
    row = session.get(LoginThrottle, key, populate_existing=True)
    assert row is not None
    seconds = _lock_seconds(settings, row.failures)
    if seconds:
        row.locked_until = now + timedelta(seconds=seconds)


def check_lock(session: Session, ctx: AuditContext, email: str) -> None:
    """Refuse (429, audited) while the address is locked; every factor checks this first."""
    key = _key(email)
    locked_until = session.scalar(select(LoginThrottle.locked_until).where(LoginThrottle.email == key))
    if locked_until is not None and locked_until > utcnow():
        retry = max(1, int((locked_until - utcnow()).total_seconds()) + 1)
        record(session, ctx, "auth.login", outcome="locked", target=_audit_email(email))
        raise LoginLocked(
            f"too many failed logins; try again in {retry} seconds", retry_after=retry, code="locked"
        )


def check_password(
    session: Session, settings: Settings, ctx: AuditContext, email: str, password: str
) -> User:
    """First factor. Always runs one argon2 verification, whether the account exists or not."""
    key = _key(email)
    check_lock(session, ctx, email)
    user = by_email(session, key) if names.looks_like_email(email) else None
    ok = passwords.verify_password(user.password_hash if user else None, password)
    if not ok or user is None or not user.is_active:
        _register_failure(session, settings, key)
        record(
            session,
            ctx,
            "auth.login",
            outcome="failed",
            target=_audit_email(email),
            details={"reason": "bad_credentials"},
        )
        raise LoginFailed("wrong e-mail address or password", code="bad_credentials")
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash_password(password)
    return user


def check_second_factor(
    session: Session, settings: Settings, ctx: AuditContext, user: User, box: SecretBox, code: str | None
) -> str | None:
    """Second factor for enrolled users: the method used, or None when not enrolled."""
    if not user.totp_enabled:
        return None
    if not code:
        raise Unauthenticated("a TOTP code (or a recovery code) is required", code="totp_required")
    method = twofactor.verify(session, user, box, code)
    if method is None:
        _register_failure(session, settings, _key(user.email))
        record(
            session, ctx, "auth.login", outcome="failed", target=user.email, details={"reason": "bad_totp"}
        )
        raise LoginFailed("that code is not valid or was already used", code="invalid_totp")
    return method


def complete(
    session: Session,
    settings: Settings,
    ctx: AuditContext,
    user: User,
    kind: TokenKind,
    method: str,
) -> Issued:
    """Both factors hold: clear the failure count, issue the credential, audit the login."""
    session.execute(delete(LoginThrottle).where(LoginThrottle.email == _key(user.email)))
    enrol_only = not user.totp_enabled and must_have_2fa(session, settings.require_2fa, user)
    hours = settings.web_session_hours if kind is TokenKind.SESSION else settings.login_token_hours
    issued = issue(
        session,
        user,
        kind,
        expires_at=utcnow() + timedelta(hours=hours),
        enrol_only=enrol_only,
        name="web session" if kind is TokenKind.SESSION else "login",
    )
    actor = AuditContext(actor_id=user.id, actor_email=user.email, ip=ctx.ip)
    record(
        session,
        actor,
        "auth.login",
        target=user.email,
        details={"method": method, "credential": kind.value, "enrol_only": enrol_only},
    )
    return issued


def login(
    session: Session,
    settings: Settings,
    ctx: AuditContext,
    box: SecretBox,
    *,
    email: str,
    password: str,
    code: str | None,
    kind: TokenKind = TokenKind.LOGIN,
) -> Issued:
    """The one-step login of ``POST /api/v1/auth/token``: password and, when enrolled, a code."""
    user = check_password(session, settings, ctx, email, password)
    method = check_second_factor(session, settings, ctx, user, box, code)
    return complete(
        session, settings, ctx, user, kind, "password" if method is None else f"password+{method}"
    )

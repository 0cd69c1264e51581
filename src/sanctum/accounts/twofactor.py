"""TOTP enrolment and verification, and the one-time recovery codes that back it up."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from sanctum.audit import AuditContext, record
from sanctum.db.models import RecoveryCode, User
from sanctum.db.types import utcnow
from sanctum.errors import Conflict, InvalidInput, Unauthenticated
from sanctum.security import bearer, passwords, totp
from sanctum.security.keys import SecretBox

RECOVERY_CODES = 10


@dataclass(frozen=True)
class Enrolment:
    secret: str
    otpauth_uri: str

    @property
    def qr_svg(self) -> str:
        return totp.qr_svg(self.otpauth_uri)


def _context(user: User) -> str:
    return f"totp:{user.id}"


def _secret(box: SecretBox, user: User) -> str | None:
    if user.totp_secret_enc is None:
        return None
    return box.open(user.totp_secret_enc, _context(user)).decode()


def begin(
    session: Session,
    ctx: AuditContext,
    user: User,
    box: SecretBox,
    *,
    password: str | None = None,
    code: str | None = None,
) -> Enrolment:
    """Start (or restart) enrolment; replacing an active second factor needs password and code."""
    if user.totp_enabled:
        if not password or not code:
            raise Conflict(
                "two-factor authentication is already enabled; send your password and a current code to "
                "replace it",
                code="totp_enabled",
            )
        if not passwords.verify_password(user.password_hash, password) or not verify(
            session, user, box, code
        ):
            record(session, ctx, "user.2fa.reset", outcome="failed", target=user.email)
            raise Unauthenticated("password or code is wrong", code="reauth_failed", persist=True)
    secret = totp.new_secret()
    user.totp_secret_enc = box.seal(secret.encode(), _context(user))
    user.totp_enabled = False
    user.totp_last_step = None
    session.execute(delete(RecoveryCode).where(RecoveryCode.user_id == user.id))
    record(session, ctx, "user.2fa.enrol", target=user.email)
    return Enrolment(secret, totp.otpauth_uri(secret, user.email))


def confirm(session: Session, ctx: AuditContext, user: User, box: SecretBox, code: str) -> list[str]:
    """Prove the authenticator works; only then is 2FA on. Returns the recovery codes, shown once."""
    secret = _secret(box, user)
    if secret is None or user.totp_enabled:
        raise Conflict("no enrolment in progress; start one with POST /api/v1/me/totp", code="no_enrolment")
    step = totp.matching_step(secret, code, after_step=user.totp_last_step)
    if step is None:
        record(session, ctx, "user.2fa.confirm", outcome="failed", target=user.email)
        raise InvalidInput(
            "that code is not valid; check the device's clock and try the next code",
            code="invalid_totp",
            persist=True,
        )
    user.totp_enabled = True
    user.totp_last_step = step
    codes = [bearer.new_recovery_code() for _ in range(RECOVERY_CODES)]
    session.add_all(RecoveryCode(user_id=user.id, code_hash=bearer.recovery_digest(c)) for c in codes)
    record(session, ctx, "user.2fa.enable", target=user.email)
    return codes


def verify(session: Session, user: User, box: SecretBox, code: str) -> str | None:
    """``"totp"`` or ``"recovery_code"`` when the code holds (and is used up), else None."""
    secret = _secret(box, user)
    if secret is None or not user.totp_enabled:
        return None
    step = totp.matching_step(secret, code, after_step=user.totp_last_step)
    if step is not None:
        user.totp_last_step = step
        return "totp"
    if len(bearer.normalise_recovery_code(code)) != 16:
        return None
    recovery = session.scalar(
        select(RecoveryCode).where(
            RecoveryCode.user_id == user.id,
            RecoveryCode.code_hash == bearer.recovery_digest(code),
            RecoveryCode.used_at.is_(None),
        )
    )
    if recovery is None:
        return None
    recovery.used_at = utcnow()
    return "recovery_code"


def recovery_codes_left(session: Session, user: User) -> int:
    rows = session.scalars(
        select(RecoveryCode.id).where(RecoveryCode.user_id == user.id, RecoveryCode.used_at.is_(None))
    ).all()
    return len(rows)

"""The caller's own account and second factor. An enrol-only login reaches these and nothing else."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy.orm import Session

from sanctum.access.policy import Principal
from sanctum.accounts import twofactor
from sanctum.accounts.users import must_have_2fa
from sanctum.api.deps import DbSession, RuntimeDep, SelfManager, SelfReader
from sanctum.config import TwoFactorPolicy
from sanctum.db.models import Token, User
from sanctum.projects.service import audit_context
from sanctum.schemas.auth import MePublic, RecoveryCodes, TotpBegin, TotpConfirm, TotpEnrolment

router = APIRouter(prefix="/api/v1/me", tags=["me"])


def _user(db: Session, principal: Principal) -> User:
    user = db.get(User, principal.user_id)
    assert user is not None  # the principal was just authenticated from this row
    return user


def me_public(db: Session, policy: TwoFactorPolicy, user: User) -> MePublic:
    return MePublic(
        id=user.id,
        email=user.email,
        is_admin=user.is_admin,
        can_create_projects=user.can_create_projects,
        totp_enabled=user.totp_enabled,
        must_enrol_2fa=not user.totp_enabled and must_have_2fa(db, policy, user),
        recovery_codes_left=twofactor.recovery_codes_left(db, user) if user.totp_enabled else 0,
    )


@router.get("")
def get_me(db: DbSession, runtime: RuntimeDep, principal: SelfReader) -> MePublic:
    return me_public(db, runtime.settings.require_2fa, _user(db, principal))


@router.post("/totp", status_code=201)
def begin_totp(
    db: DbSession, runtime: RuntimeDep, principal: SelfManager, body: TotpBegin | None = None
) -> TotpEnrolment:
    """Start enrolment: returns the secret and the otpauth URI for the authenticator app."""
    body = body or TotpBegin()
    enrolment = twofactor.begin(
        db,
        audit_context(principal),
        _user(db, principal),
        runtime.totp_box,
        password=body.password,
        code=body.code,
    )
    db.commit()
    return TotpEnrolment(secret=enrolment.secret, otpauth_uri=enrolment.otpauth_uri)


@router.post("/totp/confirm")
def confirm_totp(
    body: TotpConfirm, db: DbSession, runtime: RuntimeDep, principal: SelfManager
) -> RecoveryCodes:
    """Prove the authenticator works; 2FA is on from now. The recovery codes are shown only here."""
    codes = twofactor.confirm(db, audit_context(principal), _user(db, principal), runtime.totp_box, body.code)
    # The enrol-only login that just proved both factors may now do everything its user may.
    token = db.get(Token, principal.token_id)
    if token is not None:
        token.enrol_only = False
    db.commit()
    return RecoveryCodes(recovery_codes=codes)

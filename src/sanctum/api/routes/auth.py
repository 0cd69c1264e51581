"""Logging in (password + TOTP) and out."""

from __future__ import annotations

from fastapi import APIRouter, Request

from sanctum.accounts import login as login_service
from sanctum.accounts import tokens
from sanctum.accounts.tokens import TokenKind
from sanctum.api.deps import AnonymousAudit, DbSession, Public, RuntimeDep, SelfReader, presented_secret
from sanctum.audit import record
from sanctum.projects.service import audit_context
from sanctum.schemas.auth import LoginRequest, LoginResponse

router = APIRouter(prefix="/api/v1/auth", tags=["auth"])


@router.post("/token", dependencies=[Public])
def create_login_token(
    body: LoginRequest, db: DbSession, runtime: RuntimeDep, ctx: AnonymousAudit
) -> LoginResponse:
    """A short-lived login token (hours). With 2FA enrolled, ``totp`` is required."""
    issued = login_service.login(
        db,
        runtime.settings,
        ctx,
        runtime.totp_box,
        email=body.email,
        password=body.password,
        code=body.totp,
        kind=TokenKind.LOGIN,
    )
    db.commit()
    return LoginResponse(
        token=issued.secret, expires_at=issued.token.expires_at, enrol_only=issued.token.enrol_only
    )


@router.post("/logout", status_code=204)
def logout(request: Request, db: DbSession, principal: SelfReader) -> None:
    """End the credential presented with this request."""
    secret, _ = presented_secret(request)
    if secret:
        tokens.revoke_secret(db, secret)
        record(db, audit_context(principal), "auth.logout", target=principal.email)
    db.commit()

"""My second factor (enrolment with a QR code, recovery codes) and my API tokens."""

from __future__ import annotations

import dataclasses
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import Response
from markupsafe import Markup
from sqlalchemy.orm import Session

from sanctum.access.permissions import SCOPE_ALIASES, Permission
from sanctum.access.policy import Principal
from sanctum.accounts import tokens, twofactor
from sanctum.accounts.tokens import Issued, TokenKind
from sanctum.accounts.twofactor import Enrolment
from sanctum.api.deps import SESSION_COOKIE, DbSession, RuntimeDep
from sanctum.db.models import Token, User
from sanctum.errors import InvalidInput, SanctumError
from sanctum.projects import service as projects
from sanctum.projects.service import audit_context
from sanctum.web.render import notice, render
from sanctum.web.session import Page, end_failed, redirect, seconds_until, set_cookie

router = APIRouter(include_in_schema=False)

TextField = Annotated[str, Form(max_length=1000)]
SelfManager = Annotated[Principal, Depends(Page(Permission.SELF_MANAGE, during_enrolment=True))]
TokenManager = Annotated[Principal, Depends(Page(Permission.TOKENS_MANAGE))]
SCOPE_CHOICES = [*sorted(SCOPE_ALIASES), *(p.value for p in Permission)]


def _user(db: Session, principal: Principal) -> User:
    user = db.get(User, principal.user_id)
    assert user is not None  # the principal was just authenticated from this row
    return user


# --------------------------------------------------------------------------- second factor


def _twofactor(
    request: Request,
    db: Session,
    principal: Principal,
    *,
    status: int = 200,
    error: str | None = None,
    enrolment: Enrolment | None = None,
    confirming: bool = False,
    codes: list[str] | None = None,
) -> Response:
    user = _user(db, principal)
    return render(
        request,
        "twofactor.html",
        status=status,
        section="2fa",
        principal=principal,
        enabled=user.totp_enabled,
        codes_left=twofactor.recovery_codes_left(db, user) if user.totp_enabled else 0,
        must_enrol=principal.enrol_only,
        enrolment=enrolment,
        # segno's SVG: our own markup around the otpauth URI's modules, no script, no style.
        qr=Markup(enrolment.qr_svg) if enrolment else None,  # noqa: S704
        confirming=confirming or enrolment is not None,
        codes=codes,
        error=error,
    )


@router.get("/me/2fa")
def twofactor_page(request: Request, db: DbSession, principal: SelfManager) -> Response:
    return _twofactor(request, db, principal)


@router.post("/me/2fa")
def twofactor_begin(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    principal: SelfManager,
    password: TextField = "",
    code: TextField = "",
) -> Response:
    """Start (or restart) enrolment; replacing an enabled factor needs the password and a code."""
    try:
        enrolment = twofactor.begin(
            db,
            audit_context(principal),
            _user(db, principal),
            runtime.totp_box,
            password=password or None,
            code=code.strip() or None,
        )
    except SanctumError as exc:
        end_failed(db, exc)
        return _twofactor(request, db, principal, status=exc.status, error=exc.message)
    db.commit()
    return _twofactor(request, db, principal, enrolment=enrolment)


@router.post("/me/2fa/confirm")
def twofactor_confirm(
    request: Request, db: DbSession, runtime: RuntimeDep, principal: SelfManager, code: TextField = ""
) -> Response:
    user = _user(db, principal)
    try:
        codes = twofactor.confirm(db, audit_context(principal), user, runtime.totp_box, code.strip())
    except SanctumError as exc:
        end_failed(db, exc)
        return _twofactor(request, db, principal, status=exc.status, error=exc.message, confirming=True)
    fresh = _rotate_session(request, db, principal, user)
    db.commit()
    if fresh is None:
        return _twofactor(request, db, principal, codes=codes)
    upgraded = dataclasses.replace(
        principal, enrol_only=False, csrf_secret=fresh.token.csrf_secret, token_id=fresh.token.id
    )
    response = _twofactor(request, db, upgraded, codes=codes)
    set_cookie(response, SESSION_COOKIE, fresh.secret, max_age=seconds_until(fresh.token.expires_at))
    return response


def _rotate_session(request: Request, db: Session, principal: Principal, user: User) -> Issued | None:
    """The second factor changed: replace the web session with a fresh one (same expiry), which
    also lifts the enrol-only restriction the session was issued with."""
    secret = request.cookies.get(SESSION_COOKIE)
    if not (principal.via_cookie and secret):
        return None
    old = db.get(Token, principal.token_id)
    assert old is not None
    fresh = tokens.issue(db, user, TokenKind.SESSION, expires_at=old.expires_at, name="web session")
    tokens.revoke_secret(db, secret)
    return fresh


# --------------------------------------------------------------------------- API tokens


def _tokens(
    request: Request,
    db: Session,
    principal: Principal,
    *,
    status: int = 200,
    error: str | None = None,
    created: Issued | None = None,
    done: str = "",
    form: dict[str, object] | None = None,
) -> Response:
    return render(
        request,
        "tokens.html",
        status=status,
        section="tokens",
        tokens=tokens.list_for(db, principal),
        projects=[p.name for p, _ in projects.list_for(db, principal)],
        scope_choices=SCOPE_CHOICES,
        created=created,
        form=form or {"days": str(tokens.DEFAULT_DAYS), "scopes": []},
        error=error,
        notice=notice(done),
    )


@router.get("/me/tokens")
def tokens_page(request: Request, db: DbSession, principal: TokenManager, done: str = "") -> Response:
    return _tokens(request, db, principal, done=done)


@router.post("/me/tokens")
def create_token(
    request: Request,
    db: DbSession,
    principal: TokenManager,
    name: TextField = "",
    project: TextField = "",
    days: TextField = "",
    scopes: Annotated[list[str] | None, Form(max_length=50)] = None,
) -> Response:
    """Create a token and show its secret on this one response; it is never shown again."""
    form: dict[str, object] = {"name": name, "project": project, "days": days, "scopes": scopes or []}
    try:
        try:
            expires_in_days = int(days) if days.strip() else None
        except ValueError:
            raise InvalidInput("days must be a whole number") from None
        issued = tokens.create_api_token(
            db,
            audit_context(principal),
            principal,
            name=name,
            scopes=scopes or None,
            project=project or None,
            expires_in_days=expires_in_days,
        )
    except SanctumError as exc:
        end_failed(db, exc)
        return _tokens(request, db, principal, status=exc.status, error=exc.message, form=form)
    db.commit()
    return _tokens(request, db, principal, created=issued)


@router.post("/me/tokens/{token_id}/revoke")
def revoke_token(request: Request, db: DbSession, principal: TokenManager, token_id: int) -> Response:
    try:
        tokens.revoke(db, audit_context(principal), principal, token_id)
    except SanctumError as exc:
        end_failed(db, exc)
        return _tokens(request, db, principal, status=exc.status, error=exc.message)
    db.commit()
    return redirect("/me/tokens?done=token_revoked")

"""Logging in (password, then the TOTP step) and out."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import Principal
from sanctum.accounts import login as login_service
from sanctum.accounts import tokens
from sanctum.accounts.tokens import Issued, TokenKind
from sanctum.api.deps import (
    SESSION_COOKIE,
    AnonymousAudit,
    DbSession,
    Public,
    RuntimeDep,
    client_ip,
    presented_secret,
)
from sanctum.api.runtime import Runtime
from sanctum.audit import record
from sanctum.db.models import User
from sanctum.db.types import utcnow
from sanctum.errors import SanctumError, TooManyRequests
from sanctum.projects.service import audit_context
from sanctum.web.render import notice, render
from sanctum.web.session import (
    ENROL_PATH,
    LOGIN_COOKIE_PATH,
    LOGIN_CSRF_COOKIE,
    PENDING_COOKIE,
    PENDING_MINUTES,
    Page,
    clear_cookie,
    end_failed,
    login_csrf_ok,
    login_url,
    new_login_csrf,
    redirect,
    safe_next,
    seconds_until,
    set_cookie,
    with_next,
)

router = APIRouter(include_in_schema=False)

TextField = Annotated[str, Form(max_length=1000)]
NextField = Annotated[str, Form(alias="next", max_length=2000)]
NextQuery = Annotated[str, Query(alias="next", max_length=2000)]
FORM_EXPIRED = "this login form has expired; please try again"
PENDING_KINDS = frozenset({TokenKind.PENDING})
TOTP_PATH = "/login/totp"


def _login_form(
    request: Request, template: str, *, status: int = 200, error: str | None = None, **context: object
) -> Response:
    """A login form with its double-submit CSRF token (kept across tabs while the cookie lasts)."""
    token = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    if len(token) < 32 or len(token) > 100:
        token = new_login_csrf()
    response = render(
        request, template, status=status, error=error, csrf=token, principal=None, section="login", **context
    )
    set_cookie(response, LOGIN_CSRF_COOKIE, token, max_age=None, path=LOGIN_COOKIE_PATH)
    return response


def _refused(request: Request, template: str, exc: SanctumError, **context: object) -> Response:
    response = _login_form(request, template, status=exc.status, error=exc.message, **context)
    if isinstance(exc, TooManyRequests):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


def _start_session(request: Request, db: Session, issued: Issued, target: str) -> Response:
    old = request.cookies.get(SESSION_COOKIE)
    if old:  # logging in again from the same browser ends the session it had
        tokens.revoke_secret(db, old)
    db.commit()
    response = redirect(ENROL_PATH if issued.token.enrol_only else target)
    set_cookie(response, SESSION_COOKIE, issued.secret, max_age=seconds_until(issued.token.expires_at))
    clear_cookie(response, PENDING_COOKIE, path=LOGIN_COOKIE_PATH)
    clear_cookie(response, LOGIN_CSRF_COOKIE, path=LOGIN_COOKIE_PATH)
    return response


@router.get("/login", dependencies=[Public])
def login_page(request: Request, next_: NextQuery = "/", done: str = "") -> Response:
    return _login_form(request, "login.html", next=safe_next(next_), email="", notice=notice(done))


@router.post("/login", dependencies=[Public])
def login_submit(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: AnonymousAudit,
    email: TextField = "",
    password: TextField = "",
    csrf: TextField = "",
    next_: NextField = "/",
) -> Response:
    target = safe_next(next_)
    context = {"next": target, "email": email}
    if not login_csrf_ok(request, csrf):
        return _login_form(request, "login.html", status=403, error=FORM_EXPIRED, **context)
    try:
        user = login_service.check_password(db, runtime.settings, ctx, email, password)
    except SanctumError as exc:
        end_failed(db, exc)
        return _refused(request, "login.html", exc, **context)
    if not user.totp_enabled:
        issued = login_service.complete(db, runtime.settings, ctx, user, TokenKind.SESSION, "password")
        return _start_session(request, db, issued, target)
    pending = tokens.issue(
        db,
        user,
        TokenKind.PENDING,
        name="web login",
        expires_at=utcnow() + timedelta(minutes=PENDING_MINUTES),
    )
    db.commit()
    response = redirect(with_next(TOTP_PATH, target))
    set_cookie(response, PENDING_COOKIE, pending.secret, max_age=PENDING_MINUTES * 60, path=LOGIN_COOKIE_PATH)
    return response


def _pending(request: Request, db: Session, runtime: Runtime) -> tuple[str, Principal] | None:
    """The login waiting for its second factor, if the pending cookie is still good."""
    secret = request.cookies.get(PENDING_COOKIE)
    if not secret:
        return None
    result = tokens.authenticate(
        db,
        secret,
        kinds=PENDING_KINDS,
        policy=runtime.settings.require_2fa,
        ip=client_ip(request),
    )
    return (secret, result[0]) if isinstance(result, tuple) else None


@router.get(TOTP_PATH, dependencies=[Public])
def totp_page(request: Request, db: DbSession, runtime: RuntimeDep, next_: NextQuery = "/") -> Response:
    target = safe_next(next_)
    if _pending(request, db, runtime) is None:
        return redirect(login_url(target))
    return _login_form(request, "login_totp.html", next=target)


@router.post(TOTP_PATH, dependencies=[Public])
def totp_submit(
    request: Request,
    db: DbSession,
    runtime: RuntimeDep,
    ctx: AnonymousAudit,
    code: TextField = "",
    csrf: TextField = "",
    next_: NextField = "/",
) -> Response:
    target = safe_next(next_)
    if not login_csrf_ok(request, csrf):
        return _login_form(request, "login_totp.html", status=403, error=FORM_EXPIRED, next=target)
    pending = _pending(request, db, runtime)
    if pending is None:
        response = redirect(login_url(target, done="login_expired"))
        clear_cookie(response, PENDING_COOKIE, path=LOGIN_COOKIE_PATH)
        return response
    secret, principal = pending
    user = db.get(User, principal.user_id)
    assert user is not None  # the pending token was just authenticated from this row
    try:
        # The TOTP step obeys the same lockout as the password step (failed codes count towards
        # it), or a pending login could try codes for minutes. accounts.login has no public lock
        # check yet, hence the private helper.
        login_service.check_lock(db, ctx, user.email)
        method = login_service.check_second_factor(
            db, runtime.settings, ctx, user, runtime.totp_box, code.strip()
        )
    except SanctumError as exc:
        end_failed(db, exc)
        return _refused(request, "login_totp.html", exc, next=target)
    tokens.revoke_secret(db, secret)
    issued = login_service.complete(
        db,
        runtime.settings,
        ctx,
        user,
        TokenKind.SESSION,
        "password" if method is None else f"password+{method}",
    )
    return _start_session(request, db, issued, target)


Anyone = Annotated[Principal, Depends(Page(Permission.SELF_READ, during_enrolment=True))]


@router.post("/logout")
def logout(request: Request, db: DbSession, principal: Anyone) -> Response:
    """End the session that was presented (the form carries its CSRF token, so no one else can)."""
    secret, _ = presented_secret(request)
    if secret:
        tokens.revoke_secret(db, secret)
        record(db, audit_context(principal), "auth.logout", target=principal.email)
    db.commit()
    response = redirect(login_url(done="logged_out"))
    clear_cookie(response, SESSION_COOKIE)
    return response

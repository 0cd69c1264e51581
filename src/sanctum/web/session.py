"""Web sessions: cookies, CSRF checks, safe redirects and the page guards.

The page guards are ``deps.Require`` / ``deps.InProject`` subclasses, so the route walker sees
their permission. On top of the API's checks they

- verify the form's ``csrf`` field against the session's CSRF secret on every non-GET request
  (``get_principal`` checks the X-CSRF-Token header only under /api/);
- send a login that must still enrol its second factor to the enrolment page (``Redirect``).

An unauthenticated request fails in ``get_principal`` with 401, which the HTML error renderer
turns into a redirect to the login page.
"""

from __future__ import annotations

import secrets
from datetime import datetime
from typing import Annotated
from urllib.parse import urlencode, urlsplit

from fastapi import Depends, Request
from fastapi.responses import RedirectResponse, Response
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import Principal
from sanctum.api.deps import (
    SAFE_METHODS,
    CurrentPrincipal,
    DbSession,
    InProject,
    Require,
    RuntimeDep,
)
from sanctum.db.session import finish
from sanctum.db.types import utcnow
from sanctum.errors import Denied, SanctumError
from sanctum.projects.service import ProjectContext
from sanctum.security import bearer

# The password-ok-but-waiting-for-TOTP credential, and the login form's double-submit CSRF
# cookie (there is no session yet to hold a CSRF secret). Both only travel to /login*.
PENDING_COOKIE = "sanctum_pending"
LOGIN_CSRF_COOKIE = "sanctum_login_csrf"
LOGIN_COOKIE_PATH = "/login"
CSRF_FIELD = "csrf"
LOGIN_PATH = "/login"
ENROL_PATH = "/me/2fa"
PENDING_MINUTES = 5

STREAMED_FIELDS = "sanctum.streamed_fields"  # request.scope key: the fields a streamed form read
CSRF_MESSAGE = "this form has expired or was not sent from this site; reload the page and try again"


class Redirect(Exception):
    """Raised by a guard to send the browser elsewhere (303 See Other)."""

    def __init__(self, location: str) -> None:
        super().__init__(location)
        self.location = location


def redirect(location: str) -> RedirectResponse:
    return RedirectResponse(location, status_code=303)


# --------------------------------------------------------------------------- cookies


def set_cookie(response: Response, name: str, value: str, *, max_age: int | None, path: str = "/") -> None:
    """HttpOnly, SameSite=Strict and always Secure.

    Always Secure is safe here: the server refuses to listen on anything but loopback without
    TLS (``config.check_startable``), and browsers treat http://127.0.0.1 and http://localhost as
    secure contexts that keep Secure cookies (checked with Debian's Chromium 156: the cookie is
    stored and sent back over plain http on loopback).
    """
    response.set_cookie(
        name, value, max_age=max_age, path=path, secure=True, httponly=True, samesite="strict"
    )


def clear_cookie(response: Response, name: str, *, path: str = "/") -> None:
    response.delete_cookie(name, path=path, secure=True, httponly=True, samesite="strict")


def seconds_until(moment: datetime) -> int:
    return max(0, int((moment - utcnow()).total_seconds()))


# --------------------------------------------------------------------------- redirects


def safe_next(value: str | None) -> str:
    """A same-site relative path to go to after logging in; anything else becomes ``/``."""
    if not value or len(value) > 2000:
        return "/"
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/"
    if any(ord(c) < 33 or ord(c) == 127 for c in value):
        return "/"  # browsers drop tabs and newlines: "/\t/evil.example" would become "//evil…"
    parts = urlsplit(value)
    if parts.scheme or parts.netloc or parts.path.startswith((LOGIN_PATH, "/logout")):
        return "/"
    return value


def with_next(path: str, next_path: str = "/", **flags: str) -> str:
    """``path`` with ``?next=`` (when it goes somewhere other than home) and fixed flags."""
    query = {"next": next_path} if safe_next(next_path) != "/" else {}
    query.update(flags)
    return path + ("?" + urlencode(query) if query else "")


def login_url(next_path: str = "/", **flags: str) -> str:
    return with_next(LOGIN_PATH, next_path, **flags)


# --------------------------------------------------------------------------- CSRF


def new_login_csrf() -> str:
    return secrets.token_urlsafe(32)


def login_csrf_ok(request: Request, sent: str) -> bool:
    """Double submit: the hidden field must equal the cookie the login page set."""
    cookie = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(cookie) and len(cookie) >= 32 and bearer.same(sent, cookie)


async def posted_csrf(request: Request) -> str:
    """The ``csrf`` field of a posted form ('' for safe methods). Starlette caches the parsed
    form, so the handler's own Form parameters read the same one. A form that streams its file
    (``streamed_form``) has read its fields before the file and left them in the request's scope:
    parsing the body here would buffer the file."""
    if request.method in SAFE_METHODS:
        return ""
    streamed = request.scope.get(STREAMED_FIELDS)
    form = streamed if streamed is not None else await request.form()
    value = form.get(CSRF_FIELD)
    return value if isinstance(value, str) else ""


async def web_principal(
    request: Request, principal: CurrentPrincipal, sent: Annotated[str, Depends(posted_csrf)]
) -> Principal:
    """The authenticated principal, with the form's CSRF token checked on every non-GET request."""
    if request.method not in SAFE_METHODS:
        expected = principal.csrf_secret
        if not (expected and sent and bearer.same(sent, expected)):
            raise Denied(CSRF_MESSAGE, code="csrf")
    return principal


WebPrincipal = Annotated[Principal, Depends(web_principal)]


class Page(Require):
    """A page (or form) that needs a platform permission."""

    def __init__(self, permission: Permission, *, during_enrolment: bool = False) -> None:
        super().__init__(permission)
        self.during_enrolment = during_enrolment

    async def __call__(self, principal: WebPrincipal) -> Principal:
        if principal.enrol_only and not self.during_enrolment:
            raise Redirect(ENROL_PATH)
        return await super().__call__(principal)


class ProjectPage(InProject):
    """A page (or form) in one project's context; another project's page is 404."""

    async def __call__(  # type: ignore[override]
        self, request: Request, project: str, principal: WebPrincipal, db: DbSession, runtime: RuntimeDep
    ) -> ProjectContext:
        if principal.enrol_only:
            raise Redirect(ENROL_PATH)
        return await super().__call__(request, project, db, runtime)


def end_failed(db: Session, exc: SanctumError) -> None:
    """A service refused inside a handler that answers with a page: keep what records the
    failure (``persist``), drop the rest, as the unit of work would."""
    finish(db, exc)

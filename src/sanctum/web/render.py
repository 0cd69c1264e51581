"""Templates, the page renderer, and error pages for everything outside /api/."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import jinja2
from fastapi import Request
from fastapi.responses import Response
from fastapi.templating import Jinja2Templates

from sanctum.access.policy import Principal
from sanctum.api.deps import SAFE_METHODS, SESSION_COOKIE
from sanctum.web.session import clear_cookie, login_url, redirect

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"

# Fixed messages chosen by a code in the query string (``?done=member_added``): a redirect after
# a form can say what happened without reflecting any text from the URL.
NOTICES = {
    "project_created": "Project created. You are its data owner.",
    "member_added": "Member added.",
    "role_changed": "Role changed.",
    "member_removed": "Member removed.",
    "token_revoked": "Token revoked.",
    "logged_out": "You have logged out.",
    "session_ended": "Your session has ended; please log in again.",
    "login_expired": "The login took too long; please enter your password again.",
}
ERROR_TITLES = {
    400: "Bad request",
    403: "Not allowed",
    404: "Not found",
    405: "Not allowed here",
    409: "Conflict",
    413: "Too large",
    422: "Invalid input",
    429: "Too many attempts",
    500: "Something went wrong",
}


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):  # audit events keep an ISO string
        return value[:19].replace("T", " ") + " UTC"
    return value.strftime("%Y-%m-%d %H:%M UTC")


def _label(value: str) -> str:
    """``data_scientist`` → ``Data scientist``."""
    text = str(value).replace("_", " ")
    return text[:1].upper() + text[1:]


def _sentence(value: str) -> str:
    """Service messages are lower-case clauses; on a page they read as sentences."""
    text = str(value).strip()
    if not text:
        return text
    text = text[:1].upper() + text[1:]
    return text if text[-1] in ".!?" else text + "."


def _compact(value: Any) -> str:
    return "" if not value else json.dumps(value, sort_keys=True, ensure_ascii=False)


def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(when=_when, label=_label, compact=_compact, sentence=_sentence)
    return env


templates = Jinja2Templates(env=_environment())


def render(request: Request, name: str, *, status: int = 200, **context: Any) -> Response:
    """A page; the signed-in principal (if any) and its CSRF token are in every template."""
    principal: Principal | None = context.pop("principal", None) or getattr(request.state, "principal", None)
    base = {
        "principal": principal,
        "csrf": principal.csrf_secret if principal and principal.csrf_secret else "",
        "section": "",
        "notice": None,
        "error": None,
    }
    base.update(context)
    return templates.TemplateResponse(request, name, base, status_code=status)


def notice(done: str | None) -> str | None:
    return NOTICES.get(done or "")


def render_error(request: Request, status: int, message: str) -> Response:
    """``app.state.html_error_renderer``: 401 goes to the login page, anything else is a page."""
    if status == 401:
        target = "/"
        if request.method in SAFE_METHODS:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        had_session = SESSION_COOKIE in request.cookies
        response = redirect(login_url(target, **({"done": "session_ended"} if had_session else {})))
        if had_session:
            clear_cookie(response, SESSION_COOKIE)
        return response
    title = ERROR_TITLES.get(status, "Error")
    return render(request, "error.html", status=status, title=title, message=message, code=status)

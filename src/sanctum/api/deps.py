"""Request dependencies, as ``Annotated`` aliases: every call authenticates, loads its project
context and authorises through ``sanctum.access`` before a handler runs.

Route marking: every route depends on ``Require(...)``, ``InProject(...)`` or ``public``; a test
walks the routes and fails on any that has none of them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy import select
from sqlalchemy.orm import Session

from sanctum.access.permissions import Permission
from sanctum.access.policy import Principal, authorize_platform
from sanctum.accounts import tokens
from sanctum.accounts.tokens import AuthFailure, TokenKind
from sanctum.api.runtime import Runtime
from sanctum.audit import AuditContext, record
from sanctum.db.models import Project
from sanctum.db.session import finish
from sanctum.errors import Denied, NotFound, Unauthenticated
from sanctum.projects import service as projects
from sanctum.projects.service import ProjectContext
from sanctum.security import bearer

SESSION_COOKIE = "sanctum_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER_KINDS = frozenset({TokenKind.API, TokenKind.LOGIN})
COOKIE_KINDS = frozenset({TokenKind.SESSION})


def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def get_db(request: Request, runtime: RuntimeDep) -> Iterator[Session]:
    """One unit of work per request. Writing methods take the write lock at BEGIN (SQLite)."""
    session = runtime.db.new_session(write=request.method not in SAFE_METHODS)
    try:
        yield session
        session.commit()
    except BaseException as exc:
        finish(session, exc)
        raise
    finally:
        session.close()


DbSession = Annotated[Session, Depends(get_db)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


def anonymous_audit(request: Request) -> AuditContext:
    return AuditContext(ip=client_ip(request))


AnonymousAudit = Annotated[AuditContext, Depends(anonymous_audit)]


def presented_secret(request: Request) -> tuple[str | None, bool]:
    """The credential on the request: a bearer header wins over the session cookie."""
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip(), False
    cookie = request.cookies.get(SESSION_COOKIE)
    return (cookie, True) if cookie else (None, False)


def _audit_failure(runtime: Runtime, request: Request, failure: AuthFailure, secret: str) -> None:
    ctx = AuditContext(actor_id=failure.user_id, actor_email=failure.email, ip=client_ip(request))
    with runtime.db.session() as session:
        record(
            session,
            ctx,
            "auth.token",
            outcome="denied",
            target=f"token:{failure.token_id}" if failure.token_id else bearer.display_prefix(secret),
            details={"reason": failure.reason, "path": request.url.path[:200]},
        )


def get_principal(request: Request, runtime: RuntimeDep) -> Principal:
    """Authenticate in short sessions of its own, before the request's unit of work begins.

    The request's session takes SQLite's write lock at its first statement; doing the
    authentication (and its audit of failures, and the last-used stamp) outside it means a
    failed authentication is recorded even though the request itself fails, without ever
    waiting on the request's own lock.
    """
    cached = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    secret, via_cookie = presented_secret(request)
    if not secret:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer snt_…' or log in")
    with runtime.db.session(write=False) as db:
        result = tokens.authenticate(
            db,
            secret,
            kinds=COOKIE_KINDS if via_cookie else BEARER_KINDS,
            policy=runtime.settings.require_2fa,
            ip=client_ip(request),
            via_cookie=via_cookie,
        )
    if isinstance(result, AuthFailure):
        _audit_failure(runtime, request, result, secret)
        messages = {"expired": "this token has expired", "revoked": "this token has been revoked"}
        raise Unauthenticated(
            messages.get(result.reason, "invalid credentials"), code=f"token_{result.reason}"
        )
    principal, last_used = result
    if via_cookie and request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not (principal.csrf_secret and bearer.same(sent, principal.csrf_secret)):
            raise Denied("missing or wrong CSRF token (send the X-CSRF-Token header)", code="csrf")
    if tokens.needs_touch(last_used):
        with runtime.db.session() as session:
            tokens.touch(session, principal.token_id)
    request.state.principal = principal
    return principal


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class Require:
    """A platform-level permission (not tied to a project)."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    def __call__(self, principal: CurrentPrincipal) -> Principal:
        authorize_platform(principal, self.permission)
        return principal


class InProject:
    """Load ``{project}`` in the principal's context and check ``permission`` for their role there."""

    def __init__(self, permission: Permission, *, for_update: bool = False) -> None:
        self.permission = permission
        self.for_update = for_update

    def __call__(
        self, request: Request, project: str, principal: CurrentPrincipal, db: DbSession, runtime: RuntimeDep
    ) -> ProjectContext:
        try:
            return projects.load(db, principal, project, self.permission, for_update=self.for_update)
        except (Denied, NotFound) as exc:
            _audit_denial(request, runtime, db, principal, project, self.permission, exc)
            raise


def _audit_denial(
    request: Request,
    runtime: Runtime,
    db: Session,
    principal: Principal,
    project: str,
    permission: Permission,
    exc: Denied | NotFound,
) -> None:
    """Record a refused project access. The project's owners and auditors see it in their trail;
    the caller learns nothing more than the 403/404 it gets.

    A writing request records it in its own unit of work (kept by ``persist``); a reading request
    has no write lock, so it records in a short session of its own.
    """

    def write(session: Session) -> None:
        project_id = session.scalar(select(Project.id).where(Project.name == project[:64]))
        record(
            session,
            projects.audit_context(principal),
            "access.denied",
            outcome="denied",
            project_id=project_id,
            project_name=project[:64] if project_id else None,
            target=request.url.path[:300],
            details={"permission": permission.value, "reason": exc.code, "method": request.method},
        )

    if request.method in SAFE_METHODS:
        with runtime.db.session() as session:
            write(session)
    else:
        write(db)
        exc.persist = True


def public() -> None:
    """Marks a route that needs no credential (health, login, static files)."""


Public = Depends(public)


def _platform(permission: Permission) -> type[Principal]:
    return Annotated[Principal, Depends(Require(permission))]  # type: ignore[return-value]


def _project(permission: Permission, *, for_update: bool = False) -> type[ProjectContext]:
    return Annotated[ProjectContext, Depends(InProject(permission, for_update=for_update))]  # type: ignore[return-value]


# Platform-level principals, by what they may do.
SelfReader = _platform(Permission.SELF_READ)
SelfManager = _platform(Permission.SELF_MANAGE)
TokenManager = _platform(Permission.TOKENS_MANAGE)
ProjectLister = _platform(Permission.PROJECTS_LIST)
ProjectCreator = _platform(Permission.PROJECT_CREATE)
UserAdmin = _platform(Permission.USERS_MANAGE)
AuditAdmin = _platform(Permission.AUDIT_READ_ALL)

# Project contexts, by what the caller's role must allow there.
ProjectReader = _project(Permission.PROJECT_READ)
MembersReader = _project(Permission.MEMBERS_READ)
MembersManager = _project(Permission.MEMBERS_MANAGE, for_update=True)
AuditReader = _project(Permission.AUDIT_READ)

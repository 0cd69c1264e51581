"""Request dependencies, as ``Annotated`` aliases: every call authenticates, loads its project
context and authorises through ``sanctum.access`` before a handler runs.

Route marking: every route depends on ``Require(...)``, ``InProject(...)`` or ``public``; a test
walks the routes and fails on any that has none of them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Annotated, Any, TypeVar

import anyio.to_thread
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
from sanctum.errors import Denied, NotFound, Unauthenticated
from sanctum.projects import service as projects
from sanctum.projects.service import ProjectContext
from sanctum.security import bearer

F = TypeVar("F")
T = TypeVar("T")
SESSION_COOKIE = "sanctum_session"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
BEARER_KINDS = frozenset({TokenKind.API, TokenKind.LOGIN})
COOKIE_KINDS = frozenset({TokenKind.SESSION})


async def get_runtime(request: Request) -> Runtime:
    return request.app.state.runtime


RuntimeDep = Annotated[Runtime, Depends(get_runtime)]


def writes_in_own_sessions(endpoint: F) -> F:
    """Mark a writing route whose request session only reads (uploads, queries): it holds no write
    lock while bytes stream or a query runs, and records its changes in short sessions of its own."""
    endpoint.sanctum_read_session = True  # type: ignore[attr-defined]
    return endpoint


def relaxed_durability(endpoint: F) -> F:
    """Mark a high-rate writing route whose changes are not audited (metrics, params, tags of a
    run): its commit does not wait for the WAL to reach the disk, so a power loss (not a crash of
    the server) can lose its last commits, never half of one (``sanctum.db.session``)."""
    endpoint.sanctum_relaxed_durability = True  # type: ignore[attr-defined]
    return endpoint


async def get_db(request: Request, runtime: RuntimeDep) -> AsyncIterator[Session]:
    """One unit of work per request. Writing methods take the write lock at BEGIN (SQLite).

    Creating a session does no I/O; the commit and close at the end are short and run inline
    rather than costing two more thread-pool hops on every request.
    """
    endpoint = request.scope.get("endpoint")
    reads_only = request.method in SAFE_METHODS or getattr(endpoint, "sanctum_read_session", False)
    durable = not getattr(endpoint, "sanctum_relaxed_durability", False)
    with runtime.db.session(write=not reads_only, durable=durable) as session:
        yield session


DbSession = Annotated[Session, Depends(get_db)]


def client_ip(request: Request) -> str | None:
    return request.client.host if request.client else None


async def anonymous_audit(request: Request) -> AuditContext:
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


def _record_auth_failure(
    runtime: Runtime, db: Session, request: Request, failure: AuthFailure, secret: str
) -> bool:
    """Audit a refused credential; True when it went into the request's own (write) session."""
    ctx = AuditContext(actor_id=failure.user_id, actor_email=failure.email, ip=client_ip(request))

    def write(session: Session) -> None:
        record(
            session,
            ctx,
            "auth.token",
            outcome="denied",
            target=f"token:{failure.token_id}" if failure.token_id else bearer.display_prefix(secret),
            details={"reason": failure.reason, "path": request.url.path[:200]},
        )

    return _write_beside(runtime, db, write, request)


def _write_beside(
    runtime: Runtime, db: Session, write: Callable[[Session], None], request: Request, *, audit: bool = True
) -> bool:
    """Write in the request's session when it is a writing one (it holds SQLite's write lock, so a
    second writer would wait on it forever); otherwise queue the write for a short session of its
    own, run in the thread pool once the read is done (``flush_writes``). True when the request's
    session was used (the caller marks its error ``persist``).

    An audit record is never committed by a relaxed-durability session (``relaxed_durability``): it
    is queued too, and ``run_read`` gives up the refused request's session before writing it."""
    if db.info.get("write") and (db.info.get("durable", True) or not audit):
        write(db)
        return True
    pending: list[Callable[[Session], None]] = getattr(request.state, "sanctum_writes", [])
    request.state.sanctum_writes = [*pending, write]
    return False


def _apply_writes(runtime: Runtime, writes: list[Callable[[Session], None]]) -> None:
    with runtime.db.session() as session:
        for write in writes:
            write(session)


async def flush_writes(request: Request, runtime: Runtime) -> None:
    writes = getattr(request.state, "sanctum_writes", None)
    if writes:
        request.state.sanctum_writes = []
        await anyio.to_thread.run_sync(_apply_writes, runtime, writes)


async def run_read(request: Request, runtime: Runtime, db: Session, fn: Callable[..., T], *args: Any) -> T:
    """Run the authentication and context loading of a request.

    Reads on SQLite run inline on the event loop: they are local, short, and in WAL mode never wait
    for a writer, so a thread-pool hop (and the GIL contention of 40 threads) would cost more than
    the query. Writing sessions and PostgreSQL go to the pool. Writes a read needs (audit of a
    refusal, the last-used stamp) follow in the pool, also when ``fn`` raised.
    """
    try:
        if runtime.db.is_sqlite and not db.info.get("write"):
            return fn(*args)
        return await anyio.to_thread.run_sync(fn, *args)
    except BaseException:
        if db.info.get("write") and getattr(request.state, "sanctum_writes", None):
            db.rollback()  # a refused relaxed write: free SQLite's write lock for the audit's session
        raise
    finally:
        await flush_writes(request, runtime)


def authenticate_request(request: Request, runtime: Runtime, db: Session) -> Principal:
    """Who is calling, through which credential; cached on the request.

    Runs in the request's own session: one connection and one transaction per request. A refused
    credential is audited; the last-used stamp is written at most once a minute per token.
    """
    cached: Principal | None = getattr(request.state, "principal", None)
    if cached is not None:
        return cached
    secret, via_cookie = presented_secret(request)
    if not secret:
        raise Unauthenticated("authentication required: send 'Authorization: Bearer snt_…' or log in")
    result = tokens.authenticate(
        db,
        secret,
        kinds=COOKIE_KINDS if via_cookie else BEARER_KINDS,
        policy=runtime.settings.require_2fa,
        ip=client_ip(request),
        via_cookie=via_cookie,
    )
    if isinstance(result, AuthFailure):
        in_request = _record_auth_failure(runtime, db, request, result, secret)
        messages = {"expired": "this token has expired", "revoked": "this token has been revoked"}
        raise Unauthenticated(
            messages.get(result.reason, "invalid credentials"),
            code=f"token_{result.reason}",
            persist=in_request,
        )
    principal, last_used = result
    if via_cookie and request.method not in SAFE_METHODS and request.url.path.startswith("/api/"):
        sent = request.headers.get(CSRF_HEADER, "")
        if not (principal.csrf_secret and bearer.same(sent, principal.csrf_secret)):
            raise Denied("missing or wrong CSRF token (send the X-CSRF-Token header)", code="csrf")
    if tokens.needs_touch(last_used):
        touch = partial(tokens.touch, token_id=principal.token_id)
        _write_beside(runtime, db, touch, request, audit=False)  # a hint for people, not a record
    request.state.principal = principal
    return principal


async def get_principal(request: Request, runtime: RuntimeDep, db: DbSession) -> Principal:
    return await run_read(request, runtime, db, authenticate_request, request, runtime, db)


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]


class Require:
    """A platform-level permission (not tied to a project)."""

    def __init__(self, permission: Permission) -> None:
        self.permission = permission

    async def __call__(self, principal: CurrentPrincipal) -> Principal:
        authorize_platform(principal, self.permission)
        return principal


class InProject:
    """Load ``{project}`` in the principal's context and check ``permission`` for their role there."""

    def __init__(self, permission: Permission, *, for_update: bool = False) -> None:
        self.permission = permission
        self.for_update = for_update

    async def __call__(
        self, request: Request, project: str, db: DbSession, runtime: RuntimeDep
    ) -> ProjectContext:
        return await run_read(request, runtime, db, self.resolve, request, project, db, runtime)

    def resolve(self, request: Request, project: str, db: Session, runtime: Runtime) -> ProjectContext:
        # Authentication and the project load share one call and one session: thread hops and
        # connection checkouts are what an authenticated request mostly costs.
        principal = authenticate_request(request, runtime, db)
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

    if _write_beside(runtime, db, write, request):
        exc.persist = True


def record_outside(
    runtime: Runtime, ctx: ProjectContext, action: str, *, also_for: Project | None = None, **kwargs: Any
) -> None:
    """Audit a read (or a change made outside the request session) in a short write session.

    ``also_for``: another project that must see the event in its own trail — the owner of a
    dataset read through a share.
    """
    with runtime.db.session() as session:
        ctx.record(session, action, **kwargs)
        if also_for is not None and also_for.id != ctx.project.id:
            record(
                session,
                ctx.audit,
                action,
                project_id=also_for.id,
                project_name=also_for.name,
                **{k: v for k, v in kwargs.items() if k in ("target", "details", "outcome")},
            )


async def public() -> None:
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
NodesAdmin = _platform(Permission.NODES_MANAGE)

# Project contexts, by what the caller's role must allow there.
ProjectReader = _project(Permission.PROJECT_READ)
MembersReader = _project(Permission.MEMBERS_READ)
MembersManager = _project(Permission.MEMBERS_MANAGE, for_update=True)
AuditReader = _project(Permission.AUDIT_READ)
ProjectDeleter = _project(Permission.PROJECT_DELETE, for_update=True)
DatasetsReader = _project(Permission.DATASETS_READ)
DatasetsManager = _project(Permission.DATASETS_MANAGE)
DataImporter = _project(Permission.DATA_IMPORT)
DicomRoutesManager = _project(Permission.DICOM_ROUTES_MANAGE)
DataDownloader = _project(Permission.DATA_DOWNLOAD)
DataQuerier = _project(Permission.DATA_QUERY)
Sharer = _project(Permission.DATASETS_SHARE)
Shredder = _project(Permission.DATASETS_SHRED)
JobsReader = _project(Permission.JOBS_READ)
JobSubmitter = _project(Permission.JOBS_SUBMIT, for_update=True)
AirlockReader = _project(Permission.AIRLOCK_READ)
ExportRequester = _project(Permission.EXPORTS_REQUEST)
ExportReviewer = _project(Permission.EXPORTS_REVIEW)
ExportReleaser = _project(Permission.EXPORTS_RELEASE)
ImportRequester = _project(Permission.IMPORTS_REQUEST)
ImportApprover = _project(Permission.IMPORTS_APPROVE)
DmpManager = _project(Permission.DMP_MANAGE, for_update=True)  # locked: version numbers follow each other

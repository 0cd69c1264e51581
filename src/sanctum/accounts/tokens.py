"""Bearer tokens: issuing, authenticating, listing and revoking.

API tokens are ``snt_`` secrets with a name, scopes, an optional project binding and an expiry.
A token is always issued *by a principal* and can only narrow that principal's rights.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import bindparam, or_, select, update
from sqlalchemy.orm import Session

from sanctum import names
from sanctum.access.permissions import Permission, expand_scopes, valid_scope
from sanctum.access.policy import Principal
from sanctum.accounts.users import requires_2fa
from sanctum.audit import AuditContext, record
from sanctum.config import TwoFactorPolicy
from sanctum.db.models import Membership, Project, Token, User
from sanctum.db.types import utcnow
from sanctum.errors import Denied, InvalidInput, NotFound
from sanctum.security import bearer

DEFAULT_DAYS = 30
MAX_DAYS = 365
# last_used_at is a hint for people, not an audit record: write it at most this often per token.
TOUCH_INTERVAL = timedelta(seconds=60)


class TokenKind(StrEnum):
    API = "api"  # made by a user, long-lived, named, scoped
    LOGIN = "login"  # returned by POST /auth/token (the CLI's login), hours
    SESSION = "session"  # the web session cookie, with its CSRF secret
    PENDING = "pending"  # a web login waiting for its TOTP step, minutes


PREFIX = {
    TokenKind.API: bearer.TOKEN_PREFIX,
    TokenKind.LOGIN: bearer.TOKEN_PREFIX,
    TokenKind.SESSION: bearer.SESSION_PREFIX,
    TokenKind.PENDING: bearer.PENDING_PREFIX,
}


@dataclass(frozen=True)
class Issued:
    token: Token
    secret: str


def issue(
    session: Session,
    user: User,
    kind: TokenKind,
    *,
    expires_at: datetime,
    name: str = "",
    scopes: list[str] | None = None,
    project_id: int | None = None,
    enrol_only: bool = False,
) -> Issued:
    secret = bearer.new_secret(PREFIX[kind])
    token = Token(
        user_id=user.id,
        kind=kind.value,
        name=name,
        token_hash=bearer.digest(secret),
        display_prefix=bearer.display_prefix(secret),
        scopes=scopes,
        project_id=project_id,
        enrol_only=enrol_only,
        csrf_secret=bearer.new_secret("csrf_")[5:] if kind is TokenKind.SESSION else None,
        expires_at=expires_at,
    )
    session.add(token)
    session.flush()
    return Issued(token, secret)


# Plain columns, not ORM objects, in one statement built once: this runs on every request, and a
# prebuilt statement skips both building the expression and computing its cache key each time.
_BY_DIGEST = (
    select(
        Token.id,
        Token.kind,
        Token.revoked_at,
        Token.expires_at,
        Token.last_used_at,
        Token.scopes,
        Token.project_id,
        Token.enrol_only,
        Token.csrf_secret,
        User.id.label("user_id"),
        User.email,
        User.is_admin,
        User.can_create_projects,
        User.is_active,
        User.totp_enabled,
        Project.name.label("project_name"),
    )
    .join(User, User.id == Token.user_id)
    .outerjoin(Project, Project.id == Token.project_id)
    .where(Token.token_hash == bindparam("digest"))
)


@dataclass(frozen=True)
class AuthFailure:
    reason: str  # unknown | expired | revoked | inactive | wrong_kind
    token_id: int | None = None
    user_id: int | None = None
    email: str | None = None


def authenticate(
    session: Session,
    secret: str,
    *,
    kinds: frozenset[TokenKind],
    policy: TwoFactorPolicy,
    ip: str | None,
    via_cookie: bool = False,
) -> tuple[Principal, datetime | None] | AuthFailure:
    """Resolve a presented secret to a principal and its token's last use, or say why not (the
    caller audits failures)."""
    row = session.execute(_BY_DIGEST, {"digest": bearer.digest(secret)}).first()
    if row is None:
        return AuthFailure("unknown")
    failure = None
    if row.kind not in kinds:
        failure = "wrong_kind"
    elif row.revoked_at is not None:
        failure = "revoked"
    elif row.expires_at <= utcnow():
        failure = "expired"
    elif not row.is_active:
        failure = "inactive"
    if failure is not None:
        return AuthFailure(failure, row.id, row.user_id, row.email)
    enrol_only = row.enrol_only or (
        not row.totp_enabled and requires_2fa(session, policy, row.user_id, is_admin=row.is_admin)
    )
    principal = Principal(
        user_id=row.user_id,
        email=row.email,
        is_admin=row.is_admin,
        can_create_projects=row.can_create_projects,
        token_id=row.id,
        token_kind=row.kind,
        scopes=expand_scopes(row.scopes),
        bound_project_id=row.project_id,
        bound_project_name=row.project_name,
        enrol_only=enrol_only,
        ip=ip,
        via_cookie=via_cookie,
        csrf_secret=row.csrf_secret,
    )
    return principal, row.last_used_at


def needs_touch(last_used_at: datetime | None) -> bool:
    return last_used_at is None or utcnow() - last_used_at > TOUCH_INTERVAL


def touch(session: Session, token_id: int) -> None:
    now = utcnow()
    session.execute(
        update(Token)
        .where(Token.id == token_id)
        .where(or_(Token.last_used_at.is_(None), Token.last_used_at < now - TOUCH_INTERVAL))
        .values(last_used_at=now)
    )


def _parent_expiry(session: Session, principal: Principal) -> datetime | None:
    """An API token minting another cannot give it a longer life than its own."""
    if principal.token_kind != TokenKind.API:
        return None
    return session.scalar(select(Token.expires_at).where(Token.id == principal.token_id))


def create_api_token(
    session: Session,
    ctx: AuditContext,
    principal: Principal,
    *,
    name: str,
    scopes: list[str] | None,
    project: str | None,
    expires_in_days: int | None,
) -> Issued:
    name = names.label(name, field="token name", max_length=100, allow_empty=False)
    days = DEFAULT_DAYS if expires_in_days is None else expires_in_days
    if not 1 <= days <= MAX_DAYS:
        raise InvalidInput(f"expires_in_days must be between 1 and {MAX_DAYS}")
    if scopes is not None:
        unknown = sorted(s for s in scopes if not valid_scope(s))
        if unknown:
            raise InvalidInput(f"unknown scopes: {', '.join(unknown)}", code="invalid_scope")
        if not scopes:
            raise InvalidInput("scopes must not be empty; omit it for all of your permissions")
    # Narrowing: the new token's permissions must lie within the presenting credential's.
    if principal.scopes != frozenset(Permission):
        if scopes is None:
            scopes = sorted(p.value for p in principal.scopes)
        elif not expand_scopes(scopes) <= principal.scopes:
            raise Denied("a token cannot grant more than the credential that creates it", code="widening")
    project_id: int | None = None
    if principal.bound_project_name is not None:
        if project is not None and project != principal.bound_project_name:
            raise Denied("this token is bound to another project", code="token_project_mismatch")
        project, project_id = principal.bound_project_name, principal.bound_project_id
    elif project is not None:
        project_id = session.scalar(
            select(Project.id)
            .join(Membership, Membership.project_id == Project.id)
            .where(Project.name == project, Membership.user_id == principal.user_id)
        )
        if project_id is None:
            raise NotFound("project not found")
    expires_at = utcnow() + timedelta(days=days)
    parent = _parent_expiry(session, principal)
    if parent is not None and expires_at > parent:
        if expires_in_days is not None:
            raise Denied("a token cannot outlive the token that creates it", code="widening")
        expires_at = parent  # the default lifetime shrinks to fit inside the parent's
    user = session.get(User, principal.user_id)
    assert user is not None
    issued = issue(
        session, user, TokenKind.API, expires_at=expires_at, name=name, scopes=scopes, project_id=project_id
    )
    record(
        session,
        ctx,
        "token.create",
        project_id=project_id,
        project_name=project,
        target=f"token:{issued.token.id}",
        details={"name": name, "scopes": scopes, "expires_at": expires_at.isoformat()},
    )
    return issued


def list_for(session: Session, principal: Principal, *, include_inactive: bool = False) -> list[Token]:
    query = (
        select(Token)
        .where(
            Token.user_id == principal.user_id, Token.kind.in_([TokenKind.API.value, TokenKind.LOGIN.value])
        )
        .order_by(Token.id)
    )
    if not include_inactive:
        query = query.where(Token.revoked_at.is_(None), Token.expires_at > utcnow())
    if principal.bound_project_id is not None:
        query = query.where(Token.project_id == principal.bound_project_id)
    return list(session.scalars(query).all())


def revoke(session: Session, ctx: AuditContext, principal: Principal, token_id: int) -> Token:
    query = select(Token).where(
        Token.id == token_id,
        Token.user_id == principal.user_id,
        Token.kind.in_([TokenKind.API.value, TokenKind.LOGIN.value]),
    )
    if principal.bound_project_id is not None:
        query = query.where(Token.project_id == principal.bound_project_id)
    token = session.scalar(query)
    if token is None:
        raise NotFound("token not found")
    if token.revoked_at is None:
        token.revoked_at = utcnow()
        record(session, ctx, "token.revoke", target=f"token:{token.id}", details={"name": token.name})
    return token


def revoke_secret(session: Session, secret: str) -> None:
    """Logout: end the session (or login token) that was presented."""
    session.execute(
        update(Token)
        .where(Token.token_hash == bearer.digest(secret), Token.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )

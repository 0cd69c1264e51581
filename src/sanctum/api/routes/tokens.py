"""The caller's API tokens."""

from __future__ import annotations

from fastapi import APIRouter

from sanctum.accounts import tokens
from sanctum.api.deps import DbSession, TokenManager
from sanctum.db.models import Token
from sanctum.projects.service import audit_context
from sanctum.schemas.tokens import TokenCreate, TokenCreated, TokenPublic

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


def token_public(token: Token) -> TokenPublic:
    return TokenPublic(
        id=token.id,
        name=token.name,
        kind=token.kind,
        prefix=token.display_prefix,
        scopes=token.scopes,
        project=token.project.name if token.project else None,
        created_at=token.created_at,
        expires_at=token.expires_at,
        last_used_at=token.last_used_at,
        revoked_at=token.revoked_at,
    )


@router.get("")
def list_tokens(db: DbSession, principal: TokenManager, include_inactive: bool = False) -> list[TokenPublic]:
    return [token_public(t) for t in tokens.list_for(db, principal, include_inactive=include_inactive)]


@router.post("", status_code=201)
def create_token(body: TokenCreate, db: DbSession, principal: TokenManager) -> TokenCreated:
    issued = tokens.create_api_token(
        db,
        audit_context(principal),
        principal,
        name=body.name,
        scopes=body.scopes,
        project=body.project,
        expires_in_days=body.expires_in_days,
    )
    db.commit()
    return TokenCreated(**token_public(issued.token).model_dump(), token=issued.secret)


@router.delete("/{token_id}", status_code=204)
def revoke_token(token_id: int, db: DbSession, principal: TokenManager) -> None:
    tokens.revoke(db, audit_context(principal), principal, token_id)
    db.commit()

"""The caller's job-signing public keys (``sanctum key create`` registers one)."""

from __future__ import annotations

from fastapi import APIRouter

from sanctum.api.deps import DbSession, SelfManager, SelfReader
from sanctum.jobs import signing_keys
from sanctum.jobs.models import SigningKey
from sanctum.schemas.jobs import KeyCreate, KeyPublic
from sanctum.security import signing

router = APIRouter(prefix="/api/v1/me/keys", tags=["keys"])


def key_public(key: SigningKey) -> KeyPublic:
    return KeyPublic(
        name=key.name,
        fingerprint=key.fingerprint,
        public_key=signing.encode_public_key(key.public_key),
        created_at=key.created_at,
        revoked_at=key.revoked_at,
    )


@router.get("")
def list_keys(db: DbSession, principal: SelfReader) -> list[KeyPublic]:
    return [key_public(k) for k in signing_keys.list_for(db, principal)]


@router.post("", status_code=201)
def register_key(body: KeyCreate, db: DbSession, principal: SelfManager) -> KeyPublic:
    return key_public(signing_keys.register(db, principal, name=body.name, public_key=body.public_key))


@router.delete("/{fingerprint:path}")
def revoke_key(fingerprint: str, db: DbSession, principal: SelfManager) -> KeyPublic:
    return key_public(signing_keys.revoke(db, principal, fingerprint))

"""API tokens: creation, listing, revocation, expiry, scopes and project binding only ever narrow."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from sanctum.db.models import AuditEvent, Token
from sanctum.db.types import utcnow

TOKENS = "/api/v1/tokens"


def _bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def test_create_list_revoke(client, world, runtime) -> None:
    r = client.post(TOKENS, json={"name": "laptop"}, headers=world.h["scientist"])
    assert r.status_code == 201
    created = r.json()
    assert created["token"].startswith("snt_") and created["prefix"] == created["token"][:10]
    lifetime = created["expires_at"]
    assert lifetime.startswith((utcnow() + timedelta(days=30)).date().isoformat())
    listed = client.get(TOKENS, headers=world.h["scientist"]).json()
    assert "laptop" in [t["name"] for t in listed]
    assert all("token" not in t for t in listed)  # the secret is shown once, never listed
    new = _bearer(created["token"])
    assert client.get("/api/v1/me", headers=new).status_code == 200
    assert client.delete(f"{TOKENS}/{created['id']}", headers=world.h["scientist"]).status_code == 204
    r = client.get("/api/v1/me", headers=new)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"
    with runtime.db.session(write=False) as db:
        actions = db.scalars(sa.select(AuditEvent.action).order_by(AuditEvent.seq)).all()
        stored = db.scalar(sa.select(Token.token_hash).where(Token.id == created["id"]))
    assert {"token.create", "token.revoke", "auth.token"} <= set(actions)
    assert created["token"] not in stored  # only a hash is kept


def test_revoked_token_use_is_audited_with_its_owner(client, world, runtime) -> None:
    created = client.post(TOKENS, json={"name": "old"}, headers=world.h["scientist"]).json()
    client.delete(f"{TOKENS}/{created['id']}", headers=world.h["scientist"])
    client.get("/api/v1/projects", headers=_bearer(created["token"]))
    with runtime.db.session(write=False) as db:
        event = db.scalars(
            sa.select(AuditEvent).where(AuditEvent.action == "auth.token").order_by(AuditEvent.seq.desc())
        ).first()
    assert event.actor_email == "scientist@example.org" and event.outcome == "denied"
    assert '"reason":"revoked"' in event.details


def test_expired_token_is_refused(client, world, runtime) -> None:
    created = client.post(TOKENS, json={"name": "short"}, headers=world.h["scientist"]).json()
    with runtime.db.session() as db:
        db.get(Token, created["id"]).expires_at = utcnow() - timedelta(seconds=1)
    r = client.get("/api/v1/me", headers=_bearer(created["token"]))
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_expired"


def test_expiry_bounds(client, world) -> None:
    for days, status in ((0, 422), (366, 422), (365, 201), (1, 201)):
        r = client.post(
            TOKENS, json={"name": f"d{days}", "expires_in_days": days}, headers=world.h["scientist"]
        )
        assert r.status_code == status, (days, r.text)


def test_someone_elses_token_cannot_be_revoked(client, world) -> None:
    created = client.post(TOKENS, json={"name": "mine"}, headers=world.h["scientist"]).json()
    r = client.delete(f"{TOKENS}/{created['id']}", headers=world.h["owner"])
    assert r.status_code == 404
    assert client.get("/api/v1/me", headers=_bearer(created["token"])).status_code == 200


def test_read_scope_cannot_write(client, world) -> None:
    read = _bearer(
        client.post(TOKENS, json={"name": "ro", "scopes": ["read"]}, headers=world.h["owner"]).json()["token"]
    )
    assert client.get("/api/v1/projects/alpha/members", headers=read).status_code == 200
    r = client.post(
        "/api/v1/projects/alpha/members",
        json={"email": world.outsider.email, "role": "auditor"},
        headers=read,
    )
    assert r.status_code == 403 and r.json()["error"]["code"] == "scope"
    assert client.post("/api/v1/projects", json={"name": "nope"}, headers=read).status_code == 403
    # A read-only token cannot mint itself a wider one.
    assert client.post(TOKENS, json={"name": "wider"}, headers=read).status_code == 403


def test_tokens_only_narrow(client, world) -> None:
    narrow = client.post(
        TOKENS, json={"name": "n", "scopes": ["tokens:manage", "project:read"]}, headers=world.h["owner"]
    ).json()
    h = _bearer(narrow["token"])
    r = client.post(TOKENS, json={"name": "wide", "scopes": ["members:manage"]}, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "widening"
    r = client.post(TOKENS, json={"name": "same"}, headers=h)  # omitted scopes inherit, not widen
    assert r.status_code == 201 and sorted(r.json()["scopes"]) == ["project:read", "tokens:manage"]
    r = client.post(TOKENS, json={"name": "long", "expires_in_days": 365}, headers=h)
    assert r.status_code == 403  # cannot outlive its parent (30 days)


def test_unknown_scopes_are_rejected(client, world) -> None:
    r = client.post(TOKENS, json={"name": "x", "scopes": ["root"]}, headers=world.h["owner"])
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_scope"
    r = client.post(TOKENS, json={"name": "x", "scopes": []}, headers=world.h["owner"])
    assert r.status_code == 422


def test_project_bound_token(client, world, runtime) -> None:
    r = client.post(TOKENS, json={"name": "ci", "project": "alpha"}, headers=world.h["owner"])
    assert r.status_code == 201 and r.json()["project"] == "alpha"
    bound = _bearer(r.json()["token"])
    assert client.get("/api/v1/projects/alpha", headers=bound).status_code == 200
    assert [p["name"] for p in client.get("/api/v1/projects", headers=bound).json()] == ["alpha"]
    # The owner is also... not a member of beta; a member of both still cannot cross with this token.
    client.post(
        "/api/v1/projects/beta/members",
        json={"email": world.owner.email, "role": "data_scientist"},
        headers=world.h["other_owner"],
    )
    r = client.get("/api/v1/projects/beta", headers=bound)
    assert r.status_code == 403 and r.json()["error"]["code"] == "token_project_mismatch"
    r = client.get("/api/v1/projects/no-such-project", headers=bound)
    assert r.status_code == 403  # refused before any lookup: existence is not revealed
    assert client.post("/api/v1/projects", json={"name": "gamma"}, headers=bound).status_code == 403
    # Tokens it mints stay bound to alpha.
    r = client.post(TOKENS, json={"name": "child", "project": "beta"}, headers=bound)
    assert r.status_code == 403
    child = client.post(TOKENS, json={"name": "child"}, headers=bound).json()
    assert child["project"] == "alpha"
    with runtime.db.session(write=False) as db:
        reasons = db.scalars(sa.select(AuditEvent.details).where(AuditEvent.action == "access.denied")).all()
    assert any("token_project_mismatch" in d for d in reasons)


def test_binding_to_a_project_you_are_not_in_is_not_found(client, world) -> None:
    r = client.post(TOKENS, json={"name": "x", "project": "beta"}, headers=world.h["scientist"])
    assert r.status_code == 404


def test_token_name_rules(client, world) -> None:
    for name in ("", "a\x00b", "tab\tname", "x" * 101, "../etc/passwd"):
        r = client.post(TOKENS, json={"name": name}, headers=world.h["scientist"])
        assert r.status_code == 422, name


def test_last_used_is_recorded(client, world, runtime) -> None:
    created = client.post(TOKENS, json={"name": "used"}, headers=world.h["scientist"]).json()
    assert created["last_used_at"] is None
    client.get("/api/v1/me", headers=_bearer(created["token"]))
    listed = {t["id"]: t for t in client.get(TOKENS, headers=world.h["scientist"]).json()}
    assert listed[created["id"]]["last_used_at"] is not None


def test_garbage_credentials(client) -> None:
    for header in ("Bearer", "Bearer ", "Basic abc", "Bearer snt_" + "a" * 5000, "Bearer \x7f"):
        r = client.get("/api/v1/me", headers={"Authorization": header})
        assert r.status_code == 401, header

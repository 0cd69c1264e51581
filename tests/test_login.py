"""Logging in: passwords, lockout, TOTP with replay protection, recovery codes, enrol-only logins."""

from __future__ import annotations

import time
from datetime import timedelta

import pyotp
import pytest
import sqlalchemy as sa
from tests.conftest import PASSWORD

from sanctum.accounts.login import _lock_seconds
from sanctum.db.models import AuditEvent, LoginThrottle
from sanctum.db.types import utcnow
from sanctum.security import passwords

TOKEN = "/api/v1/auth/token"


def _login(client, email: str, password: str = PASSWORD, totp: str | None = None):
    body = {"email": email, "password": password}
    if totp is not None:
        body["totp"] = totp
    return client.post(TOKEN, json=body)


def _audit(runtime, action: str = "auth.login") -> list[AuditEvent]:
    with runtime.db.session(write=False) as db:
        return list(
            db.scalars(
                sa.select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)
            ).all()
        )


def test_password_login_returns_a_working_token(client, people) -> None:
    person = people.create("sci@example.org")
    r = _login(client, person.email)
    assert r.status_code == 200
    body = r.json()
    assert body["token"].startswith("snt_") and body["enrol_only"] is False
    me = client.get("/api/v1/me", headers={"Authorization": f"Bearer {body['token']}"})
    assert me.json()["email"] == "sci@example.org"


def test_email_is_case_insensitive(client, people) -> None:
    people.create("Case@Example.org")
    assert _login(client, "  CASE@example.ORG ").status_code == 200


def test_wrong_password_and_unknown_user_look_the_same(client, people, runtime) -> None:
    people.create("real@example.org")
    wrong = _login(client, "real@example.org", "not the right password")
    unknown = _login(client, "ghost@example.org", "not the right password")
    assert wrong.status_code == unknown.status_code == 401
    assert wrong.json() == unknown.json()
    events = _audit(runtime)
    assert [(e.outcome, e.target) for e in events[-2:]] == [
        ("failed", "real@example.org"),
        ("failed", "ghost@example.org"),
    ]


def test_unknown_user_still_costs_one_argon2_verification(client, monkeypatch) -> None:
    """Constant-time behaviour: the work (one argon2id verify) is done whether or not the user exists."""
    from argon2 import PasswordHasher

    calls: list[str] = []

    class Counting(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            calls.append(str(hash))
            return super().verify(hash, password)

    monkeypatch.setattr(passwords, "_hasher", Counting())
    assert _login(client, "ghost@example.org", "whatever password").status_code == 401
    assert _login(client, "not-an-email", "whatever password").status_code == 401
    assert len(calls) == 2 and all(h.startswith("$argon2id$") for h in calls)


def test_password_typed_into_email_field_is_not_written_to_the_audit(client, runtime) -> None:
    _login(client, "my secret password", "x" * 12)
    assert _audit(runtime)[-1].target == "<not an e-mail address>"


def test_lockout_after_repeated_failures(client, people, runtime, settings) -> None:
    person = people.create("victim@example.org")
    for _ in range(settings.login_max_failures):
        assert _login(client, person.email, "wrong password!").status_code == 401
    r = _login(client, person.email, "wrong password!")
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    # Locked means locked: even the right password is refused while the lock lasts.
    r = _login(client, person.email)
    assert r.status_code == 429 and r.json()["error"]["code"] == "locked"
    assert "locked" in [e.outcome for e in _audit(runtime)]
    with runtime.db.session() as db:
        db.get(LoginThrottle, person.email).locked_until = utcnow() - timedelta(seconds=1)
    assert _login(client, person.email).status_code == 200
    with runtime.db.session(write=False) as db:
        assert db.get(LoginThrottle, person.email) is None  # success clears the count


def test_lockout_applies_to_unknown_addresses_too(client, settings) -> None:
    for _ in range(settings.login_max_failures + 1):
        r = _login(client, "ghost@example.org", "wrong password!")
    assert r.status_code == 429


def test_lock_doubles_and_is_capped(settings) -> None:
    n = settings.login_max_failures
    assert _lock_seconds(settings, n - 1) == 0
    assert _lock_seconds(settings, n) == settings.login_lock_base_seconds
    assert _lock_seconds(settings, n + 1) == 2 * settings.login_lock_base_seconds
    assert _lock_seconds(settings, n + 100) == settings.login_lock_max_seconds


# --------------------------------------------------------------------------- TOTP


def test_enrolled_user_needs_a_code(client, people) -> None:
    person = people.create("twofa@example.org", totp=True)
    r = _login(client, person.email)
    assert r.status_code == 401 and r.json()["error"]["code"] == "totp_required"
    r = _login(client, person.email, totp="000000")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_totp"
    assert _login(client, person.email, totp=person.code()).status_code == 200


def test_a_code_cannot_be_replayed(client, people, runtime) -> None:
    person = people.create("replay@example.org", totp=True)
    code = person.code()
    assert _login(client, person.email, totp=code).status_code == 200
    r = _login(client, person.email, totp=code)
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_totp"
    assert _audit(runtime)[-1].details == '{"reason":"bad_totp"}'


def test_code_from_an_older_window_than_the_last_used_is_refused(client, people) -> None:
    person = people.create("older@example.org", totp=True)
    newest = pyotp.TOTP(person.totp_secret).at(time.time() + 30)
    older = pyotp.TOTP(person.totp_secret).at(time.time() - 30)
    assert _login(client, person.email, totp=newest).status_code == 200
    assert _login(client, person.email, totp=older).status_code == 401


def test_recovery_code_works_once(client, people, runtime) -> None:
    person = people.create("lost-phone@example.org")
    token = _login(client, person.email).json()["token"]
    h = {"Authorization": f"Bearer {token}"}
    secret = client.post("/api/v1/me/totp", headers=h).json()["secret"]
    codes = client.post("/api/v1/me/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=h).json()[
        "recovery_codes"
    ]
    assert len(codes) == 10 and len(set(codes)) == 10
    assert _login(client, person.email, totp=codes[3].upper()).status_code == 200
    assert _login(client, person.email, totp=codes[3]).status_code == 401
    me = client.get(
        "/api/v1/me",
        headers={"Authorization": f"Bearer {_login(client, person.email, totp=codes[4]).json()['token']}"},
    )
    assert me.json()["recovery_codes_left"] == 8


def test_owner_without_2fa_can_only_enrol(client, people, runtime) -> None:
    """2FA is required for owners by default: until enrolled, the login reaches only /api/v1/me*."""
    person = people.create("new-owner@example.org")
    h = {"Authorization": f"Bearer {_login(client, person.email).json()['token']}"}
    assert client.post("/api/v1/projects", json={"name": "mine"}, headers=h).status_code == 201
    # Now a data owner without a second factor: everything but enrolment is closed.
    r = client.get("/api/v1/projects", headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "enrol_2fa"
    assert client.get("/api/v1/projects/mine", headers=h).status_code == 403
    r = _login(client, person.email)
    assert r.json()["enrol_only"] is True
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.get("/api/v1/me", headers=h).json()["must_enrol_2fa"] is True
    secret = client.post("/api/v1/me/totp", headers=h).json()["secret"]
    client.post("/api/v1/me/totp/confirm", json={"code": pyotp.TOTP(secret).now()}, headers=h)
    # Having proved both factors, the same login now reaches the platform.
    assert [p["name"] for p in client.get("/api/v1/projects", headers=h).json()] == ["mine"]
    code = pyotp.TOTP(secret).at(time.time() + 30)
    full = {"Authorization": f"Bearer {_login(client, person.email, totp=code).json()['token']}"}
    assert client.get("/api/v1/me", headers=full).json()["must_enrol_2fa"] is False


def test_admins_must_enrol(client, people) -> None:
    admin = people.create("root@example.org", admin=True)
    r = _login(client, admin.email)
    assert r.json()["enrol_only"] is True
    h = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (
        client.post(
            "/api/v1/admin/users", json={"email": "x@example.org", "password": PASSWORD}, headers=h
        ).status_code
        == 403
    )


def test_confirm_with_wrong_code_is_refused_and_audited(client, people, runtime) -> None:
    person = people.create("fumble@example.org")
    h = {"Authorization": f"Bearer {_login(client, person.email).json()['token']}"}
    client.post("/api/v1/me/totp", headers=h)
    r = client.post("/api/v1/me/totp/confirm", json={"code": "123456"}, headers=h)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_totp"
    assert _audit(runtime, "user.2fa.confirm")[-1].outcome == "failed"
    assert client.get("/api/v1/me", headers=h).json()["totp_enabled"] is False


def test_replacing_2fa_needs_password_and_code(client, people, runtime) -> None:
    person = people.create("rotate@example.org", totp=True)
    h = {"Authorization": f"Bearer {_login(client, person.email, totp=person.code()).json()['token']}"}
    r = client.post("/api/v1/me/totp", headers=h)
    assert r.status_code == 409 and r.json()["error"]["code"] == "totp_enabled"
    r = client.post("/api/v1/me/totp", json={"password": "wrong password!", "code": "000000"}, headers=h)
    assert r.status_code == 401 and _audit(runtime, "user.2fa.reset")[-1].outcome == "failed"
    r = client.post("/api/v1/me/totp", json={"password": PASSWORD, "code": person.code()}, headers=h)
    assert r.status_code == 201 and r.json()["secret"] != person.totp_secret


@pytest.mark.parametrize(
    "body",
    [
        {"email": "a@example.org"},
        {"email": "a@example.org", "password": "x", "extra": 1},
        {"email": 5, "password": "x"},
        {"email": "a" * 400 + "@example.org", "password": "x"},
    ],
)
def test_malformed_login_bodies(client, body) -> None:
    r = client.post(TOKEN, json=body)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"


def test_inactive_user_cannot_log_in(client, people, runtime) -> None:
    from sanctum.db.models import User

    person = people.create("left@example.org")
    with runtime.db.session() as db:
        db.get(User, person.id).is_active = False
    assert _login(client, person.email).status_code == 401


def test_logout_revokes_the_presented_token(client, people) -> None:
    person = people.create("bye@example.org")
    h = {"Authorization": f"Bearer {_login(client, person.email).json()['token']}"}
    assert client.post("/api/v1/auth/logout", headers=h).status_code == 204
    r = client.get("/api/v1/me", headers=h)
    assert r.status_code == 401 and r.json()["error"]["code"] == "token_revoked"
